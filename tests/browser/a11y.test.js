// Accessibility and phones: axe-core (the engine browsers' audit tools
// use) finds no serious or critical issue on each view of the page, in
// open and secured mode; on a phone every control is at least 44 px
// high, as touch guidelines ask.

import assert from 'node:assert/strict';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, test } from 'node:test';

import { ADMIN, Service, context, launch, shot } from './harness.js';

const AXE = path.join(path.dirname(fileURLToPath(import.meta.url)), 'node_modules/axe-core/axe.min.js');

let browser;
let service;

before(async () => {
  browser = await launch();
  service = await Service.start({ args: ['--sim-chunks', '8', '--sim-interval-ms', '5'] });
});

after(async () => {
  await browser?.close();
  await service?.close();
});

/** axe-core's serious and critical violations on `page` as it is now. */
async function audit(page) {
  await page.addScriptTag({ path: AXE });
  const violations = await page.evaluate(async () => (await window.axe.run(document)).violations);
  return violations
    .filter((v) => v.impact === 'serious' || v.impact === 'critical')
    .map((v) => `${v.id} (${v.impact}): ${v.nodes.map((n) => n.target.join(' ')).join(', ')}`);
}

/** A project with a thread that has `turns` questions and answers: their
 * ids. */
async function threadWithAnswer(turns = 1) {
  const project = await service.project();
  const thread = await service.thread(project.id, { title: 'Audited', system: 'Be brief.' });
  for (let i = 0; i < turns; i += 1) {
    await service.api('POST', `/v1/projects/${project.id}/threads/${thread.id}/messages`, { content: `Hello ${i}` });
    await service.settled(project.id, thread.id);
  }
  return { pid: project.id, tid: thread.id };
}

test('axe-core finds no serious or critical issue on any view', async () => {
  // (CSP lets no injected script run; the audit's own script needs it off.)
  const ctx = await context(browser, service.origin, { bypassCSP: true, viewport: { width: 900, height: 500 } });
  try {
    // An answer longer than the view: the transcript scrolls.
    const { pid, tid } = await threadWithAnswer(6);
    const page = await ctx.newPage();
    const views = [
      ['threads', `/#/projects/${pid}`, '[data-testid="thread-link"]'],
      ['thread', `/#/projects/${pid}/threads/${tid}`, '[data-testid="connection"][data-state="live"]'],
      ['operators', '/#/admin', '[data-testid="admin-stats"]'],
    ];
    for (const [name, hash, ready] of views) {
      await page.goto(`${service.origin}${hash}`);
      await page.waitForSelector(ready);
      assert.deepEqual(await audit(page), [], `view ${name}`);
    }
  } finally {
    await ctx.close();
  }
});

test('secured mode: the key form has no serious or critical issue either', async () => {
  const secured = await Service.start({ args: ['--admin-token', ADMIN] });
  const ctx = await context(browser, secured.origin, { bypassCSP: true });
  try {
    const page = await ctx.newPage();
    await page.goto(`${secured.origin}/`);
    await page.waitForSelector('[data-testid="key-form"], [data-testid="admin-form"]');
    assert.deepEqual(await audit(page), [], 'the key form');
  } finally {
    await ctx.close();
    await secured.close();
  }
});

test('on a phone every control is at least 44 px high', async () => {
  const ctx = await context(browser, service.origin, { viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true });
  try {
    const { pid, tid } = await threadWithAnswer();
    const page = await ctx.newPage();
    const views = [[`/#/projects/${pid}`, '[data-testid="thread-link"]'],
      [`/#/projects/${pid}/threads/${tid}`, '[data-testid="connection"][data-state="live"]']];
    for (const [hash, ready] of views) {
      await page.goto(`${service.origin}${hash}`);
      await page.waitForSelector(ready);
      const shown = await page.$$eval('button, a[href], summary, input, select, textarea',
        (els) => els.filter((el) => el.getClientRects().length > 0).length);
      assert.ok(shown >= 4, `controls measured at ${hash}: ${shown}`);
      const small = await page.$$eval('button, a[href], summary, input, select, textarea', (els) => els
        // (The skip link shows only while focused, and is then 44 px.)
        .filter((el) => el.getClientRects().length > 0 && !el.classList.contains('skip'))
        .map((el) => ({ what: `${el.tagName.toLowerCase()} "${(el.textContent || el.getAttribute('aria-label') || '').trim().slice(0, 30)}"`, h: el.getBoundingClientRect().height }))
        .filter((c) => c.h < 44));
      assert.deepEqual(small, [], `controls under 44 px at ${hash}`);
    }
    await shot(page, 'phone-thread');
  } finally {
    await ctx.close();
  }
});
