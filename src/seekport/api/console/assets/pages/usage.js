// Usage: tokens, cost, latency and errors by day, model or key (Chart.js, vendored), the same
// numbers in a table, and a CSV export of the report (GET /admin/usage?format=csv).

import { api, download } from "../api.js";
import { field, h, replace, table } from "../dom.js";
import { formatNumber, formatTime, lang, t } from "../i18n.js";
import { errorText, loading, mergeUsage, pageHead, showError, statusLine } from "./common.js";

const GROUPS = ["day", "model", "key"];
const COLORS = { prompt: "#1d4ed8", completion: "#0f766e", cost: "#7c3aed", latency: "#b45309", errors: "#b91c1c" };
let remembered = { groupBy: "day", since: "", until: "" };

function isoDay(date) {
  return date.toISOString().slice(0, 10);
}

/** The day after a YYYY-MM-DD day: the server counts calls before ``until``. */
function nextDay(day) {
  return isoDay(new Date(Date.parse(`${day}T00:00:00Z`) + 86_400_000));
}

function costText(costs) {
  if (!costs.size) return "0";
  return [...costs].map(([currency, v]) => `${v.toFixed(6)} ${currency}`).join(" + ");
}

function chartCard(id, title) {
  const canvas = h("canvas", { id, role: "img", "aria-label": title });
  return h("figure", { class: "card chart" }, h("figcaption", null, title), h("div", { class: "chart-box" }, canvas));
}

export function render(root, ctx) {
  const status = statusLine("usage-status");
  const groupBy = h("select", { name: "group_by", id: "usage-group" }, GROUPS.map((g) => h("option", { value: g, selected: g === remembered.groupBy }, t(`usage.group.${g}`))));
  const since = h("input", { type: "date", name: "since", id: "usage-since", value: remembered.since || isoDay(new Date(Date.now() - 29 * 86_400_000)) });
  const until = h("input", { type: "date", name: "until", id: "usage-until", value: remembered.until });
  const exportBtn = h("button", { type: "button", id: "usage-export", class: "ghost" }, t("usage.export"));
  const refresh = h("button", { type: "button", class: "ghost", id: "usage-refresh" }, t("common.refresh"));
  const charts = h("div", { class: "charts", id: "usage-charts" });
  const tableSlot = h("div", { id: "usage-table" }, loading());
  const made = [];
  let alive = true;
  let keyNames = new Map();
  let loads = 0; // only the latest load() draws: an older reply that comes later is dropped

  function query(format) {
    const params = new URLSearchParams({ group_by: groupBy.value });
    if (since.value) params.set("since", `${since.value}T00:00:00Z`);
    if (until.value) params.set("until", `${nextDay(until.value)}T00:00:00Z`); // the whole last day
    if (format) params.set("format", format);
    return `/admin/usage?${params}`;
  }

  function label(group) {
    if (group === null || group === undefined) return "–";
    if (groupBy.value === "key") return keyNames.get(group) || group;
    return group;
  }

  function destroyCharts() {
    while (made.length) made.pop().destroy();
  }

  function drawCharts(rows) {
    destroyCharts();
    const groupName = t(`usage.group.${groupBy.value}`);
    const specs = [
      ["chart-tokens", t("usage.tokens")],
      ["chart-cost", t("usage.cost")],
      ["chart-latency", t("usage.latency")],
      ["chart-errors", t("usage.errors")],
    ];
    replace(charts, specs.map(([id, what]) => chartCard(id, t("usage.chartOf", { what, group: groupName }))));
    if (typeof window.Chart !== "function") return; // the vendored script failed to load
    const labels = rows.map((r) => label(r.group));
    const common = {
      animation: false,
      responsive: true,
      maintainAspectRatio: false,
      locale: lang() === "zh" ? "zh-CN" : "en-GB",
      plugins: { legend: { labels: { color: "#1f2937" } } },
      scales: { x: { ticks: { color: "#374151" } }, y: { beginAtZero: true, ticks: { color: "#374151" } } },
    };
    const bar = (id, datasets, stacked) => {
      const canvas = charts.querySelector(`#${id}`);
      const options = structuredClone(common);
      if (stacked) {
        options.scales.x.stacked = true;
        options.scales.y.stacked = true;
      }
      made.push(new window.Chart(canvas, { type: "bar", data: { labels, datasets }, options }));
    };
    bar(
      "chart-tokens",
      [
        { label: t("usage.promptTokens"), data: rows.map((r) => r.prompt_tokens), backgroundColor: COLORS.prompt },
        { label: t("usage.completionTokens"), data: rows.map((r) => r.completion_tokens), backgroundColor: COLORS.completion },
      ],
      true,
    );
    const currency = rows.flatMap((r) => [...r.costs.keys()])[0] || "";
    const costLabel = currency ? `${t("usage.cost")} (${currency})` : t("usage.cost");
    bar("chart-cost", [{ label: costLabel, data: rows.map((r) => r.costs.get(currency) || 0), backgroundColor: COLORS.cost }]);
    made[made.length - 1].options.scales.y.ticks.callback = (v) => Number(v).toPrecision(3).replace(/\.?0+(e|$)/, "$1");
    made[made.length - 1].update();
    bar("chart-latency", [{ label: t("usage.latency"), data: rows.map((r) => r.latency_ms_avg ?? 0), backgroundColor: COLORS.latency }]);
    bar("chart-errors", [{ label: t("usage.errors"), data: rows.map((r) => r.errors ?? 0), backgroundColor: COLORS.errors }]);
  }

  function drawTable(rows, totals) {
    const line = (r, head, attrs) =>
      h(
        "tr",
        attrs,
        h("th", { scope: "row" }, head),
        h("td", { class: "num requests" }, formatNumber(r.requests)),
        h("td", { class: "num" }, formatNumber(r.prompt_tokens)),
        h("td", { class: "num" }, formatNumber(r.completion_tokens)),
        h("td", { class: "num cost" }, costText(r.costs)),
        h("td", { class: "num errors" }, formatNumber(r.errors)),
        h("td", { class: "num" }, formatNumber(r.latency_ms_avg, 1)),
        h("td", { class: "num" }, formatNumber(r.tokens_per_s, 1)),
        h("td", null, formatTime(r.last_at)),
      );
    const body = rows.map((r) => line(r, label(r.group), { dataset: { group: r.group ?? "" } }));
    if (rows.length) body.push(line(totals, t("usage.totals"), { class: "totals" }));
    replace(
      tableSlot,
      rows.length ? null : h("p", { id: "usage-empty" }, t("usage.empty")),
      table({
        caption: t("usage.table", { group: t(`usage.group.${groupBy.value}`) }),
        hideCaption: false,
        headers: [
          t("usage.group"),
          t("usage.requests"),
          t("usage.promptTokens"),
          t("usage.completionTokens"),
          t("usage.cost"),
          t("usage.errors"),
          t("usage.latency"),
          t("usage.tokensPerS"),
          t("usage.lastAt"),
        ],
        rows: body,
        className: "usage",
      }),
    );
  }

  async function load() {
    remembered = { groupBy: groupBy.value, since: since.value, until: until.value };
    loads += 1;
    const mine = loads;
    const current = () => alive && mine === loads;
    status.clear();
    try {
      if (groupBy.value === "key" && ctx.can("keys") && !keyNames.size) {
        const keys = await api("GET", "/admin/keys");
        keyNames = new Map(keys.data.map((k) => [k.id, k.name]));
      }
      const report = await api("GET", query());
      if (!current()) return;
      const rows = mergeUsage(report.data).sort((a, b) => String(a.group).localeCompare(String(b.group)));
      const [totals] = mergeUsage(report.data.map((r) => ({ ...r, group: null })));
      drawCharts(rows);
      drawTable(rows, totals);
    } catch (err) {
      if (current()) showError(tableSlot, err);
    }
  }

  exportBtn.addEventListener("click", async () => {
    try {
      await download(query("csv"), `usage-${groupBy.value}.csv`);
    } catch (err) {
      status.say(errorText(err), "error");
    }
  });
  for (const input of [groupBy, since, until]) input.addEventListener("change", load);
  refresh.addEventListener("click", load);

  root.append(
    pageHead(t("usage.title"), refresh, exportBtn),
    h(
      "form",
      { class: "card filters", id: "usage-filters", onsubmit: (ev) => ev.preventDefault() },
      h("div", { class: "grid" }, field(t("usage.groupBy"), groupBy), field(t("usage.since"), since), field(t("usage.until"), until)),
    ),
    status,
    charts,
    h("section", { "aria-label": t("usage.table", { group: t(`usage.group.${groupBy.value}`) }) }, tableSlot),
  );
  load();
  return () => {
    alive = false;
    destroyCharts();
  };
}
