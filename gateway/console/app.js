// The console's views and routing. Routes live in the URL fragment (#/jobs/ID),
// which browsers never send to a server; the token lives in sessionStorage only.

import { ArcpError, ArcpSession } from "./arcp.js";
import { JobRecord, STATUSES, describeEvent, duration, parseTime, progressText } from "./jobs.js";

const TOKEN_KEY = "arcp-console.token";
const PAGE_SIZE = 20;
const LIST_REFRESH_MS = 5000; // jobs started elsewhere (CLI, other clients) appear within this
const SHOWN_EVENTS = 2000; // rows kept on a job page; older rows are dropped from the view

const main = document.getElementById("main");
const stateBadge = document.getElementById("connection");
const signOut = document.getElementById("sign-out");

const app = {
  session: null,
  jobs: new Map(), // job id -> JobRecord
  agents: [],
  list: { status: "", agent: "", cursors: [null], page: 0 },
  timers: [],
  render: () => {},
};

// A handle for debugging from the browser's devtools, and for the browser tests.
window.arcpConsole = {
  dropSocket: () => app.session && app.session.dropSocket(),
  get session() { return app.session; },
};

/** Build an element: h("a", {href: "#"}, "text", child). Text is never parsed as HTML. */
function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key in node && key !== "list") node[key] = value;
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

function show(...nodes) {
  for (const timer of app.timers) clearInterval(timer);
  app.timers = [];
  main.replaceChildren(...nodes);
}

function record(jobId) {
  let job = app.jobs.get(jobId);
  if (!job) {
    job = new JobRecord(jobId);
    app.jobs.set(jobId, job);
  }
  return job;
}

function statusBadge(status) {
  return h("span", { className: `status status-${status}`, "data-status": status }, status.replace("_", " "));
}

function when(iso) {
  return iso ? new Date(parseTime(iso)).toLocaleString() : "";
}

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
  show(form);
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
  const hash = location.hash.replace(/^#\/?/, "");
  document.querySelectorAll("nav a").forEach((a) => a.classList.toggle("active", hash.startsWith(a.dataset.route)));
  if (hash.startsWith("jobs/")) jobView(decodeURIComponent(hash.slice(5)));
  else if (hash === "submit") submitView();
  else listView();
}

window.addEventListener("hashchange", route);

// -- the job list (session.list_jobs, §6.6) -----------------------------------

function listView() {
  const list = app.list;
  const statusSelect = h(
    "select",
    { id: "filter-status", onchange: () => { list.status = statusSelect.value; restart(); } },
    h("option", { value: "" }, "any status"),
    STATUSES.map((s) => h("option", { value: s, selected: s === list.status }, s.replace("_", " "))),
  );
  const agentSelect = h(
    "select",
    { id: "filter-agent", onchange: () => { list.agent = agentSelect.value; restart(); } },
    h("option", { value: "" }, "any agent"),
    app.agents.map((a) => h("option", { value: a.name, selected: a.name === list.agent }, a.name)),
  );
  const body = h("tbody");
  const older = h("button", { id: "older", type: "button", onclick: () => { list.page += 1; load(); } }, "Older →");
  const newer = h("button", { id: "newer", type: "button", onclick: () => { list.page -= 1; load(); } }, "← Newer");
  const problem = h("p", { className: "problem", role: "alert" });
  show(
    h("section", { className: "card" },
      h("div", { className: "toolbar" },
        h("h2", {}, "Jobs"),
        h("label", {}, "Status ", statusSelect),
        h("label", {}, "Agent ", agentSelect),
        h("a", { className: "button", href: "#/submit" }, "Submit a job")),
      h("table", { id: "jobs" },
        h("thead", {}, h("tr", {}, ["Job", "Status", "Agent", "Submitted", "Duration"].map((t) => h("th", {}, t)))),
        body),
      problem,
      h("div", { className: "pager" }, newer, older)),
  );

  let loaded = [];
  function restart() {
    list.cursors = [null];
    list.page = 0;
    load();
  }
  async function load() {
    const filter = {};
    if (list.status) filter.status = [list.status];
    if (list.agent) filter.agent = list.agent;
    const request = { filter, limit: PAGE_SIZE, cursor: list.cursors[list.page] };
    try {
      const reply = await app.session.request("session.list_jobs", request);
      if (!main.contains(body)) return; // the user moved on
      const next = reply.payload.next_cursor || null;
      list.cursors[list.page + 1] = next;
      loaded = reply.payload.jobs;
      for (const entry of loaded) record(entry.job_id).describe(entry);
      problem.textContent = "";
      draw();
      older.disabled = !next;
      newer.disabled = list.page === 0;
    } catch (error) {
      problem.textContent = error.message;
    }
  }
  function draw() {
    body.replaceChildren(
      ...loaded.map((entry) => {
        const job = record(entry.job_id);
        return h("tr", { "data-job-id": job.jobId },
          h("td", {}, h("a", { href: `#/jobs/${encodeURIComponent(job.jobId)}` }, job.jobId)),
          h("td", {}, statusBadge(job.status)),
          h("td", {}, job.agent),
          h("td", {}, when(job.submittedAt)),
          h("td", { className: "duration" }, duration(job.submittedAt, job.completedAt)));
      }),
    );
    if (!loaded.length) body.append(h("tr", {}, h("td", { colSpan: 5, className: "empty" }, "No jobs match.")));
  }
  app.render = (frame) => {
    if (frame.type === "job.accepted" || frame.type === "job.result" || frame.type === "job.error") load();
    else draw();
  };
  app.timers.push(setInterval(load, LIST_REFRESH_MS), setInterval(draw, 1000));
  newer.disabled = true;
  older.disabled = true;
  load();
}

// -- submit (job.submit, §7.1) ------------------------------------------------

function submitView() {
  const agent = h("select", { id: "agent", name: "agent" },
    app.agents.flatMap((a) => [
      h("option", { value: a.name }, `${a.name} (default ${a.default || a.versions[0]})`),
      ...a.versions.filter((v) => a.versions.length > 1).map((v) => h("option", { value: `${a.name}@${v}` }, `${a.name}@${v}`)),
    ]));
  const input = h("textarea", { id: "input", name: "input", rows: 6, spellcheck: false }, '{"steps": 10}');
  const lease = h("textarea", { id: "lease", name: "lease", rows: 3, spellcheck: false, placeholder: '{"tool.call": ["search"], "cost.budget": ["USD:1.00"]}' });
  const maxRuntime = h("input", { id: "max-runtime", name: "max_runtime", type: "number", min: 1, step: 1 });
  const problem = h("p", { className: "problem", role: "alert" });
  const button = h("button", { type: "submit" }, "Submit");
  const form = h("form", { className: "card", id: "submit" },
    h("h2", {}, "Submit a job"),
    h("label", { htmlFor: "agent" }, "Agent"), agent,
    h("label", { htmlFor: "input" }, "Input (JSON)"), input,
    h("label", { htmlFor: "lease" }, "Lease request (JSON, optional, §9.2)"), lease,
    h("label", { htmlFor: "max-runtime" }, "Max runtime in seconds (optional)"), maxRuntime,
    problem, button);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    problem.textContent = "";
    const payload = { agent: agent.value };
    try {
      if (input.value.trim()) payload.input = JSON.parse(input.value);
    } catch (error) {
      problem.textContent = `Input is not valid JSON: ${error.message}`;
      return;
    }
    try {
      if (lease.value.trim()) payload.lease_request = JSON.parse(lease.value);
    } catch (error) {
      problem.textContent = `Lease is not valid JSON: ${error.message}`;
      return;
    }
    if (maxRuntime.value) payload.max_runtime_sec = Number(maxRuntime.value);
    button.disabled = true;
    try {
      const accepted = await app.session.request("job.submit", payload);
      location.hash = `#/jobs/${encodeURIComponent(accepted.payload.job_id)}`;
    } catch (error) {
      problem.textContent = error.message;
      button.disabled = false;
    }
  });
  app.render = () => {};
  show(form);
}

// -- one job -----------------------------------------------------------------

function jobView(jobId) {
  const job = record(jobId);
  const heading = h("h2", {}, job.jobId);
  const facts = h("dl", { className: "facts" });
  const progressBar = h("progress", { id: "progress", max: 1, value: 0 });
  const progressLabel = h("span", { id: "progress-text" });
  const progressRow = h("div", { className: "progress-row" }, progressBar, progressLabel);
  const budget = h("p", { id: "budget" });
  const cancel = h("button", { id: "cancel", type: "button", className: "danger" }, "Cancel job");
  const cancelNote = h("p", { className: "note" }, "Submitted in another session: only that session may cancel it here (§7.4); ", h("code", {}, `arcp-grpc cancel ${jobId}`), " cancels it from a shell.");
  const problem = h("p", { className: "problem", role: "alert" });
  const outcome = h("section", { id: "outcome" });
  const streamed = h("pre", { id: "streamed" });
  const events = h("tbody", { id: "events" });
  let shown = 0; // events of `job.events` already rendered

  cancel.addEventListener("click", async () => {
    cancel.disabled = true;
    try {
      await app.session.request("job.cancel", { job_id: job.jobId, reason: "cancelled from the console" });
    } catch (error) {
      problem.textContent = error.message;
      cancel.disabled = false;
    }
  });

  show(h("section", { className: "card", id: "job" },
    h("p", {}, h("a", { href: "#/jobs" }, "← all jobs")),
    heading, facts,
    progressRow,
    budget, cancel, cancelNote, problem, outcome,
    h("h3", {}, "Result stream"), streamed,
    h("h3", {}, "Events"),
    h("table", { className: "events" },
      h("thead", {}, h("tr", {}, ["#", "Time", "Kind", "Detail"].map((t) => h("th", {}, t)))),
      events)));

  function draw() {
    facts.replaceChildren(
      h("dt", {}, "Status"), h("dd", { id: "job-status" }, statusBadge(job.status)),
      h("dt", {}, "Agent"), h("dd", {}, job.agent),
      h("dt", {}, "Submitted"), h("dd", {}, when(job.submittedAt)),
      h("dt", {}, "Duration"), h("dd", {}, duration(job.submittedAt, job.completedAt)));
    if (job.progress) {
      const p = job.progress;
      progressBar.max = typeof p.total === "number" && p.total > 0 ? p.total : 1;
      progressBar.value = typeof p.total === "number" ? Math.min(p.current, progressBar.max) : 0;
      progressLabel.textContent = progressText(p);
    }
    progressRow.hidden = !job.progress;
    budget.hidden = !job.budget;
    if (job.budget) {
      budget.textContent = "Budget remaining: " + Object.entries(job.budget).map(([c, v]) => `${c} ${Number(v).toFixed(2)}`).join(", ");
    }
    // §7.4: only the submitting session may cancel; elsewhere the CLI can.
    cancel.hidden = job.terminal || !job.own;
    cancelNote.hidden = job.terminal || job.own;
    for (; shown < job.events.length; shown += 1) {
      const payload = job.events[shown];
      events.append(h("tr", { "data-job-seq": payload.job_seq ?? "", "data-kind": payload.kind },
        h("td", {}, payload.job_seq ?? ""),
        h("td", {}, payload.ts ? new Date(parseTime(payload.ts)).toLocaleTimeString() : ""),
        h("td", {}, payload.kind),
        h("td", {}, describeEvent(payload))));
      if (events.childElementCount > SHOWN_EVENTS) events.firstElementChild.remove();
    }
    streamed.hidden = !job.stream;
    streamed.previousElementSibling.hidden = !job.stream;
    if (job.stream && streamed.textContent.length !== job.stream.text.length) {
      streamed.textContent = job.stream.encoding === "base64" ? `${job.stream.size} bytes received` : job.stream.text;
    }
    drawOutcome();
  }

  function drawOutcome() {
    if (job.error) {
      const e = job.error;
      outcome.replaceChildren(h("div", { className: "error-box" },
        h("h3", {}, `Ended ${e.final_status.replace("_", " ")}`),
        h("p", {}, h("code", { id: "error-code" }, e.code), " ", e.message, e.retryable ? " (retryable)" : "")));
      return;
    }
    if (!job.result) {
      outcome.replaceChildren();
      return;
    }
    const blob = job.resultBlob();
    const link = blob ? h("a", { id: "download", className: "button", download: `${job.jobId}-result${job.stream ? ".txt" : ".json"}`, href: URL.createObjectURL(blob) }, "Download result") : null;
    const old = outcome.querySelector("#download");
    if (old) URL.revokeObjectURL(old.href);
    const inline = "result" in job.result ? h("pre", { id: "result" }, JSON.stringify(job.result.result, null, 2)) : null;
    const summary = job.result.result_id ? h("p", {}, `Streamed result ${job.result.result_id}, ${job.result.result_size} bytes.`) : null;
    outcome.replaceChildren(h("div", { className: "result-box" }, h("h3", {}, "Result"), summary, inline, link));
  }

  app.render = (frame) => {
    if (!frame || frame.job_id === job.jobId || (frame.payload && frame.payload.job_id === job.jobId)) draw();
  };
  app.timers.push(setInterval(() => { if (!job.terminal) draw(); }, 1000));
  draw();
  if (!job.own && !job.subscribed) {
    // Not submitted in this session: attach with its history (§7.6) to see it all.
    job.subscribed = true;
    app.session.request("job.subscribe", { job_id: job.jobId, history: true, from_event_seq: 0 })
      .then((reply) => { job.describe(reply.payload); draw(); })
      .catch((error) => { job.subscribed = false; problem.textContent = error.message; });
  }
}

connect();
