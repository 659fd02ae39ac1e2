// stream.js: one live subscription to one thread (part of
// /client/convo.js).
//
// `Stream` owns everything about staying connected: resume from the last
// cursor, stream tokens minted through a callback and refreshed before
// they expire, the retry policy for each server `error` code and HTTP
// status, and the stall watchdog. It knows nothing of messages (that is
// `Transcript`) nor of tabs (that is `Hub`); `backoff` is shared with
// `Hub`, which retries loading a thread's history the same way.

import { ApiError, errorOf } from './api.js';
import { readSse } from './sse.js';

const RESUMABLE = new Set(['slow_consumer', 'thread_stopped']);
const BACK_OFF = new Set(['shutting_down', 'unavailable']);
const FINAL = new Set(['thread_deleted']);

/** The wait before the next attempt after `failures` in a row: 250 ms
 * doubling to 5 s, half of it random so that many tabs (or every client
 * of a restarted node) do not come back in step. */
export function backoff(failures) {
  const ceiling = Math.min(5000, 250 * 2 ** Math.min(failures, 5));
  return ceiling / 2 + Math.random() * ceiling / 2;
}

/** sessionStorage, or null where it is missing or refused (a worker, a
 * sandboxed frame): keeping the cursor there is only ever a bonus. */
function storage() {
  try { return globalThis.sessionStorage || null; } catch (_) { return null; }
}

/**
 * One live subscription to one thread, over SSE (read with fetch, which
 * sees heartbeats and HTTP statuses, unlike EventSource) or WebSocket.
 *
 * Options: `path` (`/v1/projects/{pid}/threads/{tid}`), `base`,
 * `transport` (`sse` | `ws`), `cursor` (where to start; default: the one
 * kept under `storageKey` in sessionStorage, if given), `token()` (async:
 * `{token, expires_at}` from POST …/stream-token, or null in open mode),
 * `heartbeatMs` (the server's heartbeat period), `onEvent(event)`,
 * `onState(state, detail)`.
 *
 * States: `connecting`, `live` (the `ready` event arrived), `reconnecting`,
 * `offline` (three failures in a row, or the browser is offline),
 * `paused`, `closed` (detail: `thread_deleted`, `not_found` or `closed`).
 */
export class Stream {
  constructor(options) {
    this.o = { base: '', transport: 'sse', heartbeatMs: 15000, onEvent() {}, onState() {}, ...options };
    const kept = this.o.storageKey && storage()?.getItem(this.o.storageKey);
    this.cursor = this.o.cursor !== undefined ? this.o.cursor : kept || null;
    this.state = 'connecting';
    this.failures = 0;
    this.generating = false;
    this.token = null;
    this.paused = false;
    this.closed = false;
    this.everLive = false;
    this.wake = null;
    this.hangUp = null;
    this.sentCursor = null;
    this.onOnline = () => this.wake?.();
    globalThis.addEventListener?.('online', this.onOnline);
  }

  start() {
    if (!this.running) this.running = this.run();
    return this;
  }

  /** Stops for good. */
  close(detail = 'closed') {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.refreshTimer);
    clearTimeout(this.stallTimer);
    globalThis.removeEventListener?.('online', this.onOnline);
    this.hangUp?.();
    this.wake?.();
    this.setState('closed', detail);
  }

  /** Lets the connection go, keeping the cursor; `resume()` reopens it. */
  pause() {
    if (this.paused || this.closed) return;
    this.paused = true;
    this.hangUp?.();
    this.setState('paused');
  }

  resume() {
    if (this.paused) {
      this.paused = false;
      this.wake?.();
    }
    this.start();
  }

  /** Sends a client frame (`send`, `cancel`) on the WebSocket, if open. */
  send(frame) {
    if (this.ws?.readyState !== 1) return false;
    this.ws.send(JSON.stringify(frame));
    return true;
  }

  setState(state, detail = null) {
    if (this.state === state && this.detail === detail) return;
    this.state = state;
    this.detail = detail;
    this.o.onState(state, detail);
  }

  sleep(ms) {
    return new Promise((resolve) => {
      const timer = ms === Infinity ? null : setTimeout(resolve, ms);
      this.wake = () => { clearTimeout(timer); this.wake = null; resolve(); };
    });
  }

  async run() {
    while (!this.closed) {
      if (this.paused) { await this.sleep(Infinity); continue; }
      let delay;
      try {
        const token = await this.currentToken();
        if (this.closed || this.paused) continue;
        this.setState(this.everLive ? 'reconnecting' : 'connecting');
        this.lastError = null;
        const ended = await (this.o.transport === 'ws' ? this.openWs(token) : this.openSse(token));
        delay = this.delayAfterEnd(ended);
      } catch (e) {
        delay = this.delayAfterFailure(e);
      }
      if (this.closed || this.paused) continue;
      if (delay > 0) {
        const offline = this.failures >= 3 || globalThis.navigator?.onLine === false;
        this.setState(offline ? 'offline' : 'reconnecting', this.lastError);
        await this.sleep(delay);
      }
    }
  }

  /** Where to go after a stream that opened has ended. */
  delayAfterEnd(ended) {
    const code = this.lastError;
    if (FINAL.has(code)) { this.close(code); return 0; }
    if (ended === 'stalled' || ended === 'aborted' || RESUMABLE.has(code)) return 0;
    this.failures += 1;
    return BACK_OFF.has(code) ? backoff(this.failures) : backoff(this.failures - 1);
  }

  /** Where to go after a stream could not open. */
  delayAfterFailure(e) {
    if (e instanceof ApiError && e.status === 404) { this.close('not_found'); return 0; }
    this.failures += 1;
    if (e instanceof ApiError && e.status === 401) {
      // The token expired, or the service restarted (new signing key): a
      // new one at once, then back off if that fails too.
      const first = !this.lastWas401;
      this.token = null;
      this.lastWas401 = true;
      return first ? 0 : backoff(this.failures);
    }
    this.lastWas401 = false;
    if (e instanceof ApiError && e.retryAfter) return e.retryAfter * 1000;
    return backoff(this.failures);
  }

  /** A usable stream token (minted when there is none or it is due for
   * refresh), or null in open mode. */
  async currentToken() {
    if (!this.o.token) return null;
    if (this.token && Date.now() < this.token.refreshAt) return this.token.token;
    this.adopt(await this.o.token());
    return this.token ? this.token.token : null;
  }

  /** Keeps a minted token and plans its refresh at 80 % of its life, so
   * a reconnect never has to wait for (or fail on) an expired one. */
  adopt(minted) {
    clearTimeout(this.refreshTimer);
    if (!minted) { this.token = null; return; }
    const now = Date.now();
    const life = Math.max(0, Date.parse(minted.expires_at) - now);
    this.token = { token: minted.token, refreshAt: now + life * 0.8 };
    if (life > 0) {
      this.refreshTimer = setTimeout(() => {
        if (this.closed) return;
        Promise.resolve(this.o.token()).then((t) => this.adopt(t), () => { this.token = null; });
      }, life * 0.8);
    }
  }

  url(token, scheme) {
    const q = new URLSearchParams();
    if (this.cursor) q.set('cursor', this.cursor);
    if (token) q.set('token', token);
    const path = `${this.o.path}/${scheme}${q.size ? '?' + q : ''}`;
    const url = new URL(this.o.base + path, globalThis.location.href);
    if (scheme === 'ws') url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
    return url.href;
  }

  /** No byte for twice the heartbeat period: the connection is dead even
   * if the socket says nothing. A WebSocket's pings are invisible to
   * scripts, so there only frames count, and only while an answer runs. */
  kick() {
    clearTimeout(this.stallTimer);
    if (this.o.transport === 'ws' && !this.generating) return;
    this.stallTimer = setTimeout(() => { this.stalled = true; this.hangUp?.(); }, this.o.heartbeatMs * 2);
  }

  handle(ev) {
    if (ev.cursor) {
      this.cursor = ev.cursor;
      if (this.o.storageKey) storage()?.setItem(this.o.storageKey, ev.cursor);
    }
    if (ev.type === 'ready') {
      this.failures = 0;
      this.lastWas401 = false;
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
    this.kick();
    this.o.onEvent(ev);
  }

  /** One SSE connection: throws if it could not open, else answers how
   * it ended (`ended`: the server or the network closed it; `stalled`:
   * the watchdog cut it; `aborted`: paused or closed). */
  async openSse(token) {
    const abort = new AbortController();
    this.stalled = false;
    this.hangUp = () => abort.abort();
    this.sentCursor = this.cursor;
    const how = () => (this.stalled ? 'stalled' : 'aborted');
    let response;
    // The watchdog also covers the wait for the response's head: the
    // browser may send the request on a pooled connection that went
    // silent, and nothing else would ever end that wait.
    this.kick();
    try {
      response = await fetch(this.url(token, 'events'), {
        headers: { Accept: 'text/event-stream' }, cache: 'no-store', signal: abort.signal,
      });
    } catch (_) {
      clearTimeout(this.stallTimer);
      this.hangUp = null;
      // No head within the watchdog's time: the stream did not open, a
      // failure like any other (counted, backed off, `offline` after a few).
      if (abort.signal.aborted && !this.stalled) return how();
      throw new ApiError(0, 'network', 'the service cannot be reached');
    }
    if (!response.ok) {
      clearTimeout(this.stallTimer);
      this.hangUp = null;
      throw await errorOf(response);
    }
    try {
      this.kick();
      await readSse(response.body, (raw) => {
        let ev;
        try { ev = JSON.parse(raw.data); } catch (_) { return; }
        this.handle(ev);
      }, () => this.kick());
    } catch (_) {
      // The connection dropped while reading.
    } finally {
      clearTimeout(this.stallTimer);
      this.hangUp = null;
    }
    return abort.signal.aborted ? how() : 'ended';
  }

  openWs(token) {
    return new Promise((resolve, reject) => {
      this.stalled = false;
      this.sentCursor = this.cursor;
      const ws = new WebSocket(this.url(token, 'ws'));
      this.ws = ws;
      let opened = false;
      let hungUp = false;
      this.hangUp = () => { hungUp = true; ws.close(); };
      ws.onopen = () => { opened = true; this.kick(); };
      ws.onmessage = (m) => {
        let ev;
        try { ev = JSON.parse(m.data); } catch (_) { return; }
        this.handle(ev);
      };
      ws.onclose = () => {
        clearTimeout(this.stallTimer);
        this.ws = null;
        this.hangUp = null;
        if (hungUp) resolve(this.stalled ? 'stalled' : 'aborted');
        else if (opened) resolve('ended');
        else {
          // A refused handshake shows no status to scripts: mint a new
          // token next time in case this one had expired.
          this.token = null;
          reject(new ApiError(0, 'network', 'the WebSocket did not open'));
        }
      };
    });
  }
}
