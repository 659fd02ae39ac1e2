// Test harness for the browser suite: the real convo binary, a TCP proxy
// in front of it (so a test can cut or freeze connections, or restart the
// service behind a stable address), a fake Anthropic upstream, and
// Debian's chromium driven by playwright-core. The binary and the fake
// upstream are the AI SDK suite's too (../support/service.js).

import { execFileSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { ConvoProcess, FakeAnthropic, eventually, sleep } from '../support/service.js';

export { FakeAnthropic, eventually, sleep };
const here = path.dirname(fileURLToPath(import.meta.url));
export const SHOTS = path.join(here, 'screenshots');
export const ADMIN = 'admin-token-for-browser-tests-0123456789';

// -------------------------------------------------------------- service

/**
 * The service, started from the binary with `args`, behind a proxy whose
 * address (`origin`) stays the same across restarts.
 */
export class Service {
  static async start({ args = [], env = {}, tls = null } = {}) {
    const s = new Service();
    s.dir = mkdtempSync(path.join(os.tmpdir(), 'convo-browser-'));
    s.args = args;
    s.env = env;
    s.tls = tls;
    s.proxy = await Proxy.start();
    s.origin = `${tls ? 'https' : 'http'}://127.0.0.1:${s.proxy.port}`;
    await s.boot();
    return s;
  }

  async boot() {
    const tlsArgs = this.tls ? ['--tls-cert', this.tls.cert, '--tls-key', this.tls.key] : [];
    this.convo = await ConvoProcess.start({ dir: this.dir, args: [...tlsArgs, ...this.args], env: this.env });
    this.backend = `${this.tls ? 'https' : 'http'}://127.0.0.1:${this.convo.port}`;
    this.proxy.target = this.convo.port;
  }

  /** Stops the process with `signal` and starts it again on the same data. */
  async restart(signal = 'SIGTERM', pauseMs = 300) {
    await this.stop(signal);
    await sleep(pauseMs);
    await this.boot();
  }

  async stop(signal = 'SIGTERM') {
    await this.convo?.stop(signal);
  }

  async close() {
    // CONVO_LOG_DIR keeps each service's log there, for a failure's story.
    if (process.env.CONVO_LOG_DIR && this.convo?.log) {
      writeFileSync(path.join(process.env.CONVO_LOG_DIR, `convo-${this.proxy.port}.log`), this.convo.log);
    }
    await this.stop('SIGKILL');
    this.proxy.close();
    rmSync(this.dir, { recursive: true, force: true });
  }

  /** A REST call straight to the service (not through the proxy); with
   * TLS, trusting its certificate. */
  async api(method, urlPath, body, token = null) {
    const headers = { 'content-type': 'application/json' };
    if (token) headers.authorization = `Bearer ${token}`;
    const payload = body === undefined || body === null ? undefined : JSON.stringify(body);
    const { status, text } = await new Promise((resolve, reject) => {
      const transport = this.tls ? https : http;
      const req = transport.request(this.backend + urlPath, { method, headers, ca: this.tls?.pem }, (res) => {
        let data = '';
        res.setEncoding('utf8');
        res.on('data', (c) => { data += c; });
        res.on('end', () => resolve({ status: res.statusCode, text: data }));
      });
      req.on('error', reject);
      req.end(payload);
    });
    if (status >= 300) throw new Error(`${method} ${urlPath}: ${status} ${text}`);
    return text ? JSON.parse(text) : null;
  }

  async project(token = null) { return this.api('POST', '/v1/projects', { name: 'browser' }, token); }

  async thread(pid, fields = {}, token = null) {
    return this.api('POST', `/v1/projects/${pid}/threads`, fields, token);
  }

  async history(pid, tid, token = null) {
    return (await this.api('GET', `/v1/projects/${pid}/threads/${tid}/messages?limit=200`, null, token)).data;
  }

  /** Waits until no message of the thread is streaming; its history. */
  async settled(pid, tid, token = null) {
    return eventually(async () => {
      const messages = await this.history(pid, tid, token);
      return messages.length && messages.every((m) => m.status !== 'streaming') ? messages : null;
    }, 30000);
  }
}

// ---------------------------------------------------------------- proxy

/** A TCP proxy to `target` (a port): `cut()` drops every connection,
 * `freeze()` stops moving bytes on the open ones without closing them;
 * `requests` holds the first request line of every connection (what a
 * test counts connections by). */
export class Proxy {
  static async start() {
    const p = new Proxy();
    p.pairs = new Set();
    p.requests = [];
    p.server = net.createServer((client) => p.accept(client));
    await new Promise((resolve) => p.server.listen(0, '127.0.0.1', resolve));
    p.port = p.server.address().port;
    return p;
  }

  accept(client) {
    const upstream = net.connect(this.target, '127.0.0.1');
    const pair = { client, upstream };
    this.pairs.add(pair);
    client.once('data', (chunk) => this.requests.push(chunk.toString('latin1').split('\r\n')[0]));
    const end = () => { this.pairs.delete(pair); client.destroy(); upstream.destroy(); };
    client.on('error', end).on('close', end);
    upstream.on('error', end).on('close', end);
    client.pipe(upstream);
    upstream.pipe(client);
  }

  cut() {
    for (const { client, upstream } of this.pairs) { client.destroy(); upstream.destroy(); }
    this.pairs.clear();
  }

  freeze() {
    for (const pair of this.pairs) {
      pair.client.unpipe(pair.upstream);
      pair.upstream.unpipe(pair.client);
      pair.client.pause();
      pair.upstream.pause();
      this.pairs.delete(pair);
      (this.frozen ||= []).push(pair);
    }
  }

  get open() { return this.pairs.size; }

  close() {
    this.cut();
    for (const { client, upstream } of this.frozen || []) { client.destroy(); upstream.destroy(); }
    this.server.close();
  }
}

// -------------------------------------------------------------- browser

export const CHROMIUM_FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];

export async function launch(extraFlags = []) {
  mkdirSync(SHOTS, { recursive: true });
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: [...CHROMIUM_FLAGS, ...extraFlags],
  });
}

/**
 * A browser context for one test that records what a test must check on
 * every page: requests to any other origin, and console errors.
 */
export async function context(browser, origin, options = {}) {
  const ctx = await browser.newContext({ ignoreHTTPSErrors: true, ...options });
  const record = { foreign: [], errors: [] };
  ctx.on('request', (r) => { if (!r.url().startsWith(origin) && !r.url().startsWith('data:')) record.foreign.push(r.url()); });
  ctx.on('page', (page) => watchPage(page, record));
  ctx.record = record;
  return ctx;
}

function watchPage(page, record) {
  page.on('console', (m) => { if (m.type() === 'error') record.errors.push(m.text()); });
  page.on('pageerror', (e) => record.errors.push(String(e)));
}

export async function shot(page, name) {
  await page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: false });
}

/** The `message` elements of a page: role, status, id and text. */
export async function messages(page) {
  return page.$$eval('[data-testid="message"]', (els) => els.map((el) => ({
    role: el.dataset.role, status: el.dataset.status, id: el.dataset.messageId, text: el.textContent,
  })));
}

/** Waits until the page shows the assistant message `id` with a final
 * status; its text and status. */
export async function finalMessage(page, id, timeout = 30000) {
  const sel = `[data-testid="message"][data-message-id="${id}"]:not([data-status="streaming"])`;
  const el = await page.waitForSelector(sel, { timeout });
  return { status: await el.getAttribute('data-status'), text: await el.textContent() };
}

// ---------------------------------------------------------------- misc

/** A self-signed certificate for 127.0.0.1 and localhost. */
export function selfSigned(dir) {
  const cert = path.join(dir, 'cert.pem');
  const key = path.join(dir, 'key.pem');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=localhost',
    '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost'], { stdio: 'ignore' });
  return { cert, key, pem: readFileSync(cert, 'utf8') };
}
