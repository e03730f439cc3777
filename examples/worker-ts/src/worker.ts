// A small TypeScript library for arcp-grpc remote workers (issue 23, docs/workers.md):
// host agents written in TypeScript and run the jobs the core hands over one
// `arcp.v1.WorkerService.Work` stream. Built only on the stubs protoc-gen-es
// generates from proto/ (gen/ts) and Connect's gRPC transport.
//
// The core keeps each job's authority: the worker asks it about every
// authority-bearing step (`ctx.authorize`, §9.3), only the core charges cost
// (`ctx.reportCost`, §9.6), and the core ends a job on cancel, expiry or an
// exhausted budget (`ctx.signal` aborts). Flow control: events, outcomes and
// steps count against the window the welcome grants; a job with no credit left
// waits at its next event until the core grants more.

import { create, fromJson, type JsonValue, toJson } from "@bufbuild/protobuf";
import { timestampNow, ValueSchema } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";

import { ErrorCode, type ErrorDetail, ErrorDetailSchema } from "../gen/ts/arcp/v1/errors_pb.js";
import { type JobEvent, JobEventSchema, LogLevel } from "../gen/ts/arcp/v1/events_pb.js";
import {
  type JobAssignment,
  type StepAnswer,
  type StepRequest,
  WorkerService,
  type WorkerWelcome,
  type WorkRequest,
  WorkRequestSchema,
} from "../gen/ts/arcp/v1/worker_service_pb.js";

export { ErrorCode, LogLevel };

/** The library and its version, told to the core at registration (for operators). */
export const LIBRARY = "arcp-grpc-ts/0.1.0";

/** An agent the worker hosts: `run` gets the job's context and input, returns its result. */
export interface Agent {
  name: string;
  version: string;
  run(ctx: JobContext, input: JsonValue | undefined): Promise<JsonValue>;
}

/** An ARCP error (§12): what a refused step throws, and what an agent may throw to fail. */
export class AgentError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly retryable = false,
  ) {
    super(message);
  }

  static of(detail: ErrorDetail): AgentError {
    return new AgentError(detail.code, detail.message, detail.retryable);
  }
}

/** Raised by `runWorker` when the core refuses the worker's token: retrying is useless. */
export class Refused extends Error {}

type EventBody = Exclude<JobEvent["body"], { case: undefined }>;

/** A job's handle on the core, through the worker's stream. */
export class JobContext {
  private readonly stopper = new AbortController();
  /** The job's remaining budget per currency as the core last said (§9.6). */
  budget: Record<string, string>;

  constructor(
    private readonly stream: WorkStream,
    readonly assignment: JobAssignment,
  ) {
    this.budget = { ...assignment.budget };
  }

  get jobId(): string {
    return this.assignment.jobId;
  }

  /** The W3C trace id to forward to tools and sub-agents (§11). */
  get traceId(): string {
    return this.assignment.traceId;
  }

  /** Aborted when the core ended the job (cancel, expiry, budget, runtime limit). */
  get signal(): AbortSignal {
    return this.stopper.signal;
  }

  async log(message: string, level: LogLevel = LogLevel.INFO): Promise<void> {
    await this.emit({ case: "log", value: { $typeName: "arcp.v1.LogEvent", level, message } });
  }

  async progress(current: number, total?: number, units = ""): Promise<void> {
    await this.emit({
      case: "progress",
      value: { $typeName: "arcp.v1.ProgressEvent", current, total, units, message: "" },
    });
  }

  /** Reports a cost the core charges to the job's budget (§9.6); past it the core ends
   * the job with BUDGET_EXHAUSTED. */
  async reportCost(amount: number, currency: string): Promise<void> {
    await this.emit({
      case: "metric",
      value: { $typeName: "arcp.v1.MetricEvent", name: "cost.inference", value: amount, unit: currency },
    });
  }

  /** Asks the core whether the job may act on `resource` in `namespace` now (§9.3,
   * §9.5, §9.6): the canonical resource to act on, or an AgentError (PERMISSION_DENIED,
   * LEASE_EXPIRED, BUDGET_EXHAUSTED, ...). */
  async authorize(namespace: string, resource: string): Promise<string> {
    const answer = await this.stream.step(this.jobId, {
      case: "authorize",
      value: { $typeName: "arcp.v1.AuthorizeStep", namespace, resource },
    });
    if (answer.answer.case === "resource") return answer.answer.value;
    throw refusal(answer);
  }

  /** One event of the job, sent once the stream has credit for it. */
  async emit(body: EventBody): Promise<void> {
    this.signal.throwIfAborted();
    await this.stream.send({ case: "event", value: create(JobEventSchema, { jobId: this.jobId, body }) });
  }

  stop(reason: ErrorDetail | undefined): void {
    this.stopper.abort(reason ? AgentError.of(reason) : new AgentError(ErrorCode.CANCELLED, "stopped"));
  }
}

function refusal(answer: StepAnswer): AgentError {
  if (answer.answer.case === "error") return AgentError.of(answer.answer.value);
  return new AgentError(ErrorCode.INTERNAL_ERROR, `unexpected answer ${answer.answer.case}`);
}

/** The requests of one stream, queued until Connect reads them. */
class Outbox implements AsyncIterable<WorkRequest> {
  private readonly items: WorkRequest[] = [];
  private wake: (() => void) | undefined;
  private closed = false;

  push(item: WorkRequest): void {
    this.items.push(item);
    this.wake?.();
  }

  close(): void {
    this.closed = true;
    this.wake?.();
  }

  async *[Symbol.asyncIterator](): AsyncIterator<WorkRequest> {
    for (;;) {
      const item = this.items.shift();
      if (item !== undefined) {
        yield item;
      } else if (this.closed) {
        return;
      } else {
        await new Promise<void>((resolve) => (this.wake = resolve));
        this.wake = undefined;
      }
    }
  }
}

/** One Work stream: registration, assignments, steps, credit and heartbeats. */
class WorkStream {
  readonly outbox = new Outbox();
  private readonly jobs = new Map<string, JobContext>();
  private readonly answers = new Map<bigint, (answer: StepAnswer) => void>();
  private nextStep = 0n;
  private credit = 0;
  private credited: (() => void) | undefined;
  welcome: WorkerWelcome | undefined;

  constructor(private readonly agents: Map<string, Agent>) {}

  /** Queues a counted message (event, outcome, step), waiting for credit first. */
  async send(kind: WorkRequest["kind"]): Promise<void> {
    while (this.credit <= 0) await new Promise<void>((resolve) => (this.credited = resolve));
    this.credit -= 1;
    this.outbox.push(create(WorkRequestSchema, { kind }));
  }

  async step(jobId: string, step: StepRequest["step"]): Promise<StepAnswer> {
    const stepId = ++this.nextStep;
    const answered = new Promise<StepAnswer>((resolve) => this.answers.set(stepId, resolve));
    await this.send({ case: "step", value: { $typeName: "arcp.v1.StepRequest", jobId, stepId, step } });
    return answered;
  }

  grant(events: number): void {
    this.credit += events;
    this.credited?.();
    this.credited = undefined;
  }

  beat(): void {
    const heartbeat = { $typeName: "arcp.v1.WorkerHeartbeat" as const, sentAt: timestampNow() };
    this.outbox.push(create(WorkRequestSchema, { kind: { case: "heartbeat", value: heartbeat } }));
  }

  start(assignment: JobAssignment): void {
    const name = assignment.agent.split("@", 1)[0];
    const agent = this.agents.get(name);
    const ctx = new JobContext(this, assignment);
    this.jobs.set(assignment.jobId, ctx);
    const input = assignment.input ? toJson(ValueSchema, assignment.input) : undefined;
    void this.finish(ctx, agent ? agent.run(ctx, input) : Promise.reject(new Error(`no agent ${name}`)));
  }

  stop(jobId: string, reason: ErrorDetail | undefined): void {
    this.jobs.get(jobId)?.stop(reason);
  }

  updateBudget(jobId: string, remaining: Record<string, string>): void {
    const ctx = this.jobs.get(jobId);
    if (ctx) ctx.budget = { ...remaining };
  }

  answer(answer: StepAnswer): void {
    const waiter = this.answers.get(answer.stepId);
    this.answers.delete(answer.stepId);
    waiter?.(answer);
  }

  /** The stream ended: its jobs were ended by the core, which re-runs nothing. */
  abandon(): void {
    for (const ctx of this.jobs.values()) ctx.stop(undefined);
    this.jobs.clear();
  }

  private async finish(ctx: JobContext, running: Promise<JsonValue>): Promise<void> {
    let outcome: WorkRequest["kind"];
    try {
      const result = fromJson(ValueSchema, await running);
      outcome = { case: "outcome", value: { $typeName: "arcp.v1.WorkerOutcome", jobId: ctx.jobId, outcome: { case: "result", value: result } } };
    } catch (err) {
      const error =
        err instanceof AgentError
          ? create(ErrorDetailSchema, { code: err.code, message: err.message, retryable: err.retryable })
          : create(ErrorDetailSchema, { code: ErrorCode.INTERNAL_ERROR, message: `the agent failed: ${String(err)}` });
      outcome = { case: "outcome", value: { $typeName: "arcp.v1.WorkerOutcome", jobId: ctx.jobId, outcome: { case: "error", value: error } } };
    }
    if (ctx.signal.aborted || !this.jobs.delete(ctx.jobId)) return; // the core ended it
    await this.send(outcome);
  }
}

export interface WorkerOptions {
  /** The core's gRPC address, `host:port`. */
  core: string;
  /** A worker token (`[auth.workers]` on the core), never a client token. */
  token: string;
  agents: Agent[];
  /** How many jobs the worker runs at once. */
  slots?: number;
  /** Called once the core accepted the registration. */
  onWelcome?: (welcome: WorkerWelcome) => void;
}

/** Serves one Work stream until it ends (then reconnect, as `main.ts` does). Throws
 * `Refused` when the core refuses the token. */
export async function runWorker(options: WorkerOptions): Promise<void> {
  const agents = new Map(options.agents.map((agent) => [agent.name, agent]));
  const transport = createGrpcTransport({ baseUrl: `http://${options.core}` });
  const client = createClient(WorkerService, transport);
  const stream = new WorkStream(agents);
  stream.outbox.push(
    create(WorkRequestSchema, {
      kind: {
        case: "register",
        value: {
          agents: options.agents.map((a) => ({ name: a.name, versions: [a.version], defaultVersion: a.version })),
          slots: options.slots ?? 4,
          library: LIBRARY,
        },
      },
    }),
  );
  let beats: NodeJS.Timeout | undefined;
  try {
    const responses = client.work(stream.outbox, { headers: { authorization: `Bearer ${options.token}` } });
    for await (const response of responses) {
      const kind = response.kind;
      switch (kind.case) {
        case "welcome":
          stream.welcome = kind.value;
          stream.grant(kind.value.eventWindow);
          beats = setInterval(() => stream.beat(), kind.value.heartbeatIntervalSec * 1000);
          options.onWelcome?.(kind.value);
          break;
        case "assignment":
          stream.start(kind.value);
          break;
        case "answer":
          stream.answer(kind.value);
          break;
        case "stop":
          stream.stop(kind.value.jobId, kind.value.reason);
          break;
        case "credit":
          stream.grant(kind.value.events);
          break;
        case "budget":
          stream.updateBudget(kind.value.jobId, kind.value.remaining);
          break;
        case "heartbeat":
        case undefined:
          break;
      }
    }
  } catch (err) {
    if (err instanceof ConnectError && err.code === Code.Unauthenticated) throw new Refused(err.message);
    throw err;
  } finally {
    clearInterval(beats);
    stream.outbox.close();
    stream.abandon();
  }
}
