// The page in open mode: create a thread and ask, the answer streams and
// equals the stored history byte for byte; thinking and tool_use blocks;
// Stop; two tabs; the operators' view; the phone layout.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import {
  FakeAnthropic, Service, context, eventually, finalMessage, launch, messages, shot,
} from './harness.js';

let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

/** Nothing from another host, no console error. */
function clean(ctx) {
  assert.deepEqual(ctx.record.foreign, [], 'requests to another host');
  assert.deepEqual(ctx.record.errors, [], 'console errors');
}

test('create a thread and ask: the answer streams and equals the stored history', async () => {
  const service = await Service.start({ args: ['--sim-chunks', '30', '--sim-interval-ms', '40'] });
  const ctx = await context(browser, service.origin);
  try {
    const page = await ctx.newPage();
    await page.goto(service.origin + '/');
    await page.waitForURL(/#\/projects\/[0-9a-f-]+$/);
    const pid = page.url().split('/projects/')[1];
    await shot(page, 'open-empty');

    await page.getByTestId('new-thread').click();
    await page.getByTestId('thread-title').fill('First <b>thread</b>');
    await page.getByTestId('thread-system').fill('Be brief.');
    await page.getByTestId('create-thread').click();
    await page.waitForURL(/\/threads\/[0-9a-f-]+$/);
    const tid = page.url().split('/threads/')[1];
    await page.waitForSelector('[data-testid="connection"][data-state="live"]');
    // Escaped, not parsed: the title shows its angle brackets.
    assert.equal(await page.locator('.thread-title').textContent(), 'First <b>thread</b>');
    assert.equal(await page.locator('.thread-title b').count(), 0);

    await page.getByTestId('composer').fill('Tell me about <script>actors</script>');
    await page.getByTestId('composer').press('Enter');
    const streaming = page.locator('[data-testid="message"][data-role="assistant"][data-status="streaming"]');
    await streaming.waitFor();
    await eventually(async () => (await streaming.textContent()).length > 0);
    assert.equal(await page.getByTestId('stop').isVisible(), true, 'Stop is shown while generating');
    await shot(page, 'open-streaming');
    const partial = await streaming.textContent();

    const history = await service.settled(pid, tid);
    const answer = history.find((m) => m.role === 'assistant');
    const shown = await finalMessage(page, answer.id);
    assert.equal(shown.status, 'complete');
    assert.equal(shown.text, answer.content, 'the page shows the stored answer byte for byte');
    assert.ok(answer.content.startsWith(partial), 'what streamed is a prefix of the answer');
    const all = await messages(page);
    assert.deepEqual(all.map((m) => [m.role, m.id, m.text]), history.map((m) => [m.role, m.id, m.content]));
    assert.equal(all[0].text, 'Tell me about <script>actors</script>');
    assert.equal(await page.getByTestId('stop').isVisible(), false, 'Stop is hidden once the answer ended');
    assert.equal(await page.getByTestId('composer').inputValue(), '');
    await shot(page, 'open-complete');

    // The thread's own address opens it (a bookmark, a second tab).
    const link = page.locator(`[data-testid="thread-link"][data-thread-id="${tid}"]`);
    assert.equal(await link.getAttribute('href'), `#/projects/${pid}/threads/${tid}`);
    clean(ctx);
  } finally {
    await ctx.close();
    await service.close();
  }
});

/** A new thread (through the API) opened in `page`; its ids. */
async function openThread(service, page, fields = {}) {
  const project = await service.project();
  const thread = await service.thread(project.id, fields);
  await page.goto(`${service.origin}/#/projects/${project.id}/threads/${thread.id}`);
  await page.waitForSelector('[data-testid="connection"][data-state="live"]');
  return { pid: project.id, tid: thread.id };
}

async function ask(page, text) {
  await page.getByTestId('composer').fill(text);
  await page.getByTestId('send').click();
}

test('a thread with a thinking block and a tool_use block renders them', async () => {
  const upstream = await FakeAnthropic.start({
    intervalMs: 15,
    blocks: [
      { kind: 'thinking', pieces: ['The user wants ', 'the weather; ', 'call the tool.'] },
      { kind: 'text', pieces: ['Let me look ', 'that up.'] },
      { kind: 'tool_use', id: 'toolu_01', name: 'get_weather', pieces: ['{"city": ', '"Par', 'is", "unit": "c"}'] },
    ],
  });
  const service = await Service.start({
    args: ['--provider', 'anthropic'],
    env: { ANTHROPIC_API_KEY: 'test', ANTHROPIC_BASE_URL: upstream.url },
  });
  const ctx = await context(browser, service.origin);
  try {
    const page = await ctx.newPage();
    const { pid, tid } = await openThread(service, page, { title: 'Weather' });
    await ask(page, 'Weather in Paris?');
    const history = await service.settled(pid, tid);
    const answer = history.find((m) => m.role === 'assistant');
    const shown = await finalMessage(page, answer.id);
    assert.equal(shown.status, 'complete');
    assert.equal(shown.text, 'Let me look that up.');
    assert.equal(answer.content, shown.text);

    const article = page.locator(`article[data-message-id="${answer.id}"]`);
    const thinking = article.getByTestId('thinking');
    assert.equal(await thinking.count(), 1);
    assert.equal(await thinking.evaluate((d) => d.open), false, 'thinking is shown folded');
    await thinking.locator('summary').click();
    assert.equal(await thinking.locator('pre').textContent(), 'The user wants the weather; call the tool.');
    const tool = article.getByTestId('tool-use');
    assert.equal(await tool.getByTestId('tool-name').textContent(), 'get_weather');
    const input = JSON.parse(await tool.getByTestId('tool-input').textContent());
    assert.deepEqual(input, { city: 'Paris', unit: 'c' });
    assert.deepEqual(JSON.parse(answer.blocks[2].text), input);
    await shot(page, 'thinking-and-tool-use');
    clean(ctx);
  } finally {
    await ctx.close();
    await service.close();
    upstream.close();
  }
});

test('Stop cancels the answer: the stored status is cancelled', async () => {
  const service = await Service.start({ args: ['--sim-chunks', '400', '--sim-interval-ms', '25'] });
  const ctx = await context(browser, service.origin);
  try {
    const page = await ctx.newPage();
    const { pid, tid } = await openThread(service, page);
    await ask(page, 'A long one, please');
    const stop = page.getByTestId('stop');
    await stop.waitFor({ state: 'visible' });
    await page.waitForFunction(() => document.querySelector('[data-testid="message"][data-role="assistant"]')?.textContent.length > 20);
    await stop.click();
    const history = await service.settled(pid, tid);
    const answer = history.find((m) => m.role === 'assistant');
    assert.equal(answer.status, 'cancelled');
    const shown = await finalMessage(page, answer.id);
    assert.equal(shown.status, 'cancelled');
    assert.equal(shown.text, answer.content, 'the page keeps exactly what was stored');
    await stop.waitFor({ state: 'hidden' });
    assert.equal(await page.locator(`article[data-message-id="${answer.id}"] [data-testid="message-status"]`).textContent(), 'cancelled');
    await shot(page, 'stopped');
    clean(ctx);
  } finally {
    await ctx.close();
    await service.close();
  }
});

test('two tabs watch one answer and agree; each counts the other', async () => {
  const service = await Service.start({ args: ['--sim-chunks', '60', '--sim-interval-ms', '30'] });
  const ctx = await context(browser, service.origin);
  try {
    const first = await ctx.newPage();
    const { pid, tid } = await openThread(service, first);
    const second = await ctx.newPage();
    await second.goto(first.url());
    await second.waitForSelector('[data-testid="connection"][data-state="live"]');
    for (const page of [first, second]) {
      await page.waitForSelector('[data-testid="presence"]:text-is("2")');
    }
    await ask(second, 'Both of you, listen');
    // The first tab sees the answer live, not only at its end.
    await first.waitForSelector('[data-testid="message"][data-role="assistant"][data-status="streaming"]');
    const history = await service.settled(pid, tid);
    const answer = history.find((m) => m.role === 'assistant');
    const a = await finalMessage(first, answer.id);
    const b = await finalMessage(second, answer.id);
    assert.deepEqual(a, b);
    assert.equal(a.text, answer.content);
    assert.deepEqual((await messages(first)).map((m) => m.text), history.map((m) => m.content));
    await second.close();
    await first.waitForSelector('[data-testid="presence"]:text-is("1")');
    clean(ctx);
  } finally {
    await ctx.close();
    await service.close();
  }
});

test('Enter sends, Shift+Enter is a new line; threads are listed newest first and can be deleted', async () => {
  const service = await Service.start({ args: ['--sim-chunks', '3', '--sim-interval-ms', '5'] });
  const ctx = await context(browser, service.origin);
  try {
    const page = await ctx.newPage();
    const { pid, tid } = await openThread(service, page, { title: 'Older' });
    const composer = page.getByTestId('composer');
    await composer.click();
    await page.keyboard.type('line one');
    await page.keyboard.press('Shift+Enter');
    await page.keyboard.type('line two');
    assert.equal(await composer.inputValue(), 'line one\nline two');
    await page.keyboard.press('Enter');
    await page.waitForSelector('[data-testid="message"][data-role="user"]');
    assert.equal(await page.locator('[data-testid="message"][data-role="user"]').textContent(), 'line one\nline two');
    await service.settled(pid, tid);

    // A new thread from the page, with the keyboard only.
    await page.getByTestId('new-thread').focus();
    await page.keyboard.press('Enter');
    await page.keyboard.type('Newer');
    await page.keyboard.press('Enter');
    await page.waitForURL((u) => !u.hash.endsWith(tid) && /threads\/[0-9a-f-]+$/.test(u.hash));
    const links = page.getByTestId('thread-link');
    await eventually(async () => (await links.count()) === 2);
    assert.deepEqual(await links.locator('.tl-title').allTextContents(), ['Newer', 'Older']);

    // Delete asks once more, then the thread is gone.
    const older = page.locator('.tl-item', { has: page.locator(`[data-thread-id="${tid}"]`) });
    await older.getByTestId('delete-thread').click();
    assert.equal(await older.getByTestId('delete-thread').textContent(), 'Delete?');
    await older.getByTestId('delete-thread').click();
    await eventually(async () => (await links.count()) === 1);
    const r = await fetch(`${service.backend}/v1/projects/${pid}/threads/${tid}`);
    assert.equal(r.status, 404);
    clean(ctx);
  } finally {
    await ctx.close();
    await service.close();
  }
});

test('the operators view shows live stats and threads, and stops a thread', async () => {
  const service = await Service.start({ args: ['--sim-chunks', '400', '--sim-interval-ms', '25'] });
  const ctx = await context(browser, service.origin);
  try {
    const page = await ctx.newPage();
    const { pid, tid } = await openThread(service, page);
    await ask(page, 'Keep going');
    await page.waitForSelector('[data-testid="message"][data-role="assistant"][data-status="streaming"]');
    const admin = await ctx.newPage();
    await admin.goto(`${service.origin}/#/admin`);
    const row = admin.locator(`[data-testid="admin-thread"][data-thread-id="${tid}"]`);
    await row.waitFor();
    assert.match(await admin.getByTestId('admin-stats').textContent(), /Generating1/);
    const before = await admin.getByTestId('admin-updated').textContent();
    await eventually(async () => (await admin.getByTestId('admin-updated').textContent()) !== before, 5000);
    await shot(admin, 'operators');
    await row.getByTestId('admin-stop').click();
    const history = await service.settled(pid, tid);
    const answer = history.find((m) => m.role === 'assistant');
    assert.equal(answer.status, 'cancelled');
    // The thread's page is told (`thread_stopped`), resumes, and shows it.
    assert.equal((await finalMessage(page, answer.id)).status, 'cancelled');
    await page.waitForSelector('[data-testid="connection"][data-state="live"]');
    clean(ctx);
  } finally {
    await ctx.close();
    await service.close();
  }
});

test('on a phone: one column, nothing wider than the screen', async () => {
  const service = await Service.start({ args: ['--sim-chunks', '12', '--sim-interval-ms', '5'] });
  const ctx = await context(browser, service.origin, {
    viewport: { width: 390, height: 780 }, isMobile: true, hasTouch: true, colorScheme: 'dark',
  });
  try {
    const page = await ctx.newPage();
    const { pid, tid } = await openThread(service, page, { title: 'A thread with a rather long title on a small screen' });
    await ask(page, 'A question long enough to wrap over more than one line on a phone screen, to see it wrap.');
    await service.settled(pid, tid);
    await page.waitForSelector('[data-testid="message"][data-role="assistant"][data-status="complete"]');
    const wide = await page.evaluate(() => document.documentElement.scrollWidth);
    assert.ok(wide <= 390, `the page is ${wide}px wide`);
    const composer = await page.getByTestId('composer').boundingBox();
    assert.ok(composer && composer.y + composer.height <= 780 && composer.x >= 0, 'the composer is on screen');
    assert.equal(await page.locator('.sidebar').isVisible(), false, 'the thread takes the screen');
    await shot(page, 'phone-thread');
    await page.locator('.back').click();
    await page.getByTestId('thread-link').first().waitFor();
    assert.equal(await page.locator('.sidebar').isVisible(), true);
    await shot(page, 'phone-list');
    clean(ctx);
  } finally {
    await ctx.close();
    await service.close();
  }
});

test('the thread list pages: twenty newest first, then older ones on demand', async () => {
  const service = await Service.start();
  const ctx = await context(browser, service.origin);
  try {
    const project = await service.project();
    for (let i = 0; i < 23; i++) await service.thread(project.id, { title: `thread ${String(i).padStart(2, '0')}` });
    const page = await ctx.newPage();
    await page.goto(`${service.origin}/#/projects/${project.id}`);
    const links = page.getByTestId('thread-link');
    await eventually(async () => (await links.count()) === 20);
    assert.equal(await links.first().locator('.tl-title').textContent(), 'thread 22');
    await page.getByTestId('more-threads').click();
    await eventually(async () => (await links.count()) === 23);
    assert.equal(await links.last().locator('.tl-title').textContent(), 'thread 00');
    assert.equal(await page.getByTestId('more-threads').isVisible(), false);
    clean(ctx);
  } finally {
    await ctx.close();
    await service.close();
  }
});
