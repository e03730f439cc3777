// A page that shows one console endpoint and keeps it current (Nodes, Workers): the
// answer is asked for at once and every `everyMs` while the page stays; a refusal shows
// in `problem` until the next answer. Leaving the page stops it (`app.timers`).

import { apiGet } from "./api.js";
import { app } from "./state.js";

export function pollApi(name, everyMs, shown, problem, show) {
  async function load() {
    try {
      const answer = await apiGet(name);
      if (!document.body.contains(shown)) return;
      problem.textContent = "";
      show(answer);
    } catch (error) {
      problem.textContent = error.message;
    }
  }

  app.render = () => {};
  app.timers.push(setInterval(load, everyMs));
  load();
}
