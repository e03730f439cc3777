// The remote workers connected to any node (JobService.ListWorkers through the gateway,
// issue 23): each worker's agents and versions, its slots in use, its library and since
// when it is connected. The same list as `arcp-grpc workers`.

import { pollApi } from "./poller.js";
import { app } from "./state.js";
import { h, timeCell } from "./ui.js";

const REFRESH_MS = 2000; // as Nodes: a worker that connects or goes shows within this
const COLUMNS = ["Worker", "Node", "Agents", "Slots used", "Library", "Connected"];

export function workersView() {
  const body = h("tbody");
  const problem = h("p", { className: "problem", role: "alert" });
  app.show(h("section", { className: "card" },
    h("div", { className: "toolbar" }, h("h2", { id: "workers-title" }, "Workers")),
    h("p", { className: "note" }, "Remote workers (arcp-grpc worker, or any gRPC worker) connected to the runtime's nodes; another node's as it last published them."),
    h("div", { className: "table-wrap" },
      h("table", { id: "workers", "aria-labelledby": "workers-title" },
        h("thead", {}, h("tr", {}, COLUMNS.map((t) => h("th", { scope: "col" }, t)))),
        body)),
    problem));

  pollApi("workers", REFRESH_MS, body, problem, ({ workers }) => {
    body.replaceChildren(...(workers.length ? workers.map(row) : [emptyRow()]));
  });
}

function row(worker) {
  return h("tr", { "data-worker": worker.name, "data-node-id": worker.node_id },
    h("th", { scope: "row" }, worker.name),
    h("td", { className: "node" }, worker.node_id ? h("code", { className: "note" }, worker.node_id) : h("span", { className: "note" }, "this node (no cluster)")),
    h("td", {}, h("ul", { className: "plain agents" }, worker.agents.map(agentItem))),
    h("td", { className: "slots", title: `${worker.running} running of ${worker.slots} slots` }, `${worker.running}/${worker.slots}`),
    h("td", { className: "library" }, worker.library),
    h("td", { className: "connected" }, timeCell(worker.connected_at)));
}

/** "name 1.0.0" or, with several versions, "name 1.0.0, 2.0.0 (default)". */
function agentItem(agent) {
  const marked = agent.versions.length > 1;
  const versions = agent.versions.map((v) => (marked && v === agent.default ? `${v} (default)` : v));
  return h("li", { "data-agent": agent.name }, h("span", { className: "agent-name" }, agent.name), " ", h("span", { className: "versions" }, versions.join(", ")));
}

function emptyRow() {
  return h("tr", { id: "no-workers" }, h("td", { className: "empty", colSpan: COLUMNS.length }, "no worker is connected"));
}
