// Test harness for the AI SDK suite: the real convo binary (secured: an
// admin token, a project, a key), a scripted fake Anthropic upstream that
// streams thinking, text and tool_use blocks (or fails midway), and the
// AI SDK's own chat transports pointed at the service.

import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { DefaultChatTransport, WebSocketChatTransport, readUIMessageStream } from 'ai';
import WebSocket from 'ws';

const here = path.dirname(fileURLToPath(import.meta.url));
export const ROOT = path.resolve(here, '../..');
export const BINARY = process.env.CONVO_BIN || path.join(ROOT, 'target/debug/convo');
export const ADMIN = 'admin-token-for-aisdk-tests-0123456789';

// -------------------------------------------------------- fake upstream

const event = (name, data) => `event: ${name}\ndata: ${JSON.stringify({ type: name, ...data })}\n\n`;

/**
 * A fake Anthropic Messages API. Each request takes the next script from
 * `queue` (or `fallback`): `{ blocks, intervalMs, failAfter }`, where each
 * block is `{ kind: 'thinking' | 'text' | 'tool_use', pieces, id?, name? }`
 * streamed one piece per `content_block_delta` in the real API's order;
 * with `failAfter: n`, an `overloaded_error` comes after the n-th piece.
 */
export class FakeAnthropic {
  static async start() {
    const f = new FakeAnthropic();
    f.queue = [];
    // Answers whose connection the service closed before their end.
    f.cutShort = 0;
    f.fallback = { blocks: [{ kind: 'text', pieces: ['Hello', ' from', ' the', ' fake', ' upstream.'] }] };
    f.server = http.createServer((req, res) => f.answer(req, res));
    await new Promise((resolve) => f.server.listen(0, '127.0.0.1', resolve));
    f.url = `http://127.0.0.1:${f.server.address().port}`;
    return f;
  }

  async answer(req, res) {
    for await (const _ of req); // the request body is not needed
    const script = this.queue.shift() || this.fallback;
    const intervalMs = script.intervalMs ?? 10;
    res.on('close', () => { if (!res.writableFinished) this.cutShort += 1; });
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
    const write = (s) => new Promise((resolve) => res.write(s, resolve));
    let sent = 0;
    await write(event('message_start', { message: { id: 'msg_fake', type: 'message', role: 'assistant', content: [],
      model: 'claude-fake', stop_reason: null, stop_sequence: null, usage: { input_tokens: 12, output_tokens: 1 } } }));
    for (const [index, b] of script.blocks.entries()) {
      const start = b.kind === 'tool_use' ? { type: 'tool_use', id: b.id, name: b.name, input: {} }
        : b.kind === 'thinking' ? { type: 'thinking', thinking: '' } : { type: 'text', text: '' };
      await write(event('content_block_start', { index, content_block: start }));
      for (const piece of b.pieces) {
        await sleep(intervalMs);
        if (res.destroyed) return;
        const delta = b.kind === 'tool_use' ? { type: 'input_json_delta', partial_json: piece }
          : b.kind === 'thinking' ? { type: 'thinking_delta', thinking: piece } : { type: 'text_delta', text: piece };
        await write(event('content_block_delta', { index, delta }));
        sent += 1;
        if (script.failAfter === sent) {
          await write(event('error', { error: { type: 'overloaded_error', message: 'Overloaded' } }));
          res.end();
          return;
        }
      }
      await write(event('content_block_stop', { index }));
    }
    const stop = script.blocks.some((b) => b.kind === 'tool_use') ? 'tool_use' : 'end_turn';
    await write(event('message_delta', { delta: { stop_reason: stop, stop_sequence: null }, usage: { output_tokens: sent } }));
    await write(event('message_stop', {}));
    res.end();
  }

  close() { this.server.closeAllConnections?.(); this.server.close(); }
}

// -------------------------------------------------------------- service

/** The service from the binary, secured, against `upstream`; a project
 * and a key of it. */
export class Service {
  static async start(upstream) {
    const s = new Service();
    s.dir = mkdtempSync(path.join(os.tmpdir(), 'convo-aisdk-'));
    const args = ['--bind', '127.0.0.1:0', '--database-url', `sqlite://${s.dir}/convo.db?mode=rwc`,
      '--log-format', 'json', '--flush-interval-ms', '20', '--heartbeat-ms', '500',
      '--provider', 'anthropic', '--anthropic-base-url', upstream.url,
      '--upstream-retry-min-ms', '10', '--upstream-retry-max-ms', '40'];
    s.process = spawn(BINARY, args, {
      env: { ...process.env, RUST_LOG: 'info', ADMIN_TOKEN: ADMIN, ANTHROPIC_API_KEY: 'sk-fake' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    s.log = '';
    const port = await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`the service did not start:\n${s.log}`)), 20000);
      const read = (chunk) => {
        s.log += chunk;
        const m = s.log.match(/"port":(\d+)/);
        if (m) { clearTimeout(timer); resolve(Number(m[1])); }
      };
      s.process.stdout.on('data', read);
      s.process.stderr.on('data', read);
      s.process.on('exit', (code) => reject(new Error(`the service exited (${code}):\n${s.log}`)));
    });
    s.base = `http://127.0.0.1:${port}`;
    s.pid = (await s.api('POST', '/v1/projects', { name: 'aisdk' }, ADMIN)).id;
    s.key = (await s.api('POST', `/admin/projects/${s.pid}/keys`, null, ADMIN)).key;
    return s;
  }

  async close() {
    const exited = new Promise((resolve) => this.process.once('exit', resolve));
    this.process.kill('SIGKILL');
    await exited;
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

export function sleep(ms) { return new Promise((resolve) => setTimeout(resolve, ms)); }

export async function eventually(check, timeoutMs = 15000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v) return v;
    if (Date.now() > deadline) throw new Error('condition not reached in time');
    await sleep(25);
  }
}
