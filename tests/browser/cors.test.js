// A page of another allowed origin (here: another port) calling the API
// from the browser, as an application's own front end does: the browser
// lets it read what a client needs of an answer, `Retry-After` on a 429
// among it, so it can back off; a page of an origin not allowed gets no
// answer at all.

import assert from 'node:assert/strict';
import http from 'node:http';
import { after, before, test } from 'node:test';

import { Service, context, launch } from './harness.js';

let browser;
let app;
let stranger;
let service;

/** A page server of its own origin: one blank HTML page. */
async function pageServer() {
  const server = http.createServer((req, res) => {
    res.writeHead(200, { 'content-type': 'text/html' });
    res.end('<!doctype html><title>app</title><p>app</p>');
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  server.origin = `http://127.0.0.1:${server.address().port}`;
  return server;
}

before(async () => {
  browser = await launch();
  app = await pageServer();
  stranger = await pageServer();
  service = await Service.start({ args: ['--allowed-origins', app.origin, '--posts-per-minute', '1', '--sim-chunks', '2'] });
});

after(async () => {
  await browser?.close();
  await service?.close();
  app?.close();
  stranger?.close();
});

/** In a page of `origin`: a project, then a question on each of two
 * new threads; what
 * the browser lets the page see of the second answer. */
async function askTwiceFrom(origin) {
  const ctx = await context(browser, origin);
  try {
    const page = await ctx.newPage();
    await page.goto(`${origin}/`);
    return await page.evaluate(async (api) => {
      const json = { 'content-type': 'application/json' };
      try {
        const project = await (await fetch(`${api}/v1/projects`, { method: 'POST', headers: json,
          body: JSON.stringify({ name: 'cors' }) })).json();
        const threads = `${api}/v1/projects/${project.id}/threads`;
        // Two threads: the second question is refused for the rate alone.
        const thread = async () => (await fetch(threads, { method: 'POST', headers: json, body: '{}' })).json();
        const ask = async () => fetch(`${threads}/${(await thread()).id}/messages`, { method: 'POST', headers: json,
          body: JSON.stringify({ content: 'hi' }) });
        const first = await ask();
        const second = await ask();
        return { first: first.status, second: second.status, retryAfter: second.headers.get('retry-after'),
          code: (await second.json()).error?.code };
      } catch (e) {
        return { error: String(e) };
      }
    }, service.origin);
  } finally {
    await ctx.close();
  }
}

test('a page of an allowed origin reads Retry-After on a 429 and can back off', async () => {
  const seen = await askTwiceFrom(app.origin);
  assert.equal(seen.first, 202, JSON.stringify(seen));
  assert.equal(seen.second, 429);
  assert.equal(seen.code, 'rate_limited');
  assert.ok(Number(seen.retryAfter) >= 1, `Retry-After readable by the page: ${seen.retryAfter}`);
});

test('a page of another origin gets nothing', async () => {
  const seen = await askTwiceFrom(stranger.origin);
  assert.match(seen.error ?? '', /Failed to fetch/);
});
