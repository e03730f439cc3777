// What the console knows about one job, built from ARCP frames only: its events
// (§8.2), progress (§8.2.1), budget (§9.6), streamed result (§8.4) and outcome.
// No DOM here; the views read these records.

export const TERMINAL = new Set(["success", "error", "cancelled", "timed_out"]);
export const STATUSES = ["pending", "running", "success", "error", "cancelled", "timed_out"];
const SHOWN_RESULT_CHARS = 1 << 20; // the page shows 1 MiB of a streamed result; download has all

export class JobRecord {
  constructor(jobId) {
    this.jobId = jobId;
    this.agent = "";
    this.status = "pending";
    this.submittedAt = "";
    this.completedAt = "";
    this.events = []; // job.event payloads in arrival order
    this.progress = null; // the latest progress body
    this.budget = null; // {currency: remaining}
    this.result = null; // the job.result payload
    this.error = null; // the job.error payload
    this.stream = null; // {resultId, encoding, parts: [], text, size}
    this.own = false; // submitted in this session: its events arrive unasked
    this.subscribed = false;
    this.lease = null; // {namespace: [patterns]} (§9.1)
    this.expiresAt = ""; // lease_constraints.expires_at (§9.5)
    this.parentJobId = "";
    this.traceId = "";
    this.input = undefined; // the submission's input: only its owner reads it
    this.maxRuntimeSec = 0;
  }

  /** Facts from a job.accepted, job.subscribed or session.jobs entry. */
  describe(payload) {
    if (payload.agent) this.agent = payload.agent;
    const status = payload.status || payload.current_status;
    if (status && !this.terminal) this.status = status;
    this.submittedAt = payload.submitted_at || payload.accepted_at || payload.created_at || this.submittedAt;
    if (payload.completed_at) this.completedAt = payload.completed_at;
    if (payload.budget && !this.budget) this.budget = budgetOf(payload.budget);
    if (payload.lease) this.lease = payload.lease;
    if (payload.lease_constraints && payload.lease_constraints.expires_at) this.expiresAt = payload.lease_constraints.expires_at;
    if (payload.parent_job_id) this.parentJobId = payload.parent_job_id;
    if (payload.trace_id) this.traceId = payload.trace_id;
    if ("input" in payload) this.input = payload.input;
    if (payload.max_runtime_sec) this.maxRuntimeSec = payload.max_runtime_sec;
  }

  /** Jobs this one delegated to (§10), from its `delegate` events. */
  get children() {
    return this.events.filter((e) => e.kind === "delegate").map((e) => ({ jobId: e.body.child_job_id, agent: e.body.agent, ts: e.ts }));
  }

  get terminal() {
    return TERMINAL.has(this.status);
  }

  /** Apply one job.event payload. */
  event(payload) {
    this.events.push(payload);
    if (this.status === "pending") this.status = "running";
    const body = payload.body || {};
    if (payload.kind === "progress") this.progress = body;
    else if (payload.kind === "metric" && body.name === "cost.budget.remaining") {
      this.budget = { ...(this.budget || {}), [body.unit || "USD"]: body.value };
    } else if (payload.kind === "result_chunk") this.#chunk(body);
  }

  /** Apply the terminal frame (job.result or job.error). A job.result carrying a
   * `code` is a cancel or timeout in the SDK-compatibility profile (DESIGN.md). */
  finish(type, payload) {
    this.status = payload.final_status || (type === "job.result" ? "success" : "error");
    this.completedAt = payload.completed_at || this.completedAt;
    if (type === "job.result" && !("code" in payload)) this.result = payload;
    else this.error = payload;
  }

  #chunk(body) {
    if (!this.stream || this.stream.resultId !== body.result_id) {
      this.stream = { resultId: body.result_id, encoding: body.encoding, parts: [], text: "", size: 0 };
    }
    const stream = this.stream;
    const bytes = body.encoding === "base64" ? decodeBase64(body.data) : null;
    stream.parts.push(bytes || body.data);
    stream.size += bytes ? bytes.length : body.data.length;
    if (!bytes && stream.text.length < SHOWN_RESULT_CHARS) {
      stream.text += body.data.slice(0, SHOWN_RESULT_CHARS - stream.text.length);
    }
  }

  /** The whole result as a Blob for download (§8.4: chunks concatenated in order). */
  resultBlob() {
    if (this.stream) {
      const type = this.stream.encoding === "base64" ? "application/octet-stream" : "text/plain";
      return new Blob(this.stream.parts, { type });
    }
    if (this.result && "result" in this.result) {
      return new Blob([JSON.stringify(this.result.result, null, 2)], { type: "application/json" });
    }
    return null;
  }
}

/** §9.6 counters as numbers: the spec profile sends `{"USD": 5.0}`, the
 * SDK-compatibility profile `{"USD": "USD:5.00"}`. */
function budgetOf(budget) {
  const out = {};
  for (const [currency, amount] of Object.entries(budget)) {
    out[currency] = typeof amount === "string" ? Number(amount.split(":").pop()) : amount;
  }
  return out;
}

function decodeBase64(data) {
  const text = atob(data);
  const bytes = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i += 1) bytes[i] = text.charCodeAt(i);
  return bytes;
}

/** One readable line for an event body (the CLI's `watch` says the same). */
export function describeEvent(payload) {
  const body = payload.body || {};
  switch (payload.kind) {
    case "log":
      return `[${body.level}] ${body.message}`;
    case "thought":
      return body.text;
    case "status":
      return body.message ? `${body.phase}: ${body.message}` : body.phase;
    case "metric":
      return `${body.name} = ${body.value}${body.unit ? ` ${body.unit}` : ""}`;
    case "progress":
      return progressText(body);
    case "tool_call":
      return `${body.tool}(${JSON.stringify(body.args)}) #${body.call_id}`;
    case "tool_result":
      return `#${body.call_id} → ${JSON.stringify(body.error || body.result)}`;
    case "result_chunk":
      return `chunk ${body.chunk_seq} of ${body.result_id} (${body.data.length} ${body.encoding === "base64" ? "base64 chars" : "chars"})${body.more ? "" : ", last"}`;
    default:
      return JSON.stringify(body);
  }
}

export function progressText(body) {
  const units = body.units ? ` ${body.units}` : "";
  const total = typeof body.total === "number" ? `/${body.total}` : "";
  const message = body.message ? ` — ${body.message}` : "";
  return `${body.current}${total}${units}${message}`;
}

/** How long a job ran (or has been running), in milliseconds; null before it is known. */
export function elapsedMs(startIso, endIso) {
  if (!startIso) return null;
  const end = endIso ? parseTime(endIso) : Date.now();
  return Math.max(0, end - parseTime(startIso));
}

/** Milliseconds of an RFC 3339 time; the runtime sends nanoseconds, Date wants at most 3 digits. */
export function parseTime(iso) {
  return Date.parse(iso.replace(/(\.\d{3})\d+/, "$1"));
}
