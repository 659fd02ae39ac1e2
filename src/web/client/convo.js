// convo.js: the browser client of the convo service. A JavaScript module
// with no dependencies, served by the service at /client/convo.js.
//
//   import { connect } from '/client/convo.js';
//   const client = connect({ credentials: () => sessionStorage.getItem('key') });
//   const watch = client.watch(projectId, threadId, (view, change) => render(view.messages));
//   await client.send(projectId, threadId, 'Hello');
//
// What it does for you (see README, "Browser client"):
// - `Transcript` rebuilds messages from history and events: deltas are
//   merged by their UTF-8 byte offset, so a replayed or repeated delta
//   never shows twice and a missing one is noticed (then the history is
//   fetched again); `cursor_ahead` replays replace the block's text.
// - `Stream` is one subscription: typed events, resume from the last
//   cursor on every reconnect (kept in sessionStorage when asked, so a
//   reload resumes too), stream tokens minted through a callback and
//   refreshed before and after they expire, a stall watchdog, a server
//   `error` event told apart from a dropped connection.
// - `connect()` gives a client whose tabs share one connection per thread:
//   a SharedWorker holds the streams and hands each tab a snapshot, then
//   the events after it. Without SharedWorker each tab has its own.

// ---------------------------------------------------------------- REST

/** A non-2xx answer (`status` 0: no answer at all). */
export class ApiError extends Error {
  constructor(status, code, message, retryAfter = null) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter;
  }
}

async function errorOf(response) {
  let code = 'http_' + response.status;
  let message = response.statusText || 'request failed';
  try {
    const body = await response.json();
    if (body && body.error) ({ code, message } = body.error);
  } catch (_) { /* not JSON */ }
  const retry = Number(response.headers.get('retry-after'));
  return new ApiError(response.status, code, message, Number.isFinite(retry) && retry > 0 ? retry : null);
}

/** The REST API. `credentials()` returns the bearer token (a project key
 * or the admin token) or null (open mode). */
export class Api {
  constructor({ base = '', credentials = () => null } = {}) {
    this.base = base;
    this.credentials = credentials;
  }

  async request(method, path, body) {
    const headers = { Accept: 'application/json' };
    const token = this.credentials();
    if (token) headers.Authorization = 'Bearer ' + token;
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    let response;
    try {
      response = await fetch(this.base + path, {
        method, headers, body: body === undefined ? undefined : JSON.stringify(body), cache: 'no-store',
      });
    } catch (e) {
      throw new ApiError(0, 'network', 'the service cannot be reached');
    }
    if (!response.ok) throw await errorOf(response);
    return response.status === 204 ? null : response.json();
  }

  createProject(name) { return this.request('POST', '/v1/projects', { name }); }
  project(pid) { return this.request('GET', `/v1/projects/${pid}`); }
  threads(pid, { limit = 20, cursor = null } = {}) {
    const q = new URLSearchParams({ limit: String(limit) });
    if (cursor) q.set('cursor', cursor);
    return this.request('GET', `/v1/projects/${pid}/threads?${q}`);
  }
  thread(pid, tid) { return this.request('GET', `/v1/projects/${pid}/threads/${tid}`); }
  createThread(pid, fields = {}) {
    const body = {};
    for (const k of ['title', 'system', 'model']) if (fields[k]) body[k] = fields[k];
    return this.request('POST', `/v1/projects/${pid}/threads`, body);
  }
  deleteThread(pid, tid) { return this.request('DELETE', `/v1/projects/${pid}/threads/${tid}`); }

  /** Every message of a thread, by position (all pages). */
  async history(pid, tid) {
    const out = [];
    for (;;) {
      const q = new URLSearchParams({ limit: '200' });
      if (out.length) q.set('after', String(out[out.length - 1].position));
      const page = await this.request('GET', `/v1/projects/${pid}/threads/${tid}/messages?${q}`);
      out.push(...page.data);
      if (!page.has_more || page.data.length === 0) return out;
    }
  }

  send(pid, tid, content, options = {}) {
    return this.request('POST', `/v1/projects/${pid}/threads/${tid}/messages`, { content, ...options });
  }
  cancel(pid, tid) { return this.request('POST', `/v1/projects/${pid}/threads/${tid}/cancel`); }
  streamToken(pid, tid) { return this.request('POST', `/v1/projects/${pid}/threads/${tid}/stream-token`); }

  adminStats() { return this.request('GET', '/admin/stats'); }
  adminThreads() { return this.request('GET', '/admin/threads'); }
  stopThread(tid) { return this.request('DELETE', `/admin/threads/${tid}`); }
}

// ---------------------------------------------------------------- text

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** The UTF-8 length of a string, in bytes (offsets are UTF-8 bytes). */
export function utf8Length(s) {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c <= 0xdbff) { n += 4; i++; } else n += 3;
  }
  return n;
}

/** `s` without its first `bytes` UTF-8 bytes. */
function dropBytes(s, bytes) {
  return bytes <= 0 ? s : decoder.decode(encoder.encode(s).subarray(bytes));
}

// ---------------------------------------------------------- transcript

function copyMessage(m) {
  return { ...m, blocks: (m.blocks || []).map((b) => ({ ...b })), usage: m.usage && { ...m.usage } };
}

function joinText(m) {
  m.content = m.blocks.filter((b) => b.kind === 'text').map((b) => b.text).join('');
}

/**
 * The messages of one thread, rebuilt from its history and its events.
 *
 * A block's text is append-only, so a delta (`offset`, `text`) either
 * continues it, repeats part of what is there (only the new tail is
 * added), or leaves a gap (nothing is applied; `apply` answers
 * `{resync: true}`: fetch the history again). After an `error` event with
 * code `cursor_ahead`, the next message the server replays replaces what
 * was shown of it (its deltas start again at offset 0).
 */
export class Transcript {
  constructor(messages = []) {
    this.messages = messages.map(copyMessage).sort((a, b) => a.position - b.position);
    this.lengths = new WeakMap();
    this.replacing = false;
  }

  /** The cursor right after everything in `messages` (history order). */
  static cursorAfter(messages) {
    const last = messages[messages.length - 1];
    if (!last) return null;
    if (last.role === 'user') return `${last.id}:1:0`;
    const n = last.blocks.length;
    if (last.status !== 'streaming') return `${last.id}:${n}:0`;
    if (n === 0) return `${last.id}:0:0`;
    return `${last.id}:${n - 1}:${utf8Length(last.blocks[n - 1].text)}`;
  }

  get(id) { return this.messages.find((m) => m.id === id) || null; }

  /** Whether an answer is being written. */
  get generating() { return this.messages.some((m) => m.status === 'streaming'); }

  insert(message) {
    const at = this.messages.findIndex((m) => m.position > message.position);
    if (at < 0) this.messages.push(message); else this.messages.splice(at, 0, message);
    return message;
  }

  /** The message an event is about, created if it began just now. */
  target(ev) {
    let m = this.get(ev.message_id);
    if (!m && ev.type === 'message.started') {
      const last = this.messages[this.messages.length - 1];
      m = this.insert({
        id: ev.message_id, role: ev.role, model: ev.model, status: 'streaming', blocks: [], content: '',
        position: last ? last.position + 1 : 0, stop_reason: null, error: null,
        usage: { input_tokens: 0, output_tokens: 0 },
      });
    }
    if (m && this.replacing) {
      this.replacing = false;
      m.blocks = [];
    }
    return m;
  }

  bytes(block) {
    let n = this.lengths.get(block);
    if (n === undefined) { n = utf8Length(block.text); this.lengths.set(block, n); }
    return n;
  }

  /** Applies one event. Answers `{message}` (the id of the message that
   * changed, if one did) and `resync: true` when the history must be
   * fetched again (a gap, or `cursor_invalid`). */
  apply(ev) {
    switch (ev.type) {
      case 'message.created': {
        const m = this.get(ev.message.id);
        if (m) Object.assign(m, copyMessage(ev.message)); else this.insert(copyMessage(ev.message));
        return { message: ev.message.id };
      }
      case 'message.started': {
        const m = this.target(ev);
        return { message: m.id };
      }
      case 'message.block': {
        const m = this.target(ev);
        if (!m || ev.block > m.blocks.length) return { resync: true };
        const block = m.blocks[ev.block] || { kind: ev.kind, text: '' };
        block.kind = ev.kind;
        if (ev.id) block.id = ev.id;
        if (ev.name) block.name = ev.name;
        m.blocks[ev.block] = block;
        return { message: m.id };
      }
      case 'message.delta': {
        const m = this.target(ev);
        if (!m || ev.block > m.blocks.length) return { resync: true };
        if (!m.blocks[ev.block]) m.blocks[ev.block] = { kind: 'text', text: '' };
        const block = m.blocks[ev.block];
        const have = this.bytes(block);
        if (ev.offset > have) return { resync: true };
        const size = utf8Length(ev.text);
        if (ev.offset + size <= have) return {};
        block.text += dropBytes(ev.text, have - ev.offset);
        this.lengths.set(block, ev.offset + size);
        joinText(m);
        return { message: m.id };
      }
      case 'message.completed': {
        const m = this.target(ev);
        if (!m) return { resync: true };
        Object.assign(m, { status: ev.status, stop_reason: ev.stop_reason, usage: ev.usage, error: ev.error });
        joinText(m);
        return { message: m.id };
      }
      case 'error':
        if (ev.code === 'cursor_ahead') this.replacing = true;
        return ev.code === 'cursor_invalid' ? { resync: true } : {};
      default:
        return {};
    }
  }
}

// -------------------------------------------------------------- stream

const RESUMABLE = new Set(['slow_consumer', 'thread_stopped']);
const BACK_OFF = new Set(['shutting_down', 'unavailable']);
const FINAL = new Set(['thread_deleted']);

function backoff(failures) {
  const ceiling = Math.min(5000, 250 * 2 ** Math.min(failures, 5));
  return ceiling / 2 + Math.random() * ceiling / 2;
}

function storage() {
  try { return globalThis.sessionStorage || null; } catch (_) { return null; }
}

/** Reads Server-Sent Events from a fetch body: `onEvent({type, data,
 * id})` per event, `onBytes()` per chunk (heartbeats included). */
async function readSse(body, onEvent, onBytes) {
  const reader = body.getReader();
  const text = new TextDecoder();
  let buffer = '';
  let event = { type: 'message', data: [], id: null };
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    onBytes();
    buffer += text.decode(value, { stream: true });
    let nl;
    while ((nl = buffer.search(/\r\n|\r|\n/)) >= 0) {
      const line = buffer.slice(0, nl);
      buffer = buffer.slice(nl + (buffer.startsWith('\r\n', nl) ? 2 : 1));
      if (line === '') {
        if (event.data.length) onEvent({ type: event.type, data: event.data.join('\n'), id: event.id });
        event = { type: 'message', data: [], id: null };
        continue;
      }
      if (line.startsWith(':')) continue;
      const colon = line.indexOf(':');
      const field = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? '' : line.slice(colon + 1);
      if (value.startsWith(' ')) value = value.slice(1);
      if (field === 'event') event.type = value;
      else if (field === 'data') event.data.push(value);
      else if (field === 'id') event.id = value;
    }
  }
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

// ----------------------------------------------------------------- hub

/**
 * Holds one stream and one transcript per watched thread, for any number
 * of subscribers (tabs). Runs inside the SharedWorker, or inside a tab
 * when there is none. A subscriber is `{post(message), call(method,
 * args), visible}`: `call` asks it for the thread's history or a stream
 * token (only tabs hold credentials).
 *
 * Messages to subscribers: `snapshot` (the whole transcript, then events
 * follow), `event`, `state`, `tabs` (how many subscribers watch).
 */
export class Hub {
  constructor({ base = '', transport = 'sse', heartbeatMs = 15000, maxStreams = Infinity } = {}) {
    Object.assign(this, { base, transport, heartbeatMs, maxStreams });
    this.entries = new Map();
  }

  key(pid, tid) { return `${pid}/${tid}`; }

  watch(sub, pid, tid) {
    const key = this.key(pid, tid);
    let e = this.entries.get(key);
    const fresh = !e;
    if (fresh) {
      e = { key, pid, tid, subs: new Set(), transcript: null, stream: null, state: 'connecting', detail: null,
        subscribers: 0, resync: null, lastActive: Date.now() };
      this.entries.set(key, e);
    }
    clearTimeout(e.idleTimer);
    e.subs.add(sub);
    e.lastActive = Date.now();
    // Loaded through its subscribers (they hold the credentials).
    if (fresh) this.load(e);
    if (e.transcript) sub.post(this.snapshot(e));
    else sub.post({ t: 'state', pid, tid, state: e.state, detail: e.detail });
    this.tell(e, { t: 'tabs', pid, tid, tabs: e.subs.size });
    this.schedule();
  }

  unwatch(sub, pid, tid) {
    const e = this.entries.get(this.key(pid, tid));
    if (!e || !e.subs.delete(sub)) return;
    this.tell(e, { t: 'tabs', pid, tid, tabs: e.subs.size });
    if (e.subs.size === 0) {
      // A reload comes back within moments: keep the stream a while.
      e.idleTimer = setTimeout(() => this.forget(e), 10000);
    }
    this.schedule();
  }

  /** A subscriber went away (its tab closed). */
  drop(sub) {
    for (const e of [...this.entries.values()]) if (e.subs.has(sub)) this.unwatch(sub, e.pid, e.tid);
  }

  forget(e) {
    if (e.subs.size) return;
    e.stream?.close();
    this.entries.delete(e.key);
    this.schedule();
  }

  /** Sends a WebSocket client frame on a thread's stream. */
  frame(pid, tid, frame) {
    const e = this.entries.get(this.key(pid, tid));
    return Boolean(e?.stream?.send(frame));
  }

  visible(sub) {
    for (const e of this.entries.values()) if (e.subs.has(sub)) e.lastActive = Date.now();
    this.schedule();
  }

  snapshot(e) {
    return { t: 'snapshot', pid: e.pid, tid: e.tid, messages: e.transcript.messages, state: e.state,
      detail: e.detail, subscribers: e.subscribers, tabs: e.subs.size };
  }

  tell(e, message) {
    for (const sub of e.subs) sub.post(message);
  }

  /** Asks the entry's subscribers, one after another, until one answers. */
  async ask(e, method) {
    for (const sub of [...e.subs]) {
      try {
        return await sub.call(method, { pid: e.pid, tid: e.tid });
      } catch (err) {
        if (err instanceof ApiError && err.status !== 0) throw err;
      }
    }
    throw new ApiError(0, 'no_tab', 'no tab could answer');
  }

  setState(e, state, detail = null) {
    e.state = state;
    e.detail = detail;
    this.tell(e, { t: 'state', pid: e.pid, tid: e.tid, state, detail });
  }

  async load(e) {
    let messages;
    for (let failures = 0; !messages; failures++) {
      if (!this.entries.has(e.key)) return;
      try {
        messages = await this.ask(e, 'history');
      } catch (err) {
        if (err instanceof ApiError && err.status === 404) return this.setState(e, 'closed', 'not_found');
        this.setState(e, failures >= 2 ? 'offline' : 'reconnecting', err.code || null);
        await new Promise((r) => setTimeout(r, backoff(failures)));
      }
    }
    if (!this.entries.has(e.key)) return;
    e.transcript = new Transcript(messages);
    e.stream = new Stream({
      base: this.base, path: `/v1/projects/${e.pid}/threads/${e.tid}`, transport: this.transport,
      heartbeatMs: this.heartbeatMs, cursor: Transcript.cursorAfter(messages),
      token: () => this.ask(e, 'token'),
      onEvent: (ev) => this.onEvent(e, ev),
      onState: (state, detail) => this.setState(e, state, detail),
    });
    this.tell(e, this.snapshot(e));
    this.schedule();
  }

  onEvent(e, ev) {
    if (ev.type === 'ready' || ev.type === 'thread.presence') e.subscribers = ev.subscribers;
    // Subscribed with no cursor (the history was empty) to a thread that
    // has messages now: they were written in between. Fetch them.
    const missed = ev.type === 'ready' && e.stream.sentCursor === null && ev.cursor;
    if (e.resync) e.resync.push(ev);
    const { resync } = e.transcript.apply(ev);
    this.tell(e, { t: 'event', pid: e.pid, tid: e.tid, event: ev });
    if (resync || missed) this.resync(e);
  }

  /** Fetches the history again and replays onto it the events that came
   * meanwhile (merging by offset makes the overlap harmless). */
  async resync(e) {
    if (e.resync) return;
    e.resync = [];
    try {
      const transcript = new Transcript(await this.ask(e, 'history'));
      for (const ev of e.resync) transcript.apply(ev);
      e.transcript = transcript;
    } catch (_) { /* keep what we have; the next gap tries again */ }
    e.resync = null;
    this.tell(e, this.snapshot(e));
  }

  /** Over HTTP/1.1 a browser opens at most six connections per host:
   * keep at most `maxStreams` streams open, those of visible tabs and of
   * the threads used last first; the others pause (they resume exactly,
   * by cursor). */
  schedule() {
    const ranked = [...this.entries.values()].filter((e) => e.stream && e.subs.size)
      .sort((a, b) => (visibleIn(b) - visibleIn(a)) || (b.lastActive - a.lastActive));
    ranked.forEach((e, i) => (i < this.maxStreams ? e.stream.resume() : e.stream.pause()));
  }
}

function visibleIn(e) {
  for (const sub of e.subs) if (sub.visible) return 1;
  return 0;
}

// -------------------------------------------------------------- client

function randomId() {
  const bytes = crypto.getRandomValues(new Uint8Array(12));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

/** A call/reply channel over a MessagePort. */
export class Rpc {
  constructor(port, methods, onMessage) {
    this.port = port;
    this.pending = new Map();
    port.onmessage = async ({ data }) => {
      if (data.t === 'reply') {
        const p = this.pending.get(data.id);
        if (!p) return;
        this.pending.delete(data.id);
        clearTimeout(p.timer);
        if (data.ok) p.resolve(data.value);
        else p.reject(new ApiError(data.error.status, data.error.code, data.error.message, data.error.retryAfter));
      } else if (data.t === 'call') {
        try {
          const value = await methods[data.method](data.args);
          port.postMessage({ t: 'reply', id: data.id, ok: true, value });
        } catch (e) {
          const error = { status: e.status ?? 0, code: e.code || 'error', message: e.message, retryAfter: e.retryAfter };
          port.postMessage({ t: 'reply', id: data.id, ok: false, error });
        }
      } else {
        onMessage(data);
      }
    };
  }

  call(method, args, timeoutMs = 10000) {
    const id = randomId();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new ApiError(0, 'timeout', `no answer to ${method}`));
      }, timeoutMs);
      this.pending.set(id, { resolve, reject, timer });
      this.port.postMessage({ t: 'call', id, method, args });
    });
  }

  post(message) { this.port.postMessage(message); }
}

function httpVersion() {
  try { return performance.getEntriesByType('navigation')[0]?.nextHopProtocol || ''; } catch (_) { return ''; }
}

/**
 * Connects this tab. Options: `base` (default: this origin),
 * `credentials()` (bearer token or null), `streamToken(pid, tid)` (async
 * `{token, expires_at}` or null; default: minted with `credentials()`
 * when it gives one), `transport` (`sse` or `ws`), `shared` (default
 * true: one SharedWorker connection per thread for all tabs),
 * `heartbeatMs` (the server's heartbeat period, for the watchdog).
 */
export function connect(options = {}) {
  return new Client(options);
}

/**
 * What a tab sees of a thread, from `client.watch`: `messages`, `state`
 * (of the connection), `detail`, `generating`, `subscribers` (the
 * server's count of connections), `tabs` (this browser's tabs on it
 * through the shared connection) and `watching` (both together: every
 * other connection counts one, this browser counts its tabs).
 */
class View {
  constructor() {
    this.transcript = new Transcript();
    this.state = 'connecting';
    this.detail = null;
    this.subscribers = 0;
    this.tabs = 1;
    this.listeners = new Set();
  }

  get messages() { return this.transcript.messages; }
  get generating() { return this.transcript.generating; }
  get watching() {
    return this.state === 'live' ? Math.max(this.tabs, this.subscribers - 1 + this.tabs) : this.tabs;
  }
}

export class Client {
  constructor({ base = '', credentials = () => null, streamToken = null, transport = 'sse', shared = true,
    heartbeatMs = 15000, workerUrl = new URL('./convo-worker.js', import.meta.url) } = {}) {
    this.api = new Api({ base, credentials });
    this.streamToken = streamToken || ((pid, tid) => (credentials() ? this.api.streamToken(pid, tid) : null));
    this.config = { base, transport, heartbeatMs };
    this.views = new Map();
    this.tab = randomId();
    this.methods = {
      history: ({ pid, tid }) => this.api.history(pid, tid),
      token: ({ pid, tid }) => this.streamToken(pid, tid),
    };
    this.mode = 'local';
    if (shared && typeof SharedWorker === 'function') this.share(workerUrl);
    else this.local();
    globalThis.addEventListener?.('visibilitychange', () => this.visibility());
  }

  /** This tab's side of the shared worker. */
  share(workerUrl) {
    const { base, transport, heartbeatMs } = this.config;
    let worker;
    try {
      worker = new SharedWorker(workerUrl, { type: 'module', name: `convo ${transport} ${heartbeatMs} ${base}` });
    } catch (_) {
      return this.local();
    }
    this.mode = 'shared';
    this.rpc = new Rpc(worker.port, this.methods, (m) => this.receive(m));
    worker.addEventListener('error', () => this.local());
    worker.port.start();
    const maxStreams = /^h[23]/.test(httpVersion()) ? Infinity : 4;
    const hello = () => this.rpc?.call('hello', { tab: this.tab, config: { ...this.config, maxStreams },
      visible: this.isVisible() }, 5000).catch(() => this.local());
    // The worker learns that this tab is gone from a Web Lock the tab
    // holds for its life (taken before the worker hears of the tab), and
    // sooner from `bye` when the page is hidden for good.
    const locks = globalThis.navigator?.locks;
    if (locks) locks.request(`convo-tab-${this.tab}`, () => { hello(); return new Promise(() => {}); });
    else hello();
    globalThis.addEventListener?.('pagehide', (e) => { if (!e.persisted) this.rpc?.post({ t: 'bye' }); });
  }

  /** No shared worker: this tab holds its own connections. */
  local() {
    if (this.hub && !this.rpc) return;
    if (this.rpc) this.rpc.post({ t: 'bye' });
    this.rpc = null;
    this.mode = 'local';
    this.hub = new Hub(this.config);
    const clone = (m) => (typeof structuredClone === 'function' ? structuredClone(m) : JSON.parse(JSON.stringify(m)));
    this.sub = {
      visible: this.isVisible(),
      post: (m) => this.receive(clone(m)),
      call: (method, args) => this.methods[method](args),
    };
    for (const key of this.views.keys()) {
      const [pid, tid] = key.split('/');
      this.hub.watch(this.sub, pid, tid);
    }
  }

  isVisible() { return globalThis.document ? document.visibilityState !== 'hidden' : true; }

  visibility() {
    const visible = this.isVisible();
    if (this.rpc) this.rpc.post({ t: 'visible', visible });
    else if (this.sub) { this.sub.visible = visible; this.hub.visible(this.sub); }
  }

  /** Watches a thread: `listener(view, change)` on every change, where
   * `change` is `{t: 'snapshot' | 'event' | 'state' | 'tabs', event?}`.
   * Returns `{view, close()}`. */
  watch(pid, tid, listener) {
    const key = `${pid}/${tid}`;
    let view = this.views.get(key);
    if (!view) {
      view = new View();
      this.views.set(key, view);
      if (this.rpc) this.rpc.post({ t: 'watch', pid, tid });
      else this.hub.watch(this.sub, pid, tid);
    }
    view.listeners.add(listener);
    return {
      view,
      close: () => {
        view.listeners.delete(listener);
        if (view.listeners.size || this.views.get(key) !== view) return;
        this.views.delete(key);
        if (this.rpc) this.rpc.post({ t: 'unwatch', pid, tid });
        else this.hub.unwatch(this.sub, pid, tid);
      },
    };
  }

  receive(m) {
    if (m.t === 'log') return console[m.level === 'error' ? 'error' : 'warn']('convo worker:', m.message);
    const view = this.views.get(`${m.pid}/${m.tid}`);
    if (!view) return;
    if (m.t === 'snapshot') {
      view.transcript = new Transcript(m.messages);
      Object.assign(view, { state: m.state, detail: m.detail, subscribers: m.subscribers, tabs: m.tabs });
    } else if (m.t === 'event') {
      view.transcript.apply(m.event);
      if (m.event.type === 'ready' || m.event.type === 'thread.presence') view.subscribers = m.event.subscribers;
    } else if (m.t === 'state') {
      Object.assign(view, { state: m.state, detail: m.detail });
    } else if (m.t === 'tabs') {
      view.tabs = m.tabs;
    }
    for (const listener of view.listeners) listener(view, m);
  }

  /** Asks a question: REST (`via: 'rest'`, default: answers the 202 body)
   * or a WebSocket `send` frame on the thread's stream (`via: 'ws'`, with
   * `transport: 'ws'`: answers whether it was sent; refusals arrive as
   * `error` events). */
  async send(pid, tid, content, { via = 'rest', ...options } = {}) {
    if (via === 'ws') return this.frame(pid, tid, { type: 'send', content });
    return this.api.send(pid, tid, content, options);
  }

  /** Stops the running answer, over REST or the WebSocket. */
  async cancel(pid, tid, { via = 'rest' } = {}) {
    if (via === 'ws') return this.frame(pid, tid, { type: 'cancel' });
    return this.api.cancel(pid, tid);
  }

  frame(pid, tid, frame) {
    if (this.rpc) return this.rpc.call('frame', { pid, tid, frame });
    return this.hub.frame(pid, tid, frame);
  }
}
