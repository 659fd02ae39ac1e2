// Tool calls in the transcript: each call of an answer is a card with
// its name, its input and, once known, its result. A call that waits for
// a person shows Approve and Deny (the first decision wins, from any tab;
// the buttons go when anyone decided); a call that waits for a
// client-run result says so and has no buttons (the page runs no tools);
// a call the service runs itself (a tool at a URL) shows it running.
// Cards look like the answers around them: a meta row with the tool's
// name and its state as a pill, and buttons shaped like the message
// actions (./message-actions.js).

import { h, pretty } from './dom.js';

/** The card of tool call `id` in a message: its name, its input, the
 * Approve and Deny buttons while a person must decide (a click calls
 * `decide(call, id, approved)`), and its result once known. Made on first
 * sight, kept in `r.calls`, then only updated (the buttons keep their
 * focus across events). */
export function callCard(r, id, name, decide) {
  let call = r.calls.get(id);
  if (call) return call;
  name = name || 'tool';
  call = {
    state: h('span', { class: 'tool-state', 'data-testid': 'tool-state' }),
    input: h('pre', { class: 'tool-input', 'data-testid': 'tool-input' }),
    approve: h('button', { type: 'button', class: 'act primary small', 'data-testid': 'tool-approve',
      'aria-label': `Approve ${name}` }, 'Approve'),
    deny: h('button', { type: 'button', class: 'act danger small', 'data-testid': 'tool-deny',
      'aria-label': `Deny ${name}` }, 'Deny'),
    resultLabel: h('span', { class: 'tool-result-label' }),
    resultText: h('pre', {}),
    outcome: null,
  };
  call.actions = h('div', { class: 'tool-actions', role: 'group', hidden: true, 'aria-label': `Decide on ${name}` },
    call.approve, call.deny);
  call.result = h('div', { class: 'tool-result', hidden: true, 'data-testid': 'tool-result' },
    call.resultLabel, call.resultText);
  call.approve.addEventListener('click', () => decide(call, id, true));
  call.deny.addEventListener('click', () => decide(call, id, false));
  call.element = h('div', { class: 'block tool', 'data-testid': 'tool-use', 'data-call-id': id },
    h('div', { class: 'tool-name' }, h('span', { class: 'muted' }, 'Tool call '),
      h('code', { 'data-testid': 'tool-name' }, name), ' ', call.state),
    call.input, call.actions, call.result);
  r.tools.append(call.element);
  r.calls.set(id, call);
  return call;
}

export function renderCall(call, block, whole) {
  const text = whole ? pretty(block.text || '{}') : block.text;
  if (call.input.textContent !== text) call.input.textContent = text;
}

export function renderResult(call, block) {
  call.outcome = { isError: block.is_error === true, text: block.text };
  const text = pretty(block.text);
  if (call.resultText.textContent !== text) call.resultText.textContent = text;
}

/** Where a call stands: waiting for a person or the application,
 * decided, answered. The Approve and Deny buttons show only while a
 * person must decide, in every tab, and go once anyone decided. */
export function renderCallState(call, m, id) {
  const waiting = (m.pending || []).find((p) => p.tool_call_id === id);
  const decided = m.decisions?.[id];
  const out = call.outcome;
  // The history keeps no decision: a denial is an error result that says so.
  const denied = decided === false || (out?.isError && /^denied by the user/.test(pretty(out.text)));
  let state = '';
  let label = '';
  if (waiting?.needs === 'approval') [state, label] = ['approval', 'Needs your approval'];
  else if (waiting) [state, label] = ['result', decided ? 'Approved, waiting for the application' : 'Waiting for the application'];
  else if (denied) [state, label] = ['denied', 'Denied'];
  else if (out) [state, label] = out.isError ? ['error', 'Error'] : ['done', decided ? 'Approved, done' : 'Done'];
  // Approved and not waiting for the application: the service calls it.
  else if (decided) [state, label] = ['approved', 'Approved, calling…'];
  // Streaming, or the answer waits for no one here: the service calls it.
  else if (m.status === 'streaming' || m.status === 'awaiting_input') [state, label] = ['calling', 'Calling…'];
  call.element.dataset.state = state;
  call.state.dataset.state = state;
  if (call.state.textContent !== label) call.state.textContent = label;
  call.actions.hidden = state !== 'approval';
  call.result.hidden = !out;
  call.resultLabel.textContent = denied ? 'Denied' : out?.isError ? 'Error' : 'Result';
}
