// What the lobby and the monitor page share: small DOM helpers, refusals
// put in words, and the notice under the top bar. Plain ES module, no build.

import { GameServerError } from "./gameserver.js";

export const $ = (id) => document.querySelector(`[data-testid="${id}"]`);

/** h("button", {class: "x", onclick}, "text", child...): an element. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "testid") el.dataset.testid = value;
    else if (key === "class") el.className = value;
    else if (value === true) el.setAttribute(key, "");
    else el.setAttribute(key, value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export function show(el, visible = true) {
  el.hidden = !visible;
}

export function setError(el, message) {
  el.textContent = message || "";
  show(el, Boolean(message));
}

export function sentence(text) {
  if (!text) return "";
  const s = text.charAt(0).toUpperCase() + text.slice(1);
  return /[.!?…]$/.test(s) ? s : `${s}.`;
}

/** The refusals both pages put in the same words; each adds its own. */
export const COMMON_MESSAGES = {
  bad_credentials: () => "Wrong username or password.",
  room_not_found: () => "This room no longer exists.",
  unavailable: () => "The server is busy: try again in a moment.",
  network_error: () => "The server cannot be reached.",
  session_expired: () => "Your session has expired: log in again.",
};

/** An error in words: the page's `messages` by code, else its own detail. */
export function explain(error, messages) {
  if (!(error instanceof GameServerError)) return String(error?.message ?? error);
  const words = messages[error.code];
  return words ? words(error) : sentence(error.detail || error.code);
}

let noticeTimer = null;

/** A message under the top bar for a few seconds: a refusal, or `kind` "ok". */
export function notice(message, kind = "error") {
  $("notice").dataset.kind = kind;
  $("notice-text").textContent = message;
  show($("notice"), true);
  clearTimeout(noticeTimer);
  noticeTimer = setTimeout(() => show($("notice"), false), 8000);
}

$("notice-close").addEventListener("click", () => show($("notice"), false));
