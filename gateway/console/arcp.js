// ARCP v1.1 over one WebSocket, as the console needs it: hello/welcome (§6.2),
// resume after a dropped socket (§6.3), heartbeats (§6.4), acks (§6.5), and
// requests correlated by `payload.request_id`. The page is an ordinary ARCP
// client of the gateway's `/arcp` endpoint; nothing here is private to the console.

// provisioned_credentials is left out on purpose: the console has no use for
// secrets, so the runtime never sends them to a browser (§9.8, §14).
const FEATURES = [
  "heartbeat", "ack", "list_jobs", "subscribe", "lease_expires_at",
  "cost.budget", "model.use", "progress", "result_chunk", "agent_versions",
];
const ACK_DELAY_MS = 500; // §6.5: at most every few hundred milliseconds
const RETRY_MS = [250, 500, 1000, 2000, 4000];

const CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/** A ULID envelope id (§5): 48 bits of milliseconds, 80 random bits. */
export function ulid() {
  let time = Date.now();
  let head = "";
  for (let i = 0; i < 10; i += 1) {
    head = CROCKFORD[time % 32] + head;
    time = Math.floor(time / 32);
  }
  const random = crypto.getRandomValues(new Uint8Array(16));
  let tail = "";
  for (const byte of random) tail += CROCKFORD[byte % 32];
  return head + tail;
}

/** A request the runtime refused: the ARCP code and message of its session.error. */
export class ArcpError extends Error {
  constructor(payload) {
    super(`${payload.code}: ${payload.message}`);
    this.code = payload.code;
    this.payload = payload;
  }
}

/**
 * One ARCP session that outlives its sockets. Events: "welcome" (detail: the
 * welcome payload), "frame" (detail: every frame after the session layer has
 * dropped repeats), "state" (detail: "connecting" | "open" | "reconnecting" |
 * "closed"), "reset" (the session could not be resumed and a new one began:
 * views must fetch what they show again), "failed" (detail: an ArcpError that
 * ends the session, e.g. a refused token).
 */
export class ArcpSession extends EventTarget {
  constructor(url, token) {
    super();
    this.url = url;
    this.token = token;
    this.sessionId = "";
    this.resumeToken = "";
    this.lastSeq = 0; // highest event_seq processed: what a resume presents (§6.3)
    this.welcome = null;
    this.state = "connecting";
    this.ws = null;
    this.pending = new Map(); // request id -> {resolve, reject}
    this.helloId = "";
    this.attempt = 0;
    this.ackTimer = 0;
    this.ended = false;
    this.reconnects = 0;
  }

  /** Open the first socket; resolves with the welcome payload. */
  start() {
    return new Promise((resolve, reject) => {
      const onWelcome = (event) => { cleanup(); resolve(event.detail); };
      const onFailed = (event) => { cleanup(); reject(event.detail); };
      const cleanup = () => {
        this.removeEventListener("welcome", onWelcome);
        this.removeEventListener("failed", onFailed);
      };
      this.addEventListener("welcome", onWelcome);
      this.addEventListener("failed", onFailed);
      this.#open();
    });
  }

  /** Send a request; resolves with the reply that names its id, rejects with ArcpError. */
  request(type, payload) {
    return new Promise((resolve, reject) => {
      const id = this.#send(type, payload);
      if (!id) {
        reject(new Error("not connected; try again once the console has reconnected"));
        return;
      }
      this.pending.set(id, { resolve, reject });
    });
  }

  /** Drop the socket as a network failure would; the session resumes on a new one. */
  dropSocket() {
    if (this.ws) this.ws.close(4000, "dropped by the console");
  }

  /** End the session for good (sign out). */
  close() {
    this.ended = true;
    this.#setState("closed");
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.#send("session.bye", {});
    if (this.ws) this.ws.close(1000, "bye");
  }

  #open() {
    const ws = new WebSocket(this.url);
    this.ws = ws;
    ws.addEventListener("open", () => this.#hello());
    ws.addEventListener("message", (message) => this.#receive(ws, message.data));
    ws.addEventListener("close", () => this.#closed(ws));
  }

  #hello() {
    const payload = {
      client: { name: "arcp-grpc-console", version: "1" },
      auth: { scheme: "bearer", token: this.token },
      capabilities: { encodings: ["json"], features: FEATURES },
    };
    if (this.sessionId) {
      payload.resume = {
        session_id: this.sessionId,
        resume_token: this.resumeToken,
        last_event_seq: this.lastSeq,
      };
    }
    this.helloId = this.#send("session.hello", payload);
  }

  #send(type, payload) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return "";
    const id = ulid();
    const envelope = { arcp: "1.1", id, type, payload };
    if (this.sessionId) envelope.session_id = this.sessionId;
    this.ws.send(JSON.stringify(envelope));
    return id;
  }

  #receive(ws, data) {
    if (ws !== this.ws) return; // a late frame from a socket already replaced
    let frame;
    try {
      frame = JSON.parse(data);
    } catch {
      return;
    }
    if (frame.type === "session.ping") {
      this.#send("session.pong", { ping_nonce: frame.payload.nonce });
      return;
    }
    if (typeof frame.event_seq === "number") {
      // §8.3: gap-free and strictly increasing. A repeat is dropped; a gap means
      // the stream broke, so resume from what was processed.
      if (frame.event_seq <= this.lastSeq) return;
      if (frame.event_seq > this.lastSeq + 1) {
        this.dropSocket();
        return;
      }
      this.lastSeq = frame.event_seq;
      this.#scheduleAck();
    }
    const payload = frame.payload || {};
    if (frame.type === "session.welcome") {
      this.#welcomed(payload);
      return;
    }
    if (frame.type === "session.error" && payload.request_id && payload.request_id === this.helloId) {
      this.#refused(payload);
      return;
    }
    const waiter = payload.request_id && this.pending.get(payload.request_id);
    if (waiter) {
      this.pending.delete(payload.request_id);
      if (frame.type === "session.error") waiter.reject(new ArcpError(payload));
      else waiter.resolve(frame);
    }
    this.dispatchEvent(new CustomEvent("frame", { detail: frame }));
  }

  #welcomed(payload) {
    // A resumed welcome names the same session; any other is a new session.
    const fresh = payload.session_id !== this.sessionId;
    this.sessionId = payload.session_id;
    this.resumeToken = payload.resume_token; // rotates on every welcome (§6.3)
    this.attempt = 0;
    if (fresh && this.welcome) {
      this.lastSeq = 0;
      this.dispatchEvent(new Event("reset"));
    }
    this.welcome = payload;
    this.#setState("open");
    this.dispatchEvent(new CustomEvent("welcome", { detail: payload }));
  }

  #refused(payload) {
    if (payload.code === "RESUME_WINDOW_EXPIRED" && this.welcome) {
      // The buffer no longer covers us: start a new session; views refetch.
      this.sessionId = "";
      this.resumeToken = "";
      this.lastSeq = 0;
      return; // the runtime closes this socket; #closed opens a fresh one
    }
    this.ended = true;
    this.#setState("closed");
    this.dispatchEvent(new CustomEvent("failed", { detail: new ArcpError(payload) }));
  }

  #closed(ws) {
    if (ws !== this.ws) return;
    for (const waiter of this.pending.values()) {
      waiter.reject(new Error("the connection dropped before the runtime answered"));
    }
    this.pending.clear();
    if (this.ended) return;
    if (!this.welcome && this.attempt >= RETRY_MS.length) {
      this.ended = true;
      this.#setState("closed");
      this.dispatchEvent(new CustomEvent("failed", { detail: new Error(`cannot reach ${this.url}`) }));
      return;
    }
    this.#setState("reconnecting");
    const delay = RETRY_MS[Math.min(this.attempt, RETRY_MS.length - 1)];
    this.attempt += 1;
    this.reconnects += 1;
    setTimeout(() => { if (!this.ended) this.#open(); }, delay);
  }

  #scheduleAck() {
    if (this.ackTimer) return;
    this.ackTimer = setTimeout(() => {
      this.ackTimer = 0;
      this.#send("session.ack", { last_processed_seq: this.lastSeq });
    }, ACK_DELAY_MS);
  }

  #setState(state) {
    if (this.state === state) return;
    this.state = state;
    this.dispatchEvent(new CustomEvent("state", { detail: state }));
  }
}
