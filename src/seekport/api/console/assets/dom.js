// DOM building without innerHTML: every piece of text goes in as a text node, so data from the
// server (names, documents, answers) is never parsed as markup.

const URL_ATTRS = new Set(["href", "src", "action", "formaction", "xlink:href"]);

/**
 * A link the builder may set: a fragment ("#/keys"), a path on this origin ("/v1/…", not the
 * scheme-relative "//host" nor "/\host", which browsers read as "//host"), or a blob: URL
 * (downloads); never javascript:, data: or another site.
 */
export function safeUrl(value) {
  if (typeof value !== "string") return false;
  if (/[\u0000-\u001f\u007f]/u.test(value)) return false; // control characters: no tricks
  if (value.startsWith("#")) return true;
  if (value.startsWith("/")) return !/^\/[\/\\]/u.test(value);
  return value.startsWith("blob:");
}

/**
 * h("button", {class: "primary", onclick: fn, dataset: {id: "k1"}}, "Save", child, ...)
 * Attributes: class, dataset, on<event> (listeners), boolean true → empty attribute,
 * false/null/undefined → left out; href/src only same-page or same-origin (safeUrl: "#…",
 * "/…", "blob:…"), others left out; everything else → setAttribute. Children: nodes, strings
 * (text nodes), numbers, arrays (flattened), null/false (skipped).
 */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  if (attrs) {
    for (const [name, value] of Object.entries(attrs)) {
      if (value === null || value === undefined || value === false) continue;
      if (name === "class") el.className = value;
      else if (name === "dataset") Object.assign(el.dataset, value);
      else if (URL_ATTRS.has(name.toLowerCase())) {
        if (safeUrl(value)) el.setAttribute(name, String(value));
      } else if (name.startsWith("on") && typeof value === "function") {
        el.addEventListener(name.slice(2), value);
      } else if (name === "value" && "value" in el) el.value = value;
      else if (name === "checked" || name === "selected" || name === "disabled") {
        el[name] = Boolean(value);
      } else el.setAttribute(name, value === true ? "" : String(value));
    }
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** Replace all children of ``el``. */
export function replace(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

let ids = 0;
/** A unique id for label/for pairs. */
export function uid(prefix = "f") {
  ids += 1;
  return `${prefix}-${ids}`;
}

/** A labelled form field: {label, input} wrapped in a div.field. */
export function field(label, input, hint) {
  if (!input.id) input.id = uid();
  const parts = [h("label", { for: input.id }, label), input];
  if (hint) {
    const hid = uid("hint");
    input.setAttribute("aria-describedby", hid);
    parts.push(h("span", { class: "hint", id: hid }, hint));
  }
  return h("div", { class: "field" }, parts);
}

/** A table with a caption (visually hidden when asked), header cells and body rows. */
export function table({ caption, hideCaption = true, headers, rows, className }) {
  return h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      { class: className || null },
      caption ? h("caption", { class: hideCaption ? "sr-only" : null }, caption) : null,
      h("thead", null, h("tr", null, headers.map((x) => h("th", { scope: "col" }, x)))),
      h("tbody", null, rows),
    ),
  );
}

/** Text with the terms highlighted as <mark> elements (built from text nodes only). */
export function highlight(text, terms) {
  const wanted = [...new Set(terms.filter((t) => t && t.trim()))].sort(
    (a, b) => b.length - a.length,
  );
  if (!wanted.length) return [document.createTextNode(text)];
  const pattern = new RegExp(
    wanted.map((t) => t.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")).join("|"),
    "giu",
  );
  const out = [];
  let last = 0;
  for (const m of text.matchAll(pattern)) {
    if (m.index > last) out.push(document.createTextNode(text.slice(last, m.index)));
    out.push(h("mark", null, m[0]));
    last = m.index + m[0].length;
  }
  if (last < text.length) out.push(document.createTextNode(text.slice(last)));
  return out;
}

const CJK = /[\u3400-\u9fff\uf900-\ufaff]/u;

/** The words of a search query worth highlighting (Chinese segmented with Intl.Segmenter). */
export function queryTerms(query) {
  const terms = [];
  let segmenter = null;
  try {
    segmenter = new Intl.Segmenter("zh", { granularity: "word" });
  } catch {
    segmenter = null;
  }
  for (const piece of query.split(/[\s,;:!?.，。；：！？、"'“”‘’()（）[\]]+/u)) {
    if (!piece) continue;
    if (CJK.test(piece) && segmenter) {
      for (const s of segmenter.segment(piece)) {
        if (s.isWordLike && (s.segment.length >= 2 || !CJK.test(s.segment))) terms.push(s.segment);
      }
    } else if (piece.length >= 2) {
      terms.push(piece);
    }
  }
  return terms;
}
