// hub.js: one stream and one transcript per watched thread, shared by any
// number of tabs (part of /client/convo.js); by default every thread of a
// project is a channel of one project socket (project-socket.js).
//
// This is what keeps "one stream per thread per browser": the SharedWorker
// (convo-worker.js) runs one `Hub` for every tab of the origin, and a tab
// without SharedWorker runs its own. It holds no credentials; it asks its
// subscribers for the history and for stream tokens.

import { ApiError } from './api.js';
import { ProjectSocket } from './project-socket.js';
import { Stream, backoff } from './stream.js';
import { Transcript } from './transcript.js';

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
  constructor({ base = '', transport = 'project', heartbeatMs = 15000, maxStreams = Infinity } = {}) {
    // One socket carries every thread of a project: nothing to ration.
    if (transport === 'project') maxStreams = Infinity;
    Object.assign(this, { base, transport, heartbeatMs, maxStreams });
    this.entries = new Map();
    this.sockets = new Map();
  }

  /** The project socket of `pid` (transport `project`). */
  socketOf(pid) {
    let socket = this.sockets.get(pid);
    if (!socket) {
      socket = new ProjectSocket({ base: this.base, pid, heartbeatMs: this.heartbeatMs });
      this.sockets.set(pid, socket);
    }
    return socket;
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
    const follow = {
      cursor: Transcript.cursorAfter(messages),
      token: () => this.ask(e, 'token'),
      onEvent: (ev) => this.onEvent(e, ev),
      onState: (state, detail) => this.setState(e, state, detail),
    };
    e.stream = this.transport === 'project'
      ? this.socketOf(e.pid).channel(e.tid, follow)
      : new Stream({ ...follow, base: this.base, path: `/v1/projects/${e.pid}/threads/${e.tid}`,
        transport: this.transport, heartbeatMs: this.heartbeatMs });
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
