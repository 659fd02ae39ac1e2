// The service's chat routes driven by the AI SDK's own client (npm `ai`):
// `DefaultChatTransport` against `POST …/chat` and `GET …/chat/{id}/stream`,
// `WebSocketChatTransport` against `…/chat/ws`, every answer rebuilt by
// the SDK's `readUIMessageStream` and compared with the stored history.
// Each test runs once per transport.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { generateId } from 'ai';
import { Chat, FakeAnthropic, Service, eventually, rebuild, send, sleep, textOf } from './harness.js';

let upstream;
let service;

before(async () => {
  upstream = await FakeAnthropic.start();
  service = await Service.start(upstream);
});

after(async () => {
  await service?.close();
  upstream?.close();
});

/** A slow text answer of `n` pieces. */
function slowText(n, intervalMs = 30) {
  return { intervalMs, blocks: [{ kind: 'text', pieces: Array.from({ length: n }, (_, i) => `piece ${i} ünïcödé 🙂 `) }] };
}

/** Reads `stream` in the background, keeping the latest message. */
function watch(stream) {
  const seen = { message: undefined, errors: [] };
  seen.done = rebuild(stream, (m) => { seen.message = m; return false; }).then((r) => { seen.errors = r.errors; return r; });
  return seen;
}

for (const kind of ['http', 'ws']) {
  describe(`${kind === 'http' ? 'DefaultChatTransport' : 'WebSocketChatTransport'}`, () => {
    test('thinking, text and a tool call rebuild as reasoning, text and tool parts equal to the stored answer', async () => {
      upstream.queue.push({
        blocks: [
          { kind: 'thinking', pieces: ['Let me ', 'think… ', 'about «this»'] },
          { kind: 'text', pieces: ['Checking ', 'the weather ', 'in Zürich 🌦'] },
          { kind: 'tool_use', id: 'toolu_01A', name: 'weather', pieces: ['{"city": "Zü', 'rich", "days": ', '3}'] },
        ],
      });
      const question = `weather ${kind} ${generateId()}`;
      const transport = service.transport(kind);
      const { message, errors } = await rebuild(await send(transport, generateId(), question));
      transport.close?.();
      assert.deepEqual(errors, []);
      const thread = await service.threadTitled(question);
      const stored = await service.settled(thread.id);
      assert.equal(stored.status, 'complete');
      assert.equal(message.id, stored.id, 'the UI message is the stored answer');
      assert.equal(message.role, 'assistant');
      const [step, reasoning, text, tool, ...rest] = message.parts;
      assert.deepEqual(rest, []);
      assert.equal(step.type, 'step-start');
      assert.equal(reasoning.type, 'reasoning');
      assert.equal(reasoning.text, stored.blocks[0].text);
      assert.equal(reasoning.state, 'done');
      assert.equal(text.type, 'text');
      assert.equal(text.text, stored.blocks[1].text);
      assert.equal(text.state, 'done');
      assert.equal(tool.type, 'tool-weather');
      assert.equal(tool.toolCallId, 'toolu_01A');
      assert.equal(tool.state, 'input-available');
      assert.deepEqual(tool.input, JSON.parse(stored.blocks[2].text));
      assert.deepEqual(tool.input, { city: 'Zürich', days: 3 });
    });

    test('a reconnect mid-answer rebuilds the whole message, nothing repeated or missing', async () => {
      upstream.queue.push(slowText(30));
      const chatId = generateId();
      const question = `reload ${kind} ${chatId}`;
      const first = service.transport(kind);
      const tab = new AbortController();
      const seen = watch(await send(first, chatId, question, kind === 'http' ? tab.signal : undefined));
      await eventually(() => seen.message && textOf(seen.message).length > 60);
      // The page reloads: its connection goes (a closed fetch, a closed
      // socket), and the answer goes on.
      if (kind === 'http') tab.abort(); else first.close();
      await seen.done;
      const again = service.transport(kind);
      const resumed = await again.reconnectToStream({ chatId });
      assert.ok(resumed, 'an answer is running');
      const { message, errors } = await rebuild(resumed);
      again.close?.();
      assert.deepEqual(errors, []);
      const stored = await service.settled((await service.threadTitled(question)).id);
      assert.equal(stored.status, 'complete', 'closing the tab did not stop it');
      assert.equal(message.id, stored.id);
      assert.equal(textOf(message), stored.content, 'byte for byte: no repeat, no gap');
      assert.equal(message.parts.filter((p) => p.type === 'text').length, 1);
    });

    test('a reconnect when nothing runs gets nothing', async () => {
      const transport = service.transport(kind);
      assert.equal(await transport.reconnectToStream({ chatId: generateId() }), null, 'an unknown chat');
      const chatId = generateId();
      const question = `idle ${kind} ${chatId}`;
      await rebuild(await send(transport, chatId, question));
      await service.settled((await service.threadTitled(question)).id);
      assert.equal(await transport.reconnectToStream({ chatId }), null, 'a chat whose answer ended');
      transport.close?.();
    });

    test('a second transport on the same chat sees the same text, and closing the first does not stop it', async () => {
      upstream.queue.push(slowText(25));
      const chatId = generateId();
      const question = `two tabs ${kind} ${chatId}`;
      const [tabA, tabB] = [service.transport(kind), service.transport(kind)];
      const closeA = new AbortController();
      const a = watch(await send(tabA, chatId, question, kind === 'http' ? closeA.signal : undefined));
      await eventually(() => a.message && textOf(a.message).length > 0);
      const b = watch(await tabB.reconnectToStream({ chatId }));
      await eventually(() => b.message && textOf(b.message).length > 40);
      // Tab A closes; tab B still watches.
      if (kind === 'http') closeA.abort(); else tabA.close();
      await a.done;
      await b.done;
      tabB.close?.();
      const stored = await service.settled((await service.threadTitled(question)).id);
      assert.equal(stored.status, 'complete');
      assert.equal(textOf(b.message), stored.content);
      assert.ok(stored.content.startsWith(textOf(a.message)), 'tab A saw the same text up to its close');
    });

    test(kind === 'http' ? 'Stop (abort the fetch, POST …/cancel) ends the answer cancelled for every tab'
      : 'Stop (abort, sent as the abort frame) ends the answer cancelled upstream', async () => {
      const script = slowText(60, 40);
      upstream.queue.push(script);
      const whole = script.blocks[0].pieces.join('');
      const cutBefore = upstream.cutShort;
      const chatId = generateId();
      const question = `stop ${kind} ${chatId}`;
      const [tab, watcher] = [service.transport(kind), service.transport(kind)];
      const stop = new AbortController();
      const mine = watch(await send(tab, chatId, question, stop.signal));
      await eventually(() => mine.message && textOf(mine.message).length > 40);
      const other = watch(await watcher.reconnectToStream({ chatId }));
      await eventually(() => other.message);
      // What the README's `stop` does: useChat's own stop() aborts the
      // request; over HTTP the cancel route stops the answer itself.
      stop.abort();
      if (kind === 'http') {
        const r = await fetch(`${service.base}/v1/projects/${service.pid}/chat/${chatId}/cancel`, {
          method: 'POST', headers: { authorization: `Bearer ${service.key}` },
        });
        assert.equal(r.status, 202);
      }
      await mine.done;
      await other.done;
      tab.close?.();
      watcher.close?.();
      const stored = await service.settled((await service.threadTitled(question)).id);
      assert.equal(stored.status, 'cancelled');
      assert.ok(stored.content.length < whole.length && whole.startsWith(stored.content), 'it stopped early');
      await eventually(() => upstream.cutShort === cutBefore + 1);
      assert.equal(textOf(other.message), stored.content, 'the other tab saw it end, every byte');
      assert.deepEqual(other.errors, [], 'a cancel is no error');
    });

    test('Stop on a resumed stream stops the answer too', async () => {
      upstream.queue.push(slowText(60, 40));
      const chatId = generateId();
      const question = `stop resumed ${kind} ${chatId}`;
      const [asker, reloaded] = [service.transport(kind), service.transport(kind)];
      const first = watch(await send(asker, chatId, question));
      await eventually(() => first.message && textOf(first.message).length > 0);
      const stop = new AbortController();
      const resumed = watch(await reloaded.reconnectToStream({ chatId, abortSignal: stop.signal }));
      await eventually(() => resumed.message && textOf(resumed.message).length > 40);
      stop.abort();
      if (kind === 'http') {
        const r = await fetch(`${service.base}/v1/projects/${service.pid}/chat/${chatId}/cancel`, {
          method: 'POST', headers: { authorization: `Bearer ${service.key}` },
        });
        assert.equal(r.status, 202);
      }
      await first.done;
      await resumed.done;
      asker.close?.();
      reloaded.close?.();
      const stored = await service.settled((await service.threadTitled(question)).id);
      assert.equal(stored.status, 'cancelled');
      assert.equal(textOf(first.message), stored.content, 'the asking tab saw it end');
    });

    test('an upstream failure mid-answer reaches the SDK as its error chunk, and the answer is stored failed', async () => {
      // (An error the provider would give again: not continued.)
      upstream.queue.push({ intervalMs: 10, failAfter: 4, failWith: 'invalid_request_error',
        blocks: [{ kind: 'text', pieces: ['it ', 'goes ', 'well ', 'until ', 'never'] }] });
      const question = `failure ${kind} ${generateId()}`;
      const transport = service.transport(kind);
      const { message, errors } = await rebuild(await send(transport, generateId(), question));
      transport.close?.();
      const stored = await service.settled((await service.threadTitled(question)).id);
      assert.equal(stored.status, 'failed');
      assert.equal(stored.content, 'it goes well until ');
      assert.equal(textOf(message), stored.content, 'the text before the failure, whole');
      assert.equal(errors.length, 1, 'one error chunk');
      assert.equal(errors[0].message, stored.error.message);
    });

    test('regenerate() gets a new answer to the same question: both kept, the question stored once', async () => {
      upstream.queue.push(
        { blocks: [{ kind: 'text', pieces: ['the first ', 'answer'] }] },
        { blocks: [{ kind: 'text', pieces: ['another ', 'answer'] }] },
      );
      const chatId = generateId();
      const question = `regenerate ${kind} ${chatId}`;
      const transport = service.transport(kind);
      const chat = new Chat({ id: chatId, transport });
      await chat.sendMessage({ text: question });
      await eventually(() => chat.status === 'ready' && textOf(chat.lastMessage) === 'the first answer');
      const thread = await service.threadTitled(question);
      const first = await service.settled(thread.id);
      const asked = upstream.requests.length;
      await chat.regenerate();
      await eventually(() => chat.status === 'ready' && textOf(chat.lastMessage) === 'another answer');
      transport.close?.();
      assert.deepEqual(chat.messages.map((m) => m.role), ['user', 'assistant'], 'the SDK replaced its answer');
      const second = await service.settled(thread.id);
      assert.notEqual(second.id, first.id);
      assert.equal(chat.lastMessage.id, second.id, 'the UI message is the new stored answer');
      const history = await service.history(thread.id);
      assert.deepEqual(history.map((m) => [m.role, m.content]),
        [['user', question], ['assistant', 'the first answer'], ['assistant', 'another answer']]);
      assert.equal(upstream.requests.length, asked + 1);
      assert.deepEqual(upstream.requests[asked].messages, upstream.requests[asked - 1].messages,
        'the model was asked the question alone again, not shown the earlier answer');
    });

    test('an answer the provider cuts goes on: the SDK sees one text part and no error, stored complete', async () => {
      upstream.queue.push(
        { intervalMs: 10, failAfter: 3, blocks: [{ kind: 'text', pieces: ['cut ', 'right ', 'here', 'never'] }] },
        { intervalMs: 10, blocks: [{ kind: 'text', pieces: [', then ', 'on to the end.'] }] },
      );
      const question = `continued ${kind} ${generateId()}`;
      const transport = service.transport(kind);
      const { message, errors } = await rebuild(await send(transport, generateId(), question));
      transport.close?.();
      const stored = await service.settled((await service.threadTitled(question)).id);
      assert.equal(stored.status, 'complete');
      assert.equal(stored.continuations, 1);
      assert.equal(stored.content, 'cut right here, then on to the end.');
      assert.deepEqual(errors, [], 'no error chunk');
      assert.equal(message.parts.filter((p) => p.type === 'text').length, 1, 'one text part');
      assert.equal(textOf(message), stored.content, 'the SDK rebuilt the whole answer');
    });
  });
}

test('the UI message stream carries its protocol header, and a bad body is refused in the contract\'s shape', async () => {
  const url = `${service.base}/v1/projects/${service.pid}/chat`;
  const headers = { authorization: `Bearer ${service.key}`, 'content-type': 'application/json' };
  const bad = await fetch(url, { method: 'POST', headers, body: JSON.stringify({ id: 'x', messages: [], trigger: 'submit-message' }) });
  assert.equal(bad.status, 400);
  assert.equal((await bad.json()).error.code, 'bad_request');
  const body = { id: generateId(), trigger: 'submit-message', messages: [{ id: 'u', role: 'user', parts: [{ type: 'text', text: 'header?' }] }] };
  const ok = await fetch(url, { method: 'POST', headers, body: JSON.stringify(body) });
  assert.equal(ok.headers.get('x-vercel-ai-ui-message-stream'), 'v1');
  assert.equal(ok.headers.get('content-type'), 'text/event-stream');
  const text = await ok.text();
  assert.ok(text.endsWith('data: [DONE]\n\n'), text);
  await sleep(0);
});
