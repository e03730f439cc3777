// A job's Gantt-like timeline: its own span, its progress events and the children it
// delegated to (§10), on one time axis from submission to the end (or now). Plain
// SVG geometry in attributes, which the strict CSP allows (no inline styles).

import { parseTime } from "./jobs.js";
import { formatMs, h, svg } from "./ui.js";

const WIDTH = 1000; // viewBox units across the axis

export function timeline(job, children) {
  const start = job.submittedAt ? parseTime(job.submittedAt) : null;
  if (start === null) return h("p", { className: "note" }, "The timeline appears once the job's submission time is known.");
  const endOf = (record) => (record.completedAt ? parseTime(record.completedAt) : Date.now());
  const end = Math.max(endOf(job), ...children.map(endOf), start + 1);
  const x = (ms) => Math.round(((ms - start) / (end - start)) * WIDTH);
  const lanes = [lane("job", "This job", job.status, [bar(x(start), x(endOf(job)), job.status)], `${formatMs(endOf(job) - start)}`)];
  const progress = job.events.filter((e) => e.kind === "progress" && e.ts);
  if (progress.length) {
    const times = progress.map((e) => parseTime(e.ts));
    const marks = [bar(x(times[0]), x(times[times.length - 1]), "progress"),
      ...times.map((t) => svg("rect", { x: Math.max(0, x(t) - 1), y: 0, width: 2, height: 12, class: "tick" }))];
    lanes.push(lane("progress", "Progress", "progress", marks, `${progress.length} updates over ${formatMs(times[times.length - 1] - times[0])}`));
  }
  for (const child of children) {
    const from = child.submittedAt ? parseTime(child.submittedAt) : start;
    const label = h("a", { href: `#/jobs/${encodeURIComponent(child.jobId)}` }, child.agent || child.jobId);
    lanes.push(lane("child", label, child.status, [bar(x(from), x(endOf(child)), child.status)], `${child.jobId} ${child.status}, ${formatMs(endOf(child) - from)}`, child.jobId));
  }
  return h("table", { id: "timeline", className: "gantt" }, h("tbody", {}, lanes));
}

function bar(from, to, status) {
  return svg("rect", { x: from, y: 2, width: Math.max(2, to - from), height: 8, class: `bar bar-${status}` });
}

function lane(kind, label, status, shapes, description, jobId = "") {
  const picture = svg("svg", { viewBox: `0 0 ${WIDTH} 12`, preserveAspectRatio: "none", role: "img", "aria-label": description }, ...shapes);
  return h("tr", { "data-lane": kind, "data-status": status, "data-job-id": jobId || null }, h("th", { scope: "row" }, label), h("td", {}, picture));
}
