// transcript.js: the messages of one thread, rebuilt from its history and
// its events (part of /client/convo.js).
//
// Offsets in `message.delta` events are UTF-8 bytes, not JavaScript
// string indices, so the byte helpers live with the only code that needs
// them. `Transcript` is pure (no I/O, no timers): `Hub` keeps one per
// thread in the worker and each tab keeps its own copy, fed the same
// events, and the node suite tests it without a browser.
//
// Answers in several steps stay one message: `message.awaiting` sets its
// status to `awaiting_input` with its `pending` calls, `tool.resolved`
// takes one call off that list (a decision is kept in `decisions`, by
// call id, since the history does not say who approved), and
// `message.step` sets it back to `streaming`; `tool_result` blocks keep
// their `tool_use_id` and `is_error`.
//
// A delta's work does not grow with the answer: its text is appended to
// its block and, when that is the last text block, to `content`.

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** The UTF-8 length of a string, in bytes (offsets are UTF-8 bytes). */
export function utf8Length(s) {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c <= 0xdbff) { n += 4; i++; } else n += 3;
  }
  return n;
}

/** `s` without its first `bytes` UTF-8 bytes. */
function dropBytes(s, bytes) {
  return bytes <= 0 ? s : decoder.decode(encoder.encode(s).subarray(bytes));
}

function copyMessage(m) {
  return {
    ...m, blocks: (m.blocks || []).map((b) => ({ ...b })), usage: m.usage && { ...m.usage },
    pending: (m.pending || []).map((p) => ({ ...p })), decisions: { ...m.decisions },
  };
}

function joinText(m) {
  m.content = m.blocks.filter((b) => b.kind === 'text').map((b) => b.text).join('');
}

/** Whether block `i` is the last text block of `m` (where a delta's text
 * simply extends `content`). */
function lastText(m, i) {
  for (let j = i + 1; j < m.blocks.length; j++) if (m.blocks[j].kind === 'text') return false;
  return m.blocks[i].kind === 'text';
}

/**
 * The messages of one thread, rebuilt from its history and its events.
 *
 * A block's text is append-only, so a delta (`offset`, `text`) either
 * continues it, repeats part of what is there (only the new tail is
 * added), or leaves a gap (nothing is applied; `apply` answers
 * `{resync: true}`: fetch the history again). After an `error` event with
 * code `cursor_ahead`, the next message the server replays replaces what
 * was shown of it (its deltas start again at offset 0).
 */
export class Transcript {
  constructor(messages = []) {
    this.messages = messages.map(copyMessage).sort((a, b) => a.position - b.position);
    this.lengths = new WeakMap();
    this.replacing = false;
  }

  /** The cursor right after everything in `messages` (history order). */
  static cursorAfter(messages) {
    const last = messages[messages.length - 1];
    if (!last) return null;
    if (last.role === 'user') return `${last.id}:1:0`;
    const n = last.blocks.length;
    if (last.status !== 'streaming') return `${last.id}:${n}:0`;
    if (n === 0) return `${last.id}:0:0`;
    return `${last.id}:${n - 1}:${utf8Length(last.blocks[n - 1].text)}`;
  }

  get(id) { return this.messages.find((m) => m.id === id) || null; }

  /** Whether an answer is being written. */
  get generating() { return this.messages.some((m) => m.status === 'streaming'); }

  /** Whether an answer waits for tool results or approvals. */
  get awaiting() { return this.messages.some((m) => m.status === 'awaiting_input'); }

  insert(message) {
    const at = this.messages.findIndex((m) => m.position > message.position);
    if (at < 0) this.messages.push(message); else this.messages.splice(at, 0, message);
    return message;
  }

  /** The message an event is about, created if it began just now. */
  target(ev) {
    let m = this.get(ev.message_id);
    if (!m && ev.type === 'message.started') {
      const last = this.messages[this.messages.length - 1];
      m = this.insert({
        id: ev.message_id, role: ev.role, model: ev.model, status: 'streaming', blocks: [], content: '',
        position: last ? last.position + 1 : 0, stop_reason: null, error: null,
        usage: { input_tokens: 0, output_tokens: 0 }, pending: [], decisions: {},
      });
    }
    if (m && this.replacing) {
      this.replacing = false;
      m.blocks = [];
      m.content = '';
    }
    return m;
  }

  bytes(block) {
    let n = this.lengths.get(block);
    if (n === undefined) { n = utf8Length(block.text); this.lengths.set(block, n); }
    return n;
  }

  /** Applies one event. Answers `{message}` (the id of the message that
   * changed, if one did) and `resync: true` when the history must be
   * fetched again (a gap, or `cursor_invalid`). */
  apply(ev) {
    switch (ev.type) {
      case 'message.created': {
        const m = this.get(ev.message.id);
        if (m) Object.assign(m, copyMessage(ev.message)); else this.insert(copyMessage(ev.message));
        return { message: ev.message.id };
      }
      case 'message.started': {
        const m = this.target(ev);
        return { message: m.id };
      }
      case 'message.block': {
        const m = this.target(ev);
        if (!m || ev.block > m.blocks.length) return { resync: true };
        const block = m.blocks[ev.block] || { kind: ev.kind, text: '' };
        const changed = block.kind !== ev.kind && block.text;
        block.kind = ev.kind;
        if (ev.id) block.id = ev.id;
        if (ev.name) block.name = ev.name;
        if (ev.tool_use_id) block.tool_use_id = ev.tool_use_id;
        if (ev.is_error !== undefined) block.is_error = ev.is_error;
        m.blocks[ev.block] = block;
        if (changed) joinText(m);
        return { message: m.id };
      }
      case 'message.delta': {
        const m = this.target(ev);
        if (!m || ev.block > m.blocks.length) return { resync: true };
        if (!m.blocks[ev.block]) m.blocks[ev.block] = { kind: 'text', text: '' };
        const block = m.blocks[ev.block];
        const have = this.bytes(block);
        if (ev.offset > have) return { resync: true };
        const size = utf8Length(ev.text);
        if (ev.offset + size <= have) return {};
        const added = dropBytes(ev.text, have - ev.offset);
        block.text += added;
        this.lengths.set(block, ev.offset + size);
        // The usual case, text added at the end, costs the same at any
        // length of the answer (no joining of all its text per delta).
        if (lastText(m, ev.block)) m.content += added; else joinText(m);
        return { message: m.id };
      }
      case 'message.completed': {
        const m = this.target(ev);
        if (!m) return { resync: true };
        Object.assign(m, { status: ev.status, stop_reason: ev.stop_reason, usage: ev.usage, error: ev.error,
          pending: [] });
        joinText(m);
        return { message: m.id };
      }
      case 'message.awaiting': {
        const m = this.target(ev);
        if (!m) return { resync: true };
        m.status = 'awaiting_input';
        m.pending = ev.pending.map((p) => ({ ...p }));
        return { message: m.id };
      }
      case 'tool.resolved': {
        const m = this.get(ev.message_id);
        if (!m) return { resync: true };
        m.pending = m.pending.filter((p) => p.tool_call_id !== ev.tool_call_id);
        if (ev.needs === 'approval') m.decisions[ev.tool_call_id] = ev.approved === true;
        // Nothing left to wait for: the answer goes on by itself.
        if (!m.pending.length && m.status === 'awaiting_input') m.status = 'streaming';
        return { message: m.id };
      }
      case 'message.step': {
        const m = this.target(ev);
        if (!m) return { resync: true };
        m.status = 'streaming';
        m.pending = [];
        return { message: m.id };
      }
      case 'message.continued': {
        // The answer was cut and goes on in place (the stored message
        // counts it as `continuations`).
        const m = this.get(ev.message_id);
        if (!m) return {};
        m.continuations = Math.max(m.continuations || 0, ev.attempt);
        m.continued_reason = ev.reason;
        return { message: m.id };
      }
      case 'error':
        if (ev.code === 'cursor_ahead') this.replacing = true;
        return ev.code === 'cursor_invalid' ? { resync: true } : {};
      default:
        return {};
    }
  }
}
