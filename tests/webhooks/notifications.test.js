// Notifications sent by the binary to a webhook, checked by the Standard
// Webhooks reference verifier (npm `standardwebhooks`), not by code of
// this project: an answer that waits for a tool result is announced
// (`message.awaiting`, with its pending call), and again once it ends
// (`message.completed`, with the answer's first words); both verify with
// the secret the webhook was created with, and nothing altered does.

import assert from 'node:assert/strict';
import http from 'node:http';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { Webhook } from 'standardwebhooks';
import { ConvoProcess, FakeAnthropic, eventually } from '../support/service.js';

let upstream;
let service;
let dir;
let base;
let receiver;

/** A webhook receiver: keeps each request's raw body and headers, answers 204. */
async function startReceiver() {
  const r = { received: [] };
  r.server = http.createServer(async (req, res) => {
    const chunks = [];
    for await (const chunk of req) chunks.push(chunk);
    r.received.push({ body: Buffer.concat(chunks).toString('utf8'), headers: req.headers });
    res.writeHead(204);
    res.end();
  });
  await new Promise((resolve) => r.server.listen(0, '127.0.0.1', resolve));
  r.url = `http://127.0.0.1:${r.server.address().port}/hooks/convo`;
  return r;
}

async function api(method, route, body) {
  const res = await fetch(`${base}${route}`, {
    method, headers: { 'content-type': 'application/json' }, body: body && JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}

before(async () => {
  upstream = await FakeAnthropic.start();
  receiver = await startReceiver();
  dir = mkdtempSync(path.join(os.tmpdir(), 'convo-notify-'));
  service = await ConvoProcess.start({
    dir,
    args: ['--provider', 'anthropic', '--anthropic-base-url', upstream.url, '--allow-private-urls'],
    env: { ANTHROPIC_API_KEY: 'sk-test' },
  });
  base = `http://127.0.0.1:${service.port}`;
});

after(async () => {
  await service?.stop();
  upstream?.close();
  receiver?.server.closeAllConnections?.();
  receiver?.server.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test('awaiting and completed notifications verify with the webhook secret, and nothing altered does', async () => {
  const project = (await api('POST', '/v1/projects', { name: 'notify' })).body;
  const created = await api('POST', `/v1/projects/${project.id}/webhooks`, {
    url: receiver.url, events: ['message.awaiting', 'message.completed'],
  });
  assert.equal(created.status, 201);
  const { secret } = created.body;
  assert.match(secret, /^whsec_/);
  const tools = [{ name: 'lookup', input_schema: { type: 'object' } }];
  const thread = (await api('POST', `/v1/projects/${project.id}/threads`, { tools })).body;
  const prefix = `/v1/projects/${project.id}/threads/${thread.id}`;
  upstream.queue.push(
    { blocks: [{ kind: 'tool_use', id: 'toolu_n1', name: 'lookup', pieces: ['{"q": ', '"tides"}'] }] },
    { blocks: [{ kind: 'text', pieces: ['High tide ', 'is at noon.'] }] },
  );
  const asked = await api('POST', `${prefix}/messages`, { content: 'when?' });
  assert.equal(asked.status, 202);
  const answerId = asked.body.assistant_message.id;

  const hook = new Webhook(secret);
  const awaiting = await eventually(() => receiver.received[0]);
  const waiting = hook.verify(awaiting.body, awaiting.headers);
  assert.equal(waiting.type, 'message.awaiting');
  assert.equal(waiting.data.message_id, answerId);
  assert.equal(waiting.data.thread_id, thread.id);
  assert.equal(waiting.data.project_id, project.id);
  assert.equal(waiting.data.status, 'awaiting_input');
  assert.deepEqual(waiting.data.pending,
    [{ tool_call_id: 'toolu_n1', name: 'lookup', input: { q: 'tides' }, needs: 'result' }]);

  const answered = await api('POST', `${prefix}/tool-results`, { results: [{ tool_call_id: 'toolu_n1', output: 'noon' }] });
  assert.equal(answered.status, 200);
  const completed = await eventually(() => receiver.received[1]);
  const done = hook.verify(completed.body, completed.headers);
  assert.equal(done.type, 'message.completed');
  assert.equal(done.data.message_id, answerId);
  assert.equal(done.data.status, 'complete');
  assert.equal(done.data.preview, 'High tide is at noon.');
  assert.equal(done.data.pending, undefined);
  assert.notEqual(completed.headers['webhook-id'], awaiting.headers['webhook-id'], 'one id per event');
  assert.ok(!Number.isNaN(Date.parse(done.timestamp)));

  // The verifier is not fooled: a changed body, id or secret fails.
  assert.throws(() => hook.verify(completed.body.replace('noon', 'dusk'), completed.headers), /signature/i);
  assert.throws(() => hook.verify(completed.body, { ...completed.headers, 'webhook-id': 'other' }), /signature/i);
  const other = (await api('POST', `/v1/projects/${project.id}/webhooks`, {
    url: receiver.url, events: ['message.completed'],
  })).body.secret;
  assert.throws(() => new Webhook(other).verify(completed.body, completed.headers), /signature/i);

  // The delivery log agrees.
  const log = await eventually(async () => {
    const data = (await api('GET', `/v1/projects/${project.id}/webhooks/${created.body.id}/deliveries`)).body.data;
    return data.every((d) => d.status === 'delivered') && data;
  });
  assert.deepEqual(log.map((d) => [d.type, d.status, d.attempts, d.last_status_code]),
    [['message.completed', 'delivered', 1, 204], ['message.awaiting', 'delivered', 1, 204]]);
  assert.deepEqual(log.map((d) => d.event_id), [completed.headers['webhook-id'], awaiting.headers['webhook-id']]);
});
