// What the node suites (tests/aisdk, tests/browser) share: the real convo
// binary started as a child process, a scripted fake Anthropic upstream,
// and polling helpers. Node built-ins only, so a suite importing it needs
// nothing from npm for it (the aisdk suite has no playwright) and each
// suite's `npm ci` stays its own.

import { spawn } from 'node:child_process';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
export const ROOT = path.resolve(here, '../..');
export const BINARY = process.env.CONVO_BIN || path.join(ROOT, 'target/debug/convo');

// -------------------------------------------------------------- binary

/**
 * One run of the binary on a SQLite database in `dir`, bound to a free
 * port of 127.0.0.1, with `args` after the common ones and `env` over
 * this process's. `port` is read from the JSON log line that announces
 * it, so a test never guesses a port; `log` is everything it printed.
 */
export class ConvoProcess {
  static async start({ dir, args = [], env = {} }) {
    const c = new ConvoProcess();
    const all = ['--bind', '127.0.0.1:0', '--database-url', `sqlite://${dir}/convo.db?mode=rwc`,
      '--log-format', 'json', '--flush-interval-ms', '20', ...args];
    c.process = spawn(BINARY, all, {
      env: { ...process.env, RUST_LOG: 'info', ...env }, stdio: ['ignore', 'pipe', 'pipe'],
    });
    c.log = '';
    c.port = await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`the service did not start:\n${c.log}`)), 20000);
      const read = (chunk) => {
        c.log += chunk;
        const m = c.log.match(/"port":(\d+)/);
        if (m) { clearTimeout(timer); resolve(Number(m[1])); }
      };
      c.process.stdout.on('data', read);
      c.process.stderr.on('data', read);
      c.process.on('exit', (code) => reject(new Error(`the service exited (${code}):\n${c.log}`)));
    });
    return c;
  }

  /** Stops it with `signal` and waits for the exit (at once if it has
   * already exited). */
  async stop(signal = 'SIGTERM') {
    const p = this.process;
    if (p.exitCode !== null || p.signalCode) return;
    const exited = new Promise((resolve) => p.once('exit', resolve));
    p.kill(signal);
    await exited;
  }
}

// ------------------------------------------------------- fake upstream

const sse = (name, data) => `event: ${name}\ndata: ${JSON.stringify({ type: name, ...data })}\n\n`;

/**
 * A fake Anthropic Messages API (POST /v1/messages, `stream: true`), with
 * the real API's event sequence: `message_start`, per block
 * `content_block_start`, a `ping`, one `content_block_delta` per piece
 * (`intervalMs` apart), a `signature_delta` closing a thinking block,
 * `content_block_stop`, then `message_delta` and `message_stop`.
 *
 * Each request takes the next script from `queue`, or else the one given
 * to `start`: `{blocks, intervalMs?, failAfter?}`, where a block is
 * `{kind: 'thinking' | 'text' | 'tool_use', pieces, id?, name?}`; with
 * `failAfter: n` an error event follows the n-th piece: `failWith`'s type,
 * `overloaded_error` by default (a fault of the provider's: the service
 * continues the answer, asking the next script), or one such as
 * `invalid_request_error` that fails the answer for good. It keeps
 * each request's body (`requests`) and counts the answers whose
 * connection the service closed before their end (`cutShort`).
 */
export class FakeAnthropic {
  static async start({ blocks = [{ kind: 'text', pieces: ['Hello', ' from', ' the', ' fake', ' upstream.'] }],
    intervalMs = 10 } = {}) {
    const f = new FakeAnthropic();
    f.fallback = { blocks, intervalMs };
    f.queue = [];
    f.requests = [];
    f.cutShort = 0;
    f.server = http.createServer((req, res) => f.answer(req, res));
    await new Promise((resolve) => f.server.listen(0, '127.0.0.1', resolve));
    f.url = `http://127.0.0.1:${f.server.address().port}`;
    return f;
  }

  async answer(req, res) {
    let body = '';
    for await (const chunk of req) body += chunk;
    this.requests.push(JSON.parse(body || '{}'));
    const script = this.queue.shift() || this.fallback;
    const intervalMs = script.intervalMs ?? this.fallback.intervalMs;
    res.on('close', () => { if (!res.writableFinished) this.cutShort += 1; });
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
    const write = (s) => new Promise((resolve) => res.write(s, resolve));
    let sent = 0;
    await write(sse('message_start', { message: { id: 'msg_fake', type: 'message', role: 'assistant', content: [],
      model: 'claude-fake', stop_reason: null, stop_sequence: null, usage: { input_tokens: 12, output_tokens: 1 } } }));
    for (const [index, b] of script.blocks.entries()) {
      const start = b.kind === 'tool_use' ? { type: 'tool_use', id: b.id, name: b.name, input: {} }
        : b.kind === 'thinking' ? { type: 'thinking', thinking: '' } : { type: 'text', text: '' };
      await write(sse('content_block_start', { index, content_block: start }));
      await write('event: ping\ndata: {"type": "ping"}\n\n');
      for (const piece of b.pieces) {
        await sleep(intervalMs);
        // The service hung up (a cancel): stop writing, as the API does.
        if (res.destroyed) return;
        const delta = b.kind === 'tool_use' ? { type: 'input_json_delta', partial_json: piece }
          : b.kind === 'thinking' ? { type: 'thinking_delta', thinking: piece } : { type: 'text_delta', text: piece };
        await write(sse('content_block_delta', { index, delta }));
        sent += 1;
        if (script.failAfter === sent) {
          const type = script.failWith ?? 'overloaded_error';
          await write(sse('error', { error: { type, message: type === 'overloaded_error' ? 'Overloaded' : 'Refused' } }));
          res.end();
          return;
        }
      }
      if (b.kind === 'thinking') {
        const delta = { type: 'signature_delta', signature: 'c2lnbmF0dXJl' };
        await write(sse('content_block_delta', { index, delta }));
      }
      await write(sse('content_block_stop', { index }));
    }
    const stop = script.blocks.some((b) => b.kind === 'tool_use') ? 'tool_use' : 'end_turn';
    const usage = { output_tokens: sent };
    await write(sse('message_delta', { delta: { stop_reason: stop, stop_sequence: null }, usage }));
    await write(sse('message_stop', {}));
    res.end();
  }

  close() { this.server.closeAllConnections?.(); this.server.close(); }
}

// ---------------------------------------------------------------- misc

export function sleep(ms) { return new Promise((resolve) => setTimeout(resolve, ms)); }

/** `check()`'s first truthy answer, asked every 25 ms; throws after
 * `timeoutMs`. */
export async function eventually(check, timeoutMs = 15000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v) return v;
    if (Date.now() > deadline) throw new Error('condition not reached in time');
    await sleep(25);
  }
}
