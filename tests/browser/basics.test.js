// What a chat page is expected to do around an answer: an empty thread
// says what to do; between Send and the answer's first text a waiting
// indicator shows (and again after a reload while an answer has no text
// yet); a reader scrolled up during an answer is offered "Jump to
// latest", which takes them to the newest text and goes away.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { FakeAnthropic, Service, context, eventually, launch, shot } from './harness.js';

let browser;
let upstream;
let service;

before(async () => {
  browser = await launch();
  upstream = await FakeAnthropic.start({ intervalMs: 30 });
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

function clean(ctx) {
  assert.deepEqual(ctx.record.foreign, [], 'requests to another host');
  assert.deepEqual(ctx.record.errors, [], 'console errors');
}

async function openThread(ctx) {
  const project = await service.project();
  const thread = await service.thread(project.id, { title: 'Basics' });
  const page = await ctx.newPage();
  await page.goto(`${service.origin}/#/projects/${project.id}/threads/${thread.id}`);
  await page.waitForSelector('[data-testid="connection"][data-state="live"]');
  return { page, pid: project.id, tid: thread.id };
}

const visible = (page, id) => page.getByTestId(id).isVisible();

test('an empty thread says what to do, and the waiting indicator lasts from Send to the first text', async () => {
  const ctx = await context(browser, service.origin);
  try {
    const { page, pid, tid } = await openThread(ctx);
    assert.equal(await visible(page, 'empty-thread'), true);
    assert.match(await page.getByTestId('empty-thread').textContent(), /Ask anything/);
    assert.equal(await visible(page, 'waiting'), false);
    await shot(page, 'basics-empty');

    // The first text comes 6 s after the question (a slow model).
    upstream.queue.push({ intervalMs: 6000, blocks: [{ kind: 'text', pieces: ['Here it is.'] }] });
    await page.getByTestId('composer').fill('Slow one');
    await page.getByTestId('composer').press('Enter');
    await page.getByTestId('waiting').waitFor({ state: 'visible', timeout: 2500 });
    assert.equal(await visible(page, 'empty-thread'), false, 'the thread is no longer empty');
    await shot(page, 'basics-waiting');
    // A reload before the first text: still waiting.
    await page.reload();
    await page.waitForSelector('[data-testid="connection"][data-state="live"]');
    await page.getByTestId('waiting').waitFor({ state: 'visible', timeout: 2500 });
    assert.equal(await page.locator('[data-testid="message"][data-role="assistant"]').textContent(), '');
    const answer = page.locator('[data-testid="message"][data-role="assistant"]');
    await eventually(async () => (await answer.textContent()).length > 0);
    await page.getByTestId('waiting').waitFor({ state: 'hidden', timeout: 2500 });
    const history = await service.settled(pid, tid);
    assert.equal(history[1].content, 'Here it is.');
    assert.equal(await visible(page, 'waiting'), false);
    clean(ctx);
  } finally {
    await ctx.close();
  }
});

test('scrolled up during an answer, Jump to latest takes the reader down and goes away', async () => {
  const ctx = await context(browser, service.origin, { viewport: { width: 900, height: 500 } });
  try {
    const { page, pid, tid } = await openThread(ctx);
    // A long answer, line by line.
    const lines = Array.from({ length: 400 }, (_, i) => `Line ${i + 1} of a long answer.\n`);
    upstream.queue.push({ intervalMs: 25, blocks: [{ kind: 'text', pieces: lines }] });
    await page.getByTestId('composer').fill('Long one');
    await page.getByTestId('composer').press('Enter');
    const messages = page.getByTestId('messages');
    // It follows the answer while the reader is at the bottom.
    await eventually(async () => messages.evaluate((m) => m.scrollHeight > m.clientHeight + 200));
    assert.equal(await visible(page, 'jump'), false);
    await messages.evaluate((m) => { m.scrollTop = 0; });
    await page.getByTestId('jump').waitFor({ state: 'visible', timeout: 5000 });
    assert.equal(await messages.evaluate((m) => m.scrollTop), 0, 'the reader stays where they scrolled');
    await shot(page, 'basics-jump');
    await page.getByTestId('jump').click();
    assert.equal(await visible(page, 'jump'), false);
    const gap = await messages.evaluate((m) => m.scrollHeight - m.scrollTop - m.clientHeight);
    assert.ok(gap < 80, `at the newest text (${gap}px from the bottom)`);
    await service.settled(pid, tid);
    clean(ctx);
  } finally {
    await ctx.close();
  }
});
