// Per agent over the last hour: jobs per second, failure rate and p50/p95 durations,
// with small bar charts per five minutes. The numbers are the gateway's, from the
// caller's own jobs (JobService.ListJobs): what this principal ran, not the world.

import { apiGet } from "./api.js";
import { app } from "./state.js";
import { formatMs, h, svg } from "./ui.js";

const REFRESH_MS = 10_000;
const BAR = 10; // viewBox units per slice
const HEIGHT = 30;

export function agentsView() {
  const body = h("tbody");
  const note = h("p", { className: "note", id: "agents-note" });
  const problem = h("p", { className: "problem", role: "alert" });
  app.show(h("section", { className: "card" },
    h("div", { className: "toolbar" }, h("h2", {}, "Agents")),
    note,
    h("div", { className: "table-wrap" },
      h("table", { id: "agents" },
        h("thead", {}, h("tr", {}, ["Agent", "Jobs", "Jobs/s", "Failure rate", "p50", "p95", "Jobs per 5 min", "Failures per 5 min", "p95 per 5 min"].map((t) => h("th", {}, t)))),
        body)),
    problem));

  async function load() {
    try {
      const stats = await apiGet("agents");
      if (!document.body.contains(body)) return;
      problem.textContent = "";
      const minutes = Math.round(stats.window_sec / 60);
      note.textContent = `Your jobs of the last ${minutes} minutes${stats.truncated ? " (the most recent ones only: there were more than this page counts)" : ""}.`;
      body.replaceChildren(...stats.agents.map((a) => h("tr", { "data-agent": a.agent },
        h("th", { scope: "row" }, a.agent),
        h("td", { className: "jobs" }, String(a.jobs)),
        h("td", { className: "rate" }, a.jobs_per_sec.toFixed(4)),
        h("td", { className: "failure-rate" }, a.failure_rate === null ? "–" : `${(a.failure_rate * 100).toFixed(1)} %`),
        h("td", { className: "p50" }, a.p50_ms === null ? "–" : formatMs(a.p50_ms)),
        h("td", { className: "p95" }, a.p95_ms === null ? "–" : formatMs(a.p95_ms)),
        h("td", {}, chart(a.slices.map((s) => s.jobs), "jobs", `${a.agent}: jobs per 5 minutes`, String)),
        h("td", {}, chart(a.slices.map((s) => s.failed), "failed", `${a.agent}: failures per 5 minutes`, String)),
        h("td", {}, chart(a.slices.map((s) => s.p95_ms), "p95", `${a.agent}: p95 duration per 5 minutes`, (v) => (v === null ? "none" : formatMs(v)))))));
    } catch (error) {
      problem.textContent = error.message;
    }
  }

  app.render = () => {};
  app.timers.push(setInterval(load, REFRESH_MS));
  load();
}

/** A small bar chart of `values` (oldest first); its label reads every value out. */
function chart(values, kind, label, show) {
  const top = Math.max(1, ...values.filter((v) => v !== null));
  const bars = values.map((v, i) => (v === null || v === 0 ? null : svg("rect", {
    x: i * BAR + 1, width: BAR - 2, y: HEIGHT - Math.max(1, (v / top) * HEIGHT), height: Math.max(1, (v / top) * HEIGHT), class: `spark spark-${kind}`,
  })));
  const baseline = svg("line", { x1: 0, x2: values.length * BAR, y1: HEIGHT - 0.5, y2: HEIGHT - 0.5, class: "baseline" });
  return svg("svg", { viewBox: `0 0 ${values.length * BAR} ${HEIGHT}`, class: "chart", role: "img", "aria-label": `${label}: ${values.map(show).join(", ")}`, "data-values": values.map((v) => v ?? "").join(",") }, baseline, ...bars);
}
