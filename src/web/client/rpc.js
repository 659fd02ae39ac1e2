// rpc.js: a call/reply channel over a MessagePort (part of
// /client/convo.js).
//
// Tabs and the SharedWorker speak through it both ways: a tab calls the
// worker (`hello`, `frame`), the worker calls a tab back for what only a
// tab may do (`history`, `token`: the tab holds the credentials). An
// `ApiError` crosses the port as plain fields and is rebuilt on the other
// side, so `Hub` and `Stream` can still tell a 404 from a network error.

import { ApiError } from './api.js';

/** A random hex id: a call's id here, and a tab's id in `Client`. */
export function randomId() {
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
