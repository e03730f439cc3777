// An example TypeScript worker: hosts the agent `ts-echo` for an arcp-grpc core.
//
//   ARCP_CORE=127.0.0.1:7400 ARCP_TOKEN=wtok-… npm start
//
// `ts-echo` logs, reports progress, asks the core whether it may call the tool
// named in its input (the core answers from the job's lease, §9.3), and returns
// its input with the answer. The worker reconnects whenever its stream breaks and
// exits 2 with one line when the core refuses its token, as `arcp-grpc worker` does.

import { setTimeout as sleep } from "node:timers/promises";

import { type Agent, AgentError, ErrorCode, type JobContext, Refused, runWorker } from "./worker.js";

const RECONNECT_MS = 1000;

export const tsEcho: Agent = {
  name: "ts-echo",
  version: "1.0.0",
  async run(ctx: JobContext, input) {
    await ctx.log("echoing from a TypeScript worker");
    await ctx.progress(1, 2, "steps");
    const tool = typeof input === "object" && input && !Array.isArray(input) ? input.tool : undefined;
    let allowed: string | { refused: string } = "no tool asked";
    if (typeof tool === "string") {
      try {
        allowed = await ctx.authorize("tool.call", tool);
      } catch (err) {
        if (!(err instanceof AgentError)) throw err;
        allowed = { refused: ErrorCode[err.code] }; // the core's answer, e.g. PERMISSION_DENIED
      }
    }
    await ctx.progress(2, 2, "steps");
    return { echo: input ?? null, tool: allowed, runtime: "node" };
  },
};

async function main(): Promise<void> {
  const core = process.env.ARCP_CORE ?? "127.0.0.1:7400";
  const token = process.env.ARCP_TOKEN;
  if (!token) {
    console.error("ARCP_TOKEN must hold a worker token");
    process.exit(2);
  }
  for (;;) {
    try {
      await runWorker({
        core,
        token,
        agents: [tsEcho],
        slots: Number(process.env.ARCP_SLOTS ?? "4"),
        onWelcome: (welcome) => console.error(`registered with the core as worker ${welcome.worker}`),
      });
    } catch (err) {
      if (err instanceof Refused) {
        console.error(`the core refused the worker token: ${err.message}`);
        process.exit(2);
      }
      console.error(`the stream broke (${String(err)}); reconnecting`);
    }
    await sleep(RECONNECT_MS);
  }
}

await main();
