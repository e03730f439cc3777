// The runtime's nodes (JobService.ListNodes through the gateway): each node's state,
// when it last heartbeat and how many jobs run on it. One node alone is listed too.

import { pollApi } from "./poller.js";
import { app } from "./state.js";
import { formatMs, h, statusBadge } from "./ui.js";

const REFRESH_MS = 2000; // heartbeats are seconds apart; a dead node shows within this

export function nodesView() {
  const body = h("tbody");
  const problem = h("p", { className: "problem", role: "alert" });
  app.show(h("section", { className: "card" },
    h("div", { className: "toolbar" }, h("h2", {}, "Nodes")),
    h("p", { className: "note" }, "Nodes sharing this runtime's store; running jobs of every principal, as counts."),
    h("div", { className: "table-wrap" },
      h("table", { id: "nodes" },
        h("thead", {}, h("tr", {}, ["Node", "State", "Last heartbeat", "Running jobs"].map((t) => h("th", {}, t)))),
        body)),
    problem));

  pollApi("nodes", REFRESH_MS, body, problem, ({ nodes }) => {
    body.replaceChildren(...nodes.map((node) => h("tr", { "data-node-id": node.node_id, "data-state": node.state },
      h("td", {}, h("span", { className: "node-label" }, node.label), node.answering ? h("span", { className: "note" }, " (answered this page)") : null,
        h("br"), h("code", { className: "note" }, node.node_id)),
      h("td", {}, statusBadge(node.state)),
      h("td", {}, `${formatMs(node.since_heartbeat_ms)} ago`),
      h("td", { className: "running" }, String(node.running_jobs)))));
  });
}
