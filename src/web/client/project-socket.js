// project-socket.js: every watched thread of a project on one WebSocket
// (part of /client/convo.js).
//
// A browser allows six connections per host over HTTP/1.1: one stream
// per thread starved tabs on more threads than that, and left no
// connection for their requests. A `ProjectSocket` carries any number of
// threads (`GET /v1/projects/{pid}/ws`): each `Channel` subscribes its
// thread from its own cursor and is what `Hub` holds in place of a
// `Stream`, with the same face (`start`, `pause`, `resume`, `close`,
// `send`, `sentCursor`, the same states). The socket reconnects with
// backoff and subscribes every channel again from where it was; a
// thread's subscription that the server ends (`unsubscribed`, after the
// `error` that says why) is taken up again by the same rules a `Stream`
// follows for that error code.

import { backoff } from './stream.js';

const RESUMABLE = new Set(['slow_consumer', 'thread_stopped', 'cursor_invalid']);
const FINAL = new Set(['thread_deleted', 'not_found']);

/** One WebSocket for the channels of project `pid`. Options: `base`,
 * `pid`, `heartbeatMs`, `idleMs` (how long an unused socket stays open). */
export class ProjectSocket {
  constructor({ base = '', pid, heartbeatMs = 15000, idleMs = 10000 }) {
    Object.assign(this, { base, pid, heartbeatMs, idleMs });
    this.channels = new Map();
    this.ws = null;
    this.open = false;
    this.failures = 0;
    this.connecting = false;
    this.onOnline = () => { if (this.failures) this.wakeUp?.(); };
    globalThis.addEventListener?.('online', this.onOnline);
  }

  /** A channel of thread `tid` (see `Channel`). */
  channel(tid, options) {
    const channel = new Channel(this, tid, options);
    return channel;
  }

  add(channel) {
    this.channels.set(channel.tid, channel);
    clearTimeout(this.idleTimer);
    if (this.open) channel.subscribe();
    else this.connect();
  }

  remove(channel) {
    if (this.channels.get(channel.tid) !== channel) return;
    this.channels.delete(channel.tid);
    this.frame({ type: 'unsubscribe', thread_id: channel.tid });
    if (!this.channels.size) {
      clearTimeout(this.idleTimer);
      this.idleTimer = setTimeout(() => { if (!this.channels.size) this.ws?.close(1000, 'idle'); }, this.idleMs);
    }
  }

  frame(frame) {
    if (!this.open) return false;
    this.ws.send(JSON.stringify(frame));
    return true;
  }

  /** Opens the socket if a channel wants it and none is open or opening. */
  async connect() {
    if (this.ws || this.connecting || !this.channels.size) return;
    this.connecting = true;
    let token = null;
    try {
      // A credential for the handshake: any channel's stream token (none
      // in open mode); each subscription brings its own as well.
      for (const channel of this.channels.values()) {
        token = await channel.currentToken().catch(() => null);
        if (token) break;
      }
    } finally {
      this.connecting = false;
    }
    if (this.ws || !this.channels.size) return;
    const url = new URL(`${this.base}/v1/projects/${this.pid}/ws${token ? `?token=${encodeURIComponent(token)}` : ''}`,
      globalThis.location.href);
    url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
    const ws = new WebSocket(url.href);
    this.ws = ws;
    ws.onopen = () => {
      this.open = true;
      this.openedAt = Date.now();
      this.kick();
      for (const channel of this.channels.values()) channel.subscribe();
    };
    ws.onmessage = (m) => {
      let ev;
      try { ev = JSON.parse(m.data); } catch (_) { return; }
      this.kick();
      const channel = ev.thread_id && this.channels.get(ev.thread_id);
      if (channel) channel.handle(ev);
      else if (ev.type === 'error') globalThis.console?.warn?.('convo project socket:', ev.message);
    };
    ws.onclose = () => this.lost(ws);
  }

  /** The socket `ws` ended (or was given up): its channels wait, and a
   * new one opens, at once after a socket that lived, else after a
   * backoff. */
  lost(ws) {
    if (this.ws !== ws) return;
    const lived = this.open && Date.now() - this.openedAt > 1000;
    this.ws = null;
    this.open = false;
    clearTimeout(this.stallTimer);
    if (!this.channels.size) return;
    this.failures = lived ? 0 : this.failures + 1;
    for (const channel of this.channels.values()) channel.dropped(this.failures);
    this.retry(lived ? 0 : backoff(this.failures));
  }

  retry(delay) {
    clearTimeout(this.retryTimer);
    this.wakeUp = () => { clearTimeout(this.retryTimer); this.wakeUp = null; this.connect(); };
    this.retryTimer = setTimeout(() => this.wakeUp?.(), delay);
  }

  /** The server pings, but scripts cannot see pings: while an answer is
   * being written, no frame for twice the heartbeat means the connection
   * is dead even if the socket says nothing. */
  kick() {
    clearTimeout(this.stallTimer);
    const writing = [...this.channels.values()].some((c) => c.generating);
    if (!writing || !this.ws) return;
    const ws = this.ws;
    this.stallTimer = setTimeout(() => {
      // A silent connection may never finish a closing handshake: give it
      // up without waiting for its close.
      ws.onclose = null;
      ws.onmessage = null;
      ws.close();
      this.lost(ws);
    }, this.heartbeatMs * 2);
  }
}

/**
 * One thread on a `ProjectSocket`. Options as `Stream`'s: `cursor`,
 * `token()` (async `{token, expires_at}` or null), `onEvent(event)`,
 * `onState(state, detail)`. States: `connecting`, `live`,
 * `reconnecting`, `offline`, `paused`, `closed`.
 */
export class Channel {
  constructor(socket, tid, options) {
    this.socket = socket;
    this.tid = tid;
    this.o = { onEvent() {}, onState() {}, ...options };
    this.cursor = this.o.cursor ?? null;
    this.sentCursor = null;
    this.state = 'connecting';
    this.generating = false;
    this.token = null;
    this.paused = false;
    this.closed = false;
    this.everLive = false;
    this.started = false;
    this.failures = 0;
  }

  start() {
    if (this.started || this.closed) return this;
    this.started = true;
    if (!this.paused) this.socket.add(this);
    return this;
  }

  close(detail = 'closed') {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.refreshTimer);
    clearTimeout(this.again);
    this.socket.remove(this);
    this.setState('closed', detail);
  }

  pause() {
    if (this.paused || this.closed) return;
    this.paused = true;
    this.socket.remove(this);
    this.setState('paused');
  }

  resume() {
    if (!this.started) return this.start();
    if (!this.paused || this.closed) return;
    this.paused = false;
    this.socket.add(this);
  }

  /** Sends a thread frame (`send`, `cancel`, `tool_results`,
   * `approval`) once this thread is live on the socket. */
  send(frame) {
    if (this.state !== 'live') return false;
    return this.socket.frame({ ...frame, thread_id: this.tid });
  }

  setState(state, detail = null) {
    if (this.state === state && this.detail === detail) return;
    this.state = state;
    this.detail = detail;
    this.o.onState(state, detail);
  }

  /** Subscribes from the cursor (the socket is open). */
  async subscribe() {
    if (this.closed || this.paused) return;
    this.setState(this.everLive ? 'reconnecting' : 'connecting', this.lastError || null);
    let token = null;
    try {
      token = await this.currentToken();
    } catch (_) {
      // No tab could mint one now: try again later.
      return this.later();
    }
    if (this.closed || this.paused || !this.socket.open || this.socket.channels.get(this.tid) !== this) return;
    this.sentCursor = this.cursor;
    this.lastError = null;
    const frame = { type: 'subscribe', thread_id: this.tid };
    if (this.cursor) frame.cursor = this.cursor;
    if (token) frame.token = token;
    this.socket.frame(frame);
  }

  /** Subscribes again after a backoff. */
  later(delay = backoff(this.failures)) {
    clearTimeout(this.again);
    this.failures += 1;
    const offline = this.failures >= 3 || globalThis.navigator?.onLine === false;
    this.setState(offline ? 'offline' : 'reconnecting', this.lastError || null);
    this.again = setTimeout(() => { if (this.socket.open) this.subscribe(); }, delay);
  }

  /** The socket closed under this channel; it subscribes again when the
   * socket is back. */
  dropped(failures) {
    if (this.closed || this.paused) return;
    const offline = failures >= 3 || globalThis.navigator?.onLine === false;
    if (offline) this.setState('offline', this.lastError || null);
    else if (this.everLive) this.setState('reconnecting', this.lastError || null);
  }

  /** A usable stream token, or null in open mode (as `Stream`). */
  async currentToken() {
    if (!this.o.token) return null;
    if (this.token && Date.now() < this.token.refreshAt) return this.token.token;
    const minted = await this.o.token();
    clearTimeout(this.refreshTimer);
    if (!minted) { this.token = null; return null; }
    const now = Date.now();
    const life = Math.max(0, Date.parse(minted.expires_at) - now);
    this.token = { token: minted.token, refreshAt: now + life * 0.8 };
    return this.token.token;
  }

  handle(ev) {
    if (ev.type === 'unsubscribed') return this.ended(ev.code);
    if (ev.cursor) this.cursor = ev.cursor;
    if (ev.type === 'ready') {
      this.failures = 0;
      this.everLive = true;
      this.generating = ev.status === 'generating';
      this.setState('live');
    } else if (ev.type === 'message.started') {
      this.generating = true;
    } else if (ev.type === 'message.completed') {
      this.generating = false;
    } else if (ev.type === 'error') {
      this.lastError = ev.code;
    }
    this.o.onEvent(ev);
  }

  /** The server ended this thread's subscription, `code` says why. */
  ended(code) {
    this.generating = false;
    if (this.closed || this.paused) return;
    if (FINAL.has(code)) return this.close(code);
    if (code === 'unauthorized') this.token = null;
    if (RESUMABLE.has(code)) { this.failures = 0; return this.subscribe(); }
    this.later();
  }
}
