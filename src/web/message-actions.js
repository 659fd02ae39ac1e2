// What a reader can do with a message, in its meta row: Copy an answer
// (its text, as the model wrote it); Retry the newest answer when it
// failed, was interrupted or was stopped, and Regenerate it when it is
// complete (both ask the newest question again: the thread keeps every
// answer); Edit a question (its text goes back into the composer and is
// sent as a new question: the earlier turn stays).
//
// Only the newest answer offers Retry or Regenerate, and nothing that
// starts an answer is enabled while one is written or waits for tools.
// The buttons are real buttons with labels; the page's style sheet shows
// them on hover and focus with a mouse, and always on touch screens and
// on the newest message. Text is only ever set as text.

import { h } from './dom.js';

/** Answers that can be asked again with Retry (rather than Regenerate). */
const RETRIED = new Set(['failed', 'interrupted', 'cancelled']);

/** Puts `text` on the clipboard: the Clipboard API where the page may
 * use it (a secure context), else the older copy command on a hidden
 * selection. Throws when the browser allows neither. */
export async function copyText(text) {
  if (globalThis.isSecureContext && navigator.clipboard?.writeText) {
    await navigator.clipboard.writeText(text);
    return;
  }
  const back = document.activeElement;
  const area = h('textarea', { readonly: true, class: 'visually-hidden', 'aria-hidden': 'true', tabindex: -1 });
  area.value = text;
  document.body.append(area);
  area.select();
  const done = document.execCommand('copy');
  area.remove();
  back?.focus?.();
  if (!done) throw new Error('This browser did not allow copying.');
}

/**
 * The actions of every message of one thread view. `element(m)` makes a
 * message's group of buttons once (for its meta row); `sync(view, busy)`
 * shows and enables them for the thread as it stands (`busy`: this tab is
 * sending something). Handlers: `regenerate(m)` (Retry and Regenerate),
 * `edit(m)` (a question), `problem(text)` (a copy the browser refused),
 * and optionally `copy(text)`.
 */
export class MessageActions {
  constructor({ regenerate, edit, problem, copy = copyText }) {
    Object.assign(this, { onRegenerate: regenerate, onEdit: edit, onProblem: problem, copy });
    this.groups = new Map();
  }

  element(m) {
    let g = this.groups.get(m.id);
    if (g) return g.element;
    const what = m.role === 'user' ? 'question' : 'answer';
    const button = (name, label, onclick) => h('button', { type: 'button', class: 'act small', 'data-testid': `action-${name}`,
      'aria-label': `${label} this ${what}`, title: `${label} this ${what}`, onclick }, label);
    g = { role: m.role, message: m };
    if (m.role === 'user') {
      g.edit = button('edit', 'Edit', () => this.onEdit(g.message));
      g.element = h('div', { class: 'msg-actions', role: 'group', 'aria-label': 'Question actions' }, g.edit);
    } else {
      g.copyButton = button('copy', 'Copy', () => this.copyAnswer(g));
      g.retry = button('retry', 'Retry', () => this.onRegenerate(g.message));
      g.regenerate = button('regenerate', 'Regenerate', () => this.onRegenerate(g.message));
      g.element = h('div', { class: 'msg-actions', role: 'group', 'aria-label': 'Answer actions' },
        g.copyButton, g.retry, g.regenerate);
    }
    this.groups.set(m.id, g);
    this.place(g, null, false);
    return g.element;
  }

  async copyAnswer(g) {
    const button = g.copyButton;
    try {
      await this.copy(g.message.content || '');
      clearTimeout(g.copiedTimer);
      button.textContent = 'Copied';
      button.setAttribute('aria-label', 'Copied this answer');
      button.dataset.copied = 'true';
      g.copiedTimer = setTimeout(() => {
        button.textContent = 'Copy';
        button.setAttribute('aria-label', 'Copy this answer');
        delete button.dataset.copied;
      }, 1500);
    } catch (e) {
      this.onProblem(`Could not copy: ${e?.message || e}`);
    }
  }

  /** Shows and enables each message's buttons for `view` (a `client.watch`
   * view): only the newest answer can be asked again, and nothing starts
   * an answer while one runs or waits, or while `busy`. */
  sync(view, busy = false) {
    const messages = view.messages;
    const newest = messages[messages.length - 1];
    const closed = view.state === 'closed';
    const blocked = busy || closed || view.generating || view.awaiting;
    for (const m of messages) {
      const g = this.groups.get(m.id);
      if (g) {
        g.message = m;
        this.place(g, m === newest ? m : null, blocked);
      }
    }
  }

  place(g, newest, blocked) {
    g.element.toggleAttribute('data-newest', Boolean(newest));
    const m = g.message;
    if (g.role === 'user') {
      g.edit.disabled = blocked;
      return;
    }
    g.copyButton.hidden = !m.content;
    g.copyButton.disabled = m.status === 'streaming';
    g.retry.hidden = !(newest && RETRIED.has(m.status));
    g.regenerate.hidden = !(newest && m.status === 'complete');
    g.retry.disabled = blocked;
    g.regenerate.disabled = blocked;
    g.element.hidden = g.copyButton.hidden && g.retry.hidden && g.regenerate.hidden;
  }
}

/**
 * Editing a question in the composer: `start(text)` puts the question's
 * text there (keeping what was being typed, for Cancel or Escape) and
 * says that it is sent as a new question; `done()` after it was sent.
 * `element` is the note to show beside the composer.
 */
export class QuestionEditor {
  constructor(composer) {
    this.composer = composer;
    this.kept = null;
    const cancel = h('button', { type: 'button', class: 'link small', 'data-testid': 'edit-cancel',
      onclick: () => this.cancel() }, 'Cancel');
    this.element = h('div', { class: 'editing', hidden: true, 'data-testid': 'editing' },
      h('span', {}, 'Editing a question: it is sent as a new question, and the earlier turn stays.'), cancel);
    composer.addEventListener('keydown', (e) => {
      if (e.key === 'Escape' && this.editing) { e.preventDefault(); this.cancel(); }
    });
  }

  get editing() { return !this.element.hidden; }

  start(text) {
    if (!this.editing) this.kept = this.composer.value;
    this.element.hidden = false;
    this.composer.value = text;
    this.composer.focus();
    this.composer.setSelectionRange(text.length, text.length);
  }

  cancel() {
    this.composer.value = this.kept || '';
    this.done();
    this.composer.focus();
  }

  done() {
    this.element.hidden = true;
    this.kept = null;
  }
}
