// Threads by their titles: a thread's title in its header, renamed in
// place (click the title or Rename, Enter saves, Escape cancels), and the
// word between this browser's tabs that a project's threads changed, so
// a thread list shows a new title without waiting for its next refresh.
//
// The service names a new thread after its first question and tells the
// thread's subscribers with `thread.updated`; a rename is a PATCH that
// every subscriber hears the same way. A tab that hears of a change (or
// made one) says so on a BroadcastChannel of this origin; tabs showing
// that project's list load it again. Text is only ever set as text.

import { h } from './dom.js';

export const UNTITLED = 'Untitled thread';

/** `fn` called once `ms` after the last of a burst of calls. */
export function debounce(fn, ms) {
  let timer = null;
  const later = (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
  later.cancel = () => clearTimeout(timer);
  return later;
}

const channel = 'BroadcastChannel' in globalThis ? new BroadcastChannel('convo.threads') : null;

/** Tells this browser's other tabs that threads of project `pid` changed
 * (a title, a new thread, a deleted one). */
export function announceThreads(pid) {
  channel?.postMessage({ type: 'threads', pid });
}

/** Calls `fn` when another tab says threads of `pid` changed; answers a
 * function that stops listening. */
export function onThreadsChanged(pid, fn) {
  if (!channel) return () => {};
  const listener = ({ data }) => { if (data?.type === 'threads' && data.pid === pid) fn(); };
  channel.addEventListener('message', listener);
  return () => channel.removeEventListener('message', listener);
}

/**
 * A thread's title in its header, renamed in place. `save(title)` (null:
 * no title) resolves to the thread as changed or throws; `problem(error)`
 * is told of a failed save (the input stays open with what was typed).
 * `show(thread)` sets the title as it stands (also while renaming: what
 * is being typed is kept).
 */
export class ThreadTitle {
  constructor({ save, problem }) {
    this.save = save;
    this.problem = problem;
    this.title = '';
    this.heading = h('h1', { class: 'thread-title', 'data-testid': 'thread-heading', title: 'Click to rename' }, UNTITLED);
    this.rename = h('button', { type: 'button', class: 'act small rename', 'data-testid': 'rename',
      'aria-label': 'Rename thread', title: 'Rename thread' }, 'Rename');
    this.input = h('input', { class: 'title-input', hidden: true, maxlength: 200, 'aria-label': 'Thread title',
      'data-testid': 'rename-input', placeholder: UNTITLED, autocomplete: 'off' });
    this.element = h('div', { class: 'title-line' }, this.heading, this.input, this.rename);
    this.saving = false;
    this.heading.addEventListener('click', () => this.edit());
    this.rename.addEventListener('click', () => this.edit());
    this.input.addEventListener('keydown', (e) => {
      if (e.key === 'Enter' && !e.isComposing) { e.preventDefault(); this.commit(); }
      if (e.key === 'Escape') { e.preventDefault(); e.stopPropagation(); this.close(); }
    });
    // Leaving the field keeps what was typed, as Enter would.
    this.input.addEventListener('blur', () => { if (!this.input.hidden && !this.saving) this.commit(); });
  }

  show(thread) {
    this.title = thread.title || '';
    this.heading.textContent = this.title || UNTITLED;
    this.heading.classList.toggle('untitled', !this.title);
  }

  edit() {
    if (!this.input.hidden) return;
    this.input.value = this.title;
    this.heading.hidden = true;
    this.rename.hidden = true;
    this.input.hidden = false;
    this.input.focus();
    this.input.select();
  }

  close() {
    const focused = this.element.contains(document.activeElement);
    this.input.hidden = true;
    this.heading.hidden = false;
    this.rename.hidden = false;
    if (focused) this.rename.focus();
  }

  async commit() {
    if (this.saving) return;
    const title = this.input.value.trim();
    if (title === this.title) return this.close();
    this.saving = true;
    this.input.disabled = true;
    try {
      this.show(await this.save(title || null));
      this.input.disabled = false;
      this.saving = false;
      this.close();
    } catch (e) {
      this.input.disabled = false;
      this.saving = false;
      this.input.focus();
      this.problem(e);
    }
  }
}
