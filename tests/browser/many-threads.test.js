// Many tabs on many threads, over plain HTTP/1.1 where Chromium opens at
// most six connections per host: every tab of the browser shares one
// project socket (GET /v1/projects/{pid}/ws) for all the threads it
// watches, so twenty tabs on twenty threads, all asking at once, all
// stream their own answer to the end, and a request still gets through
// while they do. (One stream per thread starved the tabs past the
// fourth: they showed "Waiting for a connection…" and never came back.)

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { FakeAnthropic, Service, context, launch } from './harness.js';

const TABS = 20;

let browser;
let upstream;
let service;

before(async () => {
  browser = await launch();
  upstream = await FakeAnthropic.start({
    intervalMs: 40,
    blocks: [{ kind: 'text', pieces: Array.from({ length: 40 }, (_, i) => `piece ${i}. `) }],
  });
  service = await Service.start({
    args: ['--provider', 'anthropic'],
    env: { ANTHROPIC_API_KEY: 'test', ANTHROPIC_BASE_URL: upstream.url },
  });
});

after(async () => {
  await browser?.close();
  await service?.close();
  upstream?.close();
});

test(`${TABS} tabs on ${TABS} threads of one browser all stream, on one socket, and requests still go through`, async () => {
  const ctx = await context(browser, service.origin);
  try {
    const project = await service.project();
    const threads = [];
    for (let i = 0; i < TABS; i++) threads.push(await service.thread(project.id, { title: `Thread ${i}` }));
    const before = service.proxy.requests.length;
    const pages = [];
    for (const thread of threads) {
      const page = await ctx.newPage();
      await page.goto(`${service.origin}/#/projects/${project.id}/threads/${thread.id}`);
      pages.push(page);
    }
    // Every tab live, the first ones opened too.
    await Promise.all(pages.map((page) => page.waitForSelector('[data-testid="connection"][data-state="live"]',
      { timeout: 20000 })));

    // All ask at once.
    await Promise.all(pages.map(async (page, i) => {
      await page.getByTestId('composer').fill(`Question ${i}`);
      await page.getByTestId('composer').press('Enter');
    }));
    // While twenty answers stream, a request of the page is not stuck
    // behind them.
    const status = await pages[0].evaluate(async (pid) => (await fetch(`/v1/projects/${pid}`)).status, project.id);
    assert.equal(status, 200);

    const expected = upstream.fallback.blocks[0].pieces.join('');
    await Promise.all(pages.map(async (page, i) => {
      const answer = page.locator('[data-testid="message"][data-role="assistant"][data-status="complete"]');
      await answer.waitFor({ timeout: 60000 });
      assert.equal((await answer.textContent()).trim(), expected.trim(), `tab ${i} shows its whole answer`);
      const question = page.locator('[data-testid="message"][data-role="user"]');
      assert.equal((await question.textContent()).trim(), `Question ${i}`, `tab ${i} shows its own question`);
    }));
    for (let i = 0; i < TABS; i++) {
      const stored = await service.history(project.id, threads[i].id);
      assert.equal(stored.length, 2);
      assert.equal(stored[1].content, expected, `thread ${i}'s answer stored whole`);
    }

    // One socket for them all, and no stream per thread.
    const opened = service.proxy.requests.slice(before);
    const sockets = opened.filter((line) => line.startsWith(`GET /v1/projects/${project.id}/ws`));
    const streams = opened.filter((line) => /\/threads\/[^/]+\/(events|ws)/.test(line));
    assert.equal(sockets.length, 1, `one project socket: ${JSON.stringify(opened)}`);
    assert.deepEqual(streams, [], 'no stream of its own per thread');
    assert.deepEqual(ctx.record.errors, [], 'console errors');
  } finally {
    await ctx.close();
  }
});
