// Threads by their titles (issue 25, item 7): a new thread is named after
// its first question by the service, and the page shows that title in
// the header and the thread list of every tab, live (`thread.updated`);
// a rename in place (click the title, Enter saves, Escape cancels, a
// refusal shows in the notice) reaches the other tabs of this browser and
// of another one; the search box narrows the list to matching titles and
// says when none does; the header names the project and the thread, and
// shows no id.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { Service, context, eventually, launch, shot } from './harness.js';

const UUID = /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/i;

let browser;
let service;

before(async () => {
  browser = await launch();
  service = await Service.start({ args: ['--sim-chunks', '6', '--sim-interval-ms', '10'] });
});

after(async () => {
  await browser?.close();
  await service?.close();
});

function clean(ctx, { refused = false } = {}) {
  assert.deepEqual(ctx.record.foreign, [], 'requests to another host');
  const errors = ctx.record.errors.filter((e) => !(refused && /^Failed to load resource: .* 409 /.test(e)));
  assert.deepEqual(errors, [], 'console errors');
}

async function project(name = 'Titles') {
  return service.api('POST', '/v1/projects', { name });
}

async function open(ctx, pid, tid = null) {
  const page = await ctx.newPage();
  await page.goto(`${service.origin}/#/projects/${pid}${tid ? `/threads/${tid}` : ''}`);
  await page.waitForSelector(tid ? '[data-testid="connection"][data-state="live"]' : '[data-testid="thread-search"]');
  return page;
}

const heading = (page) => page.getByTestId('thread-heading');
/** The title the list shows for thread `tid`. */
const listed = (page, tid) => page.locator(`[data-testid="thread-link"][data-thread-id="${tid}"] .tl-title`);

/** Waits until `locator` shows `text`. */
async function showsText(locator, text) {
  await eventually(async () => (await locator.textContent().catch(() => null)) === text, 10000)
    .catch(async () => assert.fail(`expected "${text}", shown "${await locator.textContent().catch(() => '?')}"`));
}

test('the first question names a new thread: header and list, in this tab and the others', async () => {
  const { id: pid } = await project();
  const { id: tid } = await service.thread(pid);
  const ctx = await context(browser, service.origin);
  const elsewhere = await context(browser, service.origin);
  try {
    const asker = await open(ctx, pid, tid);
    const second = await open(ctx, pid, tid);
    const listOnly = await open(ctx, pid);
    const otherBrowser = await open(elsewhere, pid, tid);
    for (const page of [asker, second, otherBrowser]) {
      await showsText(heading(page), 'Untitled thread');
      await showsText(listed(page, tid), 'Untitled thread');
    }
    await asker.getByTestId('composer').fill('Plan a weekend in Lisbon with two children');
    await asker.getByTestId('composer').press('Enter');
    const title = await eventually(async () => (await service.api('GET', `/v1/projects/${pid}/threads/${tid}`)).title);
    assert.match(title, /Lisbon/);
    for (const page of [asker, second, otherBrowser]) {
      await showsText(heading(page), title);
      await showsText(listed(page, tid), title);
      assert.equal(await page.title(), `${title} · convo`);
    }
    // A tab on the list alone hears of it from the tabs that watch it.
    await showsText(listed(listOnly, tid), title);
    await shot(second, 'titles-named');
    clean(ctx);
    clean(elsewhere);
  } finally {
    await ctx.close();
    await elsewhere.close();
  }
});

test('rename in place: Enter saves and every tab follows; Escape cancels; a refusal shows in the notice', async () => {
  const { id: pid } = await project();
  const { id: tid } = await service.thread(pid, { title: 'Old name' });
  const ctx = await context(browser, service.origin);
  const elsewhere = await context(browser, service.origin);
  try {
    const page = await open(ctx, pid, tid);
    const sameBrowser = await open(ctx, pid, tid);
    const otherBrowser = await open(elsewhere, pid, tid);
    await showsText(heading(page), 'Old name');

    // Escape: nothing changes, here or on the service.
    await heading(page).click();
    const input = page.getByTestId('rename-input');
    assert.equal(await input.inputValue(), 'Old name');
    assert.equal(await input.evaluate((el) => el === document.activeElement), true);
    await input.fill('Not this');
    await input.press('Escape');
    assert.equal(await input.isVisible(), false);
    await showsText(heading(page), 'Old name');
    assert.equal((await service.api('GET', `/v1/projects/${pid}/threads/${tid}`)).title, 'Old name');

    // The Rename button, from the keyboard; Enter saves.
    await page.getByRole('button', { name: 'Rename thread' }).focus();
    await page.keyboard.press('Enter');
    await input.fill('Budget <b>2025</b>');
    await input.press('Enter');
    await showsText(heading(page), 'Budget <b>2025</b>');
    assert.equal((await service.api('GET', `/v1/projects/${pid}/threads/${tid}`)).title, 'Budget <b>2025</b>');
    for (const p of [page, sameBrowser, otherBrowser]) {
      await showsText(heading(p), 'Budget <b>2025</b>');
      await showsText(listed(p, tid), 'Budget <b>2025</b>');
      assert.equal(await p.locator('.thread-head b, .sidebar b').count(), 0, 'a title is text, never markup');
    }

    // A rename elsewhere (another client, over HTTP) shows live too.
    await service.api('PATCH', `/v1/projects/${pid}/threads/${tid}`, { title: 'From the API' });
    for (const p of [page, sameBrowser, otherBrowser]) {
      await showsText(heading(p), 'From the API');
      await showsText(listed(p, tid), 'From the API');
    }

    // A refusal: said in the notice, the field stays open with the text.
    await page.route(`**/v1/projects/${pid}/threads/${tid}`, (route) => (route.request().method() === 'PATCH'
      ? route.fulfill({ status: 409, contentType: 'application/json',
        body: JSON.stringify({ error: { code: 'thread_busy', message: 'busy right now' } }) })
      : route.continue()));
    await heading(page).click();
    await input.fill('Refused name');
    await input.press('Enter');
    await page.getByTestId('notice').waitFor();
    assert.match(await page.getByTestId('notice').textContent(), /still being written|busy/);
    assert.equal(await input.isVisible(), true);
    assert.equal(await input.inputValue(), 'Refused name');
    await input.press('Escape');
    await showsText(heading(page), 'From the API');
    assert.equal((await service.api('GET', `/v1/projects/${pid}/threads/${tid}`)).title, 'From the API');
    clean(ctx, { refused: true });
    clean(elsewhere);
  } finally {
    await ctx.close();
    await elsewhere.close();
  }
});

test('the search box narrows the list to matching titles and says when none matches', async () => {
  const { id: pid } = await project();
  for (const title of ['Alpha report', 'Beta notes', 'alphabet soup', 'Gamma']) await service.thread(pid, { title });
  const ctx = await context(browser, service.origin);
  try {
    const page = await open(ctx, pid);
    const titles = () => page.locator('[data-testid="thread-link"] .tl-title').allTextContents();
    await eventually(async () => (await titles()).length === 4);
    const search = page.getByRole('searchbox', { name: 'Search thread titles' });
    await search.fill('ALPHA');
    await eventually(async () => (await titles()).length === 2);
    assert.deepEqual((await titles()).sort(), ['Alpha report', 'alphabet soup']);
    assert.equal(await page.getByTestId('no-threads').isVisible(), false);
    await shot(page, 'titles-search');

    await search.fill('zebra');
    await page.getByTestId('no-threads').waitFor();
    assert.deepEqual(await titles(), []);
    assert.match(await page.getByTestId('no-threads').textContent(), /No thread has “zebra” in its title/);

    await search.fill('');
    await eventually(async () => (await titles()).length === 4);
    assert.equal(await page.getByTestId('no-threads').isVisible(), false);

    // Typing fast asks once, after the typing stops.
    const asked = [];
    page.on('request', (r) => { if (r.url().includes('/threads?')) asked.push(new URL(r.url()).searchParams.get('q')); });
    await search.pressSequentially('beta', { delay: 30 });
    await eventually(async () => (await titles()).length === 1);
    assert.deepEqual(await titles(), ['Beta notes']);
    assert.deepEqual(asked, ['beta']);
    clean(ctx);
  } finally {
    await ctx.close();
  }
});

test('the header names the project and the thread, and shows no id', async () => {
  const { id: pid } = await project('Acme research');
  const { id: tid } = await service.thread(pid);
  const ctx = await context(browser, service.origin);
  try {
    const page = await open(ctx, pid, tid);
    const project = page.getByTestId('project');
    await showsText(project, 'Project: Acme research');
    await showsText(heading(page), 'Untitled thread');
    // Text and every attribute of the page header and the thread's header
    // (but a link's target: an address, not something shown).
    const shown = await page.$$eval('header.top, header.thread-head', (els) => els.flatMap((el) => [el.textContent,
      ...[el, ...el.querySelectorAll('*')].flatMap((n) => [...n.attributes].filter((a) => a.name !== 'href')
        .map((a) => `${a.name}=${a.value}`))]).join(' '));
    assert.doesNotMatch(shown, UUID);
    assert.equal(shown.includes(pid.slice(0, 8)) || shown.includes(tid.slice(0, 8)), false, 'no piece of an id');
    assert.match(shown, /Acme research/);
    await page.goto(`${service.origin}/#/projects/${pid}`);
    await page.getByTestId('thread-search').waitFor();
    await showsText(project, 'Project: Acme research');
    assert.doesNotMatch(await page.locator('header.top').textContent(), UUID);
    clean(ctx);
  } finally {
    await ctx.close();
  }
});
