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
