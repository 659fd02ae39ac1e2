// The page with answers in several steps, against a fake Anthropic
// upstream that asks for a tool and then answers: a call that needs a
// person shows Approve and Deny in every tab and loses them in every tab
// once anyone decided (also when this tab's click lost the race), a
// denial shows and the answer goes on, a reload while it waits shows the
// buttons again, and a client-run call waits for the application (here
// the test, over HTTP) and then shows its result; a call the service
// runs itself (a tool at a URL) shows "Calling…" in every tab and after a
// reload until its endpoint answers, and an approved one runs once. Every answer stays one
// message. In secured mode the page decides with its project key, and the
// browser client of a page that holds only a stream token answers with it.

import assert from 'node:assert/strict';
import http from 'node:http';
import { after, before, test } from 'node:test';

import { ADMIN, FakeAnthropic, Service, context, eventually, launch, shot } from './harness.js';

const PAY = { name: 'pay', description: 'Pays someone', input_schema: { type: 'object' }, approval: 'always' };
const LOOK = { name: 'look', input_schema: { type: 'object', properties: { city: { type: 'string' } } } };

let browser;
let upstream;
let service;

before(async () => {
  browser = await launch();
  upstream = await FakeAnthropic.start({ intervalMs: 5 });
  service = await Service.start({
    // (The tool endpoints the service calls itself are on loopback.)
    args: ['--provider', 'anthropic', '--allow-private-urls', '--tool-retry-min-ms', '10'],
    env: { ANTHROPIC_API_KEY: 'test', ANTHROPIC_BASE_URL: upstream.url },
  });
});

after(async () => {
  await browser?.close();
  await service?.close();
  upstream?.close();
});

/** Nothing from another host, no console error; with `refused`, but for
 * the line the browser itself logs for a request answered 409. */
function clean(ctx, { refused = false } = {}) {
  assert.deepEqual(ctx.record.foreign, [], 'requests to another host');
  const errors = ctx.record.errors.filter((e) => !(refused && /^Failed to load resource: .* 409 /.test(e)));
  assert.deepEqual(errors, [], 'console errors');
}

/** The next two model calls: text and a call of `name` (`id`) with
 * `input` (its JSON streamed in two pieces), then `text` alone. */
function callThenText(id, name, input, text) {
  const json = JSON.stringify(input);
  upstream.queue.push(
    { blocks: [{ kind: 'text', pieces: ['One ', 'moment. '] },
      { kind: 'tool_use', id, name, pieces: [json.slice(0, 6), json.slice(6)] }] },
    { blocks: [{ kind: 'text', pieces: text.split(/(?<= )/) }] },
  );
}

/** A new thread with `tools`: its ids. */
async function threadWith(tools) {
  const project = await service.project();
  const thread = await service.thread(project.id, { title: 'Tools', tools });
  return { pid: project.id, tid: thread.id };
}

async function openOn(ctx, { pid, tid }) {
  const page = await ctx.newPage();
  await page.goto(`${service.origin}/#/projects/${pid}/threads/${tid}`);
  await page.waitForSelector('[data-testid="connection"][data-state="live"]');
  return page;
}

async function ask(page, text) {
  await page.getByTestId('composer').fill(text);
  await page.getByTestId('send').click();
}

/** The stored answer once it ended (awaiting is not an end). */
async function ended({ pid, tid }) {
  return eventually(async () => {
    const messages = await service.history(pid, tid);
    const answer = messages.find((m) => m.role === 'assistant');
    return answer && !['streaming', 'awaiting_input'].includes(answer.status) ? answer : null;
  });
}

function card(page, id) {
  return page.locator(`[data-testid="tool-use"][data-call-id="${id}"]`);
}

/** Waits until the page shows answer `id` complete; its text. */
async function completed(page, id) {
  const el = page.locator(`[data-testid="message"][data-message-id="${id}"][data-status="complete"]`);
  await el.waitFor({ timeout: 15000 });
  return el.textContent();
}

async function buttonsShown(page, id, name) {
  const call = card(page, id);
  await call.getByRole('button', { name: `Approve ${name}` }).waitFor();
  assert.equal(await call.getByRole('button', { name: `Deny ${name}` }).isVisible(), true);
  assert.equal(await call.getAttribute('data-state'), 'approval');
  assert.equal(await call.getByTestId('tool-name').textContent(), name);
}

async function buttonsGone(page, id) {
  const call = card(page, id);
  await call.getByTestId('tool-approve').waitFor({ state: 'hidden' });
  assert.equal(await call.getByTestId('tool-deny').isVisible(), false);
}

/** How many assistant messages the page shows. */
function answers(page) {
  return page.locator('[data-testid="message"][data-role="assistant"]').count();
}

test('an approval shows in both tabs; Approve in one takes the buttons from both and the answer goes on', async () => {
  callThenText('toolu_pay', 'pay', { amount: 5, to: '<b>Bob</b>' }, 'Paid Bob five.');
  const ids = await threadWith([PAY]);
  const ctx = await context(browser, service.origin);
  try {
    const first = await openOn(ctx, ids);
    const second = await openOn(ctx, ids);
    await ask(second, 'Pay Bob 5');
    for (const page of [first, second]) await buttonsShown(page, 'toolu_pay', 'pay');
    // The input is shown as indented JSON, its markup as text.
    const input = card(first, 'toolu_pay').getByTestId('tool-input');
    assert.deepEqual(JSON.parse(await input.textContent()), { amount: 5, to: '<b>Bob</b>' });
    assert.match(await input.textContent(), /\n {2}"amount": 5/);
    assert.equal(await card(first, 'toolu_pay').locator('b').count(), 0);
    assert.equal(await first.getByTestId('stop').isVisible(), true, 'an answer that waits can be stopped');
    await shot(first, 'tool-approval');

    await first.getByRole('button', { name: 'Approve pay' }).click();
    for (const page of [first, second]) {
      await buttonsGone(page, 'toolu_pay');
      // Approved, the client-run call now waits for its result.
      await card(page, 'toolu_pay').locator('[data-state="result"]').first().waitFor();
      assert.match(await card(page, 'toolu_pay').getByTestId('tool-state').textContent(), /Approved/);
    }
    await service.api('POST', `/v1/projects/${ids.pid}/threads/${ids.tid}/tool-results`,
      { results: [{ tool_call_id: 'toolu_pay', output: { paid: 5, receipt: '<i>r-1</i>' } }] });
    const answer = await ended(ids);
    assert.equal(answer.status, 'complete');
    assert.equal(answer.content, 'One moment. Paid Bob five.');
    for (const page of [first, second]) {
      assert.equal(await completed(page, answer.id), answer.content);
      const call = card(page, 'toolu_pay');
      assert.equal(await call.getAttribute('data-state'), 'done');
      assert.deepEqual(JSON.parse(await call.getByTestId('tool-result').locator('pre').textContent()),
        { paid: 5, receipt: '<i>r-1</i>' });
      assert.equal(await call.locator('i').count(), 0);
      assert.equal(await answers(page), 1, 'the steps of one answer are one message');
      assert.equal(await page.getByTestId('notice').isVisible(), false);
    }
    await shot(first, 'tool-approved-done');
    clean(ctx);
  } finally {
    await ctx.close();
  }
});

test('Deny shows the call denied, also after a reload, and the answer goes on', async () => {
  callThenText('toolu_deny', 'pay', { amount: 500 }, 'I did not pay.');
  const ids = await threadWith([PAY]);
  const ctx = await context(browser, service.origin);
  try {
    const page = await openOn(ctx, ids);
    await ask(page, 'Pay 500');
    await buttonsShown(page, 'toolu_deny', 'pay');
    await page.getByRole('button', { name: 'Deny pay' }).click();
    await buttonsGone(page, 'toolu_deny');
    const answer = await ended(ids);
    assert.equal(answer.status, 'complete');
    assert.equal(await completed(page, answer.id), 'One moment. I did not pay.');
    assert.equal(answer.blocks[2].kind, 'tool_result');
    assert.equal(answer.blocks[2].is_error, true);
    const call = card(page, 'toolu_deny');
    assert.equal(await call.getAttribute('data-state'), 'denied');
    assert.equal(await call.getByTestId('tool-state').textContent(), 'Denied');
    assert.match(await call.getByTestId('tool-result').textContent(), /denied by the user/);
    await shot(page, 'tool-denied');

    // The history says it too.
    await page.reload();
    await page.waitForSelector('[data-testid="connection"][data-state="live"]');
    await completed(page, answer.id);
    assert.equal(await card(page, 'toolu_deny').getAttribute('data-state'), 'denied');
    assert.equal(await card(page, 'toolu_deny').getByTestId('tool-approve').isVisible(), false);
    assert.equal(await answers(page), 1);
    clean(ctx);
  } finally {
    await ctx.close();
  }
});

test('a reload while an approval waits shows the buttons again; a decision from elsewhere takes them', async () => {
  callThenText('toolu_wait', 'pay', { amount: 1 }, 'Done waiting.');
  const ids = await threadWith([PAY]);
  const ctx = await context(browser, service.origin);
  try {
    const page = await openOn(ctx, ids);
    await ask(page, 'Pay 1');
    await buttonsShown(page, 'toolu_wait', 'pay');
    await page.reload();
    await page.waitForSelector('[data-testid="connection"][data-state="live"]');
    await buttonsShown(page, 'toolu_wait', 'pay');
    assert.equal(await page.locator('[data-testid="message-status"][data-status="awaiting_input"]').count(), 1);
    assert.deepEqual(JSON.parse(await card(page, 'toolu_wait').getByTestId('tool-input').textContent()), { amount: 1 });

    // Another client decides (the API, as another tab on another node would).
    await service.api('POST', `/v1/projects/${ids.pid}/threads/${ids.tid}/approvals`,
      { tool_call_id: 'toolu_wait', approved: false, reason: 'not now' });
    await buttonsGone(page, 'toolu_wait');
    const answer = await ended(ids);
    assert.equal(await completed(page, answer.id), 'One moment. Done waiting.');
    assert.equal(await card(page, 'toolu_wait').getAttribute('data-state'), 'denied');
    assert.match(await card(page, 'toolu_wait').getByTestId('tool-result').textContent(), /not now/);
    clean(ctx);
  } finally {
    await ctx.close();
  }
});

test('a click that loses the race shows the winning decision, not an error', async () => {
  callThenText('toolu_race', 'pay', { amount: 2 }, 'Not paid.');
  const ids = await threadWith([PAY]);
  const ctx = await context(browser, service.origin);
  try {
    const page = await openOn(ctx, ids);
    await ask(page, 'Pay 2');
    await buttonsShown(page, 'toolu_race', 'pay');
    // Another tab's denial reaches the service just before this tab's
    // approval: the page's request then gets 409 tool_call_resolved.
    let status = null;
    await page.route('**/approvals', async (route) => {
      await service.api('POST', `/v1/projects/${ids.pid}/threads/${ids.tid}/approvals`,
        { tool_call_id: 'toolu_race', approved: false });
      const response = await route.fetch();
      status = response.status();
      await route.fulfill({ response });
    });
    await page.getByRole('button', { name: 'Approve pay' }).click();
    await buttonsGone(page, 'toolu_race');
    // (The buttons may go before the page's own request is answered: the
    // denial is told to every tab as soon as it applies.)
    await eventually(async () => status !== null, 5000);
    assert.equal(status, 409);
    const answer = await ended(ids);
    assert.equal(await completed(page, answer.id), 'One moment. Not paid.');
    assert.equal(await card(page, 'toolu_race').getAttribute('data-state'), 'denied');
    assert.equal(await page.getByTestId('notice').isVisible(), false, 'no error to act on');
    clean(ctx, { refused: true });
  } finally {
    await ctx.close();
  }
});

test('a client-run call waits for the application, with no buttons, then shows its result', async () => {
  callThenText('toolu_look', 'look', { city: 'Oslo' }, 'It is 21 degrees in Oslo.');
  const ids = await threadWith([LOOK]);
  const ctx = await context(browser, service.origin);
  try {
    const page = await openOn(ctx, ids);
    await ask(page, 'Weather in Oslo?');
    const call = card(page, 'toolu_look');
    await call.locator('[data-testid="tool-state"][data-state="result"]').waitFor();
    assert.equal(await call.getByTestId('tool-state').textContent(), 'Waiting for the application');
    assert.equal(await call.locator('button:visible').count(), 0, 'no button: the page does not run tools');
    assert.equal(await call.getByTestId('tool-result').isVisible(), false);
    assert.deepEqual(JSON.parse(await call.getByTestId('tool-input').textContent()), { city: 'Oslo' });
    await shot(page, 'tool-waiting');
    // A question meanwhile is refused (the thread is busy), and the page says why.
    await ask(page, 'And tomorrow?');
    await eventually(async () => /waits for a tool call/.test(await page.getByTestId('notice').textContent()), 5000);
    assert.equal(await page.getByTestId('composer').inputValue(), 'And tomorrow?', 'the question is kept');

    // The application answers.
    await service.api('POST', `/v1/projects/${ids.pid}/threads/${ids.tid}/tool-results`,
      { results: [{ tool_call_id: 'toolu_look', output: { temp: 21 } }] });
    const answer = await ended(ids);
    assert.equal(await completed(page, answer.id), 'One moment. It is 21 degrees in Oslo.');
    assert.equal(await call.getAttribute('data-state'), 'done');
    assert.deepEqual(JSON.parse(await call.getByTestId('tool-result').locator('pre').textContent()), { temp: 21 });
    assert.equal(await answers(page), 1);
    assert.equal(await page.getByTestId('stop').isVisible(), false);
    clean(ctx, { refused: true });
  } finally {
    await ctx.close();
  }
});

test('an error result shows as an error', async () => {
  callThenText('toolu_err', 'look', { city: 'Nowhere' }, 'I could not look.');
  const ids = await threadWith([LOOK]);
  const ctx = await context(browser, service.origin);
  try {
    const page = await openOn(ctx, ids);
    await ask(page, 'Weather in Nowhere?');
    await card(page, 'toolu_err').locator('[data-testid="tool-state"][data-state="result"]').waitFor();
    await service.api('POST', `/v1/projects/${ids.pid}/threads/${ids.tid}/tool-results`,
      { results: [{ tool_call_id: 'toolu_err', error: 'no such city' }] });
    const answer = await ended(ids);
    await completed(page, answer.id);
    const call = card(page, 'toolu_err');
    assert.equal(await call.getAttribute('data-state'), 'error');
    assert.match(await call.getByTestId('tool-result').textContent(), /^Errorno such city$/);
    clean(ctx);
  } finally {
    await ctx.close();
  }
});

test('secured: the page decides with its key, and a client holding only a stream token posts the result', async () => {
  callThenText('toolu_sec', 'pay', { amount: 3 }, 'Paid, securely.');
  const secured = await Service.start({
    args: ['--admin-token', ADMIN, '--provider', 'anthropic'],
    env: { ANTHROPIC_API_KEY: 'test', ANTHROPIC_BASE_URL: upstream.url },
  });
  const ctx = await context(browser, secured.origin);
  try {
    const project = await secured.project(ADMIN);
    const { key } = await secured.api('POST', `/admin/projects/${project.id}/keys`, null, ADMIN);
    const thread = await secured.thread(project.id, { title: 'Secured tools', tools: [PAY] }, key);
    const ids = { pid: project.id, tid: thread.id };
    // The key as the key form would keep it: for this tab's session.
    await ctx.addInitScript(({ origin, pid, key }) => {
      if (location.origin === origin) sessionStorage.setItem(`convo.key.${pid}`, key);
    }, { origin: secured.origin, pid: ids.pid, key });
    const page = await ctx.newPage();
    await page.goto(`${secured.origin}/#/projects/${ids.pid}/threads/${ids.tid}`);
    await page.waitForSelector('[data-testid="connection"][data-state="live"]');
    await ask(page, 'Pay 3');
    await buttonsShown(page, 'toolu_sec', 'pay');
    await page.getByRole('button', { name: 'Approve pay' }).click();
    await card(page, 'toolu_sec').locator('[data-testid="tool-state"][data-state="result"]').waitFor();

    // Another page of the origin with no key, only a stream token of the
    // thread (minted by its backend), answers the call.
    const { token } = await secured.api('POST', `/v1/projects/${ids.pid}/threads/${ids.tid}/stream-token`, null, key);
    const answered = await page.evaluate(async ({ pid, tid, token }) => {
      const { connect } = await import('/client/convo.js');
      const client = connect({ shared: false, streamToken: async () => ({ token, expires_at: null }) });
      return client.toolResults(pid, tid, [{ tool_call_id: 'toolu_sec', output: { paid: 3 } }]);
    }, { ...ids, token });
    assert.deepEqual(answered.resolved, ['toolu_sec']);
    const answer = await eventually(async () => {
      const messages = await secured.history(ids.pid, ids.tid, key);
      return messages.find((m) => m.role === 'assistant' && m.status === 'complete');
    });
    assert.equal(await completed(page, answer.id), 'One moment. Paid, securely.');
    assert.equal(await card(page, 'toolu_sec').getAttribute('data-state'), 'done');
    clean(ctx);
  } finally {
    await ctx.close();
    await secured.close();
  }
});

/** A tool endpoint that holds each call until `release(output)`: the
 * calls it got (their bodies). */
async function heldEndpoint() {
  const e = { calls: [], waiting: [] };
  e.server = http.createServer(async (req, res) => {
    let body = '';
    for await (const chunk of req) body += chunk;
    e.calls.push(JSON.parse(body));
    e.waiting.push(res);
  });
  await new Promise((resolve) => e.server.listen(0, '127.0.0.1', resolve));
  e.url = `http://127.0.0.1:${e.server.address().port}/run`;
  e.release = (output) => {
    for (const res of e.waiting.splice(0)) {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ output }));
    }
  };
  e.close = () => { e.server.closeAllConnections?.(); e.server.close(); };
  return e;
}

/** A thread whose tool `name` the service runs at `url` (the project has
 * its tool secret), with `more` fields on the tool. */
async function serviceToolThread(name, url, more = {}) {
  const project = await service.project();
  await service.api('POST', `/v1/projects/${project.id}/tool-secret`);
  const tool = { name, input_schema: { type: 'object' }, run: { url }, ...more };
  const thread = await service.thread(project.id, { title: 'Service tools', tools: [tool] });
  return { pid: project.id, tid: thread.id };
}

test('a call the service runs shows Calling… in every tab and after a reload, then its result', async () => {
  const endpoint = await heldEndpoint();
  callThenText('toolu_srv', 'fetch_page', { url: 'https://example.com' }, 'The page says hello.');
  const ids = await serviceToolThread('fetch_page', endpoint.url);
  const ctx = await context(browser, service.origin);
  try {
    const first = await openOn(ctx, ids);
    const second = await openOn(ctx, ids);
    await ask(first, 'What does the page say?');
    await eventually(() => endpoint.calls.length === 1);
    for (const page of [first, second]) {
      const state = card(page, 'toolu_srv').getByTestId('tool-state');
      await eventually(async () => (await state.textContent()) === 'Calling…');
      assert.equal(await card(page, 'toolu_srv').getByTestId('tool-approve').isVisible(), false, 'nothing to decide');
    }
    await shot(first, 'tool-service-calling');
    // A reload while the call runs: still calling, nothing to answer.
    await second.reload();
    await second.waitForSelector('[data-testid="connection"][data-state="live"]');
    await eventually(async () => (await card(second, 'toolu_srv').getByTestId('tool-state').textContent()) === 'Calling…');

    endpoint.release({ title: 'Hello', words: 1 });
    const answer = await ended(ids);
    assert.equal(answer.status, 'complete');
    for (const page of [first, second]) {
      assert.equal(await completed(page, answer.id), 'One moment. The page says hello.');
      const call = card(page, 'toolu_srv');
      assert.equal(await call.getAttribute('data-state'), 'done');
      assert.deepEqual(JSON.parse(await call.getByTestId('tool-result').locator('pre').textContent()),
        { title: 'Hello', words: 1 });
      assert.equal(await answers(page), 1);
    }
    assert.equal(endpoint.calls.length, 1);
    assert.deepEqual(endpoint.calls[0].input, { url: 'https://example.com' });
    await shot(first, 'tool-service-done');
    clean(ctx);
  } finally {
    endpoint.release(null);
    endpoint.close();
    await ctx.close();
  }
});

test('a call the service runs after approval runs once Approve is clicked, and shows so in every tab', async () => {
  const endpoint = await heldEndpoint();
  callThenText('toolu_srv_pay', 'transfer', { amount: 7 }, 'Transferred.');
  const ids = await serviceToolThread('transfer', endpoint.url, { approval: 'always' });
  const ctx = await context(browser, service.origin);
  try {
    const first = await openOn(ctx, ids);
    const second = await openOn(ctx, ids);
    await ask(first, 'Transfer 7');
    for (const page of [first, second]) await buttonsShown(page, 'toolu_srv_pay', 'transfer');
    assert.equal(endpoint.calls.length, 0, 'nothing runs before the approval');
    await second.getByRole('button', { name: 'Approve transfer' }).click();
    for (const page of [first, second]) {
      await buttonsGone(page, 'toolu_srv_pay');
      const state = card(page, 'toolu_srv_pay').getByTestId('tool-state');
      await eventually(async () => (await state.textContent()) === 'Approved, calling…');
    }
    await eventually(() => endpoint.calls.length === 1);
    endpoint.release({ ok: true });
    const answer = await ended(ids);
    assert.equal(answer.status, 'complete');
    for (const page of [first, second]) {
      await completed(page, answer.id);
      assert.equal(await card(page, 'toolu_srv_pay').getByTestId('tool-state').textContent(), 'Approved, done');
    }
    assert.equal(endpoint.calls.length, 1, 'it ran once');
    clean(ctx);
  } finally {
    endpoint.release(null);
    endpoint.close();
    await ctx.close();
  }
});
