// A Node.js client of the arcp.v1 gRPC contract, built only on the stubs
// protoc-gen-es generates from proto/ (gen/ts, made by test_node_client.py)
// and Connect's gRPC transport. It proves the contract serves a non-Python
// backend: bearer metadata (§6.1), the agent inventory (§7.5), submit and
// watch to the terminal outcome (§7.1, §7.3, §8), idempotent replay (§7.2),
// DUPLICATE_KEY in google.rpc.ErrorInfo (§12, AIP-193), cancel (§7.4), RunJob
// (submit and follow in one call) and SubmitJobs (many submissions on one
// bidirectional stream, each answered under its correlation id).
//
// Environment: ARCP_GRPC_ADDRESS ("127.0.0.1:PORT") and ARCP_TOKEN.

import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { describe, test } from "node:test";

import { create, equals, fromJson, toBinary, toJson, type JsonValue } from "@bufbuild/protobuf";
import { anyUnpack, ValueSchema } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";

import { ErrorCode } from "./gen/ts/arcp/v1/errors_pb.js";
import {
  JobService,
  type RunJobResponse,
  type SubmitJobResponse,
  SubmitJobsRequestSchema,
  type SubmitJobsRequest,
  type SubmitJobsResponse,
  type WatchJobResponse,
} from "./gen/ts/arcp/v1/job_service_pb.js";
import {
  JobAcceptedSchema,
  JobOutcomeSchema,
  JobStatus,
  type JobOutcome,
} from "./gen/ts/arcp/v1/jobs_pb.js";
import { ErrorInfoSchema, type ErrorInfo } from "./gen/ts/google/rpc/error_details_pb.js";

const ADDRESS = required("ARCP_GRPC_ADDRESS");
const TOKEN = required("ARCP_TOKEN");
/** The error domain of every ErrorInfo the core sends (arcp_grpc/grpc_status.py). */
const ERROR_DOMAIN = "arcp.dev";
/** Upper bound for one call or one watched job; a hung core fails the test, never hangs it. */
const CALL_TIMEOUT_MS = 30_000;

function required(name: string): string {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set (test_node_client.py sets it)`);
  return value;
}

/** Every call carries `authorization: Bearer <token>` (§6.1). */
const bearer: Interceptor = (next) => async (req) => {
  req.header.set("authorization", `Bearer ${TOKEN}`);
  return next(req);
};

function jobClient(interceptors: Interceptor[]): Client<typeof JobService> {
  const transport = createGrpcTransport({
    baseUrl: `http://${ADDRESS}`,
    interceptors,
    defaultTimeoutMs: CALL_TIMEOUT_MS,
  });
  return createClient(JobService, transport);
}

const jobs = jobClient([bearer]);
const anonymous = jobClient([]);

/** The one ErrorInfo of a failed call, checked to be in the ARCP domain. */
function errorInfo(err: unknown): { code: Code; info: ErrorInfo } {
  assert.ok(err instanceof ConnectError, `expected a ConnectError, got ${String(err)}`);
  const infos = err.findDetails(ErrorInfoSchema);
  assert.equal(infos.length, 1, "exactly one google.rpc.ErrorInfo in the status details");
  const [info] = infos;
  assert.equal(info.domain, ERROR_DOMAIN);
  return { code: err.code, info };
}

async function failure(call: Promise<unknown>): Promise<{ code: Code; info: ErrorInfo }> {
  try {
    await call;
  } catch (err) {
    return errorInfo(err);
  }
  assert.fail("the call succeeded but an error was expected");
}

/** Submits a job; returns the response and whether it was an idempotent replay. */
async function submit(
  agent: string,
  input: JsonValue,
  idempotencyKey = "",
): Promise<{ response: SubmitJobResponse; replay: boolean }> {
  let replay = false;
  const response = await jobs.submitJob(
    { submit: { agent, input: fromJson(ValueSchema, input), idempotencyKey } },
    { onTrailer: (trailers) => (replay = trailers.get("arcp-replay") === "true") },
  );
  return { response, replay };
}

/**
 * Reads a WatchJob stream to its end. Checks the streaming conventions on
 * the way: `job_seq` strictly increases by one from `afterSeq`, and only the
 * last message carries the outcome. `onMessage` runs after each message.
 */
async function watch(
  jobId: string,
  afterSeq = 0n,
  onMessage: (msg: WatchJobResponse) => Promise<void> = async () => {},
): Promise<{ seqs: bigint[]; kinds: string[]; outcome: JobOutcome }> {
  const seqs: bigint[] = [];
  const kinds: string[] = [];
  let outcome: JobOutcome | undefined;
  for await (const msg of jobs.watchJob({ jobId, afterSeq })) {
    assert.equal(outcome, undefined, "no message may follow the one carrying the outcome");
    for (const event of msg.events) {
      assert.equal(event.jobId, jobId);
      assert.equal(event.jobSeq, afterSeq + BigInt(seqs.length) + 1n, "gap-free job_seq order");
      seqs.push(event.jobSeq);
      kinds.push(event.body.case ?? "unknown");
    }
    outcome = msg.outcome;
    await onMessage(msg);
  }
  assert.ok(outcome, "the stream ended without an outcome");
  return { seqs, kinds, outcome };
}

/** Reads a RunJob stream to its end; only the last message may carry the outcome. */
async function runJob(
  agent: string,
  input: JsonValue,
  idempotencyKey = "",
): Promise<RunJobResponse[]> {
  const messages: RunJobResponse[] = [];
  const submit = { agent, input: fromJson(ValueSchema, input), idempotencyKey };
  for await (const msg of jobs.runJob({ submit })) {
    assert.equal(messages.at(-1)?.outcome, undefined, "nothing follows the outcome");
    messages.push(msg);
  }
  assert.ok(messages.length >= 2, "an acceptance and an outcome at least");
  return messages;
}

async function* streamOf<T>(items: T[]): AsyncIterable<T> {
  yield* items;
}

describe("arcp.v1.JobService from Node.js (protoc-gen-es + Connect gRPC)", () => {
  test("a call without a bearer token is UNAUTHENTICATED in ErrorInfo.reason", async () => {
    const { code, info } = await failure(anonymous.listAgents({}));
    assert.equal(code, Code.Unauthenticated);
    assert.equal(info.reason, "UNAUTHENTICATED");
  });

  test("ListAgents returns the demo agents with their default versions", async () => {
    const { agents } = await jobs.listAgents({});
    const byName = new Map(agents.map((a) => [a.name, a]));
    for (const name of ["echo", "counter"]) {
      const agent = byName.get(name);
      assert.ok(agent, `agent ${name} is registered`);
      assert.equal(agent.defaultVersion, "1.0.0");
      assert.ok(agent.versions.includes("1.0.0"));
    }
  });

  describe("submit, watch, replay and duplicate key", () => {
    const key = `node-${randomUUID()}`;
    const input = { greeting: "hello from node", n: 3, nested: { ok: true } };
    let first: SubmitJobResponse | undefined;

    test("SubmitJob with an idempotency key is accepted, not a replay", async () => {
      const { response, replay } = await submit("echo", input, key);
      assert.ok(response.accepted, "SubmitJobResponse carries JobAccepted");
      assert.ok(response.accepted.jobId.length > 0);
      assert.equal(response.accepted.agent, "echo@1.0.0");
      assert.equal(replay, false, "a first submission is not marked arcp-replay: true");
      first = response;
    });

    test("WatchJob streams to the outcome: echo returns its input inline", async () => {
      assert.ok(first?.accepted);
      const { outcome } = await watch(first.accepted.jobId);
      assert.equal(outcome.outcome.case, "result", `expected a result, got ${outcome.outcome.case}`);
      const result = outcome.outcome.value;
      assert.equal(result.jobId, first.accepted.jobId);
      assert.equal(result.finalStatus, JobStatus.SUCCESS);
      assert.equal(result.result.case, "value");
      assert.deepEqual(toJson(ValueSchema, result.result.value), input);
    });

    test("resubmitting the same key and input replays JobAccepted byte for byte", async () => {
      assert.ok(first?.accepted);
      const { response, replay } = await submit("echo", input, key);
      assert.equal(replay, true, "response trailer arcp-replay: true");
      assert.ok(response.accepted);
      assert.ok(equals(JobAcceptedSchema, response.accepted, first.accepted));
      assert.deepEqual(
        toBinary(JobAcceptedSchema, response.accepted),
        toBinary(JobAcceptedSchema, first.accepted),
      );
    });

    test("the same key with a different input is ALREADY_EXISTS / DUPLICATE_KEY", async () => {
      const { code, info } = await failure(submit("echo", { ...input, n: 4 }, key));
      assert.equal(code, Code.AlreadyExists);
      assert.equal(info.reason, "DUPLICATE_KEY");
      assert.equal(info.metadata["retryable"], "false");
    });
  });

  describe("RunJob: submit and follow a job in one call", () => {
    const key = `node-run-${randomUUID()}`;
    const input = { run: "in one call", n: 1 };
    let first: RunJobResponse[] = [];

    test("the first message is the acceptance, the last the outcome", async () => {
      first = await runJob("echo", input, key);
      const [head, ...rest] = first;
      assert.ok(head.accepted, "the first message carries JobAccepted");
      assert.equal(head.accepted.agent, "echo@1.0.0");
      assert.equal(head.replay, false);
      assert.equal(head.outcome, undefined);
      assert.ok(rest.every((m) => m.accepted === undefined), "only the first has JobAccepted");
      const outcome = first.at(-1)?.outcome;
      assert.ok(outcome, "the last message carries the outcome");
      assert.equal(outcome.outcome.case, "result", `expected a result, got ${outcome.outcome.case}`);
      assert.equal(outcome.outcome.value.jobId, head.accepted.jobId);
      assert.equal(outcome.outcome.value.result.case, "value");
      assert.deepEqual(toJson(ValueSchema, outcome.outcome.value.result.value), input);
    });

    test("the same key replays the acceptance byte for byte, then the same outcome", async () => {
      const [original] = first;
      assert.ok(original?.accepted);
      const again = await runJob("echo", input, key);
      assert.equal(again[0].replay, true);
      assert.ok(again[0].accepted);
      assert.deepEqual(
        toBinary(JobAcceptedSchema, again[0].accepted),
        toBinary(JobAcceptedSchema, original.accepted),
      );
      const outcome = again.at(-1)?.outcome;
      const originalOutcome = first.at(-1)?.outcome;
      assert.ok(outcome && originalOutcome, "both streams end with the outcome");
      assert.ok(equals(JobOutcomeSchema, outcome, originalOutcome), "the original job's outcome");
    });
  });

  test("SubmitJobs answers each item under its correlation id; a bad item is its own error", async () => {
    const key = `node-many-${randomUUID()}`;
    const held = await submit("echo", { held: true }, key);
    assert.ok(held.response.accepted);
    const items: SubmitJobsRequest[] = [];
    const item = (correlationId: string, agent: string, input: JsonValue, idempotencyKey = "") =>
      items.push(
        create(SubmitJobsRequestSchema, {
          correlationId,
          submit: { agent, input: fromJson(ValueSchema, input), idempotencyKey },
        }),
      );
    for (let i = 0; i < 5; i++) item(`good-${i}`, "echo", { i });
    item("unknown-agent", "nosuch", {});
    item("conflict", "echo", { held: false }, key);
    item("replay", "echo", { held: true }, key);

    const answers = new Map<string, SubmitJobsResponse>();
    for await (const answer of jobs.submitJobs(streamOf(items))) {
      assert.ok(!answers.has(answer.correlationId), "each item is answered once");
      answers.set(answer.correlationId, answer);
    }
    assert.deepEqual([...answers.keys()].sort(), items.map((i) => i.correlationId).sort());
    for (let i = 0; i < 5; i++) {
      const answer = answers.get(`good-${i}`);
      assert.equal(answer?.result.case, "accepted", `good-${i} was accepted`);
      const { outcome } = await watch(answer.result.value.jobId);
      assert.equal(outcome.outcome.case, "result");
    }
    /** The gRPC code and ErrorInfo of a refused item (RpcStatus is google.rpc.Status's shape). */
    const refused = (id: string): { code: number; info: ErrorInfo } => {
      const answer = answers.get(id);
      assert.equal(answer?.result.case, "error", `${id} was refused`);
      const infos = answer.result.value.details.map((d) => anyUnpack(d, ErrorInfoSchema));
      assert.equal(infos.length, 1, "exactly one google.rpc.ErrorInfo");
      const [info] = infos;
      assert.ok(info);
      assert.equal(info.domain, ERROR_DOMAIN);
      return { code: answer.result.value.code, info };
    };
    const unknown = refused("unknown-agent");
    assert.equal(unknown.code, Code.NotFound);
    assert.equal(unknown.info.reason, "AGENT_NOT_AVAILABLE");
    const conflict = refused("conflict");
    assert.equal(conflict.code, Code.AlreadyExists);
    assert.equal(conflict.info.reason, "DUPLICATE_KEY");
    const replay = answers.get("replay");
    assert.equal(replay?.result.case, "accepted");
    assert.equal(replay.replay, true);
    assert.deepEqual(
      toBinary(JobAcceptedSchema, replay.result.value),
      toBinary(JobAcceptedSchema, held.response.accepted),
    );
  });

  test("CancelJob ends a running counter job with CANCELLED; WatchJob resumes after_seq", async () => {
    // Long enough that it is still running when the cancel lands; the watch
    // cancels on the first progress event, so the test never waits it out.
    const { response } = await submit("counter", { steps: 200, interval: 0.05 });
    assert.ok(response.accepted);
    const jobId = response.accepted.jobId;
    let cancelled = false;
    const watched = await watch(jobId, 0n, async (msg) => {
      if (cancelled || !msg.events.some((e) => e.body.case === "progress")) return;
      cancelled = true;
      const ack = await jobs.cancelJob({ cancel: { jobId, reason: "node test" } });
      assert.equal(ack.cancelled?.jobId, jobId);
    });
    assert.ok(cancelled, "a progress event arrived before the job ended");
    assert.ok(watched.kinds.includes("progress"));
    assert.ok(watched.seqs.length < 200, "the job stopped before finishing its steps");
    const { outcome } = watched;
    assert.equal(outcome.outcome.case, "error", `expected an error, got ${outcome.outcome.case}`);
    assert.equal(outcome.outcome.value.finalStatus, JobStatus.CANCELLED);
    assert.equal(outcome.outcome.value.error?.code, ErrorCode.CANCELLED);

    // Resume from a seen job_seq: only later events, then the same outcome.
    const resumed = await watch(jobId, 1n);
    assert.deepEqual(resumed.seqs, watched.seqs.slice(1));
    assert.ok(equals(JobOutcomeSchema, resumed.outcome, outcome));
  });
});
