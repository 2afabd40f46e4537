// The console's shell: login, the header (nav by the session's grants, language switch,
// logout) and a hash router over the pages. Each page module exports render(root, ctx) and
// may return a cleanup function (timers, charts), called when the route changes.

import { api, setCsrf, setSessionLostHandler } from "./api.js";
import { h, replace, field } from "./dom.js";
import { lang, onLangChange, setLang, t } from "./i18n.js";
import * as keys from "./pages/keys.js";
import * as usage from "./pages/usage.js";
import * as models from "./pages/models.js";
import * as knowledge from "./pages/knowledge.js";
import * as playground from "./pages/playground.js";
import * as audit from "./pages/audit.js";

// route → [label key, needed permission, page module]
const ROUTES = [
  ["keys", "nav.keys", "keys", keys],
  ["usage", "nav.usage", "usage", usage],
  ["models", "nav.models", "models", models],
  ["knowledge", "nav.knowledge", "knowledge", knowledge],
  ["playground", "nav.playground", "infer", playground],
  ["audit", "nav.audit", "audit", audit],
];

const state = { session: null, cleanup: null, lost: false };

const header = document.getElementById("top");
const main = document.getElementById("main");

function can(permission) {
  return Boolean(state.session && state.session.grants.includes(permission));
}

function allowedRoutes() {
  return ROUTES.filter(([, , permission]) => can(permission));
}

function currentRoute() {
  const m = /^#\/([a-z]+)/.exec(location.hash);
  return m ? m[1] : "";
}

function langSwitch() {
  const group = h("div", { class: "lang", role: "group", "aria-label": t("lang.label") });
  for (const code of ["en", "zh"]) {
    group.append(
      h(
        "button",
        {
          type: "button",
          class: "lang-btn",
          lang: code === "zh" ? "zh-CN" : "en",
          "aria-pressed": String(lang() === code),
          dataset: { lang: code },
          onclick: () => setLang(code),
        },
        t(`lang.${code}`),
      ),
    );
  }
  return group;
}

function renderHeader() {
  const route = currentRoute();
  const brand = h("a", { class: "brand", href: "#/" }, t("app.brand"));
  if (!state.session) {
    replace(header, h("div", { class: "bar" }, brand, h("div", { class: "spacer" }), langSwitch()));
    return;
  }
  const nav = h(
    "nav",
    { "aria-label": t("nav.label") },
    h(
      "ul",
      null,
      allowedRoutes().map(([name, label]) =>
        h(
          "li",
          null,
          h(
            "a",
            {
              href: `#/${name}`,
              dataset: { route: name },
              "aria-current": route === name ? "page" : null,
            },
            t(label),
          ),
        ),
      ),
    ),
  );
  const who = h(
    "span",
    { class: "who", dataset: { role: state.session.role } },
    t("session.signedInAs", { name: state.session.name, role: t(`role.${state.session.role}`) }),
  );
  const logout = h("button", { type: "button", class: "ghost", id: "logout", onclick: logoutNow }, t("session.logout"));
  replace(header, h("div", { class: "bar" }, brand, nav, h("div", { class: "spacer" }), who, langSwitch(), logout));
}

function renderLogin(message) {
  if (state.cleanup) {
    state.cleanup();
    state.cleanup = null;
  }
  renderHeader();
  const input = h("input", {
    type: "password",
    name: "key",
    autocomplete: "off",
    spellcheck: "false",
    required: true,
    placeholder: "sk-sp-…",
  });
  const status = h("p", { class: "error", role: "alert", id: "login-error" }, message || "");
  const submit = h("button", { type: "submit", class: "primary" }, t("login.submit"));
  const form = h(
    "form",
    { class: "card login", id: "login-form" },
    h("h1", null, t("login.title")),
    h("p", null, t("login.intro")),
    field(t("login.key"), input),
    submit,
    status,
  );
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    submit.disabled = true;
    status.textContent = "";
    try {
      const session = await api("POST", "/console/session", {
        json: { key: input.value.trim() },
        quiet401: true,
      });
      input.value = "";
      start(session);
    } catch (err) {
      status.textContent = t("login.failed", { message: err.message });
      submit.disabled = false;
      input.focus();
    }
  });
  replace(main, form);
  input.focus();
}

function start(session) {
  state.session = session;
  state.lost = false;
  setCsrf(session.csrf);
  route();
}

async function logoutNow() {
  try {
    await api("DELETE", "/console/session", { quiet401: true });
  } catch {
    // the session is gone either way
  }
  state.session = null;
  setCsrf(null);
  history.replaceState(null, "", "#/");
  renderLogin();
}

function route() {
  if (state.cleanup) {
    state.cleanup();
    state.cleanup = null;
  }
  if (!state.session) {
    renderLogin();
    return;
  }
  const allowed = allowedRoutes();
  let name = currentRoute();
  if (!name || name === "login") {
    if (!allowed.length) {
      renderHeader();
      replace(main, h("h1", null, t("app.title")), h("p", null, t("common.noAccess")));
      return;
    }
    history.replaceState(null, "", `#/${allowed[0][0]}`);
    name = allowed[0][0];
  }
  renderHeader();
  const found = allowed.find(([n]) => n === name);
  if (!found) {
    replace(main, h("h1", null, t("app.title")), h("p", { role: "alert" }, t("common.notFound")));
    return;
  }
  const [, label, , page] = found;
  document.title = `${t(label)} · ${t("app.title")}`;
  main.replaceChildren();
  main.dataset.page = name;
  const ctx = { session: state.session, can, t, rerender: route };
  try {
    const cleanup = page.render(main, ctx);
    state.cleanup = typeof cleanup === "function" ? cleanup : null;
  } catch (err) {
    replace(main, h("p", { class: "error", role: "alert" }, t("common.error", { message: err.message })));
  }
}

setSessionLostHandler(() => {
  if (!state.session || state.lost) return;
  state.lost = true;
  state.session = null;
  setCsrf(null);
  renderLogin(t("session.lost"));
});

window.addEventListener("hashchange", route);
onLangChange(() => {
  if (state.session) route();
  else renderLogin();
});

document.title = t("app.title");
(async () => {
  try {
    const session = await api("GET", "/console/session", { quiet401: true });
    if (session && session.authenticated) start(session);
    else renderLogin();
  } catch {
    renderLogin();
  }
})();
