// The console's shell: sign-in, the ARCP session, and routing. Routes live in the URL
// fragment (#/jobs?status=error, #/jobs/ID), which browsers never send to a server;
// the token lives in sessionStorage only. Each page is one module; a new page is one
// entry in PAGES and one link in index.html's nav.

import { TOKEN_KEY } from "./api.js";
import { ArcpError, ArcpSession } from "./arcp.js";
import { JobRecord } from "./jobs.js";
import { agentsView } from "./page-agents.js";
import { jobView } from "./page-job.js";
import { listView } from "./page-list.js";
import { nodesView } from "./page-nodes.js";
import { submitView } from "./page-submit.js";
import { workersView } from "./page-workers.js";
import { app, record } from "./state.js";
import { h, readRoute } from "./ui.js";

const PAGES = { jobs: listView, submit: submitView, nodes: nodesView, workers: workersView, agents: agentsView };

const main = document.getElementById("main");
const stateBadge = document.getElementById("connection");
const signOut = document.getElementById("sign-out");

/** Replace the page; the previous page's timers stop. */
app.show = (...nodes) => {
  for (const timer of app.timers) clearInterval(timer);
  app.timers = [];
  main.replaceChildren(...nodes);
};

// A handle for debugging from the browser's devtools, and for the browser tests.
window.arcpConsole = {
  dropSocket: () => app.session && app.session.dropSocket(),
  get session() { return app.session; },
};

// -- sign-in -----------------------------------------------------------------

function signInView(problem = "") {
  signOut.hidden = true;
  const input = h("input", { type: "password", id: "token", name: "token", autocomplete: "off", required: true });
  const form = h(
    "form",
    { className: "card", id: "sign-in" },
    h("h2", {}, "Sign in"),
    h("p", {}, "The bearer token for your principal (for the embedded default: the contents of data/dev-token). It is kept in this tab's session storage only."),
    h("label", { htmlFor: "token" }, "Token"),
    input,
    problem ? h("p", { className: "problem", role: "alert" }, problem) : null,
    h("button", { type: "submit" }, "Connect"),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, input.value.trim());
    connect();
  });
  app.show(form);
  input.focus();
}

async function connect() {
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (!token) {
    signInView();
    return;
  }
  const settings = await (await fetch("/console/settings.json")).json();
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const session = new ArcpSession(`${scheme}://${location.host}${settings.arcp_path}`, token);
  app.session = session;
  session.addEventListener("state", (event) => setState(event.detail));
  session.addEventListener("frame", (event) => onFrame(event.detail));
  session.addEventListener("reset", onReset);
  session.addEventListener("failed", (event) => {
    if (event.detail instanceof ArcpError && event.detail.code === "UNAUTHENTICATED") {
      sessionStorage.removeItem(TOKEN_KEY);
      signInView("The runtime refused that token.");
    } else {
      signInView(String(event.detail.message));
    }
  });
  setState("connecting");
  try {
    const welcome = await session.start();
    app.agents = (welcome.capabilities && welcome.capabilities.agents) || [];
  } catch {
    return; // "failed" has shown the sign-in form with the reason
  }
  signOut.hidden = false;
  route();
}

function setState(state) {
  stateBadge.textContent = state;
  stateBadge.dataset.state = state;
}

signOut.addEventListener("click", () => {
  sessionStorage.removeItem(TOKEN_KEY);
  if (app.session) app.session.close();
  app.session = null;
  app.jobs.clear();
  setState("signed out");
  signInView();
});

// -- frames ------------------------------------------------------------------

function onFrame(frame) {
  const payload = frame.payload || {};
  const jobId = frame.job_id || payload.job_id;
  if (frame.type === "job.accepted") {
    const job = record(jobId);
    job.own = true;
    job.describe(payload);
  } else if (frame.type === "job.event") {
    record(jobId).event(payload);
  } else if (frame.type === "job.result" || frame.type === "job.error") {
    record(jobId).finish(frame.type, payload);
  } else if (frame.type === "job.subscribed") {
    record(jobId).describe(payload);
  } else {
    return;
  }
  app.render(frame);
}

/** The session could not be resumed: what a page shows is fetched again from the start. */
function onReset() {
  for (const [jobId, job] of app.jobs) {
    const fresh = new JobRecord(jobId);
    fresh.agent = job.agent;
    app.jobs.set(jobId, fresh);
  }
  route();
}

// -- routing -----------------------------------------------------------------

function route() {
  if (!app.session || !app.session.welcome) return;
  const { path, params } = readRoute();
  const top = path.split("/")[0] || "jobs";
  document.querySelectorAll("nav a").forEach((a) => {
    const active = a.dataset.route === top;
    a.classList.toggle("active", active);
    if (active) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  });
  if (path.startsWith("jobs/")) jobView(decodeURIComponent(path.slice(5)), params);
  else (PAGES[top] || listView)(params);
}

window.addEventListener("hashchange", route);

connect();
