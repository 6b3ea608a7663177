// The WebSocket of docs/protocol.md: requests with one reply each, events with a rising seq,
// and reconnecting on its own (jittered exponential backoff; the server's hint on 1012),
// each time sending `resume` with the last seq seen before anything else.

import { tabState } from "./session.js";

const REQUEST_TIMEOUT_MS = 15000;
const HEARTBEAT_MS = 20000;
const HEARTBEAT_TIMEOUT_MS = 8000;
const BACKOFF_BASE_MS = 500;
const BACKOFF_CAP_MS = 20000;

export class WireError extends Error {
  constructor(error) {
    super(error.message ?? error.code);
    this.code = error.code;
    this.details = error;
  }
}

/** Full-ish jitter: somewhere in the upper half of the exponential step, so clients spread. */
export function backoffDelay(attempt) {
  const step = Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * 2 ** attempt);
  return Math.round(step / 2 + Math.random() * (step / 2));
}

function randomPrefix() {
  const bytes = crypto.getRandomValues(new Uint8Array(6));
  return [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
}

export class Connection {
  /**
   * onEvent(name, data), onReady(resumeReply, {reconnected}), onStatus({state, retryAt, code}),
   * onAuthLost(): the token was refused (close 4401).
   */
  constructor({ token, userId, onEvent, onReady, onStatus, onAuthLost }) {
    this.token = token;
    this.seqKey = `seq:${userId}`;
    this.lastSeq = tabState.get(this.seqKey);
    this.handlers = { onEvent, onReady, onStatus, onAuthLost };
    // Request ids are unique across reloads: the server answers a repeated (verb, id) with
    // the first answer, which is what makes resending a write after a reconnect safe.
    this.prefix = randomPrefix();
    this.counter = 0;
    this.pending = new Map();
    this.ready = false;
    this.everReady = false;
    this.attempt = 0;
    this.stopped = false;
    this.timer = null;
    this.onOnline = () => this.reconnectNow();
    this.onOffline = () => this.drop();
  }

  start() {
    window.addEventListener("online", this.onOnline);
    window.addEventListener("offline", this.onOffline);
    this.open();
  }

  stop() {
    this.stopped = true;
    window.removeEventListener("online", this.onOnline);
    window.removeEventListener("offline", this.onOffline);
    clearTimeout(this.timer);
    this.detach()?.close(1000, "bye");
    this.failPending(() => true, "disconnected");
  }

  /**
   * Send a request; resolves with its reply data, rejects with a WireError. `retry`: a write
   * that must reach the server once; kept across a reconnect and sent again with the same id.
   */
  request(type, fields = {}, { retry = false } = {}) {
    const id = `${this.prefix}-${++this.counter}`;
    const frame = JSON.stringify({ id, type, ...fields });
    return new Promise((resolve, reject) => {
      const entry = { id, type, frame, retry, resolve, reject, timer: null };
      if (!this.ready && !(type === "resume" && this.isOpen())) {
        if (!retry) {
          reject(new WireError({ code: "disconnected", message: "not connected" }));
          return;
        }
        this.pending.set(id, entry);
        return;
      }
      this.pending.set(id, entry);
      this.transmit(entry);
    });
  }

  reconnectNow() {
    if (this.stopped || this.isOpen() || this.ws?.readyState === WebSocket.CONNECTING) return;
    clearTimeout(this.timer);
    this.open();
  }

  // Internals ---------------------------------------------------------------------------------

  isOpen() {
    return this.ws?.readyState === WebSocket.OPEN;
  }

  transmit(entry) {
    clearTimeout(entry.timer);
    entry.timer = setTimeout(() => {
      if (!this.pending.has(entry.id)) return;
      if (entry.retry) {
        this.drop(); // no answer on a live socket: treat it as dead, resend after resume
        return;
      }
      this.pending.delete(entry.id);
      entry.reject(new WireError({ code: "timeout", message: "no reply" }));
    }, REQUEST_TIMEOUT_MS);
    this.ws.send(entry.frame);
  }

  open() {
    if (this.stopped) return;
    this.status({ state: "connecting" });
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const url = `${scheme}//${location.host}/ws?token=${encodeURIComponent(this.token)}`;
    const ws = new WebSocket(url);
    this.ws = ws;
    ws.onopen = () => this.opened(ws);
    ws.onmessage = (message) => this.receive(message.data);
    ws.onclose = (event) => {
      if (this.ws === ws) this.closed(event.code, event.reason);
    };
  }

  async opened(ws) {
    this.seen();
    let reply;
    try {
      reply = await this.request("resume", this.lastSeq === null ? {} : { last_seq: this.lastSeq });
    } catch {
      if (this.ws === ws) this.drop();
      return;
    }
    if (this.ws !== ws) return;
    this.attempt = 0;
    this.ready = true;
    const reconnected = this.everReady;
    this.everReady = true;
    this.status({ state: "open" });
    for (const entry of this.pending.values()) {
      if (entry.type !== "resume") this.transmit(entry);
    }
    this.handlers.onReady?.(reply, { reconnected });
  }

  receive(text) {
    this.seen();
    let frame;
    try {
      frame = JSON.parse(text);
    } catch {
      return;
    }
    if (frame.type === "event") {
      if (typeof frame.seq === "number") {
        this.lastSeq = frame.seq;
        tabState.set(this.seqKey, frame.seq);
      }
      this.handlers.onEvent?.(frame.event, frame.data ?? {}, frame);
      return;
    }
    const entry = this.pending.get(frame.id);
    if (!entry) return;
    this.pending.delete(frame.id);
    clearTimeout(entry.timer);
    if (frame.ok) entry.resolve(frame.data ?? {});
    else entry.reject(new WireError(frame.error ?? { code: "internal", message: "error" }));
  }

  /** Something arrived: the socket is alive. A quiet socket gets a ping; no answer drops it. */
  seen() {
    clearTimeout(this.heartbeat);
    this.heartbeat = setTimeout(() => {
      if (!this.ready) return;
      const ws = this.ws;
      const deadline = setTimeout(() => this.ws === ws && this.drop(), HEARTBEAT_TIMEOUT_MS);
      this.request("ping").then(
        () => clearTimeout(deadline),
        () => clearTimeout(deadline),
      );
    }, HEARTBEAT_MS);
  }

  detach() {
    const ws = this.ws;
    this.ws = null;
    this.ready = false;
    clearTimeout(this.heartbeat);
    if (ws) ws.onopen = ws.onmessage = ws.onclose = null;
    return ws;
  }

  /** Give up on the current socket (dead or offline) and reconnect. */
  drop() {
    const ws = this.detach();
    if (!ws) return;
    try {
      ws.close(4000, "client reconnects");
    } catch {
      // already closed
    }
    this.closed(1006, "");
  }

  failPending(which, code) {
    for (const [id, entry] of this.pending) {
      if (!which(entry)) continue;
      this.pending.delete(id);
      clearTimeout(entry.timer);
      entry.reject(new WireError({ code, message: code }));
    }
  }

  closed(code, reason) {
    this.detach();
    // Reads are asked again after resume; writes marked `retry` are resent with their id.
    this.failPending((entry) => !entry.retry || entry.type === "resume", "disconnected");
    if (this.stopped) return;
    if (code === 4401) {
      this.stopped = true;
      this.status({ state: "unauthorized", code });
      this.handlers.onAuthLost?.();
      return;
    }
    if (code === 4403) {
      this.status({ state: "refused", code });
      return;
    }
    let delay = backoffDelay(this.attempt++);
    if (code === 1012) {
      try {
        const hint = JSON.parse(reason || "{}").retry_after_ms;
        if (Number.isFinite(hint)) delay = hint + Math.round(Math.random() * 250);
      } catch {
        // no hint: keep the backoff
      }
    }
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.open(), delay);
    this.status({ state: "waiting", retryAt: Date.now() + delay, code });
  }

  status(status) {
    this.state = status.state;
    this.handlers.onStatus?.(status);
  }
}
