// Secured mode (an admin token is set): the page asks for a project key,
// keeps it in sessionStorage and never in a URL, streams with short-lived
// stream tokens and goes on when one expires mid-answer or the service
// restarts (a new signing key); the operators' view asks for the admin
// token; a key entered in one tab serves the browser session's other tabs. And HTTPS with HTTP/2: eight tabs, each with its own stream,
// still leave room to send.

import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';

import {
  ADMIN, Service, context, eventually, finalMessage, launch, selfSigned, shot,
} from './harness.js';

let browser;
before(async () => { browser = await launch(['--ignore-certificate-errors']); });
after(async () => { await browser?.close(); });

const live = (page) => page.waitForSelector('[data-testid="connection"][data-state="live"]', { timeout: 20000 });

test('secured: a project key opens the page, and a stream token expiring mid-answer changes nothing', async () => {
  const service = await Service.start({
    args: ['--admin-token', ADMIN, '--stream-token-ttl-secs', '2', '--sim-chunks', '120', '--sim-interval-ms', '40'],
  });
  const ctx = await context(browser, service.origin);
  const urls = [];
  ctx.on('request', (r) => urls.push(r.url()));
  try {
    const project = await service.project(ADMIN);
    const { key } = await service.api('POST', `/admin/projects/${project.id}/keys`, null, ADMIN);
    const page = await ctx.newPage();
    await page.goto(service.origin + '/');
    await page.getByTestId('key-form').waitFor();
    await shot(page, 'secured-key-form');
    await page.getByTestId('key-project').fill(project.id);
    await page.getByTestId('key-input').fill(key);
    await page.getByTestId('key-submit').click();

    await page.getByTestId('new-thread').click();
    await page.getByTestId('thread-title').fill('Secured');
    await page.getByTestId('create-thread').click();
    await page.waitForURL(/\/threads\/[0-9a-f-]+$/);
    const tid = page.url().split('/threads/')[1];
    await live(page);
    await page.getByTestId('composer').fill('Outlive your token');
    await page.getByTestId('send').click();
    await page.waitForSelector('[data-testid="message"][data-role="assistant"][data-status="streaming"]');

    // Past the token's two seconds, the connection drops: the reconnect
    // needs a token that is still valid.
    await page.waitForTimeout(2500);
    service.proxy.cut();
    const history = await service.settled(project.id, tid, key);
    const answer = history.find((m) => m.role === 'assistant');
    assert.deepEqual(await finalMessage(page, answer.id), { status: 'complete', text: answer.content });

    // A restart ends every token (a new signing key): the next stream is
    // refused once, a new token is minted, and the next answer streams.
    await service.restart('SIGTERM');
    await live(page);
    await page.getByTestId('composer').fill('Still there?');
    await page.getByTestId('send').click();
    const next = await eventually(async () => {
      const h = await service.history(project.id, tid, key);
      return h.length === 4 && h[3].status === 'complete' ? h[3] : null;
    }, 20000);
    assert.deepEqual(await finalMessage(page, next.id), { status: 'complete', text: next.content });
    await shot(page, 'secured-thread');

    const minted = urls.filter((u) => u.endsWith('/stream-token')).length;
    assert.ok(minted >= 3, `tokens were minted before and after expiry (${minted})`);
    assert.ok(urls.every((u) => !u.includes(key) && !u.includes(ADMIN)), 'no key in any URL');
    assert.equal(await page.evaluate((pid) => sessionStorage.getItem(`convo.key.${pid}`), project.id), key);
    assert.equal(await page.evaluate(() => JSON.stringify(localStorage).includes('ck_')), false, 'the key is not kept for later');
    assert.deepEqual(ctx.record.foreign, []);
  } finally {
    await ctx.close();
    await service.close();
  }
});

test('secured: the operators view asks for the admin token', async () => {
  const service = await Service.start({ args: ['--admin-token', ADMIN] });
  const ctx = await context(browser, service.origin);
  try {
    const page = await ctx.newPage();
    await page.goto(`${service.origin}/#/admin`);
    await page.getByTestId('admin-token').fill('not the token');
    await page.getByTestId('admin-submit').click();
    await page.getByText('That token was refused.').waitFor();
    await page.getByTestId('admin-token').fill(ADMIN);
    await page.getByTestId('admin-submit').click();
    await page.getByTestId('admin-stats').getByText('Provider').waitFor();
    assert.match(await page.getByTestId('admin-stats').textContent(), /simulated/);
    assert.deepEqual(ctx.record.foreign, []);
  } finally {
    await ctx.close();
    await service.close();
  }
});

test('HTTPS with HTTP/2: eight tabs with a stream each, and the eighth can still send at once', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'convo-tls-'));
  const service = await Service.start({ tls: selfSigned(dir), args: ['--sim-chunks', '60', '--sim-interval-ms', '40'] });
  const ctx = await context(browser, service.origin);
  // No SharedWorker: every tab holds its own stream, which over HTTP/1.1
  // would leave no connection for the seventh tab or a POST.
  await ctx.addInitScript(() => { delete globalThis.SharedWorker; });
  try {
    const project = await service.project();
    const thread = await service.thread(project.id, { title: 'h2' });
    const tabs = [];
    for (let i = 0; i < 8; i++) {
      const page = await ctx.newPage();
      await page.goto(`${service.origin}/#/projects/${project.id}/threads/${thread.id}`);
      tabs.push(page);
    }
    for (const page of tabs) await live(page);
    const protocol = await tabs[7].evaluate(() => performance.getEntriesByType('navigation')[0].nextHopProtocol);
    assert.equal(protocol, 'h2');
    const threads = await service.api('GET', '/admin/threads');
    assert.equal(threads.data.find((t) => t.thread_id === thread.id).subscribers, 8, 'a stream per tab');

    await tabs[7].getByTestId('composer').fill('Over HTTP/2');
    const started = Date.now();
    const [response] = await Promise.all([
      tabs[7].waitForResponse((r) => r.request().method() === 'POST' && r.url().endsWith('/messages')),
      tabs[7].getByTestId('send').click(),
    ]);
    assert.equal(response.status(), 202);
    assert.ok(Date.now() - started < 1500, `the POST took ${Date.now() - started} ms`);
    const history = await service.settled(project.id, thread.id);
    const answer = history.find((m) => m.role === 'assistant');
    for (const page of tabs) {
      assert.deepEqual(await finalMessage(page, answer.id), { status: 'complete', text: answer.content });
    }
    assert.deepEqual(ctx.record.errors, []);
    assert.deepEqual(ctx.record.foreign, []);
  } finally {
    await ctx.close();
    await service.close();
  }
});

test('secured: a key entered in one tab opens the project in the other tabs of the browser session, not in another session', async () => {
  const service = await Service.start({ args: ['--admin-token', ADMIN] });
  const ctx = await context(browser, service.origin);
  const other = await context(browser, service.origin);
  try {
    const project = await service.project(ADMIN);
    const { key } = await service.api('POST', `/admin/projects/${project.id}/keys`, null, ADMIN);
    const first = await ctx.newPage();
    await first.goto(`${service.origin}/#/projects/${project.id}`);
    await first.getByTestId('key-form').waitFor();
    await first.getByTestId('key-input').fill(key);
    await first.getByTestId('key-submit').click();
    await first.getByTestId('new-thread').waitFor();

    // A new tab of the same session (its own sessionStorage, empty): no form.
    const second = await ctx.newPage();
    await second.goto(`${service.origin}/#/projects/${project.id}`);
    await second.getByTestId('new-thread').waitFor({ timeout: 5000 });
    assert.equal(await second.getByTestId('key-form').count(), 0, 'the key came from the other tab');
    assert.equal(await second.evaluate((pid) => sessionStorage.getItem(`convo.key.${pid}`), project.id), key);
    const kept = await second.evaluate(() => JSON.stringify(localStorage));
    assert.equal(kept.includes(key), false, 'the key is never written to localStorage');

    // Another browser session knows nothing of it.
    const stranger = await other.newPage();
    await stranger.goto(`${service.origin}/#/projects/${project.id}`);
    await stranger.getByTestId('key-form').waitFor();
  } finally {
    await ctx.close();
    await other.close();
    await service.close();
  }
});
