// Submit a job (job.submit, §7.1) from a form; the page then follows it.

import { app } from "./state.js";
import { h } from "./ui.js";

export function submitView() {
  const agent = h("select", { id: "agent", name: "agent" },
    app.agents.flatMap((a) => [
      h("option", { value: a.name }, `${a.name} (default ${a.default || a.versions[0]})`),
      ...a.versions.filter(() => a.versions.length > 1).map((v) => h("option", { value: `${a.name}@${v}` }, `${a.name}@${v}`)),
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
  app.show(form);
}
