// Keys: create (the secret shown once, with a copy button), list with last use (from the usage
// records: GET /admin/usage?group_by=key → last_at), limits and budget, revoke, rotate.

import { api } from "../api.js";
import { field, h, replace, table } from "../dom.js";
import { formatNumber, formatTime, t } from "../i18n.js";
import { errorText, loading, pageHead, showError, statusLine } from "./common.js";

const ROLES = ["user", "admin", "auditor", "viewer"];
const PERIODS = ["monthly", "daily", "weekly", "total"];

function numberInput(name, min = 1) {
  return h("input", { type: "number", name, min, step: 1, inputmode: "numeric" });
}

function secretPanel(name, secret, onDone) {
  const input = h("input", {
    type: "text",
    readonly: true,
    value: secret,
    class: "secret",
    id: "new-secret",
    spellcheck: "false",
  });
  const copied = h("span", { class: "status ok", role: "status", "aria-live": "polite", id: "copy-status" });
  const copy = h(
    "button",
    {
      type: "button",
      class: "primary",
      id: "copy-secret",
      onclick: async () => {
        try {
          await navigator.clipboard.writeText(secret);
        } catch {
          input.select();
          document.execCommand("copy");
        }
        copied.textContent = t("common.copied");
      },
    },
    t("common.copy"),
  );
  const done = h("button", { type: "button", class: "ghost", onclick: onDone }, t("common.dismiss"));
  const panel = h(
    "section",
    { class: "card secret-panel", "aria-labelledby": "secret-title", id: "secret-panel" },
    h("h2", { id: "secret-title" }, t("keys.secretTitle", { name })),
    h("p", null, t("keys.secretOnce")),
    field(t("keys.secretLabel"), input),
    h("div", { class: "row" }, copy, done, copied),
  );
  return panel;
}

function limitsText(policy) {
  const parts = [];
  if (policy.rpm) parts.push(t("keys.limit.rpm", { n: formatNumber(policy.rpm) }));
  if (policy.tpm) parts.push(t("keys.limit.tpm", { n: formatNumber(policy.tpm) }));
  if (policy.max_concurrent) parts.push(t("keys.limit.concurrent", { n: policy.max_concurrent }));
  if (policy.max_tokens) parts.push(t("keys.limit.maxTokens", { n: formatNumber(policy.max_tokens) }));
  if (policy.models && policy.models.length) parts.push(t("keys.limit.models", { list: policy.models.join(", ") }));
  return parts.length ? parts.join(" · ") : t("common.unlimited");
}

function budgetText(policy) {
  if (!policy.budget) return t("common.none");
  return `${policy.budget.amount} / ${t(`keys.period.${policy.budget.period}`)}`;
}

function statusOf(key) {
  const now = Date.now() / 1000;
  if (key.revoked_at) return ["revoked", t("keys.status.revoked")];
  if (key.expires_at && key.expires_at <= now) return ["expired", t("keys.status.expired")];
  return ["active", t("keys.status.active")];
}

export function render(root, ctx) {
  const status = statusLine("keys-status");
  const secretSlot = h("div", { id: "secret-slot" });
  const listSlot = h("div", { id: "keys-list" }, loading());
  let alive = true;

  async function load() {
    try {
      const [found, used] = await Promise.all([
        api("GET", "/admin/keys"),
        ctx.can("usage") ? api("GET", "/admin/usage?group_by=key").catch(() => null) : null,
      ]);
      if (!alive) return;
      const last = new Map();
      for (const g of used ? used.data : []) {
        if (g.group && g.last_at) last.set(g.group, Math.max(last.get(g.group) || 0, g.last_at));
      }
      drawList(found.data, last);
    } catch (err) {
      if (alive) showError(listSlot, err);
    }
  }

  function showSecret(name, secret) {
    replace(secretSlot, secretPanel(name, secret, () => secretSlot.replaceChildren()));
    secretSlot.querySelector("#copy-secret").focus();
  }

  function confirmButton(label, confirmLabel, name, action) {
    const btn = h("button", { type: "button", class: "small", dataset: { action: name } }, label);
    let armed = false;
    let timer = null;
    btn.addEventListener("click", async () => {
      if (!armed) {
        armed = true;
        btn.textContent = confirmLabel;
        btn.classList.add("danger");
        timer = setTimeout(() => {
          armed = false;
          btn.textContent = label;
          btn.classList.remove("danger");
        }, 5000);
        return;
      }
      clearTimeout(timer);
      btn.disabled = true;
      try {
        await action();
      } catch (err) {
        status.say(errorText(err), "error");
        btn.disabled = false;
      }
    });
    return btn;
  }

  function drawList(keys, last) {
    if (!keys.length) {
      replace(listSlot, h("p", null, t("keys.empty")));
      return;
    }
    const sorted = [...keys].sort((a, b) => b.created_at - a.created_at);
    const rows = sorted.map((k) => {
      const [state, stateLabel] = statusOf(k);
      const actions = [];
      if (state === "active") {
        actions.push(
          confirmButton(t("keys.rotate"), t("keys.rotateConfirm"), "rotate", async () => {
            const made = await api("POST", `/admin/keys/${encodeURIComponent(k.id)}/rotate`, {
              json: { grace_s: 3600 },
            });
            status.say(t("keys.rotated", { name: k.name }));
            showSecret(k.name, made.secret);
            await load();
          }),
          confirmButton(t("keys.revoke"), t("keys.revokeConfirm"), "revoke", async () => {
            await api("POST", `/admin/keys/${encodeURIComponent(k.id)}/revoke`);
            status.say(t("keys.revoked", { name: k.name }));
            await load();
          }),
        );
      }
      const stateCell = [h("span", { class: `badge ${state}` }, stateLabel)];
      if (state === "active" && k.previous_secret_valid_until && k.previous_secret_valid_until * 1000 > Date.now()) {
        stateCell.push(h("div", { class: "muted small" }, t("keys.status.grace", { time: formatTime(k.previous_secret_valid_until) })));
      }
      return h(
        "tr",
        { dataset: { keyId: k.id, keyName: k.name, state } },
        h("th", { scope: "row" }, k.name),
        h("td", null, h("code", null, `${k.prefix}…`)),
        h("td", null, t(`role.${k.role}`)),
        h("td", null, formatTime(k.created_at)),
        h("td", { class: "last-used" }, last.has(k.id) ? formatTime(last.get(k.id)) : t("common.never")),
        h("td", null, limitsText(k.policy || {})),
        h("td", null, budgetText(k.policy || {})),
        h("td", { class: "state" }, stateCell),
        h("td", null, h("div", { class: "row", role: "group", "aria-label": t("keys.actionsFor", { name: k.name }) }, actions)),
      );
    });
    replace(
      listSlot,
      table({
        caption: t("keys.list"),
        headers: [
          t("keys.col.name"),
          t("keys.col.prefix"),
          t("keys.col.role"),
          t("keys.col.created"),
          t("keys.col.lastUsed"),
          t("keys.col.limits"),
          t("keys.col.budget"),
          t("keys.col.status"),
          t("keys.col.actions"),
        ],
        rows,
        className: "keys",
      }),
    );
  }

  // ---- the create form
  const name = h("input", { type: "text", name: "name", required: true, maxlength: 128, autocomplete: "off" });
  const roles = ctx.session.role === "superadmin" ? [...ROLES, "superadmin"] : ROLES;
  const role = h("select", { name: "role" }, roles.map((r) => h("option", { value: r }, t(`role.${r}`))));
  const modelsIn = h("input", { type: "text", name: "models", autocomplete: "off", list: "key-models" });
  const models = h("datalist", { id: "key-models" });
  const rpm = numberInput("rpm");
  const tpm = numberInput("tpm");
  const concurrent = numberInput("max_concurrent");
  const maxTokens = numberInput("max_tokens");
  const budget = h("input", { type: "number", name: "budget", min: 0, step: "0.01" });
  const period = h("select", { name: "period" }, PERIODS.map((p) => h("option", { value: p }, t(`keys.period.${p}`))));
  const expires = h("input", { type: "datetime-local", name: "expires" });
  const submit = h("button", { type: "submit", class: "primary" }, t("keys.submit"));
  const form = h(
    "form",
    { class: "card", id: "key-create", "aria-labelledby": "key-create-title" },
    h("h2", { id: "key-create-title" }, t("keys.create")),
    h(
      "div",
      { class: "grid" },
      field(t("keys.name"), name),
      field(t("keys.role"), role),
      field(t("keys.models"), modelsIn, t("keys.modelsHint")),
      field(t("keys.rpm"), rpm),
      field(t("keys.tpm"), tpm),
      field(t("keys.maxConcurrent"), concurrent),
      field(t("keys.maxTokens"), maxTokens),
      field(t("keys.budget"), budget, t("keys.budgetHint")),
      field(t("keys.period"), period),
      field(t("keys.expires"), expires),
    ),
    models,
    h("div", { class: "row" }, submit),
  );
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const body = { name: name.value.trim(), role: role.value };
    const list = modelsIn.value.split(",").map((m) => m.trim()).filter(Boolean);
    if (list.length) body.models = list;
    for (const [input, key] of [[rpm, "rpm"], [tpm, "tpm"], [concurrent, "max_concurrent"], [maxTokens, "max_tokens"]]) {
      if (input.value) body[key] = Number(input.value);
    }
    if (budget.value && Number(budget.value) > 0) body.budget = { amount: budget.value, period: period.value };
    if (expires.value) body.expires_at = new Date(expires.value).toISOString();
    submit.disabled = true;
    try {
      const made = await api("POST", "/admin/keys", { json: body });
      status.say(t("keys.created", { name: made.name }));
      form.reset();
      showSecret(made.name, made.secret);
      await load();
    } catch (err) {
      status.say(errorText(err), "error");
    } finally {
      submit.disabled = false;
    }
  });

  api("GET", "/v1/models")
    .then((m) => replace(models, m.data.map((x) => h("option", { value: x.id }))))
    .catch(() => {});

  root.append(
    pageHead(t("keys.title"), h("button", { type: "button", class: "ghost", onclick: load }, t("common.refresh"))),
    status,
    secretSlot,
    form,
    h("section", { "aria-labelledby": "keys-list-title" }, h("h2", { id: "keys-list-title" }, t("keys.list")), listSlot),
  );
  load();
  return () => {
    alive = false;
  };
}
