// The jobs list: ARCP's session.list_jobs (§6.6) filtered by status, agent and time
// range, searched by job id or text, sorted by any column, paged by cursor; every
// choice lives in the URL, so a view can be bookmarked and shared. Jobs can be
// cancelled in bulk, after a confirmation.

import { apiGet } from "./api.js";
import { STATUSES, elapsedMs, parseTime } from "./jobs.js";
import { app, cancelJob, record } from "./state.js";
import { confirmDialog, formatMs, h, statusBadge, timeCell, writeRoute } from "./ui.js";

const PAGE_SIZE = 20;
const REFRESH_MS = 5000; // jobs started elsewhere (CLI, other clients) appear within this
const JOB_ID = /^job_[0-9A-Za-z]+$/;
const RANGES = [["", "any time"], ["15m", "last 15 minutes", 900], ["1h", "last hour", 3600], ["24h", "last 24 hours", 86_400], ["7d", "last 7 days", 604_800]];
const COLUMNS = [
  ["job", "Job", (j) => j.jobId],
  ["status", "Status", (j) => STATUSES.indexOf(j.status)],
  ["agent", "Agent", (j) => j.agent],
  ["submitted", "Submitted", (j) => (j.submittedAt ? parseTime(j.submittedAt) : 0)],
  ["duration", "Duration", (j) => elapsedMs(j.submittedAt, j.completedAt) ?? -1],
];

export function listView(params) {
  const state = {
    q: params.get("q") || "",
    status: params.get("status") || "",
    agent: params.get("agent") || "",
    since: params.get("since") || "",
    sort: params.get("sort") || "submitted",
    dir: params.get("dir") === "asc" ? "asc" : "desc",
    page: Math.max(0, Number(params.get("page")) || 0),
  };
  let cursors = [null]; // cursors[n] opens page n (§6.6 next_cursor)
  let loaded = [];
  let generation = 0; // the latest load's: an older one that ends later is dropped
  const selected = new Set();

  const search = h("input", { type: "search", id: "search", value: state.q, placeholder: "job_… or text", autocomplete: "off" });
  const statusSelect = h("select", { id: "filter-status" },
    h("option", { value: "" }, "any status"),
    STATUSES.map((s) => h("option", { value: s, selected: s === state.status }, s.replace("_", " "))));
  const agentSelect = h("select", { id: "filter-agent" },
    h("option", { value: "" }, "any agent"),
    app.agents.map((a) => h("option", { value: a.name, selected: a.name === state.agent }, a.name)));
  const rangeSelect = h("select", { id: "filter-since" },
    RANGES.map(([value, label]) => h("option", { value, selected: value === state.since }, label)));
  const headRow = h("tr");
  const body = h("tbody");
  const allBox = h("input", { type: "checkbox", id: "select-all", "aria-label": "Select every job on this page" });
  const bulk = h("button", { id: "cancel-selected", type: "button", className: "danger", disabled: true }, "Cancel selected");
  const older = h("button", { id: "older", type: "button", disabled: true }, "Older →");
  const newer = h("button", { id: "newer", type: "button", disabled: true }, "← Newer");
  const pageLabel = h("span", { id: "page-number", className: "note" });
  const problem = h("p", { className: "problem", role: "alert" });
  const bulkProblem = h("p", { className: "problem", id: "bulk-problem", role: "alert" });

  search.addEventListener("change", () => change({ q: search.value.trim() }));
  statusSelect.addEventListener("change", () => change({ status: statusSelect.value }));
  agentSelect.addEventListener("change", () => change({ agent: agentSelect.value }));
  rangeSelect.addEventListener("change", () => change({ since: rangeSelect.value }));
  older.addEventListener("click", () => { state.page += 1; remember(); load(); });
  newer.addEventListener("click", () => { state.page -= 1; remember(); load(); });
  allBox.addEventListener("change", () => {
    for (const entry of visible()) {
      if (allBox.checked) selected.add(entry.job_id);
      else selected.delete(entry.job_id);
    }
    draw();
  });
  bulk.addEventListener("click", cancelSelected);

  const page = h("section", { className: "card" },
    h("div", { className: "toolbar" },
      h("h2", {}, "Jobs"),
      h("a", { className: "button", href: "#/submit" }, "Submit a job")),
    h("form", { className: "filters", id: "filters", role: "search", onsubmit: (e) => { e.preventDefault(); change({ q: search.value.trim() }); } },
      h("label", {}, "Search ", search),
      h("label", {}, "Status ", statusSelect),
      h("label", {}, "Agent ", agentSelect),
      h("label", {}, "Submitted ", rangeSelect)),
    h("div", { className: "table-wrap" },
      h("table", { id: "jobs" }, h("thead", {}, headRow), body)),
    problem, bulkProblem,
    h("div", { className: "pager" }, bulk, h("span", { className: "spacer" }), pageLabel, newer, older));
  app.show(page);

  function change(values) {
    Object.assign(state, values);
    state.page = 0;
    cursors = [null];
    selected.clear();
    remember();
    load();
  }

  function remember() {
    const { q, status, agent, since, sort, dir, page: n } = state;
    writeRoute("jobs", { q, status, agent, since, sort: sort === "submitted" ? "" : sort, dir: dir === "desc" ? "" : dir, page: n || "" });
  }

  function filter() {
    const out = {};
    if (state.status) out.status = [state.status];
    if (state.agent) out.agent = state.agent;
    const range = RANGES.find(([value]) => value === state.since);
    if (range && range[2]) out.created_after = new Date(Date.now() - range[2] * 1000).toISOString();
    return out;
  }

  async function load() {
    const mine = ++generation;
    try {
      const rows = JOB_ID.test(state.q) ? await loadOne() : await loadPage();
      if (mine !== generation || !document.body.contains(body)) return; // superseded, or the user moved on
      loaded = rows;
      for (const entry of loaded) record(entry.job_id).describe(entry);
      problem.textContent = "";
      draw();
    } catch (error) {
      problem.textContent = error.message;
    }
  }

  /** A search for a job id: that job alone (GetJob), or nothing. */
  async function loadOne() {
    older.disabled = newer.disabled = true;
    try {
      return [(await apiGet("job", { id: state.q })).job];
    } catch (error) {
      if (error.code !== "JOB_NOT_FOUND") throw error;
      return [];
    }
  }

  /** Page `state.page`, following cursors from the last page known (a bookmarked
   * page number is reached by reading the pages before it). */
  async function loadPage() {
    const base = filter();
    let reply = null;
    for (let n = Math.min(cursors.length - 1, state.page); n <= state.page; n += 1) {
      if (n > 0 && !cursors[n]) break;
      reply = await app.session.request("session.list_jobs", { filter: base, limit: PAGE_SIZE, cursor: cursors[n] });
      cursors[n + 1] = reply.payload.next_cursor || null;
    }
    state.page = Math.min(state.page, cursors.length - 2);
    older.disabled = !cursors[state.page + 1];
    newer.disabled = state.page === 0;
    return reply ? reply.payload.jobs : [];
  }

  /** The loaded jobs a text search keeps (a job id or agent containing it), sorted. */
  function visible() {
    const text = JOB_ID.test(state.q) ? "" : state.q.toLowerCase();
    const rows = loaded.filter((e) => !text || e.job_id.toLowerCase().includes(text) || e.agent.toLowerCase().includes(text));
    const [, , key] = COLUMNS.find(([name]) => name === state.sort) || COLUMNS[3];
    const sign = state.dir === "asc" ? 1 : -1;
    return rows.map((entry) => record(entry.job_id)).sort((a, b) => {
      const x = key(a);
      const y = key(b);
      return (x < y ? -1 : x > y ? 1 : 0) * sign;
    }).map((job) => ({ job_id: job.jobId, job }));
  }

  // Built once and updated in place, so a header keeps the keyboard focus it sorts with.
  const headers = COLUMNS.map(([name, label]) => {
    const button = h("button", { type: "button", className: "sort", "data-sort": name }, label);
    button.addEventListener("click", () => {
      state.dir = state.sort === name && state.dir === "desc" ? "asc" : "desc";
      state.sort = name;
      remember();
      drawHead();
      draw();
    });
    return { name, label, button, cell: h("th", { className: `col-${name}` }, button) };
  });
  headRow.replaceChildren(h("th", { className: "pick" }, allBox), ...headers.map((x) => x.cell));

  function drawHead() {
    for (const { name, label, button, cell } of headers) {
      const sorted = state.sort === name;
      button.textContent = sorted ? `${label} ${state.dir === "asc" ? "▲" : "▼"}` : label;
      cell.setAttribute("aria-sort", sorted ? (state.dir === "asc" ? "ascending" : "descending") : "none");
    }
  }

  // A job's row is built once and updated in place: the list redraws every second and on
  // every frame, and a rebuilt row would lose a click (or a checkbox) aimed at it.
  const rowsById = new Map();

  function rowOf(job) {
    let row = rowsById.get(job.jobId);
    if (!row) {
      const box = h("input", { type: "checkbox", className: "pick-job", "aria-label": `Select ${job.jobId}` });
      box.addEventListener("change", () => {
        if (box.checked) selected.add(job.jobId);
        else selected.delete(job.jobId);
        drawBulk();
      });
      const status = h("td", { className: "col-status" });
      const submitted = h("td", { className: "col-submitted" });
      const duration = h("td", { className: "col-duration duration" });
      const tr = h("tr", { "data-job-id": job.jobId },
        h("td", { className: "pick" }, box),
        h("td", { className: "col-job" }, h("a", { href: `#/jobs/${encodeURIComponent(job.jobId)}` }, job.jobId)),
        status,
        h("td", { className: "col-agent" }, job.agent),
        submitted,
        duration);
      row = { tr, box, status, submitted, duration, shownStatus: null };
      rowsById.set(job.jobId, row);
    }
    row.tr.dataset.status = job.status;
    row.box.checked = selected.has(job.jobId);
    if (row.shownStatus !== job.status) {
      row.status.replaceChildren(statusBadge(job.status));
      row.shownStatus = job.status;
    }
    row.submitted.replaceChildren(timeCell(job.submittedAt));
    const ms = elapsedMs(job.submittedAt, job.completedAt);
    row.duration.dataset.ms = ms ?? "";
    row.duration.textContent = ms === null ? "" : formatMs(ms);
    return row.tr;
  }

  function draw() {
    const rows = visible();
    const trs = rows.map(({ job }) => rowOf(job));
    const shown = new Set(rows.map(({ job }) => job.jobId));
    for (const id of rowsById.keys()) if (!shown.has(id)) rowsById.delete(id);
    if (!rows.length) {
      body.replaceChildren(h("tr", {}, h("td", { colSpan: COLUMNS.length + 1, className: "empty" }, "No jobs match.")));
    } else if (trs.length !== body.children.length || trs.some((tr, i) => tr !== body.children[i])) {
      body.replaceChildren(...trs);  // only when the rows or their order changed
    }
    pageLabel.textContent = JOB_ID.test(state.q) ? "" : `page ${state.page + 1}`;
    allBox.checked = rows.length > 0 && rows.every(({ job }) => selected.has(job.jobId));
    drawBulk();
  }

  function drawBulk() {
    const live = [...selected].filter((id) => !record(id).terminal);
    bulk.disabled = live.length === 0;
    bulk.textContent = live.length ? `Cancel selected (${live.length})` : "Cancel selected";
  }

  async function cancelSelected() {
    const live = [...selected].map(record).filter((job) => !job.terminal);
    const noun = live.length === 1 ? "job" : "jobs";
    if (!(await confirmDialog(`Cancel ${live.length} running ${noun}? This cannot be undone.`, `Cancel ${live.length} ${noun}`))) return;
    const failures = [];
    await Promise.all(live.map((job) => cancelJob(job).catch((error) => failures.push(`${job.jobId}: ${error.message}`))));
    selected.clear();
    bulkProblem.textContent = failures.join("; ");
    load();
  }

  app.render = (frame) => {
    if (frame.type === "job.accepted" || frame.type === "job.result" || frame.type === "job.error") load();
    else draw();
  };
  app.timers.push(setInterval(load, REFRESH_MS), setInterval(draw, 1000));
  drawHead();
  load();
}
