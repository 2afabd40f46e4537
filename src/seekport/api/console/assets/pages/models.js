// Models: the served models; with the system permission each deployment's health, breaker
// state, in-flight calls and TTFT (GET /admin/routing), tokens/s over the last hour from the
// usage records, and the registry versions a local model can switch to
// (POST /admin/models/{model}/use).

import { api } from "../api.js";
import { field, h, replace, table } from "../dom.js";
import { formatNumber, t } from "../i18n.js";
import { every, errorText, loading, mergeUsage, pageHead, showError, statusLine } from "./common.js";

const RATE_WINDOW_S = 3600; // the tokens/s column: the last hour's calls

function breakerLabel(breaker) {
  if (!breaker) return "–";
  const kind = { closed: "active", open: "revoked", half_open: "pending" }[breaker.state] || "pending";
  return h("span", { class: `badge ${kind}`, dataset: { breaker: breaker.state } }, t(`models.breaker.${breaker.state}`));
}

export function render(root, ctx) {
  const status = statusLine("models-status");
  const server = h("p", { id: "server-health", class: "muted" });
  const listSlot = h("div", { id: "models-list" }, loading());
  const versionsSlot = h("div", { id: "models-versions" });
  let alive = true;
  let drawn = "";

  async function load() {
    try {
      const system = ctx.can("system");
      const [models, ready, routing, usage] = await Promise.all([
        api("GET", "/v1/models"),
        fetch("/health/ready", { credentials: "same-origin" }).then((r) => r.ok).catch(() => false),
        system ? api("GET", "/admin/routing") : null,
        ctx.can("usage") ? api("GET", `/admin/usage?group_by=model&since=${Math.floor(Date.now() / 1000) - RATE_WINDOW_S}`).catch(() => null) : null,
      ]);
      if (!alive) return;
      // polled every 5 s: redraw only what changed (keeps focus and selection in the table)
      const signature = JSON.stringify([models, ready, routing && routing.groups, usage && usage.data]);
      if (signature === drawn) return;
      drawn = signature;
      replace(server, h("span", { class: `badge ${ready ? "active" : "revoked"}` }, t("models.server", { status: t(ready ? "models.server.ready" : "models.server.starting") })));
      // tokens/s per model over the last hour, its rows (one per currency) merged as on Usage
      const rate = new Map(mergeUsage(usage ? usage.data.filter((g) => g.group) : []).map((g) => [g.group, g.tokens_per_s]));
      const groups = routing ? routing.groups : {};
      const rows = [];
      for (const m of models.data) {
        const deps = groups[m.id] || [null];
        deps.forEach((d, i) => {
          const cells = [];
          if (i === 0) {
            cells.push(
              h("th", { scope: "row", rowspan: deps.length }, m.id),
              h("td", { rowspan: deps.length }, m.owned_by),
              h("td", { rowspan: deps.length }, m.version || "–"),
            );
          }
          if (system) {
            cells.push(
              h("td", null, d ? d.deployment : "–"),
              h("td", null, d ? d.backend : "–"),
              h("td", null, d ? h("span", { class: `badge ${d.ready ? "active" : "revoked"}` }, t(d.ready ? "models.ready" : "models.notReady")) : "–"),
              h("td", { class: "breaker" }, d ? breakerLabel(d.breaker) : "–"),
              h("td", { class: "num in-flight" }, d ? String(d.in_flight) : "–"),
              h("td", { class: "num" }, d && d.ttft_ewma_ms !== null ? formatNumber(d.ttft_ewma_ms, 1) : "–"),
            );
          }
          if (i === 0) {
            const r = rate.get(m.id);
            cells.push(h("td", { class: "num", rowspan: deps.length }, r === undefined || r === null ? "–" : formatNumber(r, 1)));
            if (system) {
              const local = deps.some((x) => x && x.backend === "local");
              cells.push(
                h(
                  "td",
                  { rowspan: deps.length },
                  local ? h("button", { type: "button", class: "small", dataset: { versions: m.id }, onclick: () => showVersions(m.id) }, t("models.versions", { model: m.id })) : "",
                ),
              );
            }
          }
          rows.push(h("tr", { dataset: { model: m.id } }, cells));
        });
      }
      const headers = [t("models.col.model"), t("models.col.owner"), t("models.col.version")];
      if (system) {
        headers.push(
          t("models.col.deployment"),
          t("models.col.backend"),
          t("models.col.health"),
          t("models.col.breaker"),
          t("models.col.inFlight"),
          t("models.col.ttft"),
        );
      }
      headers.push(t("models.col.tokS"));
      if (system) headers.push(t("models.switch"));
      replace(
        listSlot,
        table({ caption: t("models.title"), headers, rows, className: "models" }),
        system ? null : h("p", { class: "muted" }, t("models.routingHidden")),
      );
    } catch (err) {
      if (alive) showError(listSlot, err);
    }
  }

  async function showVersions(model) {
    replace(versionsSlot, loading());
    try {
      const [versions, registry] = await Promise.all([
        api("GET", `/admin/models/${encodeURIComponent(model)}/versions`),
        api("GET", "/admin/models/registry").catch(() => ({ data: [] })),
      ]);
      const refs = new Set();
      for (const e of registry.data) if (e.kind !== "adapter") refs.add(`${e.name}@${e.version}`);
      for (const e of versions.earlier || []) if (typeof e === "string" && e.includes("@")) refs.add(e.replace(/^registry:/, ""));
      const select = h("select", { name: "version", id: "version-select" }, [...refs].map((r) => h("option", { value: r }, r)));
      const submit = h("button", { type: "submit", class: "primary", disabled: !refs.size }, t("models.switch"));
      const form = h(
        "form",
        { class: "card", "aria-labelledby": "versions-title", id: "versions-form" },
        h("h2", { id: "versions-title" }, t("models.versions", { model })),
        h("p", null, t("models.serving", { path: versions.serving })),
        refs.size ? field(t("models.switchTo"), select) : h("p", { class: "muted" }, t("models.noVersions")),
        h("div", { class: "row" }, submit),
      );
      form.addEventListener("submit", async (ev) => {
        ev.preventDefault();
        submit.disabled = true;
        try {
          const done = await api("POST", `/admin/models/${encodeURIComponent(model)}/use`, { json: { version: select.value } });
          status.say(t("models.switched", { model, path: done.serving }));
          await showVersions(model);
          await load();
        } catch (err) {
          status.say(errorText(err), "error");
          submit.disabled = false;
        }
      });
      replace(versionsSlot, form);
    } catch (err) {
      showError(versionsSlot, err);
    }
  }

  root.append(
    pageHead(t("models.title"), h("button", { type: "button", class: "ghost", onclick: load }, t("common.refresh"))),
    server,
    status,
    listSlot,
    versionsSlot,
  );
  load();
  const stop = every(5000, load);
  return () => {
    alive = false;
    stop();
  };
}
