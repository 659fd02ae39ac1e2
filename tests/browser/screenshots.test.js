// The README's pictures of the page (docs/screenshots/*.png), taken in
// Chromium against a fake Anthropic upstream, each after asserting what
// it is meant to show: a thread with a Markdown answer and its actions,
// the thread list narrowed by a search, a tool call waiting for approval,
// and a thread on a phone. Run this file to take them again; they are
// kept small (light scheme, 1000x700 and 390x844 viewports).

import assert from 'node:assert/strict';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { mkdirSync } from 'node:fs';
import { after, before, test } from 'node:test';

import { FakeAnthropic, Service, context, eventually, launch } from './harness.js';

const DOCS = path.join(path.dirname(fileURLToPath(import.meta.url)), '../../docs/screenshots');
const DESKTOP = { viewport: { width: 1000, height: 700 }, colorScheme: 'light' };
const PHONE = { viewport: { width: 390, height: 844 }, colorScheme: 'light', isMobile: true, hasTouch: true,
  deviceScaleFactor: 1 };

const ANSWER = [
  '## Reading a file\n\n',
  'Use `std::fs::read_to_string` when the file is small:\n\n',
  '```rust\nuse std::fs;\n\nfn main() -> std::io::Result<()> {\n',
  '    let text = fs::read_to_string("notes.txt")?;\n    println!("{text}");\n    Ok(())\n}\n```\n\n',
  'Worth knowing:\n\n',
  '- it reads the **whole** file into memory;\n',
  '- for big files, wrap a `File` in a `BufReader` and read it line by line;\n',
  '- errors come back as `io::Error`, so `?` passes them on.\n',
];

let browser;
let upstream;
let service;
let pid;

before(async () => {
  mkdirSync(DOCS, { recursive: true });
  browser = await launch();
  upstream = await FakeAnthropic.start({ intervalMs: 5 });
  service = await Service.start({
    args: ['--provider', 'anthropic'],
    env: { ANTHROPIC_API_KEY: 'test', ANTHROPIC_BASE_URL: upstream.url },
  });
  ({ id: pid } = await service.api('POST', '/v1/projects', { name: 'Demo' }));
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

async function save(page, name) {
  await page.mouse.move(0, 0);
  await page.screenshot({ path: path.join(DOCS, `${name}.png`), animations: 'disabled', caret: 'hide' });
}

/** A thread titled `title` with one question answered by `pieces`. */
async function answered(title, question, pieces, fields = {}) {
  const { id: tid } = await service.thread(pid, { title, ...fields });
  upstream.queue.push({ blocks: [{ kind: 'text', pieces }] });
  await service.api('POST', `/v1/projects/${pid}/threads/${tid}/messages`, { content: question });
  await service.settled(pid, tid);
  return tid;
}

async function open(ctx, tid) {
  const page = await ctx.newPage();
  await page.goto(`${service.origin}/#/projects/${pid}/threads/${tid}`);
  await page.waitForSelector('[data-testid="connection"][data-state="live"]');
  await page.locator('[data-testid="message"][data-role="assistant"][data-status="complete"]').last().waitFor();
  return page;
}

/** The newest answer shows as Markdown (a heading, a code block, a list)
 * with Copy and Regenerate. */
async function markdownAnswer(page) {
  const answer = page.locator('article.msg-assistant').last();
  await answer.locator('h2').waitFor();
  assert.equal(await answer.locator('h2').textContent(), 'Reading a file');
  assert.match(await answer.locator('pre code').textContent(), /read_to_string\("notes.txt"\)/);
  assert.equal(await answer.locator('li').count(), 3);
  assert.equal(await answer.locator('strong').textContent(), 'whole');
  for (const name of ['action-copy', 'action-regenerate']) {
    assert.equal(await answer.getByTestId(name).isVisible(), true, name);
  }
}

test('a thread with a Markdown answer and its actions', async () => {
  await answered('Packing list', 'What do I pack for a weekend?', ['A toothbrush and a book.']);
  const tid = await answered('Reading files in Rust', 'How do I read a text file in Rust?', ANSWER);
  const ctx = await context(browser, service.origin, DESKTOP);
  try {
    const page = await open(ctx, tid);
    await markdownAnswer(page);
    assert.equal(await page.getByTestId('thread-heading').textContent(), 'Reading files in Rust');
    assert.equal(await page.getByTestId('project').textContent(), 'Project: Demo');
    await save(page, 'thread');
    clean(ctx);
  } finally {
    await ctx.close();
  }
});

test('the thread list narrowed by a search', async () => {
  await answered('Rust error handling', 'How do errors work in Rust?', ['With `Result` and the `?` operator.']);
  await answered('Trip to Lisbon', 'Plan two days in Lisbon', ['Day one: Alfama and the castle.']);
  const ctx = await context(browser, service.origin, DESKTOP);
  try {
    const page = await ctx.newPage();
    await page.goto(`${service.origin}/#/projects/${pid}`);
    const titles = () => page.locator('[data-testid="thread-link"] .tl-title').allTextContents();
    await eventually(async () => (await titles()).length === 4);
    await page.getByTestId('thread-search').fill('rust');
    await eventually(async () => (await titles()).length === 2);
    assert.deepEqual(await titles(), ['Rust error handling', 'Reading files in Rust']);
    await save(page, 'threads-search');
    clean(ctx);
  } finally {
    await ctx.close();
  }
});

test('a tool call waiting for approval', async () => {
  const pay = { name: 'pay', description: 'Pays someone', input_schema: { type: 'object' }, approval: 'always' };
  const { id: tid } = await service.thread(pid, { title: 'Paying the plumber', tools: [pay] });
  upstream.queue.push({ blocks: [{ kind: 'text', pieces: ['I will pay the invoice once you approve. '] },
    { kind: 'tool_use', id: 'toolu_pay', name: 'pay', pieces: ['{"to": "Ana Plumbing",', ' "amount_eur": 180}'] }] });
  const ctx = await context(browser, service.origin, DESKTOP);
  try {
    const page = await ctx.newPage();
    await page.goto(`${service.origin}/#/projects/${pid}/threads/${tid}`);
    await page.waitForSelector('[data-testid="connection"][data-state="live"]');
    await page.getByTestId('composer').fill('Pay the plumber’s invoice, 180 euros');
    await page.getByTestId('composer').press('Enter');
    const card = page.locator('[data-testid="tool-use"][data-call-id="toolu_pay"]');
    await card.getByRole('button', { name: 'Approve pay' }).waitFor();
    assert.equal(await card.getByRole('button', { name: 'Deny pay' }).isVisible(), true);
    assert.equal(await card.getByTestId('tool-state').textContent(), 'Needs your approval');
    assert.deepEqual(JSON.parse(await card.getByTestId('tool-input').textContent()), { to: 'Ana Plumbing', amount_eur: 180 });
    await page.getByTestId('composer').blur();
    await save(page, 'tool-approval');
    // Decided, so the thread does not wait on.
    await card.getByRole('button', { name: 'Deny pay' }).click();
    await card.getByTestId('tool-approve').waitFor({ state: 'hidden' });
    clean(ctx);
  } finally {
    await ctx.close();
  }
});

test('a thread on a phone', async () => {
  const tid = await answered('Reading files on the go', 'How do I read a text file in Rust?', ANSWER);
  const ctx = await context(browser, service.origin, PHONE);
  try {
    const page = await open(ctx, tid);
    await markdownAnswer(page);
    // One column, nothing wider than the screen, actions without hover.
    assert.equal(await page.locator('.sidebar').isVisible(), false);
    assert.ok(await page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth));
    const copy = page.locator('article.msg-assistant').last().getByTestId('action-copy');
    assert.ok((await copy.boundingBox()).height >= 44);
    await page.getByTestId('messages').evaluate((el) => { el.scrollTop = el.scrollHeight; });
    await save(page, 'phone');
    clean(ctx);
  } finally {
    await ctx.close();
  }
});
