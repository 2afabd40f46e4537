// Playground: a streamed chat with any model the session's key may call. Parameters
// (temperature, max tokens, system prompt, knowledge bases to ground on); the reasoning
// (reasoning_content deltas) in a collapsible pane; a grounded answer's citations (the
// stream's first chunk) as clickable sources, and its [n] markers as links to them.

import { api, streamChat } from "../api.js";
import { field, h, replace } from "../dom.js";
import { formatNumber, t } from "../i18n.js";
import { errorText } from "./common.js";

// the conversation and the settings outlive a visit to another page (not a reload)
const memory = { messages: [], model: "", system: "", temperature: "0.7", maxTokens: "256", kbs: new Set() };

function citationList(cites, answerId) {
  const items = cites.map((c) => {
    const id = `${answerId}-cite-${c.index}`;
    const body = h(
      "blockquote",
      { class: "cite-text", id: `${id}-text`, hidden: true },
      c.headings && c.headings.length ? h("div", { class: "muted small" }, c.headings.join(" › ")) : null,
      c.text,
      h("div", { class: "muted small" }, `${c.knowledge_base} · ${t("kb.score", { score: Number(c.score).toFixed(4) })}`),
    );
    const toggle = h(
      "button",
      {
        type: "button",
        class: "link cite",
        id,
        "aria-expanded": "false",
        "aria-controls": `${id}-text`,
        dataset: { cite: c.index },
        onclick: () => {
          const open = toggle.getAttribute("aria-expanded") !== "true";
          toggle.setAttribute("aria-expanded", String(open));
          body.hidden = !open;
        },
      },
      t("pg.citation", { n: c.index, file: c.filename }),
    );
    return h("li", null, toggle, body);
  });
  return h("section", { class: "citations", "aria-label": t("pg.citations") }, h("h3", null, t("pg.citations")), h("ol", null, items));
}

/** The answer's text with [n] markers as buttons that open source n. */
function linkMarkers(text, cites, answerId) {
  const known = new Set(cites.map((c) => String(c.index)));
  const out = [];
  let last = 0;
  for (const m of text.matchAll(/\[(\d{1,3})\]/g)) {
    if (!known.has(m[1])) continue;
    if (m.index > last) out.push(text.slice(last, m.index));
    const target = `${answerId}-cite-${m[1]}`;
    out.push(
      h(
        "button",
        {
          type: "button",
          class: "link marker",
          dataset: { marker: m[1] },
          onclick: () => {
            const toggle = document.getElementById(target);
            if (toggle && toggle.getAttribute("aria-expanded") !== "true") toggle.click();
            toggle?.focus();
          },
        },
        m[0],
      ),
    );
    last = m.index + m[0].length;
  }
  out.push(text.slice(last));
  return out;
}

let answers = 0;

export function render(root, ctx) {
  let controller = null;
  const modelSelect = h("select", { name: "model", id: "pg-model" });
  const system = h("textarea", { name: "system", id: "pg-system", rows: 3 });
  system.value = memory.system;
  const temperature = h("input", { type: "number", name: "temperature", id: "pg-temperature", min: 0, max: 2, step: 0.1, value: memory.temperature });
  const maxTokens = h("input", { type: "number", name: "max_tokens", id: "pg-max-tokens", min: 1, max: 32768, step: 1, value: memory.maxTokens });
  const kbBox = h("fieldset", { class: "kbs", id: "pg-kbs" }, h("legend", null, t("pg.kbs")));
  const log = h("div", { class: "log", id: "pg-log", role: "log", "aria-live": "polite", tabindex: 0, "aria-label": t("pg.conversation") });
  const input = h("textarea", { name: "message", id: "pg-input", rows: 3, required: true });
  const send = h("button", { type: "submit", class: "primary", id: "pg-send" }, t("pg.send"));
  const stop = h("button", { type: "button", class: "ghost", id: "pg-stop", disabled: true }, t("pg.stop"));
  const clear = h("button", { type: "button", class: "ghost", id: "pg-clear" }, t("pg.clear"));

  function remember() {
    memory.model = modelSelect.value;
    memory.system = system.value;
    memory.temperature = temperature.value;
    memory.maxTokens = maxTokens.value;
  }
  for (const el of [modelSelect, system, temperature, maxTokens]) el.addEventListener("change", remember);

  function userBubble(text) {
    return h("div", { class: "msg user" }, h("div", { class: "who" }, t("pg.you")), h("div", { class: "text" }, text));
  }

  function drawHistory() {
    log.replaceChildren();
    if (!memory.messages.length) log.append(h("p", { class: "muted empty" }, t("pg.empty")));
    for (const m of memory.messages) {
      if (m.role === "user") log.append(userBubble(m.content));
      else log.append(h("div", { class: "msg assistant" }, h("div", { class: "who" }, t("pg.assistant")), h("div", { class: "text" }, m.content)));
    }
  }

  async function ask(text) {
    remember();
    log.querySelector(".empty")?.remove();
    // this turn's conversation: Clear swaps in a new array, and a request it cut short must
    // not add to that one
    const conversation = memory.messages;
    const turn = { role: "user", content: text };
    conversation.push(turn);
    log.append(userBubble(text));
    answers += 1;
    const answerId = `answer-${answers}`;
    const reasoningText = h("div", { class: "reasoning-text" });
    const reasoning = h(
      "details",
      { class: "reasoning", hidden: true, open: true },
      h("summary", null, t("pg.reasoning")),
      reasoningText,
    );
    const answer = h("div", { class: "text answer" });
    const cites = h("div", { class: "cites" });
    const stats = h("div", { class: "muted small stats" });
    const bubble = h(
      "div",
      { class: "msg assistant", id: answerId, "aria-busy": "true" },
      h("div", { class: "who" }, t("pg.assistant")),
      reasoning,
      answer,
      cites,
      stats,
    );
    log.append(bubble);
    log.scrollTop = log.scrollHeight;

    const messages = [];
    if (system.value.trim()) messages.push({ role: "system", content: system.value });
    messages.push(...conversation);
    const body = { model: modelSelect.value, messages, stream_options: { include_usage: true } };
    if (temperature.value !== "") body.temperature = Number(temperature.value);
    if (maxTokens.value !== "") body.max_tokens = Number(maxTokens.value);
    const kbs = [...kbBox.querySelectorAll("input:checked")].map((c) => c.value);
    if (kbs.length) body.knowledge_bases = kbs;

    controller = new AbortController();
    send.disabled = true;
    stop.disabled = false;
    let content = "";
    let citations = [];
    let usage = null;
    const started = performance.now();
    let firstToken = null;
    let answered = false;
    try {
      for await (const chunk of streamChat(body, controller.signal)) {
        if (chunk.citations && chunk.citations.length) {
          citations = chunk.citations;
          replace(cites, citationList(citations, answerId));
        }
        if (chunk.usage) usage = chunk.usage;
        for (const choice of chunk.choices || []) {
          const delta = choice.delta || {};
          if (delta.reasoning_content) {
            reasoning.hidden = false;
            reasoningText.append(delta.reasoning_content);
          }
          if (delta.content) {
            if (firstToken === null) firstToken = performance.now();
            content += delta.content;
            answer.append(delta.content);
          }
        }
        log.scrollTop = log.scrollHeight;
      }
      if (citations.length) replace(answer, linkMarkers(content, citations, answerId));
      if (!reasoning.hidden) reasoning.open = false; // the answer is in: fold the thinking away
      if (usage) {
        const seconds = (performance.now() - (firstToken ?? started)) / 1000;
        const rate = seconds > 0 ? usage.completion_tokens / seconds : 0;
        stats.textContent = t("pg.stats", { tokens: usage.total_tokens, rate: formatNumber(rate, 1) });
      }
      bubble.dataset.done = "true";
      answered = content !== "";
    } catch (err) {
      if (err.name === "AbortError") {
        answer.append(" ", t("pg.stopped"));
        bubble.dataset.done = "stopped";
      } else {
        bubble.append(h("p", { class: "error", role: "alert" }, errorText(err)));
        bubble.dataset.done = "error";
      }
    } finally {
      // the history keeps whole exchanges only: an answer, or neither turn (an error, a stop,
      // an empty answer); and nothing once Clear has started a new conversation
      if (memory.messages === conversation) {
        if (answered) conversation.push({ role: "assistant", content });
        else if (conversation.includes(turn)) conversation.splice(conversation.indexOf(turn), 1);
      }
      bubble.removeAttribute("aria-busy");
      controller = null;
      send.disabled = false;
      stop.disabled = true;
    }
  }

  const composer = h(
    "form",
    { class: "composer", id: "pg-form" },
    field(t("pg.message"), input),
    h("div", { class: "row" }, send, stop, clear),
  );
  composer.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const text = input.value.trim();
    if (!text || controller) return;
    input.value = "";
    ask(text);
  });
  input.addEventListener("keydown", (ev) => {
    if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey)) composer.requestSubmit();
  });
  stop.addEventListener("click", () => controller?.abort());
  clear.addEventListener("click", () => {
    controller?.abort();
    memory.messages = [];
    drawHistory();
  });

  api("GET", "/v1/models")
    .then((m) => {
      const chat = m.data.filter((x) => x.kind !== "embedding"); // embedding models do not chat
      replace(modelSelect, chat.map((x) => h("option", { value: x.id, selected: x.id === memory.model }, x.id)));
      if (!memory.model && chat.length) memory.model = modelSelect.value;
    })
    .catch((err) => log.append(h("p", { class: "error", role: "alert" }, errorText(err))));
  api("GET", "/v1/knowledge")
    .then((found) => {
      if (!found.data.length) {
        kbBox.append(h("p", { class: "muted small" }, t("pg.noKbs")));
        return;
      }
      for (const kb of found.data) {
        const box = h("input", { type: "checkbox", name: "kb", value: kb.id, checked: memory.kbs.has(kb.id), dataset: { kbName: kb.name } });
        box.addEventListener("change", () => (box.checked ? memory.kbs.add(kb.id) : memory.kbs.delete(kb.id)));
        kbBox.append(h("label", { class: "check" }, box, ` ${kb.name}`));
      }
    })
    .catch(() => kbBox.append(h("p", { class: "muted small" }, t("pg.noKbs"))));
  if (!ctx.can("knowledge")) kbBox.hidden = true;

  drawHistory();
  root.append(
    h("div", { class: "page-head" }, h("h1", null, t("pg.title"))),
    h(
      "div",
      { class: "split playground" },
      h(
        "form",
        { class: "card side", id: "pg-settings", "aria-labelledby": "pg-settings-title", onsubmit: (ev) => ev.preventDefault() },
        h("h2", { id: "pg-settings-title" }, t("pg.settings")),
        field(t("pg.model"), modelSelect),
        field(t("pg.system"), system),
        h("div", { class: "grid two" }, field(t("pg.temperature"), temperature), field(t("pg.maxTokens"), maxTokens)),
        kbBox,
      ),
      h("section", { class: "card chat", "aria-labelledby": "pg-chat-title" }, h("h2", { id: "pg-chat-title" }, t("pg.conversation")), log, composer),
    ),
  );
  return () => controller?.abort();
}
