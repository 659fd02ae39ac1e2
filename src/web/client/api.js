// api.js: the REST side of the browser client (part of /client/convo.js).
//
// `Api` is the service's public HTTP API as plain methods; `ApiError` is
// the one error every other part of the client throws and tests for
// (`Stream` and `Hub` decide from its `status` whether to retry, back off
// or stop, and `Rpc` rebuilds it on the other side of a MessagePort), so
// it lives here, below everything else. `errorOf` turns a non-2xx
// response into it, for `Api` and for `Stream`'s own fetch.

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

export async function errorOf(response) {
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
 * or the admin token) or null (open mode). `streamToken`: a thread's
 * stream token sent as `?token=` instead (the service takes one only on
 * that thread's streams, `approvals` and `tool-results`). */
export class Api {
  constructor({ base = '', credentials = () => null, streamToken = null } = {}) {
    this.base = base;
    this.credentials = credentials;
    this.streamTokenQuery = streamToken ? `token=${encodeURIComponent(streamToken)}` : null;
  }

  async request(method, path, body) {
    const headers = { Accept: 'application/json' };
    const token = this.credentials();
    if (token) headers.Authorization = 'Bearer ' + token;
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    if (this.streamTokenQuery) path += (path.includes('?') ? '&' : '?') + this.streamTokenQuery;
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
  /** A page of threads, newest first; `search`: only those whose title
   * contains it (case-insensitive). */
  threads(pid, { limit = 20, cursor = null, search = '' } = {}) {
    const q = new URLSearchParams({ limit: String(limit) });
    if (cursor) q.set('cursor', cursor);
    if (search) q.set('q', search);
    return this.request('GET', `/v1/projects/${pid}/threads?${q}`);
  }
  thread(pid, tid) { return this.request('GET', `/v1/projects/${pid}/threads/${tid}`); }
  /** Changes a thread's settings (`title`: null clears it); every
   * subscriber hears `thread.updated`. */
  updateThread(pid, tid, fields) { return this.request('PATCH', `/v1/projects/${pid}/threads/${tid}`, fields); }
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
  /** Asks the newest question again: a new answer, the thread keeps the
   * earlier one (also how a failed, interrupted or cancelled one is
   * retried). */
  regenerate(pid, tid) {
    return this.request('POST', `/v1/projects/${pid}/threads/${tid}/messages`, { regenerate: true });
  }
  cancel(pid, tid) { return this.request('POST', `/v1/projects/${pid}/threads/${tid}/cancel`); }
  /** Decides a call that waits for approval (the first decision wins:
   * 409 `tool_call_resolved` for another one). */
  approve(pid, tid, toolCallId, approved, reason) {
    const body = { tool_call_id: toolCallId, approved };
    if (reason) body.reason = reason;
    return this.request('POST', `/v1/projects/${pid}/threads/${tid}/approvals`, body);
  }
  /** Answers calls run by the client: `results` is
   * `[{tool_call_id, output} | {tool_call_id, error}]`. */
  toolResults(pid, tid, results) {
    return this.request('POST', `/v1/projects/${pid}/threads/${tid}/tool-results`, { results });
  }
  streamToken(pid, tid) { return this.request('POST', `/v1/projects/${pid}/threads/${tid}/stream-token`); }

  adminStats() { return this.request('GET', '/admin/stats'); }
  adminThreads() { return this.request('GET', '/admin/threads'); }
  stopThread(tid) { return this.request('DELETE', `/admin/threads/${tid}`); }
}
