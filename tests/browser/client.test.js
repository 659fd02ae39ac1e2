// The browser client module (/client/convo.js) as another page of the
// origin would use it: the README's example; the WebSocket transport with
// send and cancel frames; a server `error` event told apart from a
// dropped connection; the cursor kept in sessionStorage.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { Service, context, launch } from './harness.js';

let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

async function setUp(args) {
  const service = await Service.start({ args });
  const ctx = await context(browser, service.origin);
  const page = await ctx.newPage();
  // Any page of the origin can import the module.
  await page.goto(`${service.origin}/healthz`);
  const project = await service.project();
  const thread = await service.thread(project.id);
  return { service, ctx, page, pid: project.id, tid: thread.id };
}

test("the README's example: watch a thread, send, and read the answer", async () => {
  const { service, ctx, page, pid, tid } = await setUp(['--sim-chunks', '20', '--sim-interval-ms', '10']);
  try {
    const answer = await page.evaluate(async ({ pid, tid }) => {
      const { connect } = await import('/client/convo.js');
      const client = connect();
      const done = new Promise((resolve) => {
        client.watch(pid, tid, (view) => {
          const last = view.messages[view.messages.length - 1];
          if (last?.role === 'assistant' && last.status !== 'streaming') resolve({ mode: client.mode, last });
        });
      });
      await client.send(pid, tid, 'Hello');
      return done;
    }, { pid, tid });
    const stored = (await service.settled(pid, tid)).find((m) => m.role === 'assistant');
    assert.equal(answer.mode, 'shared');
    assert.equal(answer.last.content, stored.content);
    assert.deepEqual(answer.last.blocks, stored.blocks);
  } finally {
    await ctx.close();
    await service.close();
  }
});

test('over the WebSocket: send and cancel frames', async () => {
  const { service, ctx, page, pid, tid } = await setUp(['--sim-chunks', '400', '--sim-interval-ms', '20']);
  try {
    const seen = await page.evaluate(async ({ pid, tid }) => {
      const { connect } = await import('/client/convo.js');
      const client = connect({ transport: 'ws', shared: false });
      let sentCancel = false;
      return new Promise((resolve) => {
        client.watch(pid, tid, async (view, change) => {
          if (change.t === 'state' && view.state === 'live' && !view.messages.length) {
            await client.send(pid, tid, 'Over the socket', { via: 'ws' });
          }
          const last = view.messages[view.messages.length - 1];
          if (last?.role === 'assistant' && last.content.length > 20 && !sentCancel) {
            sentCancel = true;
            await client.cancel(pid, tid, { via: 'ws' });
          }
          if (last?.role === 'assistant' && last.status !== 'streaming') resolve(last);
        });
      });
    }, { pid, tid });
    const stored = (await service.settled(pid, tid)).find((m) => m.role === 'assistant');
    assert.equal(stored.status, 'cancelled');
    assert.equal(seen.status, 'cancelled');
    assert.equal(seen.content, stored.content);
    const stats = await service.api('GET', '/admin/stats');
    assert.ok(stats.subscribers.ws >= 1, 'the client used a WebSocket');
  } finally {
    await ctx.close();
    await service.close();
  }
});

test('a dropped connection reconnects from its cursor; a server error event says why, and thread_deleted stops it', async () => {
  const { service, ctx, page, pid, tid } = await setUp(['--sim-chunks', '5', '--sim-interval-ms', '5']);
  try {
    await page.evaluate(async ({ pid, tid }) => {
      const { Stream } = await import('/client/convo.js');
      window.log = { states: [], events: [] };
      window.stream = new Stream({
        path: `/v1/projects/${pid}/threads/${tid}`, storageKey: `cursor:${tid}`,
        onEvent: (ev) => window.log.events.push(ev), onState: (s, d) => window.log.states.push(d ? `${s}:${d}` : s),
      }).start();
    }, { pid, tid });
    const log = () => page.evaluate(() => window.log);
    await page.waitForFunction(() => window.log.states.includes('live'));
    await service.api('POST', `/v1/projects/${pid}/threads/${tid}/messages`, { content: 'one' });
    await page.waitForFunction(() => window.log.events.some((e) => e.type === 'message.completed'));
    const kept = await page.evaluate((tid) => sessionStorage.getItem(`cursor:${tid}`), tid);
    assert.equal(kept, (await log()).events.filter((e) => e.cursor).at(-1).cursor, 'the last cursor is kept');

    // The network drops: no server event, the stream reconnects with its
    // cursor and is sent nothing twice.
    service.proxy.cut();
    await page.waitForFunction(() => window.log.states.filter((s) => s === 'live').length === 2);
    const readies = (await log()).events.filter((e) => e.type === 'ready');
    assert.equal(readies[1].cursor, kept, 'resumed from the kept cursor');
    assert.equal((await log()).events.filter((e) => e.type === 'message.completed').length, 1);
    assert.ok((await log()).states.includes('reconnecting'));

    // A reload resumes too: a new Stream starts from the kept cursor.
    const resumed = await page.evaluate(async ({ pid, tid }) => {
      const { Stream } = await import('/client/convo.js');
      return new Promise((resolve) => {
        const s = new Stream({ path: `/v1/projects/${pid}/threads/${tid}`, storageKey: `cursor:${tid}`,
          onEvent: (ev) => { if (ev.type === 'ready') { s.close(); resolve(ev.cursor); } } }).start();
      });
    }, { pid, tid });
    assert.equal(resumed, kept);

    // The thread is deleted: the server says so in an `error` event and
    // the stream stops for good.
    await service.api('DELETE', `/v1/projects/${pid}/threads/${tid}`);
    await page.waitForFunction(() => window.log.states.includes('closed:thread_deleted'));
    const error = (await log()).events.find((e) => e.type === 'error');
    assert.equal(error.code, 'thread_deleted');
    await page.waitForTimeout(500);
    assert.equal((await log()).states.at(-1), 'closed:thread_deleted', 'no reconnect after thread_deleted');
  } finally {
    await ctx.close();
    await service.close();
  }
});
