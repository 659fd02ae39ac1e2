// The signatures of the calls convo makes on a project's behalf, checked
// by the Standard Webhooks reference verifier (npm `standardwebhooks`),
// not by code of this project: a tool run at a URL is called with headers
// that verify against the project's tool secret; a body or an id changed
// on the way does not verify; after a rotation both the new and the
// previous secret verify for the overlap; every attempt of one call
// carries the same `webhook-id`.

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

/** A tool endpoint: keeps every request's raw body and headers; answers
 * with `answers` in turn (the last repeating). */
class Endpoint {
  static async start(answers) {
    const e = new Endpoint();
    e.answers = answers;
    e.received = [];
    e.server = http.createServer(async (req, res) => {
      const chunks = [];
      for await (const chunk of req) chunks.push(chunk);
      e.received.push({ body: Buffer.concat(chunks).toString('utf8'), headers: req.headers });
      const [status, body] = e.answers.length > 1 ? e.answers.shift() : e.answers[0];
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    });
    await new Promise((resolve) => e.server.listen(0, '127.0.0.1', resolve));
    e.url = `http://127.0.0.1:${e.server.address().port}/tool`;
    return e;
  }

  close() { this.server.closeAllConnections?.(); this.server.close(); }
}

async function api(method, route, body) {
  const res = await fetch(`${base}${route}`, {
    method, headers: { 'content-type': 'application/json' }, body: body && JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}

/** A project with a tool secret, and a thread offering `tools`. */
async function projectAndThread(tools) {
  const project = (await api('POST', '/v1/projects', { name: 'hooks' })).body;
  const secret = (await api('POST', `/v1/projects/${project.id}/tool-secret`)).body.secret;
  const thread = (await api('POST', `/v1/projects/${project.id}/threads`, { tools })).body;
  return { pid: project.id, secret, thread: `/v1/projects/${project.id}/threads/${thread.id}` };
}

/** Asks `thread` once the model is scripted to call `name`; the ended answer. */
async function callOnce(thread, id, name) {
  upstream.queue.push(
    { blocks: [{ kind: 'tool_use', id, name, pieces: ['{"city": ', '"Oslo"}'] }] },
    { blocks: [{ kind: 'text', pieces: ['Done.'] }] },
  );
  const asked = await api('POST', `${thread}/messages`, { content: 'go' });
  assert.equal(asked.status, 202);
  const answerId = asked.body.assistant_message.id;
  return eventually(async () => {
    const page = (await api('GET', `${thread}/messages`)).body;
    const answer = page.data.find((m) => m.id === answerId);
    return answer && answer.status === 'complete' && answer;
  });
}

before(async () => {
  upstream = await FakeAnthropic.start();
  dir = mkdtempSync(path.join(os.tmpdir(), 'convo-hooks-'));
  service = await ConvoProcess.start({
    dir,
    args: ['--provider', 'anthropic', '--anthropic-base-url', upstream.url, '--allow-private-urls',
      '--tool-retry-min-ms', '10'],
    env: { ANTHROPIC_API_KEY: 'sk-test' },
  });
  base = `http://127.0.0.1:${service.port}`;
});

after(async () => {
  await service?.stop();
  upstream?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test('a tool call verifies with the project secret, and nothing altered does', async () => {
  const endpoint = await Endpoint.start([[200, { output: { temp: 21 } }]]);
  try {
    const tools = [{ name: 'weather', input_schema: { type: 'object' }, run: { url: endpoint.url } }];
    const { pid, secret, thread } = await projectAndThread(tools);
    const answer = await callOnce(thread, 'toolu_w1', 'weather');
    assert.equal(endpoint.received.length, 1);
    const { body, headers } = endpoint.received[0];
    const payload = new Webhook(secret).verify(body, headers);
    assert.equal(headers['webhook-id'], `${answer.id}.toolu_w1`);
    assert.deepEqual(payload, {
      project_id: pid, thread_id: thread.split('/').pop(), message_id: answer.id, tool_call_id: 'toolu_w1',
      name: 'weather', input: { city: 'Oslo' },
    });
    const result = answer.blocks.find((b) => b.kind === 'tool_result');
    assert.equal(result.text, '{"temp":21}');
    // The verifier is not fooled: a changed body, id or secret fails.
    assert.throws(() => new Webhook(secret).verify(body.replace('Oslo', 'Rome'), headers), /signature/i);
    assert.throws(() => new Webhook(secret).verify(body, { ...headers, 'webhook-id': 'other' }), /signature/i);
    const other = (await projectAndThread([])).secret;
    assert.throws(() => new Webhook(other).verify(body, headers), /signature/i);
  } finally {
    endpoint.close();
  }
});

test('after a rotation both secrets verify, and a retried call keeps its id', async () => {
  const endpoint = await Endpoint.start([[503, {}], [200, { output: 'ok' }]]);
  try {
    const tools = [{ name: 'job', input_schema: { type: 'object' }, run: { url: endpoint.url } }];
    const { pid, secret: old, thread } = await projectAndThread(tools);
    const fresh = (await api('POST', `/v1/projects/${pid}/tool-secret`)).body.secret;
    const answer = await callOnce(thread, 'toolu_j1', 'job');
    assert.equal(endpoint.received.length, 2, 'a 503, then tried again');
    const ids = endpoint.received.map((r) => r.headers['webhook-id']);
    assert.deepEqual(ids, [`${answer.id}.toolu_j1`, `${answer.id}.toolu_j1`]);
    for (const { body, headers } of endpoint.received) {
      assert.equal(headers['webhook-signature'].split(' ').length, 2);
      assert.equal(new Webhook(fresh).verify(body, headers).tool_call_id, 'toolu_j1');
      assert.equal(new Webhook(old).verify(body, headers).tool_call_id, 'toolu_j1');
    }
  } finally {
    endpoint.close();
  }
});
