// What a reader can do with a message (issue 25, item 5), against a fake
// Anthropic upstream: Copy puts the answer's text on the clipboard (also
// from the keyboard); Retry on a failed answer and on a stopped one asks
// the question again for a new answer and the earlier one stays;
// Regenerate on a complete answer keeps both; Edit puts a question back
// in the composer and sends it as a new question, the earlier turn
// staying (Escape gives back the draft it replaced); only the newest
// answer offers Retry or Regenerate, and nothing that starts an answer is
// enabled while one is written or waits for an approval, in every tab.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { FakeAnthropic, Service, context, eventually, launch, shot } from './harness.js';

let browser;
let upstream;
let service;

before(async () => {
  browser = await launch();
  upstream = await FakeAnthropic.start({ intervalMs: 10 });
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

/** A new thread and a page on it, live. */
async function openThread(ctx, ids = null) {
  if (!ids) {
    const project = await service.project();
    const thread = await service.thread(project.id, { title: 'Actions' });
    ids = { pid: project.id, tid: thread.id };
  }
  const page = await ctx.newPage();
  await page.goto(`${service.origin}/#/projects/${ids.pid}/threads/${ids.tid}`);
  await page.waitForSelector('[data-testid="connection"][data-state="live"]');
  return { page, ...ids };
}

async function ask(page, text) {
  await page.getByTestId('composer').fill(text);
  await page.getByTestId('composer').press('Enter');
}

/** The article of message `id`. */
const article = (page, id) => page.locator(`article[data-message-id="${id}"]`);

/** Waits until the thread has `count` messages and none is streaming. */
async function settledWith(pid, tid, count) {
  return eventually(async () => {
    const messages = await service.history(pid, tid);
    return messages.length === count && messages.every((m) => m.status !== 'streaming') ? messages : null;
  }, 20000);
}

/** Waits until the page shows message `id` with `status`. */
async function shown(page, id, status) {
  await page.locator(`[data-testid="message"][data-message-id="${id}"][data-status="${status}"]`).waitFor({ timeout: 15000 });
}

test('Copy puts the answer\'s text on the clipboard, from a click or the keyboard', async () => {
  const ctx = await context(browser, service.origin);
  await ctx.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: service.origin });
  try {
    const { page, pid, tid } = await openThread(ctx);
    upstream.queue.push({ blocks: [{ kind: 'text', pieces: ['Three ', 'facts:\n', '- one\n', '- *two*'] }] });
    await ask(page, 'Facts please');
    const [question, answer] = await settledWith(pid, tid, 2);
    await shown(page, answer.id, 'complete');
    // A question has no Copy; an answer does, labelled.
    assert.equal(await article(page, question.id).getByTestId('action-copy').count(), 0);
    await article(page, answer.id).getByRole('button', { name: 'Copy this answer' }).click();
    assert.equal(await page.evaluate(() => navigator.clipboard.readText()), answer.content);
    assert.equal(answer.content, 'Three facts:\n- one\n- *two*');
    // It says so (also to a screen reader: its name changes a while).
    const copy = article(page, answer.id).getByTestId('action-copy');
    assert.equal(await copy.textContent(), 'Copied');
    assert.equal(await copy.getAttribute('aria-label'), 'Copied this answer');

    // From the keyboard: something else on the clipboard, then Enter on
    // the focused button.
    await page.evaluate(() => navigator.clipboard.writeText('something else'));
    await copy.focus();
    await page.keyboard.press('Enter');
    await eventually(async () => (await page.evaluate(() => navigator.clipboard.readText())) === answer.content);
    clean(ctx);
  } finally {
    await ctx.close();
  }
});

test('an answer the provider cuts goes on in place, marked as continued, in every tab and after a reload', async () => {
  const ctx = await context(browser, service.origin);
  try {
    const { page, pid, tid } = await openThread(ctx);
    const other = (await openThread(ctx, { pid, tid })).page;
    upstream.queue.push(
      // (A fault of the provider's: the service asks again and goes on.)
      { failAfter: 2, intervalMs: 40, blocks: [{ kind: 'text', pieces: ['Half ', 'of it, ', 'then gone'] }] },
      { intervalMs: 40, blocks: [{ kind: 'text', pieces: [' and ', 'the rest.'] }] },
    );
    await ask(page, 'Cut me short');
    const [, answer] = await settledWith(pid, tid, 2);
    assert.deepEqual([answer.status, answer.continuations], ['complete', 1]);
    for (const tab of [page, other]) {
      await shown(tab, answer.id, 'complete');
      const note = article(tab, answer.id).getByTestId('message-continued');
      await note.waitFor();
      assert.equal(await note.textContent(), 'Continued after an interruption');
      assert.match(await note.getAttribute('title'), /model provider reported an error/, 'a tab that saw it says why');
      assert.equal(await article(tab, answer.id).getByTestId('message').textContent(), answer.content);
    }
    await shot(page, 'continued');
    await page.reload();
    await page.waitForSelector('[data-testid="connection"][data-state="live"]');
    const note = article(page, answer.id).getByTestId('message-continued');
    await note.waitFor();
    assert.equal(await note.textContent(), 'Continued after an interruption', 'the stored count, after a reload');
    const question = (await service.history(pid, tid))[0];
    assert.equal(await article(page, question.id).getByTestId('message-continued').isVisible(), false);
    clean(ctx);
  } finally {
    await ctx.close();
  }
});

test('Retry on a failed answer brings a new complete answer; the failed one stays, without Retry', async () => {
  const ctx = await context(browser, service.origin);
  try {
    const { page, pid, tid } = await openThread(ctx);
    upstream.queue.push(
      // (An error the provider would give again: the answer fails, not
      // continued.)
      { failAfter: 2, failWith: 'invalid_request_error', blocks: [{ kind: 'text', pieces: ['It ', 'goes ', 'wrong'] }] },
      { blocks: [{ kind: 'text', pieces: ['Second ', 'time ', 'lucky.'] }] },
    );
    await ask(page, 'Try me');
    const [question, failed] = await settledWith(pid, tid, 2);
    assert.equal(failed.status, 'failed');
    await shown(page, failed.id, 'failed');
    const retry = article(page, failed.id).getByRole('button', { name: 'Retry this answer' });
    await retry.waitFor();
    assert.equal(await retry.isEnabled(), true);
    assert.equal(await article(page, failed.id).getByTestId('action-regenerate').isVisible(), false);
    await shot(page, 'actions-failed');
    const asked = upstream.requests.length;

    await retry.click();
    const messages = await settledWith(pid, tid, 3);
    assert.deepEqual(messages.map((m) => [m.role, m.status]),
      [['user', 'complete'], ['assistant', 'failed'], ['assistant', 'complete']]);
    assert.equal(messages[1].id, failed.id, 'the failed answer stays');
    assert.equal(messages[1].content, 'It goes ');
    assert.equal(messages[2].content, 'Second time lucky.');
    assert.equal(upstream.requests.length, asked + 1, 'one model call');
    // The model was asked the same question again.
    const last = upstream.requests[upstream.requests.length - 1].messages.at(-1);
    assert.match(JSON.stringify(last.content), /Try me/);

    await shown(page, messages[2].id, 'complete');
    assert.equal(await page.locator('[data-testid="message"][data-role="user"]').count(), 1, 'no new question');
    assert.equal(await article(page, failed.id).getByTestId('message-status').textContent(), 'failed');
    // Only the newest answer can be asked again.
    assert.equal(await article(page, failed.id).getByTestId('action-retry').isVisible(), false);
    assert.equal(await article(page, messages[2].id).getByTestId('action-regenerate').isVisible(), true);
    assert.equal(await article(page, question.id).getByTestId('action-edit').isEnabled(), true);
    await shot(page, 'actions-retried');
    clean(ctx);
  } finally {
    await ctx.close();
  }
});

test('Regenerate keeps both answers, and another tab sees the new one', async () => {
  const ctx = await context(browser, service.origin);
  try {
    const { page, pid, tid } = await openThread(ctx);
    upstream.queue.push({ blocks: [{ kind: 'text', pieces: ['First ', 'take.'] }] },
      { blocks: [{ kind: 'text', pieces: ['Second ', 'take.'] }] });
    await ask(page, 'Say something');
    const [, first] = await settledWith(pid, tid, 2);
    await shown(page, first.id, 'complete');
    const other = (await openThread(ctx, { pid, tid })).page;
    await other.getByTestId('action-regenerate').waitFor();
    assert.equal(await article(page, first.id).getByTestId('action-retry').isVisible(), false, 'complete: no Retry');

    await article(page, first.id).getByRole('button', { name: 'Regenerate this answer' }).click();
    const messages = await settledWith(pid, tid, 3);
    assert.equal(messages[1].content, 'First take.');
    assert.equal(messages[2].content, 'Second take.');
    for (const p of [page, other]) {
      await shown(p, messages[2].id, 'complete');
      const texts = await p.locator('[data-testid="message"][data-role="assistant"]').allTextContents();
      assert.deepEqual(texts, ['First take.', 'Second take.']);
      // Regenerate moved to the newest answer.
      assert.equal(await article(p, first.id).getByTestId('action-regenerate').isVisible(), false);
      assert.equal(await article(p, messages[2].id).getByTestId('action-regenerate').isVisible(), true);
    }
    clean(ctx);
  } finally {
    await ctx.close();
  }
});

test('Edit sends the edited question as a new one; the earlier turn stays; Escape gives the draft back', async () => {
  const ctx = await context(browser, service.origin);
  try {
    const { page, pid, tid } = await openThread(ctx);
    await ask(page, 'Waht is two plus two');
    const [question, answer] = await settledWith(pid, tid, 2);
    await shown(page, answer.id, 'complete');

    // Escape: the draft being typed comes back.
    await page.getByTestId('composer').fill('a draft');
    await article(page, question.id).getByRole('button', { name: 'Edit this question' }).click();
    assert.equal(await page.getByTestId('composer').inputValue(), 'Waht is two plus two');
    assert.equal(await page.getByTestId('editing').isVisible(), true);
    await page.getByTestId('composer').press('Escape');
    assert.equal(await page.getByTestId('composer').inputValue(), 'a draft');
    assert.equal(await page.getByTestId('editing').isVisible(), false);

    await article(page, question.id).getByTestId('action-edit').click();
    const composer = page.getByTestId('composer');
    assert.equal(await composer.evaluate((el) => el === document.activeElement), true, 'the composer has the focus');
    await composer.fill('What is two plus two?');
    await composer.press('Enter');
    const messages = await settledWith(pid, tid, 4);
    assert.deepEqual(messages.map((m) => m.role), ['user', 'assistant', 'user', 'assistant']);
    assert.equal(messages[0].content, 'Waht is two plus two', 'the earlier turn stays');
    assert.equal(messages[1].content, answer.content);
    assert.equal(messages[2].content, 'What is two plus two?');
    await shown(page, messages[3].id, 'complete');
    assert.deepEqual(await page.locator('[data-testid="message"][data-role="user"]').allTextContents(),
      ['Waht is two plus two', 'What is two plus two?']);
    assert.equal(await page.getByTestId('editing').isVisible(), false);
    assert.equal(await composer.inputValue(), '');
    clean(ctx);
  } finally {
    await ctx.close();
  }
});

test('while an answer is written nothing that starts one is enabled, in every tab; Stop brings Retry', async () => {
  const ctx = await context(browser, service.origin);
  try {
    const { page, pid, tid } = await openThread(ctx);
    await ask(page, 'Quick one');
    const [, quick] = await settledWith(pid, tid, 2);
    await shown(page, quick.id, 'complete');
    const other = (await openThread(ctx, { pid, tid })).page;

    upstream.queue.push({ intervalMs: 200, blocks: [{ kind: 'text', pieces: Array(60).fill('slow ') }] });
    await ask(page, 'Slow one');
    const streaming = await eventually(async () => (await service.history(pid, tid))
      .find((m) => m.role === 'assistant' && m.status === 'streaming'));
    for (const p of [page, other]) {
      await shown(p, streaming.id, 'streaming');
      await eventually(async () => (await article(p, streaming.id).locator('[data-testid="message"]').textContent()).length > 0);
      const edits = p.getByTestId('action-edit');
      assert.equal(await edits.count(), 2);
      for (const edit of await edits.all()) assert.equal(await edit.isDisabled(), true, 'Edit while generating');
      // The answer being written has neither Retry nor Regenerate, and
      // the older one lost its Regenerate (it is not the newest).
      assert.equal(await article(p, streaming.id).getByTestId('action-regenerate').isVisible(), false);
      assert.equal(await article(p, streaming.id).getByTestId('action-retry').isVisible(), false);
      assert.equal(await article(p, quick.id).getByTestId('action-regenerate').isVisible(), false);
      assert.equal(await article(p, streaming.id).getByTestId('action-copy').isDisabled(), true);
      // An answer that is done can still be copied.
      assert.equal(await article(p, quick.id).getByTestId('action-copy').isEnabled(), true);
    }
    await shot(page, 'actions-generating');

    await page.getByTestId('stop').click();
    for (const p of [page, other]) {
      await shown(p, streaming.id, 'cancelled');
      const retry = article(p, streaming.id).getByTestId('action-retry');
      await retry.waitFor();
      assert.equal(await retry.isEnabled(), true);
      for (const edit of await p.getByTestId('action-edit').all()) assert.equal(await edit.isEnabled(), true);
    }
    await article(other, streaming.id).getByTestId('action-retry').click();
    const messages = await settledWith(pid, tid, 5);
    assert.deepEqual(messages.map((m) => m.status).slice(3), ['cancelled', 'complete']);
    assert.equal(messages[4].content, 'Hello from the fake upstream.');
    await shown(page, messages[4].id, 'complete');
    clean(ctx);
  } finally {
    await ctx.close();
  }
});

test('while an answer waits for an approval nothing that starts one is enabled either', async () => {
  const pay = { name: 'pay', input_schema: { type: 'object' }, approval: 'always' };
  const project = await service.project();
  const thread = await service.thread(project.id, { title: 'Awaiting', tools: [pay] });
  const ctx = await context(browser, service.origin);
  try {
    const { page, pid, tid } = await openThread(ctx, { pid: project.id, tid: thread.id });
    upstream.queue.push(
      { blocks: [{ kind: 'text', pieces: ['Paying. '] }, { kind: 'tool_use', id: 'toolu_a', name: 'pay', pieces: ['{}'] }] },
      { blocks: [{ kind: 'text', pieces: ['Not paid.'] }] },
    );
    await ask(page, 'Pay it');
    const card = page.locator('[data-testid="tool-use"][data-call-id="toolu_a"]');
    await card.getByRole('button', { name: 'Deny pay' }).waitFor();
    const answer = page.locator('article.msg-assistant');
    assert.equal(await answer.getAttribute('data-status'), 'awaiting_input');
    assert.equal(await page.getByTestId('action-edit').isDisabled(), true, 'Edit while awaiting');
    assert.equal(await answer.getByTestId('action-retry').isVisible(), false);
    assert.equal(await answer.getByTestId('action-regenerate').isVisible(), false);

    await card.getByRole('button', { name: 'Deny pay' }).click();
    const [, done] = await settledWith(pid, tid, 2);
    assert.equal(done.status, 'complete');
    await shown(page, done.id, 'complete');
    await answer.getByTestId('action-regenerate').waitFor();
    assert.equal(await page.getByTestId('action-edit').isEnabled(), true);
    clean(ctx);
  } finally {
    await ctx.close();
  }
});

test('on a touch screen the actions show without hovering and are 44 px targets', async () => {
  const ctx = await context(browser, service.origin, { viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true });
  try {
    const { page, pid, tid } = await openThread(ctx);
    await ask(page, 'Phone question');
    const [question, answer] = await settledWith(pid, tid, 2);
    await shown(page, answer.id, 'complete');
    for (const [id, name] of [[question.id, 'action-edit'], [answer.id, 'action-copy'], [answer.id, 'action-regenerate']]) {
      const button = article(page, id).getByTestId(name);
      const box = await button.boundingBox();
      assert.ok(box.height >= 44 && box.width >= 44, `${name}: ${box.width}x${box.height}`);
      assert.equal(await button.evaluate((el) => getComputedStyle(el.parentElement).opacity), '1', `${name} shows`);
    }
    await shot(page, 'actions-phone');
    clean(ctx);
  } finally {
    await ctx.close();
  }
});
