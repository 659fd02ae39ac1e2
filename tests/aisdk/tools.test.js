// Answers in several steps through the AI SDK's own chat (`AbstractChat`,
// what `useChat` wraps) and its transports: a client tool answered by
// `onToolCall` + `addToolOutput` and sent on by `sendAutomaticallyWhen`, a
// call a person approves (`addToolApprovalResponse`) or denies, a reloaded
// chat that finds the approval asked, and two chats deciding one approval
// at once. Every turn stays one UI message, the stored answer's. Each test
// runs once per transport.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import {
  generateId, lastAssistantMessageIsCompleteWithApprovalResponses, lastAssistantMessageIsCompleteWithToolCalls,
} from 'ai';
import { Chat, FakeAnthropic, Service, eventually, textOf } from './harness.js';

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

const LOOK = { name: 'look', input_schema: { type: 'object', properties: { city: { type: 'string' } } } };
const DELETE = { name: 'delete', input_schema: { type: 'object' }, approval: 'always' };

/** Sends on once every call of the last step has its result, or every
 * approval asked has its response: what an app with tools passes. */
function bothComplete(options) {
  return lastAssistantMessageIsCompleteWithToolCalls(options) || lastAssistantMessageIsCompleteWithApprovalResponses(options);
}

/** Scripts: text, then a call of `name` (`id`) with `input`, and the next
 * step's text. */
function callThenText(id, name, input, text) {
  const json = JSON.stringify(input);
  upstream.queue.push(
    { blocks: [{ kind: 'text', pieces: ['One ', 'moment.'] }, { kind: 'tool_use', id, name, pieces: [json.slice(0, 5), json.slice(5)] }] },
    { blocks: [{ kind: 'text', pieces: text.split(/(?<= )/) }] },
  );
}

/** A chat of `kind` on thread `tid` that runs the client tools: `delete`
 * only once a person approved it. Every call it ran is in `ran`. */
function toolChat(kind, tid, ran, more = {}) {
  const chat = new Chat({
    id: tid,
    transport: service.transport(kind),
    sendAutomaticallyWhen: bothComplete,
    onToolCall: ({ toolCall }) => {
      const part = chat.lastMessage.parts.find((p) => p.toolCallId === toolCall.toolCallId);
      if (toolCall.toolName === 'delete' && part?.approval?.approved !== true) return;
      ran.push(toolCall);
      const output = toolCall.toolName === 'look' ? { temp: 21, city: toolCall.input.city } : { deleted: true };
      // Not awaited: the SDK applies it once the chunk is processed.
      chat.addToolOutput({ tool: toolCall.toolName, toolCallId: toolCall.toolCallId, output });
    },
    ...more,
  });
  return chat;
}

/** The chat is idle with the answer's last step told whole. */
async function idle(chat, text) {
  await eventually(() => chat.status === 'ready' && chat.lastMessage?.role === 'assistant'
    && textOf(chat.lastMessage).endsWith(text));
}

function toolPart(message, id) {
  return message.parts.find((p) => p.toolCallId === id);
}

/** How many model calls were told of call `id`: the steps after its. */
function stepsAfter(id) {
  return upstream.requests.filter((r) => JSON.stringify(r.messages).includes(`"${id}"`)).length;
}

for (const kind of ['http', 'ws']) {
  describe(`${kind === 'http' ? 'DefaultChatTransport' : 'WebSocketChatTransport'} with tools`, () => {
    test('a client tool: onToolCall, addToolOutput and sendAutomaticallyWhen finish the turn in one UI message', async () => {
      const id = `toolu_look_${kind}`;
      callThenText(id, 'look', { city: 'Oslo' }, 'It is 21 degrees in Oslo.');
      const tid = await service.thread([LOOK]);
      const ran = [];
      const chat = toolChat(kind, tid, ran);
      await chat.sendMessage({ text: 'Weather in Oslo?' });
      await idle(chat, 'It is 21 degrees in Oslo.');
      chat.transport.close?.();

      assert.equal(chat.error, undefined);
      assert.deepEqual(ran.map((c) => [c.toolCallId, c.input]), [[id, { city: 'Oslo' }]], 'run once');
      const stored = await service.settled(tid);
      assert.equal(stored.status, 'complete');
      assert.deepEqual(chat.messages.map((m) => m.role), ['user', 'assistant'], 'the continuation is no new message');
      const answer = chat.lastMessage;
      assert.equal(answer.id, stored.id);
      assert.deepEqual(answer.parts.map((p) => p.type), ['step-start', 'text', 'tool-look', 'step-start', 'text']);
      const part = toolPart(answer, id);
      assert.equal(part.state, 'output-available');
      assert.deepEqual(part.output, { temp: 21, city: 'Oslo' });
      assert.equal(textOf(answer), stored.content);
      assert.deepEqual(stored.blocks.map((b) => b.kind), ['text', 'tool_use', 'tool_result', 'text']);
      assert.deepEqual(JSON.parse(stored.blocks[2].text), { temp: 21, city: 'Oslo' });
      assert.equal(stepsAfter(id), 1, 'the next step was asked once');
      assert.equal((await service.history(tid)).length, 2);
    });

    test('an approval: addToolApprovalResponse, then the approved client call runs, in one UI message', async () => {
      const id = `toolu_del_${kind}`;
      callThenText(id, 'delete', { path: '/tmp/x' }, 'Deleted it.');
      const tid = await service.thread([DELETE]);
      const ran = [];
      const chat = toolChat(kind, tid, ran);
      await chat.sendMessage({ text: 'Delete /tmp/x' });
      const asked = toolPart(chat.lastMessage, id);
      assert.equal(asked.state, 'approval-requested');
      assert.equal(asked.approval.id, id, 'the approval is the call');
      assert.deepEqual(ran, [], 'nothing runs before a person approves');
      const answerId = chat.lastMessage.id;

      await chat.addToolApprovalResponse({ id, approved: true });
      await idle(chat, 'Deleted it.');
      chat.transport.close?.();

      assert.equal(chat.error, undefined);
      assert.deepEqual(ran.map((c) => c.toolCallId), [id]);
      assert.deepEqual(chat.messages.map((m) => [m.role, m.id]), [['user', chat.messages[0].id], ['assistant', answerId]]);
      const part = toolPart(chat.lastMessage, id);
      assert.equal(part.state, 'output-available');
      assert.equal(part.approval.approved, true);
      assert.deepEqual(part.output, { deleted: true });
      const stored = await service.settled(tid);
      assert.equal(stored.id, answerId);
      assert.equal(stored.status, 'complete');
      assert.deepEqual(JSON.parse(stored.blocks[2].text), { deleted: true });
      assert.equal(stepsAfter(id), 1);
    });

    test('a reloaded chat finds the approval asked, and its denial finishes the turn', async () => {
      const id = `toolu_reload_${kind}`;
      callThenText(id, 'delete', { path: '/tmp/y' }, 'I kept it.');
      const tid = await service.thread([DELETE]);
      const first = toolChat(kind, tid, []);
      await first.sendMessage({ text: 'Delete /tmp/y' });
      first.transport.close?.();

      // The page reloads: a new chat, on the same id, resumes.
      const ran = [];
      const reloaded = toolChat(kind, tid, ran);
      await reloaded.resumeStream();
      assert.equal(reloaded.error, undefined);
      assert.equal(reloaded.messages.length, 1);
      assert.equal(reloaded.lastMessage.id, first.lastMessage.id, 'the same answer');
      const asked = toolPart(reloaded.lastMessage, id);
      assert.equal(asked.state, 'approval-requested', 'the approval still waits');
      assert.deepEqual(asked.input, { path: '/tmp/y' });
      assert.equal(reloaded.status, 'ready');

      await reloaded.addToolApprovalResponse({ id, approved: false, reason: 'keep it' });
      await idle(reloaded, 'I kept it.');
      reloaded.transport.close?.();
      assert.equal(reloaded.error, undefined);
      assert.deepEqual(ran, []);
      assert.equal(reloaded.messages.length, 1);
      assert.equal(toolPart(reloaded.lastMessage, id).state, 'output-denied');
      const stored = await service.settled(tid);
      assert.equal(stored.status, 'complete');
      assert.equal(JSON.parse(stored.blocks[2].text), 'denied by the user: keep it');
      assert.equal(stepsAfter(id), 1);
    });

    test('two chats decide one approval at once: one wins, the other shows that decision, no error', async () => {
      const id = `toolu_race_${kind}`;
      callThenText(id, 'delete', { path: '/tmp/z' }, 'All settled.');
      const tid = await service.thread([DELETE]);
      const [ranA, ranB] = [[], []];
      const a = toolChat(kind, tid, ranA);
      await a.sendMessage({ text: 'Delete /tmp/z' });
      const b = toolChat(kind, tid, ranB);
      await b.resumeStream();
      assert.equal(toolPart(b.lastMessage, id).state, 'approval-requested');

      // A approves and B denies, at once.
      await Promise.all([a.addToolApprovalResponse({ id, approved: true }), b.addToolApprovalResponse({ id, approved: false })]);
      await idle(a, 'All settled.');
      await idle(b, 'All settled.');
      a.transport.close?.();
      b.transport.close?.();

      const stored = await service.settled(tid);
      assert.equal(stored.status, 'complete');
      const won = !stored.blocks[2].is_error;
      for (const [chat, name] of [[a, 'A'], [b, 'B']]) {
        assert.equal(chat.error, undefined, `${name}: no error`);
        assert.equal(chat.status, 'ready');
        assert.equal(chat.messages.filter((m) => m.role === 'assistant').length, 1, `${name}: one UI message`);
        assert.equal(chat.lastMessage.id, stored.id);
        const part = toolPart(chat.lastMessage, id);
        assert.equal(part.approval.approved, won, `${name} shows the decision that won`);
        assert.equal(part.state, won ? 'output-available' : 'output-denied', `${name}: ${JSON.stringify(part)}`);
        assert.equal(textOf(chat.lastMessage), stored.content);
      }
      if (won) assert.ok(ranA.length + ranB.length >= 1, 'the approved call ran');
      else assert.deepEqual([...ranA, ...ranB], [], 'a denied call never runs');
      assert.equal(stepsAfter(id), 1, 'the next step was asked once');
    });

    test('a decision that comes after the other won gets the finished message with the winning one', async () => {
      const id = `toolu_late_${kind}`;
      callThenText(id, 'delete', { path: '/tmp/w' }, 'Gone.');
      const tid = await service.thread([DELETE]);
      const [ranA, ranB] = [[], []];
      const a = toolChat(kind, tid, ranA);
      await a.sendMessage({ text: 'Delete /tmp/w' });
      const b = toolChat(kind, tid, ranB);
      await b.resumeStream();
      await a.addToolApprovalResponse({ id, approved: true });
      await idle(a, 'Gone.');
      const stored = await service.settled(tid);
      assert.equal(stored.status, 'complete');

      // B still shows the approval asked, and denies it: too late.
      assert.equal(toolPart(b.lastMessage, id).state, 'approval-requested');
      await b.addToolApprovalResponse({ id, approved: false });
      await idle(b, 'Gone.');
      a.transport.close?.();
      b.transport.close?.();
      assert.equal(b.error, undefined, 'no error');
      assert.equal(b.messages.length, 1);
      assert.equal(b.lastMessage.id, stored.id);
      const part = toolPart(b.lastMessage, id);
      assert.equal(part.approval.approved, true, 'the approval that won');
      assert.equal(part.state, 'output-available');
      assert.deepEqual(part.output, { deleted: true });
      assert.equal(textOf(b.lastMessage), stored.content);
      assert.deepEqual([ranA.length, ranB.length], [1, 0], 'run once, by the tab whose approval won');
      assert.equal(stepsAfter(id), 1);
    });
  });
}

test('a turn that names an answer of no chat is refused in the contract\'s shape', async () => {
  const body = { id: generateId(), trigger: 'submit-message', messageId: 'x',
    messages: [{ id: 'x', role: 'assistant', parts: [{ type: 'tool-look', toolCallId: 'c', state: 'output-available', output: 1 }] }] };
  const r = await fetch(`${service.base}/v1/projects/${service.pid}/chat`, {
    method: 'POST', headers: { authorization: `Bearer ${service.key}`, 'content-type': 'application/json' }, body: JSON.stringify(body),
  });
  assert.equal(r.status, 404);
  assert.equal((await r.json()).error.code, 'not_found');
});
