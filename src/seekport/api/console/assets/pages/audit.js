// Audit: the newest rows of the audit log (GET /admin/audit?order=desc, one page), filtered
// by action; exports as JSON Lines or CSV.

import { api, download } from "../api.js";
import { field, h, replace, table } from "../dom.js";
import { formatNumber, formatTime, t } from "../i18n.js";
import { errorText, loading, pageHead, showError, statusLine } from "./common.js";

const SHOWN = 200;

export function render(root) {
  const status = statusLine("audit-status");
  const action = h("input", { type: "text", name: "action", id: "audit-action", autocomplete: "off", placeholder: "key.create" });
  const slot = h("div", { id: "audit-list" }, loading());
  let alive = true;

  async function load() {
    replace(slot, loading());
    try {
      const params = new URLSearchParams({ order: "desc", limit: String(SHOWN) });
      if (action.value.trim()) params.set("action", action.value.trim());
      const rows = (await api("GET", `/admin/audit?${params}`)).data;
      if (!alive) return;
      if (!rows.length) {
        replace(slot, h("p", null, t("audit.empty")));
        return;
      }
      replace(
        slot,
        h("p", { class: "muted" }, t("audit.shown", { n: rows.length })),
        table({
          caption: t("audit.title"),
          headers: [
            t("audit.col.at"),
            t("audit.col.action"),
            t("audit.col.outcome"),
            t("audit.col.actor"),
            t("audit.col.target"),
            t("audit.col.ip"),
            t("audit.col.count"),
          ],
          rows: rows.map((r) =>
            h(
              "tr",
              { dataset: { action: r.action } },
              h("td", null, formatTime(r.at)),
              h("th", { scope: "row" }, r.action),
              h("td", null, h("span", { class: `badge ${r.outcome === "ok" || r.outcome === "success" ? "active" : "pending"}` }, r.outcome)),
              h("td", null, [r.actor_role, r.actor_key_id].filter(Boolean).join(" · ") || "–"),
              h("td", null, [r.target_type, r.target_id].filter(Boolean).join(" · ") || "–"),
              h("td", null, r.client_ip || "–"),
              h("td", { class: "num" }, formatNumber(r.count)),
            ),
          ),
          className: "audit",
        }),
      );
    } catch (err) {
      if (alive) showError(slot, err);
    }
  }

  const exporter = (format) =>
    h(
      "button",
      {
        type: "button",
        class: "ghost",
        dataset: { export: format },
        onclick: async () => {
          try {
            await download(`/admin/audit/export?format=${format}`, `audit.${format}`);
          } catch (err) {
            status.say(errorText(err), "error");
          }
        },
      },
      t("audit.export", { format: format.toUpperCase() }),
    );

  const form = h(
    "form",
    { class: "card filters", id: "audit-filter" },
    h("div", { class: "grid" }, field(t("audit.filter"), action)),
    h("div", { class: "row" }, h("button", { type: "submit", class: "primary" }, t("common.refresh"))),
  );
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    load();
  });

  root.append(pageHead(t("audit.title"), exporter("jsonl"), exporter("csv")), form, status, slot);
  load();
  return () => {
    alive = false;
  };
}
