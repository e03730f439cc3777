// One job: what it is (agent, times, lease, budget, limits, input, parent and
// children), its progress, its outcome, a timeline and its events, filterable by
// kind. Events come over ARCP (the job's own session, or job.subscribe with history,
// §7.6); the facts ARCP does not carry (input, limits, submission time on a deep
// link) from the core's GetJob through the gateway.

import { describeEvent, elapsedMs, parseTime, progressText } from "./jobs.js";
import { app, cancelJob, fetchJob, record, runAgain } from "./state.js";
import { timeline } from "./timeline.js";
import { confirmDialog, formatMs, h, statusBadge, timeCell, writeRoute } from "./ui.js";

const SHOWN_EVENTS = 2000; // rows kept on a job page; older rows are dropped from the view
const SHOWN_CHILDREN = 50; // children whose times are fetched for the timeline
const CHILD_REFRESH_MS = 2000; // a running child's times are fetched again this often

export function jobView(jobId, params) {
  const job = record(jobId);
  let kind = params.get("kind") || "";
  const heading = h("h2", {}, job.jobId);
  const facts = h("dl", { className: "facts" });
  const progressBar = h("progress", { id: "progress", max: 1, value: 0, "aria-label": "Progress" });
  const progressLabel = h("span", { id: "progress-text" });
  const progressRow = h("div", { className: "progress-row" }, progressBar, progressLabel);
  const budget = h("p", { id: "budget" });
  const cancel = h("button", { id: "cancel", type: "button", className: "danger" }, "Cancel job");
  const rerun = h("button", { id: "rerun", type: "button" }, "Run again");
  const problem = h("p", { className: "problem", role: "alert" });
  const outcome = h("section", { id: "outcome" });
  const input = h("pre", { id: "job-input" });
  const inputBlock = h("div", {}, h("h3", {}, "Input"), input);
  const lanes = h("div", { id: "timeline-box" });
  const streamed = h("pre", { id: "streamed" });
  const streamBlock = h("div", {}, h("h3", {}, "Result stream"), streamed);
  const kinds = h("select", { id: "event-kind" });
  const events = h("tbody", { id: "events" });
  const fetchedChildren = new Set();
  let shown = 0; // events of `job.events` already rendered

  cancel.addEventListener("click", async () => {
    if (!(await confirmDialog(`Cancel ${job.jobId}? This cannot be undone.`, "Cancel job"))) return;
    cancel.disabled = true;
    try {
      await cancelJob(job);
      if (!job.own) await fetchJob(job); // its events may arrive later than the answer
      draw();
    } catch (error) {
      problem.textContent = error.message;
      cancel.disabled = false;
    }
  });
  rerun.addEventListener("click", async () => {
    rerun.disabled = true;
    try {
      location.hash = `#/jobs/${encodeURIComponent(await runAgain(job))}`;
    } catch (error) {
      problem.textContent = error.message;
      rerun.disabled = false;
    }
  });
  kinds.addEventListener("change", () => {
    kind = kinds.value;
    writeRoute(`jobs/${encodeURIComponent(job.jobId)}`, { kind }, { replace: true });
    for (const row of events.children) row.hidden = Boolean(kind) && row.dataset.kind !== kind;
  });

  app.show(h("section", { className: "card", id: "job" },
    h("p", {}, h("a", { href: "#/jobs" }, "← all jobs")),
    heading, facts, progressRow, budget,
    h("div", { className: "actions" }, cancel, rerun),
    problem, outcome, inputBlock,
    h("h3", {}, "Timeline"), lanes,
    streamBlock,
    h("div", { className: "toolbar" }, h("h3", {}, "Events"), h("label", {}, "Kind ", kinds)),
    h("div", { className: "table-wrap" },
      h("table", { className: "events" },
        h("thead", {}, h("tr", {}, ["#", "Time", "Kind", "Detail"].map((t) => h("th", {}, t)))),
        events))));

  function fact(label, value, id) {
    return value === "" || value === null || value === undefined ? [] : [h("dt", {}, label), h("dd", { id }, value)];
  }

  function draw() {
    const ms = elapsedMs(job.submittedAt, job.completedAt);
    const children = job.children;
    facts.replaceChildren(
      h("dt", {}, "Status"), h("dd", { id: "job-status" }, statusBadge(job.status)),
      ...fact("Agent", job.agent, "job-agent"),
      ...fact("Submitted", timeCell(job.submittedAt), "job-submitted"),
      ...fact("Duration", ms === null ? "" : formatMs(ms), "job-duration"),
      ...fact("Parent", job.parentJobId && h("a", { href: `#/jobs/${encodeURIComponent(job.parentJobId)}` }, job.parentJobId), "job-parent"),
      ...fact("Children", children.length ? h("ul", { className: "plain" }, children.map((c) => h("li", {}, h("a", { href: `#/jobs/${encodeURIComponent(c.jobId)}` }, c.jobId), ` ${c.agent}`))) : "", "job-children"),
      ...fact("Lease", job.lease && Object.keys(job.lease).length ? h("ul", { className: "plain" }, Object.entries(job.lease).map(([ns, patterns]) => h("li", {}, h("code", {}, ns), " ", patterns.join(", ")))) : "", "job-lease"),
      ...fact("Lease expires", job.expiresAt && timeCell(job.expiresAt), "job-expires"),
      ...fact("Max runtime", job.maxRuntimeSec ? `${job.maxRuntimeSec} s` : "", "job-max-runtime"),
      ...fact("Trace", job.traceId && h("code", {}, job.traceId), "job-trace"));
    if (job.progress) {
      const p = job.progress;
      progressBar.max = typeof p.total === "number" && p.total > 0 ? p.total : 1;
      progressBar.value = typeof p.total === "number" ? Math.min(p.current, progressBar.max) : 0;
      progressLabel.textContent = progressText(p);
    }
    progressBar.dataset.outcome = job.status; // colour: running, success, error, cancelled…
    progressRow.hidden = !job.progress;
    budget.hidden = !job.budget;
    if (job.budget) {
      budget.textContent = "Budget remaining: " + Object.entries(job.budget).map(([c, v]) => `${c} ${Number(v).toFixed(2)}`).join(", ");
    }
    cancel.hidden = job.terminal;
    rerun.hidden = job.input === undefined; // only its owner reads the input
    inputBlock.hidden = job.input === undefined;
    if (job.input !== undefined) input.textContent = JSON.stringify(job.input, null, 2);
    for (const child of children.slice(0, SHOWN_CHILDREN)) {
      if (fetchedChildren.has(child.jobId)) continue;
      fetchedChildren.add(child.jobId);
      const again = () => { if (!record(child.jobId).terminal) setTimeout(() => fetchedChildren.delete(child.jobId), CHILD_REFRESH_MS); };
      fetchJob(record(child.jobId)).then(draw, () => {}).finally(again);
    }
    lanes.replaceChildren(timeline(job, children.slice(0, SHOWN_CHILDREN).map((c) => record(c.jobId))));
    drawEvents();
    streamBlock.hidden = !job.stream;
    if (job.stream && streamed.textContent.length !== job.stream.text.length) {
      streamed.textContent = job.stream.encoding === "base64" ? `${job.stream.size} bytes received` : job.stream.text;
    }
    drawOutcome();
  }

  function drawEvents() {
    const start = job.submittedAt ? parseTime(job.submittedAt) : null;
    for (; shown < job.events.length; shown += 1) {
      const payload = job.events[shown];
      const at = payload.ts ? parseTime(payload.ts) : null;
      const when = at === null ? "" : h("time", { dateTime: new Date(at).toISOString(), title: new Date(at).toISOString() }, start === null ? new Date(at).toLocaleTimeString() : `+${formatMs(at - start)}`);
      events.append(h("tr", { "data-job-seq": payload.job_seq ?? "", "data-kind": payload.kind, hidden: Boolean(kind) && payload.kind !== kind },
        h("td", {}, payload.job_seq ?? ""),
        h("td", {}, when),
        h("td", {}, payload.kind),
        h("td", {}, describeEvent(payload))));
      if (events.childElementCount > SHOWN_EVENTS) events.firstElementChild.remove();
    }
    const seen = [...new Set(job.events.map((e) => e.kind)), ...(kind ? [kind] : [])];
    if (kinds.options.length !== new Set(seen).size + 1) {
      kinds.replaceChildren(h("option", { value: "" }, "every kind"),
        ...[...new Set(seen)].sort().map((k) => h("option", { value: k, selected: k === kind }, k)));
    }
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
    const old = outcome.querySelector("#download");
    if (old) URL.revokeObjectURL(old.href);
    const link = blob ? h("a", { id: "download", className: "button", download: `${job.jobId}-result${job.stream ? ".txt" : ".json"}`, href: URL.createObjectURL(blob) }, "Download result") : null;
    const inline = "result" in job.result ? h("pre", { id: "result" }, JSON.stringify(job.result.result, null, 2)) : null;
    const summary = job.result.result_id ? h("p", {}, `Streamed result ${job.result.result_id}, ${job.result.result_size} bytes.`) : null;
    outcome.replaceChildren(h("div", { className: "result-box" }, h("h3", {}, "Result"), summary, inline, link));
  }

  app.render = (frame) => {
    if (!frame || frame.job_id === job.jobId || (frame.payload && frame.payload.job_id === job.jobId)) draw();
    else if (job.children.some((c) => c.jobId === (frame.job_id || (frame.payload && frame.payload.job_id)))) draw();
  };
  app.timers.push(setInterval(() => { if (!job.terminal || job.children.some((c) => !record(c.jobId).terminal)) draw(); }, 1000));
  draw();
  fetchJob(job).then(draw, (error) => { problem.textContent = error.message; });
  if (!job.own && !job.subscribed) {
    // Not submitted in this session: attach with its history (§7.6) to see it all.
    job.subscribed = true;
    app.session.request("job.subscribe", { job_id: job.jobId, history: true, from_event_seq: 0 })
      .then((reply) => { job.describe(reply.payload); draw(); })
      .catch((error) => { job.subscribed = false; problem.textContent = error.message; });
  }
}
