// Small pieces the pages share: a page heading with actions, a live status line, errors.

import { h, replace } from "../dom.js";
import { t } from "../i18n.js";

export function pageHead(title, ...actions) {
  return h("div", { class: "page-head" }, h("h1", null, title), h("div", { class: "actions" }, actions));
}

/** A polite live region for outcomes ("Key created."); say(text, "error") for failures. */
export function statusLine(id) {
  const el = h("p", { class: "status", role: "status", "aria-live": "polite", id });
  el.say = (text, kind) => {
    el.className = `status ${kind || "ok"}`;
    el.textContent = text;
  };
  el.clear = () => {
    el.className = "status";
    el.textContent = "";
  };
  return el;
}

export function errorText(err) {
  return t("common.error", { message: err && err.message ? err.message : String(err) });
}

export function showError(el, err) {
  replace(el, h("p", { class: "error", role: "alert" }, errorText(err)));
}

export function loading() {
  return h("p", { class: "muted" }, t("common.loading"));
}

/** setInterval that stops with the page (the returned cleanup). */
export function every(ms, fn) {
  const id = setInterval(fn, ms);
  return () => clearInterval(id);
}

/**
 * One row per group from /admin/usage, which answers one per (group, currency); calls that
 * cost nothing (unpriced, refused) have no currency. Counts and generating time add up; the
 * mean latency is recombined from each part's total latency, tokens/s as the server counts it
 * (completion tokens per second of the calls that generated: errors excluded); costs stay per
 * currency (costs: Map currency → amount).
 */
export function mergeUsage(parts) {
  const merged = new Map();
  for (const r of parts) {
    const k = r.group ?? "";
    let m = merged.get(k);
    if (!m) {
      m = { group: r.group ?? null, requests: 0, prompt_tokens: 0, completion_tokens: 0, errors: 0, latencyMs: 0, generating_ms: 0, costs: new Map(), last_at: null, parts: [] };
      merged.set(k, m);
    }
    m.parts.push(r);
    m.requests += r.requests || 0;
    m.prompt_tokens += r.prompt_tokens || 0;
    m.completion_tokens += r.completion_tokens || 0;
    m.errors += r.errors || 0;
    m.latencyMs += (r.latency_ms_avg || 0) * (r.requests || 0);
    m.generating_ms += r.generating_ms || 0;
    if (r.currency) m.costs.set(r.currency, (m.costs.get(r.currency) || 0) + Number(r.cost));
    if (r.last_at && (!m.last_at || r.last_at > m.last_at)) m.last_at = r.last_at;
  }
  return [...merged.values()].map(({ parts: mine, ...m }) => {
    let rate = m.generating_ms > 0 ? m.completion_tokens / (m.generating_ms / 1000) : 0;
    // a single part: the server's own figure, as it rounded it
    if (mine.length === 1 && typeof mine[0].tokens_per_s === "number") rate = mine[0].tokens_per_s;
    return { ...m, latency_ms_avg: m.requests ? m.latencyMs / m.requests : null, tokens_per_s: rate };
  });
}
