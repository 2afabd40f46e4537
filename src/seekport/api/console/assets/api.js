// The console talks to the same API routes as any client, authenticated by the session cookie
// (HttpOnly: this script never sees it). Every request other than GET/HEAD carries the
// session's CSRF token in X-CSRF-Token; the server refuses it otherwise.

import { createParser } from "./vendor/eventsource-parser.js";

let csrfToken = null;
let onSessionLost = null;

export function setCsrf(token) {
  csrfToken = token;
}

/** Called (once per loss) when an API call answers 401: the session ended or expired. */
export function setSessionLostHandler(fn) {
  onSessionLost = fn;
}

export class ApiError extends Error {
  constructor(status, body, text) {
    const err = body && typeof body === "object" ? body.error : null;
    super((err && err.message) || text || `HTTP ${status}`);
    this.status = status;
    this.code = err ? err.code : null;
    this.type = err ? err.type : null;
  }
}

function headersFor(method, extra) {
  const headers = new Headers(extra || {});
  if (method !== "GET" && method !== "HEAD" && csrfToken) headers.set("X-CSRF-Token", csrfToken);
  return headers;
}

async function failure(response) {
  const text = await response.text();
  let body = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    body = null;
  }
  return new ApiError(response.status, body, text);
}

/**
 * api("POST", "/admin/keys", {json: {...}}) → the parsed JSON (null for 204).
 * options: json (a body sent as JSON), body (sent as is), headers, signal, raw (return the
 * Response itself once it is OK), quiet401 (do not report a lost session).
 */
export async function api(method, path, options = {}) {
  const headers = headersFor(method, options.headers);
  let body = options.body;
  if (options.json !== undefined) {
    headers.set("Content-Type", "application/json");
    body = JSON.stringify(options.json);
  }
  const response = await fetch(path, {
    method,
    headers,
    body,
    credentials: "same-origin",
    signal: options.signal,
  });
  if (!response.ok) {
    const error = await failure(response);
    if (response.status === 401 && !options.quiet401 && onSessionLost) onSessionLost(error);
    throw error;
  }
  if (options.raw) return response;
  if (response.status === 204) return null;
  const text = await response.text();
  return text ? JSON.parse(text) : null;
}

/** Save a response body as a file (a blob URL clicked with the download attribute). */
export async function download(path, filename) {
  const response = await api("GET", path, { raw: true });
  const blob = await response.blob();
  const url = URL.createObjectURL(blob);
  const a = document.createElement("a");
  a.href = url;
  a.download = filename;
  a.hidden = true;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

/**
 * Upload one file as multipart/form-data (field "file") with XMLHttpRequest, whose upload
 * progress events fetch lacks. onProgress(fraction 0..1). Resolves with the parsed answer.
 */
export function uploadFile(path, file, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", path);
    xhr.withCredentials = true;
    if (csrfToken) xhr.setRequestHeader("X-CSRF-Token", csrfToken);
    xhr.responseType = "text";
    xhr.upload.addEventListener("progress", (ev) => {
      if (ev.lengthComputable && ev.total > 0) onProgress(ev.loaded / ev.total);
    });
    xhr.addEventListener("load", () => {
      let body = null;
      try {
        body = xhr.responseText ? JSON.parse(xhr.responseText) : null;
      } catch {
        body = null;
      }
      if (xhr.status >= 200 && xhr.status < 300) {
        onProgress(1);
        resolve(body);
      } else {
        if (xhr.status === 401 && onSessionLost) onSessionLost(null);
        reject(new ApiError(xhr.status, body, xhr.responseText));
      }
    });
    xhr.addEventListener("error", () => reject(new ApiError(0, null, "network error")));
    const form = new FormData();
    form.append("file", file, file.name);
    xhr.send(form);
  });
}

/**
 * A streamed chat completion: yields each parsed SSE data object until [DONE].
 * Throws ApiError for a refused request (before the stream) and for an error event.
 * The event stream is parsed by eventsource-parser (vendored), not by hand.
 */
export async function* streamChat(body, signal) {
  const response = await api("POST", "/v1/chat/completions", {
    json: { ...body, stream: true },
    raw: true,
    signal,
  });
  const ready = [];
  const parser = createParser({ onEvent: (event) => ready.push(event.data) });
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    parser.feed(decoder.decode(value, { stream: true }));
    while (ready.length) {
      const data = ready.shift();
      if (data === "[DONE]") return;
      const parsed = JSON.parse(data);
      if (parsed.error) throw new ApiError(500, parsed, data);
      yield parsed;
    }
  }
}
