// Building blocks every page uses: elements (never parsed from HTML), times and
// durations, status badges, the confirmation dialog and the route in the URL.

import { parseTime } from "./jobs.js";

const SVG_NS = "http://www.w3.org/2000/svg";

/** Build an element: h("a", {href: "#"}, "text", child). Text is never parsed as HTML. */
export function h(tag, attrs = {}, ...children) {
  return fill(document.createElement(tag), attrs, children);
}

/** Build an SVG element (charts and timelines: geometry in attributes, which the CSP allows). */
export function svg(tag, attrs = {}, ...children) {
  return fill(document.createElementNS(SVG_NS, tag), attrs, children, true);
}

function fill(node, attrs, children, asAttributes = false) {
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (!asAttributes && key in node && key !== "list") node[key] = value;
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

export function statusBadge(status) {
  return h("span", { className: `status status-${status}`, "data-status": status }, status.replace("_", " "));
}

/** "850 ms", "1.250 s", "3 min 4 s": durations to the millisecond (short jobs matter). */
export function formatMs(ms) {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(3)} s`;
  const minutes = Math.floor(ms / 60_000);
  if (minutes < 60) return `${minutes} min ${Math.floor((ms % 60_000) / 1000)} s`;
  return `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
}

/** "just now", "12 s ago", "5 min ago", "3 h ago", "2 d ago". */
export function relative(ms, now = Date.now()) {
  const seconds = Math.round((now - ms) / 1000);
  if (seconds < 1) return "just now";
  if (seconds < 60) return `${seconds} s ago`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ago`;
  if (seconds < 86_400) return `${Math.floor(seconds / 3600)} h ago`;
  return `${Math.floor(seconds / 86_400)} d ago`;
}

/** A <time> saying how long ago, with the absolute time (to the millisecond) on hover. */
export function timeCell(iso) {
  if (!iso) return "";
  const ms = parseTime(iso);
  const absolute = new Date(ms);
  const title = `${absolute.toLocaleString()} (${absolute.toISOString()})`;
  return h("time", { dateTime: absolute.toISOString(), title }, relative(ms));
}

/** Ask before doing something that cannot be undone; resolves true on "confirm".
 * A native modal <dialog>: focus moves into it, Escape dismisses it. */
export function confirmDialog(question, confirmLabel) {
  return new Promise((resolve) => {
    const yes = h("button", { type: "button", className: "danger", id: "confirm-yes" }, confirmLabel);
    const no = h("button", { type: "button", id: "confirm-no" }, "Keep");
    const dialog = h("dialog", { id: "confirm", "aria-labelledby": "confirm-question" },
      h("p", { id: "confirm-question" }, question), h("div", { className: "actions" }, no, yes));
    const done = (answer) => { dialog.close(); dialog.remove(); resolve(answer); };
    yes.addEventListener("click", () => done(true));
    no.addEventListener("click", () => done(false));
    dialog.addEventListener("cancel", (event) => { event.preventDefault(); done(false); });
    document.body.append(dialog);
    dialog.showModal();
    no.focus();
  });
}

/** The route in the fragment: `#/jobs?status=error` -> {path: "jobs", params}. */
export function readRoute() {
  const [path, query = ""] = location.hash.replace(/^#\/?/, "").split("?");
  return { path, params: new URLSearchParams(query) };
}

/** Put a page's state in the URL (bookmarkable, shareable) without re-rendering it;
 * Back returns to the previous state (popstate routes again). */
export function writeRoute(path, values, { replace = false } = {}) {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(values)) {
    if (value !== "" && value !== null && value !== undefined) params.set(key, String(value));
  }
  const query = params.toString();
  const target = `#/${path}${query ? `?${query}` : ""}`;
  if (target === location.hash) return;
  if (replace) history.replaceState(null, "", target);
  else history.pushState(null, "", target);
}
