// The client's Transcript, without a browser: deltas merge at their byte
// offsets (UTF-8), repeats add nothing, gaps ask for a resync, and a
// `cursor_ahead` replay replaces what was shown; an answer in several
// steps (awaiting, resolved, the next step) stays one message.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { Transcript, utf8Length } from '../../src/web/client/convo.js';

const M = '01900000-0000-7000-8000-000000000001';
const U = '01900000-0000-7000-8000-000000000000';
const delta = (block, offset, text) => ({ type: 'message.delta', message_id: M, block, offset, text });
const started = { type: 'message.started', message_id: M, role: 'assistant', model: 'm' };
const block = (b, kind) => ({ type: 'message.block', message_id: M, block: b, kind });

function answer() {
  const t = new Transcript([{ id: U, role: 'user', position: 0, status: 'complete', content: 'hi',
    blocks: [{ kind: 'text', text: 'hi' }] }]);
  t.apply(started);
  t.apply(block(0, 'text'));
  return t;
}

test('UTF-8 lengths are byte counts', () => {
  assert.equal(utf8Length('aé€😀'), 1 + 2 + 3 + 4);
});

test('deltas append at their byte offsets; a repeat adds only what is new', () => {
  const t = answer();
  t.apply(delta(0, 0, 'né'));
  t.apply(delta(0, 3, '€x'));
  assert.equal(t.get(M).content, 'né€x');
  // A replay of what is there changes nothing; an overlap adds its tail.
  assert.deepEqual(t.apply(delta(0, 0, 'né€')), {});
  t.apply(delta(0, 3, '€xy😀'));
  assert.equal(t.get(M).content, 'né€xy😀');
  assert.equal(t.get(M).position, 1, 'an answer follows its question');
});

test('a gap is not applied and asks for the history again', () => {
  const t = answer();
  t.apply(delta(0, 0, 'abc'));
  assert.deepEqual(t.apply(delta(0, 5, 'zz')), { resync: true });
  assert.equal(t.get(M).content, 'abc');
  assert.deepEqual(t.apply({ type: 'error', code: 'cursor_invalid', message: '' }), { resync: true });
});

test('content joins text blocks only; thinking and tool_use keep their own text', () => {
  const t = new Transcript();
  t.apply(started);
  t.apply(block(0, 'thinking'));
  t.apply(delta(0, 0, 'hmm'));
  t.apply(block(1, 'text'));
  t.apply(delta(1, 0, 'Hello'));
  t.apply({ type: 'message.block', message_id: M, block: 2, kind: 'tool_use', id: 'toolu_1', name: 'search' });
  t.apply(delta(2, 0, '{"q":'));
  t.apply(delta(2, 5, '"x"}'));
  t.apply({ type: 'message.completed', message_id: M, status: 'complete', stop_reason: 'tool_use',
    usage: { input_tokens: 1, output_tokens: 2 }, error: null });
  const m = t.get(M);
  assert.equal(m.content, 'Hello');
  assert.deepEqual(m.blocks.map((b) => [b.kind, b.text]),
    [['thinking', 'hmm'], ['text', 'Hello'], ['tool_use', '{"q":"x"}']]);
  assert.equal(m.blocks[2].name, 'search');
  assert.equal(m.status, 'complete');
  assert.equal(t.generating, false);
});

test('after cursor_ahead the replayed message replaces what was shown', () => {
  const t = answer();
  t.apply(delta(0, 0, 'text the crash lost'));
  t.apply(block(1, 'text'));
  t.apply(delta(1, 0, 'a block never stored'));
  t.apply({ type: 'error', code: 'cursor_ahead', message: '' });
  t.apply(block(0, 'text'));
  t.apply(delta(0, 0, 'text the'));
  t.apply({ type: 'message.completed', message_id: M, status: 'interrupted', stop_reason: null,
    usage: { input_tokens: 0, output_tokens: 0 }, error: null });
  assert.deepEqual(t.get(M).blocks.map((b) => b.text), ['text the']);
  assert.equal(t.get(M).content, 'text the');
});

test('the cursor after a history is where its last message stops', () => {
  const user = { id: U, role: 'user', position: 0, status: 'complete', blocks: [{ kind: 'text', text: 'q' }] };
  assert.equal(Transcript.cursorAfter([]), null);
  assert.equal(Transcript.cursorAfter([user]), `${U}:1:0`);
  const streaming = { id: M, role: 'assistant', position: 1, status: 'streaming',
    blocks: [{ kind: 'thinking', text: 'x' }, { kind: 'text', text: 'é€' }] };
  assert.equal(Transcript.cursorAfter([user, streaming]), `${M}:1:5`);
  assert.equal(Transcript.cursorAfter([user, { ...streaming, blocks: [] }]), `${M}:0:0`);
  assert.equal(Transcript.cursorAfter([user, { ...streaming, status: 'complete' }]), `${M}:2:0`);
});

test('an answer in several steps stays one message: awaiting, resolved, the next step', () => {
  const t = answer();
  t.apply(delta(0, 0, 'One moment.'));
  t.apply({ type: 'message.block', message_id: M, block: 1, kind: 'tool_use', id: 'toolu_1', name: 'pay' });
  t.apply(delta(1, 0, '{"amount":5}'));
  const pending = [{ tool_call_id: 'toolu_1', name: 'pay', input: { amount: 5 }, needs: 'approval' }];
  t.apply({ type: 'message.awaiting', message_id: M, pending });
  assert.equal(t.get(M).status, 'awaiting_input');
  assert.deepEqual(t.get(M).pending, pending);
  assert.equal(t.generating, false);
  assert.equal(t.awaiting, true);

  // Approved: the call then waits for its result, told again.
  t.apply({ type: 'tool.resolved', message_id: M, tool_call_id: 'toolu_1', needs: 'approval', approved: true });
  assert.deepEqual(t.get(M).decisions, { toolu_1: true });
  assert.deepEqual(t.get(M).pending, []);
  t.apply({ type: 'message.awaiting', message_id: M, pending: [{ ...pending[0], needs: 'result' }] });
  assert.equal(t.get(M).pending[0].needs, 'result');
  t.apply({ type: 'tool.resolved', message_id: M, tool_call_id: 'toolu_1', needs: 'result', is_error: false });
  t.apply({ type: 'message.block', message_id: M, block: 2, kind: 'tool_result', tool_use_id: 'toolu_1', is_error: false });
  t.apply(delta(2, 0, '{"paid":5}'));
  t.apply({ type: 'message.step', message_id: M, step: 2 });
  assert.equal(t.get(M).status, 'streaming');
  t.apply(block(3, 'text'));
  t.apply(delta(3, 0, ' Paid.'));
  t.apply({ type: 'message.completed', message_id: M, status: 'complete', stop_reason: 'end_turn',
    usage: { input_tokens: 1, output_tokens: 2 }, error: null });

  assert.equal(t.messages.length, 2, 'a question and one answer');
  const m = t.get(M);
  assert.equal(m.content, 'One moment. Paid.');
  assert.deepEqual(m.blocks.map((b) => b.kind), ['text', 'tool_use', 'tool_result', 'text']);
  assert.deepEqual([m.blocks[2].tool_use_id, m.blocks[2].is_error], ['toolu_1', false]);
  assert.deepEqual([m.status, m.pending, t.awaiting], ['complete', [], false]);
});

test('a history message that awaits keeps its pending calls, and its cursor is past its blocks', () => {
  const waiting = { id: M, role: 'assistant', position: 1, status: 'awaiting_input',
    blocks: [{ kind: 'tool_use', id: 'toolu_2', name: 'look', text: '{}' }],
    pending: [{ tool_call_id: 'toolu_2', name: 'look', input: {}, needs: 'result' }] };
  const t = new Transcript([waiting]);
  assert.equal(t.get(M).pending[0].needs, 'result');
  assert.notEqual(t.get(M).pending, waiting.pending, 'a copy, not the history\'s own list');
  assert.equal(Transcript.cursorAfter([waiting]), `${M}:1:0`);
  t.apply({ type: 'tool.resolved', message_id: M, tool_call_id: 'toolu_2', needs: 'result', is_error: true });
  assert.equal(t.get(M).status, 'streaming', 'nothing left to wait for: the answer goes on');
  assert.equal(waiting.pending.length, 1);
});
