// Test harness for the AI SDK suite: the real convo binary (secured: an
// admin token, a project, a key), a scripted fake Anthropic upstream that
// streams thinking, text and tool_use blocks (or fails midway), the AI
// SDK's own chat transports pointed at the service, and its own chat
// (`AbstractChat`, what `useChat` wraps) over a plain state. The binary and the
// fake upstream are the browser suite's too (../support/service.js).

import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { AbstractChat, DefaultChatTransport, WebSocketChatTransport, readUIMessageStream } from 'ai';
import WebSocket from 'ws';
import { ConvoProcess, FakeAnthropic, eventually, sleep } from '../support/service.js';

export { FakeAnthropic, eventually, sleep };
export const ADMIN = 'admin-token-for-aisdk-tests-0123456789';

// -------------------------------------------------------------- service

/** The service from the binary, secured, against `upstream`; a project
 * and a key of it. */
export class Service {
  static async start(upstream) {
    const s = new Service();
    s.dir = mkdtempSync(path.join(os.tmpdir(), 'convo-aisdk-'));
    s.convo = await ConvoProcess.start({
      dir: s.dir,
      args: ['--heartbeat-ms', '500', '--provider', 'anthropic', '--anthropic-base-url', upstream.url,
        '--upstream-retry-min-ms', '10', '--upstream-retry-max-ms', '40'],
      env: { ADMIN_TOKEN: ADMIN, ANTHROPIC_API_KEY: 'sk-fake' },
    });
    s.base = `http://127.0.0.1:${s.convo.port}`;
    s.pid = (await s.api('POST', '/v1/projects', { name: 'aisdk' }, ADMIN)).id;
    s.key = (await s.api('POST', `/admin/projects/${s.pid}/keys`, null, ADMIN)).key;
    return s;
  }

  async close() {
    await this.convo.stop('SIGKILL');
    rmSync(this.dir, { recursive: true, force: true });
  }

  async api(method, urlPath, body, token = this.key) {
    const headers = { authorization: `Bearer ${token}` };
    if (body) headers['content-type'] = 'application/json';
    const r = await fetch(this.base + urlPath, { method, headers, body: body ? JSON.stringify(body) : undefined });
    const text = await r.text();
    if (r.status >= 300) throw new Error(`${method} ${urlPath}: ${r.status} ${text}`);
    return text ? JSON.parse(text) : null;
  }

  /** The thread a chat's first turn made, found by its title (the
   * chat's first question). */
  async threadTitled(title) {
    return eventually(async () => {
      const page = await this.api('GET', `/v1/projects/${this.pid}/threads?limit=100`);
      return page.data.find((t) => t.title === title);
    });
  }

  /** A thread offering `tools` (a chat whose id is the thread's). */
  async thread(tools) {
    return (await this.api('POST', `/v1/projects/${this.pid}/threads`, { tools })).id;
  }

  async history(tid) {
    return (await this.api('GET', `/v1/projects/${this.pid}/threads/${tid}/messages?limit=200`)).data;
  }

  /** The thread's last message once it no longer streams. */
  async settled(tid) {
    return eventually(async () => {
      const last = (await this.history(tid)).at(-1);
      return last && last.role === 'assistant' && last.status !== 'streaming' ? last : null;
    });
  }

  /** The AI SDK's transport `kind` ('http' or 'ws') for this project,
   * as an app would build it; `ws` is node 20's WebSocket. */
  transport(kind) {
    const authorization = `Bearer ${this.key}`;
    if (kind === 'http') {
      return new DefaultChatTransport({ api: `${this.base}/v1/projects/${this.pid}/chat`, headers: { authorization } });
    }
    // Node's `ws` can send handshake headers; a browser would pass a
    // stream token in `params` instead.
    class Authorized extends WebSocket {
      constructor(url, protocols) { super(url, protocols, { headers: { authorization } }); }
    }
    return new WebSocketChatTransport({ url: `${this.base}/v1/projects/${this.pid}/chat/ws`, webSocket: Authorized });
  }
}

// --------------------------------------------------------------- turns

/** A user UI message, as `useChat` makes it. */
export function userMessage(text) {
  return { id: `u-${Math.random().toString(36).slice(2)}`, role: 'user', parts: [{ type: 'text', text }] };
}

/** Sends a first turn on `chatId` through `transport`: its chunk stream. */
export function send(transport, chatId, text, abortSignal = undefined) {
  return transport.sendMessages({
    chatId, messages: [userMessage(text)], trigger: 'submit-message', messageId: undefined, abortSignal,
  });
}

/**
 * Reads a chunk stream with the SDK's `readUIMessageStream`: the last
 * message it rebuilt, the errors it reported, and how many message states
 * it went through. `until(message)` may stop reading early (the stream is
 * then left unread, as a closed tab leaves it).
 */
export async function rebuild(stream, until = () => false) {
  const errors = [];
  let message;
  let states = 0;
  for await (const m of readUIMessageStream({ stream, onError: (e) => errors.push(e) })) {
    message = m;
    states += 1;
    if (until(m)) break;
  }
  return { message, errors, states };
}

/** The text of a UI message's parts of `type`, joined. */
export function textOf(message, type = 'text') {
  return message.parts.filter((p) => p.type === type).map((p) => p.text).join('');
}

// ---------------------------------------------------------------- chats

/** What `useChat` keeps a chat's state in, outside React: plain arrays,
 * each change a new array, as the SDK's own states do. */
class ChatState {
  constructor(messages = []) {
    this.messages = messages;
    this.status = 'ready';
    this.error = undefined;
  }

  pushMessage(message) { this.messages = this.messages.concat(message); }

  popMessage() { this.messages = this.messages.slice(0, -1); }

  replaceMessage(index, message) {
    this.messages = [...this.messages.slice(0, index), this.snapshot(message), ...this.messages.slice(index + 1)];
  }

  snapshot(thing) { return structuredClone(thing); }
}

/** The SDK's own chat (`AbstractChat`, which `useChat` wraps): `init` as
 * `useChat` takes it (`id`, `transport`, `onToolCall`,
 * `sendAutomaticallyWhen`, …). */
export class Chat extends AbstractChat {
  constructor({ messages, ...init }) {
    super({ ...init, state: new ChatState(messages) });
  }
}
