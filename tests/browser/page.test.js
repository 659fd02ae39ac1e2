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
