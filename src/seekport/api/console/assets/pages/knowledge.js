// Knowledge bases: create, upload with per-file progress (one XHR per file), each document's
// status (polled while any is unfinished), and search with highlighted hits and their scores.
// The open knowledge base is in the address: #/knowledge/<id>.

import { api, uploadFile } from "../api.js";
import { field, h, highlight, queryTerms, replace, table } from "../dom.js";
import { formatBytes, formatNumber, formatTime, t } from "../i18n.js";
import { errorText, loading, pageHead, showError, statusLine } from "./common.js";

const FINISHED = new Set(["done", "failed"]);

function selectedId() {
  const m = /^#\/knowledge\/([^/?#]+)/.exec(location.hash);
  return m ? decodeURIComponent(m[1]) : null;
}

function statusLabel(s) {
  const key = `kb.status.${s}`;
  const text = t(key);
  return text === key ? s : text;
}

export function render(root) {
  const status = statusLine("kb-status");
  const listSlot = h("div", { id: "kb-list" }, loading());
  const detail = h("div", { id: "kb-detail" });
  let alive = true;
  let poll = null;

  // ---- create
  const name = h("input", { type: "text", name: "name", required: true, maxlength: 128, autocomplete: "off" });
  const description = h("input", { type: "text", name: "description", maxlength: 2000, autocomplete: "off" });
  const create = h("button", { type: "submit", class: "primary" }, t("kb.submit"));
  const form = h(
    "form",
    { class: "card", id: "kb-create", "aria-labelledby": "kb-create-title" },
    h("h2", { id: "kb-create-title" }, t("kb.create")),
    h("div", { class: "grid" }, field(t("kb.name"), name), field(t("kb.description"), description)),
    h("div", { class: "row" }, create),
  );
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    create.disabled = true;
    try {
      const kb = await api("POST", "/v1/knowledge", { json: { name: name.value.trim(), description: description.value } });
      form.reset();
      location.hash = `#/knowledge/${encodeURIComponent(kb.id)}`;
    } catch (err) {
      status.say(errorText(err), "error");
      create.disabled = false;
    }
  });

  async function loadList() {
    try {
      const found = await api("GET", "/v1/knowledge");
      if (!alive) return;
      const current = selectedId();
      if (!found.data.length) {
        replace(listSlot, h("p", null, t("kb.empty")));
        return;
      }
      replace(
        listSlot,
        h(
          "ul",
          { class: "kb-list" },
          found.data.map((kb) =>
            h(
              "li",
              null,
              h(
                "a",
                {
                  href: `#/knowledge/${encodeURIComponent(kb.id)}`,
                  "aria-current": kb.id === current ? "true" : null,
                  dataset: { kb: kb.name },
                },
                kb.name,
              ),
              h("span", { class: "muted small" }, ` · ${t("kb.yourRole", { role: kb.role })}`),
              kb.description ? h("div", { class: "muted small" }, kb.description) : null,
            ),
          ),
        ),
      );
      const open = found.data.find((kb) => kb.id === current);
      if (open) renderDetail(open);
      else detail.replaceChildren();
    } catch (err) {
      if (alive) showError(listSlot, err);
    }
  }

  function renderDetail(kb) {
    const base = `/v1/knowledge/${encodeURIComponent(kb.id)}`;
    const docsSlot = h("div", { id: "kb-documents" }, loading());
    const uploads = h("ul", { class: "uploads", id: "kb-uploads" });

    async function loadDocs() {
      try {
        const docs = (await api("GET", `${base}/documents`)).data;
        if (!alive) return;
        const rows = docs.map((d) =>
          h(
            "tr",
            { dataset: { filename: d.filename, status: d.status } },
            h("th", { scope: "row" }, d.filename),
            h("td", { class: "num" }, formatBytes(d.size)),
            h(
              "td",
              { class: "doc-status" },
              h("span", { class: `badge ${d.status === "done" ? "active" : d.status === "failed" ? "revoked" : "pending"}` }, statusLabel(d.status)),
              FINISHED.has(d.status) ? null : ` ${formatNumber(d.progress * 100)}%`,
              d.error ? h("div", { class: "error small" }, d.error) : null,
            ),
            h("td", { class: "num" }, formatNumber(d.chunks)),
            h("td", null, formatTime(d.updated_at)),
          ),
        );
        replace(
          docsSlot,
          docs.length
            ? table({
                caption: t("kb.documents"),
                headers: [t("kb.col.file"), t("kb.col.size"), t("kb.col.status"), t("kb.col.chunks"), t("kb.col.updated")],
                rows,
                className: "documents",
              })
            : h("p", null, t("kb.noDocuments")),
        );
        const pending = docs.some((d) => !FINISHED.has(d.status));
        if (pending && !poll) poll = setInterval(loadDocs, 1000);
        if (!pending && poll) {
          clearInterval(poll);
          poll = null;
        }
      } catch (err) {
        if (alive) showError(docsSlot, err);
      }
    }

    // ---- upload
    const files = h("input", { type: "file", name: "file", multiple: true, id: "kb-files" });
    const send = h("button", { type: "submit", class: "primary" }, t("kb.uploadSubmit"));
    const uploadForm = h(
      "form",
      { class: "card", id: "kb-upload", "aria-labelledby": "kb-upload-title" },
      h("h3", { id: "kb-upload-title" }, t("kb.upload")),
      field(t("kb.files"), files),
      h("div", { class: "row" }, send),
      uploads,
    );
    uploadForm.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const chosen = [...files.files];
      if (!chosen.length) return;
      send.disabled = true;
      uploads.replaceChildren();
      await Promise.all(
        chosen.map(async (file) => {
          const bar = h("progress", { max: 100, value: 0, "aria-label": t("kb.uploadProgress", { name: file.name }) });
          const note = h("span", { class: "upload-note" }, "0%");
          const item = h("li", { dataset: { upload: file.name } }, h("span", { class: "upload-name" }, file.name), bar, note);
          uploads.append(item);
          try {
            await uploadFile(`${base}/documents`, file, (fraction) => {
              bar.value = Math.round(fraction * 100);
              note.textContent = `${Math.round(fraction * 100)}%`;
            });
            item.dataset.state = "uploaded";
            note.textContent = `100% · ${t("kb.uploaded")}`;
          } catch (err) {
            item.dataset.state = "failed";
            note.textContent = t("kb.uploadFailed", { message: err.message });
          }
          await loadDocs();
        }),
      );
      files.value = "";
      send.disabled = false;
    });

    // ---- search
    const query = h("input", { type: "search", name: "query", id: "kb-query", required: true, maxlength: 4000, autocomplete: "off" });
    const mode = h("select", { name: "mode", id: "kb-mode" }, ["hybrid", "bm25", "dense"].map((m) => h("option", { value: m }, t(`kb.mode.${m}`))));
    const go = h("button", { type: "submit", class: "primary" }, t("kb.searchSubmit"));
    const results = h("div", { id: "kb-results", "aria-live": "polite" });
    const searchForm = h(
      "form",
      { class: "card", id: "kb-search", role: "search", "aria-labelledby": "kb-search-title" },
      h("h3", { id: "kb-search-title" }, t("kb.search")),
      h("div", { class: "grid" }, field(t("kb.query"), query), field(t("kb.mode"), mode)),
      h("div", { class: "row" }, go),
      results,
    );
    searchForm.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      go.disabled = true;
      replace(results, loading());
      try {
        const found = await api("POST", `${base}/search`, { json: { query: query.value, mode: mode.value, top_k: 5 } });
        const terms = queryTerms(query.value);
        if (!found.data.length) {
          replace(results, h("p", null, t("kb.noHits")));
        } else {
          replace(
            results,
            h("h4", null, t("kb.hits")),
            h(
              "ol",
              { class: "hits" },
              found.data.map((hit) =>
                h(
                  "li",
                  { class: "hit", dataset: { filename: hit.filename } },
                  h(
                    "div",
                    { class: "hit-head" },
                    h("strong", null, hit.filename),
                    hit.headings.length ? h("span", { class: "muted" }, ` › ${hit.headings.join(" › ")}`) : null,
                  ),
                  h(
                    "div",
                    { class: "scores" },
                    h("span", { class: "score" }, t("kb.score", { score: hit.score.toFixed(4) })),
                    h("span", null, hit.lexical_rank ? t("kb.lexical", { rank: hit.lexical_rank, score: hit.lexical_score.toFixed(3) }) : `BM25: ${t("kb.notFound")}`),
                    h("span", null, hit.dense_rank ? t("kb.dense", { rank: hit.dense_rank, score: hit.dense_score.toFixed(3) }) : `${t("kb.mode.dense")}: ${t("kb.notFound")}`),
                  ),
                  h("p", { class: "hit-text" }, highlight(hit.text, terms)),
                ),
              ),
            ),
          );
        }
      } catch (err) {
        replace(results, h("p", { class: "error", role: "alert" }, errorText(err)));
      } finally {
        go.disabled = false;
      }
    });

    replace(
      detail,
      h(
        "section",
        { class: "kb-detail", "aria-labelledby": "kb-detail-title", dataset: { kbId: kb.id } },
        h("h2", { id: "kb-detail-title" }, kb.name),
        kb.description ? h("p", { class: "muted" }, kb.description) : null,
        uploadForm,
        h("section", { class: "card", "aria-labelledby": "kb-docs-title" }, h("h3", { id: "kb-docs-title" }, t("kb.documents")), docsSlot),
        searchForm,
      ),
    );
    loadDocs();
  }

  root.append(
    pageHead(t("kb.title")),
    status,
    h(
      "div",
      { class: "split" },
      h("div", { class: "side" }, form, h("section", { class: "card", "aria-labelledby": "kb-list-title" }, h("h2", { id: "kb-list-title" }, t("kb.list")), listSlot)),
      detail,
    ),
  );
  loadList();
  return () => {
    alive = false;
    if (poll) clearInterval(poll);
  };
}
