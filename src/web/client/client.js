// client.js: a tab's side of the browser client, `connect()` and `Client`
// (part of /client/convo.js).
//
// A `Client` gives the page views of threads (`watch`) and the REST calls
// (`send`, `cancel`, `approve`, `toolResults`, `api`). It talks to the
// SharedWorker (convo-worker.js, resolved next to this file) when the
// browser has one, and falls back to a `Hub` of its own in this tab when
// it has not or the worker fails; either way each view is fed a snapshot,
// then events.

import { Api } from './api.js';
import { Hub } from './hub.js';
import { Rpc, randomId } from './rpc.js';
import { Transcript } from './transcript.js';

function httpVersion() {
  try { return performance.getEntriesByType('navigation')[0]?.nextHopProtocol || ''; } catch (_) { return ''; }
}

/**
 * Connects this tab. Options: `base` (default: this origin),
 * `credentials()` (bearer token or null), `streamToken(pid, tid)` (async
 * `{token, expires_at}` or null; default: minted with `credentials()`
 * when it gives one), `transport` (`project`, the default: one WebSocket
 * for every thread of a project; or one stream per thread, `sse` or `ws`), `shared` (default
 * true: one SharedWorker connection per thread for all tabs),
 * `heartbeatMs` (the server's heartbeat period, for the watchdog).
 */
export function connect(options = {}) {
  return new Client(options);
}

/**
 * What a tab sees of a thread, from `client.watch`: `messages`, `state`
 * (of the connection), `detail`, `generating`, `awaiting` (an answer
 * waits for tool results or approvals), `subscribers` (the
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
  get awaiting() { return this.transcript.awaiting; }
  get watching() {
    return this.state === 'live' ? Math.max(this.tabs, this.subscribers - 1 + this.tabs) : this.tabs;
  }
}

export class Client {
  constructor({ base = '', credentials = () => null, streamToken = null, transport = 'project', shared = true,
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
   * `transport: 'ws'` or `'project'`: answers whether it was sent; refusals arrive as
   * `error` events). */
  async send(pid, tid, content, { via = 'rest', ...options } = {}) {
    if (via === 'ws') return this.frame(pid, tid, { type: 'send', content });
    return this.api.send(pid, tid, content, options);
  }

  /** Decides a tool call that waits for a person (`approved`, and an
   * optional `reason`): the first decision wins, from any tab or node
   * (409 `tool_call_resolved` for another one, 200 for the same again). */
  async approve(pid, tid, toolCallId, approved, reason) {
    return (await this.answering(pid, tid)).approve(pid, tid, toolCallId, approved, reason);
  }

  /** Answers client-run tool calls: `[{tool_call_id, output} |
   * {tool_call_id, error}]`, with the same rules as `approve`. */
  async toolResults(pid, tid, results) {
    return (await this.answering(pid, tid)).toolResults(pid, tid, results);
  }

  /** The API to answer a thread's calls with: this tab's credentials, or
   * when it holds none, a stream token of the thread (accepted on those
   * routes, as on its streams). */
  async answering(pid, tid) {
    if (this.api.credentials()) return this.api;
    const minted = await this.streamToken(pid, tid);
    return minted ? new Api({ base: this.config.base, streamToken: minted.token }) : this.api;
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
