// The web page: threads of a project, a thread's live view, the
// operators' view. It speaks only the HTTP contract, through the browser
// client (/client/convo.js). Text is always inserted as text (never as
// HTML); the Content-Security-Policy allows nothing but this origin.
//
// An answer in several steps is one message; its tool calls are cards
// (./tool-cards.js) whose Approve and Deny post this tab's decision.

import { Api, ApiError, connect } from '/client/convo.js';
import { ago, h } from './dom.js';
import { callCard, renderCall, renderCallState, renderResult } from './tool-cards.js';
import { MarkdownView } from './markdown-view.js';
import { MessageActions, QuestionEditor } from './message-actions.js';
import { NotifyToggle } from './notify.js';
import { ThreadTitle, UNTITLED, announceThreads, debounce, onThreadsChanged } from './titles.js';

const meta = (name) => document.querySelector(`meta[name="${name}"]`)?.content;
const HEARTBEAT_MS = Number(meta('convo-heartbeat-ms')) || 15000;
const SECURED = meta('convo-secured') === 'true';
const app = document.getElementById('app');

// ------------------------------------------------------------ helpers

function say(error) {
  if (error instanceof ApiError) {
    if (error.code === 'thread_busy') return 'An answer is still being written: stop it or wait for it.';
    if (error.status === 0) return 'The service cannot be reached.';
    return `${error.message} (${error.code})`;
  }
  return String(error?.message || error);
}

// ------------------------------------------------------- credentials

// The project id is remembered across visits; keys and the admin token
// only for this tab's session, and never in a URL.
const saved = {
  project: () => localStorage.getItem('convo.project'),
  setProject: (pid) => localStorage.setItem('convo.project', pid),
  forgetProject: () => localStorage.removeItem('convo.project'),
  key: (pid) => sessionStorage.getItem(`convo.key.${pid}`),
  setKey: (pid, key) => { sessionStorage.setItem(`convo.key.${pid}`, key); shareKeys(); },
  forgetKey: (pid) => sessionStorage.removeItem(`convo.key.${pid}`),
  admin: () => sessionStorage.getItem('convo.admin'),
  setAdmin: (token) => { sessionStorage.setItem('convo.admin', token); shareKeys(); },
  forgetAdmin: () => sessionStorage.removeItem('convo.admin'),
};

// Keys live for the browser session, shared by its tabs of this origin: a
// tab with none asks the others (BroadcastChannel, same origin only) and
// one that has some answers; a key entered in one tab reaches the others.
// Nothing is written beyond sessionStorage, so closing the browser forgets.
const keyring = 'BroadcastChannel' in window ? new BroadcastChannel('convo.keys') : null;
function heldKeys() {
  const keys = {};
  for (let i = 0; i < sessionStorage.length; i += 1) {
    const name = sessionStorage.key(i);
    if (name?.startsWith('convo.')) keys[name] = sessionStorage.getItem(name);
  }
  return keys;
}
function shareKeys() { keyring?.postMessage({ type: 'keys', keys: heldKeys() }); }
let keysArrived = () => {};
keyring?.addEventListener('message', ({ data }) => {
  if (data?.type === 'ask' && Object.keys(heldKeys()).length) shareKeys();
  if (data?.type === 'keys') {
    for (const [name, value] of Object.entries(data.keys || {})) {
      if (name.startsWith('convo.') && !sessionStorage.getItem(name)) sessionStorage.setItem(name, value);
    }
    keysArrived();
  }
});
/** The keys the other tabs hold, asked for once (waits at most 300 ms). */
function askOtherTabs() {
  if (!keyring) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, 300);
    keysArrived = () => { clearTimeout(timer); resolve(); };
    keyring.postMessage({ type: 'ask' });
  });
}

let currentProject = null;
const credentialsFor = (pid) => (pid && saved.key(pid)) || saved.admin();

const client = connect({
  credentials: () => credentialsFor(currentProject),
  // Minted with the key of the thread's own project.
  streamToken: (pid, tid) => {
    const key = credentialsFor(pid);
    return key ? new Api({ credentials: () => key }).streamToken(pid, tid) : null;
  },
  heartbeatMs: HEARTBEAT_MS,
});
const api = client.api;
const adminApi = new Api({ credentials: () => saved.admin() });

/** The views' common answer to a refused key: ask for it again. */
function refused(error, pid) {
  if (!(error instanceof ApiError) || error.status !== 401) return false;
  if (pid) saved.forgetKey(pid);
  keyForm(pid, 'That key was refused. Enter a key of this project.');
  return true;
}

// ------------------------------------------------------------- router

let leave = () => {};

function route() {
  leave();
  leave = () => {};
  const parts = location.hash.replace(/^#\/?/, '').split('/').filter(Boolean).map(decodeURIComponent);
  document.getElementById('nav-admin').toggleAttribute('aria-current', parts[0] === 'admin');
  document.getElementById('nav-threads').toggleAttribute('aria-current', parts[0] !== 'admin');
  if (parts[0] === 'admin') return adminView();
  if (parts[0] === 'projects' && parts[1]) {
    return projectView(parts[1], parts[2] === 'threads' ? parts[3] || null : null);
  }
  return home();
}

function show(...nodes) {
  app.replaceChildren(...nodes);
}

/** `/`: the remembered project; in open mode a "default" one is made on
 * the first visit; in secured mode the person names it with its key. */
async function home() {
  const pid = saved.project();
  if (pid) return location.replace(`#/projects/${pid}`);
  if (SECURED) return keyForm(null);
  try {
    const project = await api.createProject('default');
    saved.setProject(project.id);
    location.replace(`#/projects/${project.id}`);
  } catch (e) {
    show(h('p', { class: 'pad error' }, say(e)));
  }
}

function keyForm(pid, problem = null) {
  document.getElementById('project').textContent = '';
  const form = h('form', { class: 'card narrow', 'data-testid': 'key-form' },
    h('h1', {}, 'Open a project'),
    h('p', { class: 'muted' }, 'This service needs a project key. It is kept for this browser session, in its tabs '
      + 'of this page only (sessionStorage), and forgotten when the browser closes.'),
    problem && h('p', { class: 'error', role: 'alert' }, problem),
    h('label', {}, 'Project id', h('input', { name: 'project', required: true, value: pid || saved.project() || '',
      autocomplete: 'off', spellcheck: 'false', 'data-testid': 'key-project' })),
    h('label', {}, 'Project key', h('input', { name: 'key', type: 'password', required: true, autocomplete: 'off',
      'data-testid': 'key-input' })),
    h('button', { class: 'primary', 'data-testid': 'key-submit' }, 'Open'));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const project = form.elements.project.value.trim();
    saved.setKey(project, form.elements.key.value.trim());
    saved.setProject(project);
    if (location.hash === `#/projects/${project}`) route(); else location.hash = `#/projects/${project}`;
  });
  show(form);
  form.querySelector(pid ? 'input[name=key]' : 'input').focus();
}

// -------------------------------------------------- project & threads

async function projectView(pid, tid) {
  currentProject = pid;
  if (SECURED && !credentialsFor(pid)) await askOtherTabs();
  if (SECURED && !credentialsFor(pid)) return keyForm(pid);
  saved.setProject(pid);
  showProjectName(pid);
  const list = threadList(pid, tid);
  const main = h('section', { class: 'main' });
  const layout = h('div', { class: tid ? 'layout layout--thread' : 'layout' }, list.element, main);
  show(layout);
  const stops = [list.stop];
  if (tid) stops.push(threadView(pid, tid, main, list));
  else main.append(h('div', { class: 'empty' }, h('p', {}, 'Pick a thread, or start a new one.')));
  leave = () => stops.forEach((stop) => stop());
  list.refresh().catch((e) => {
    if (refused(e, pid)) return;
    if (e instanceof ApiError && e.status === 404 && !SECURED && !tid) {
      // The remembered project is gone (a new database): start afresh.
      saved.forgetProject();
      return home();
    }
    list.problem(say(e));
  });
}

/** The header names the project by its name (never by its id). */
const projectNames = new Map();
function showProjectName(pid) {
  const el = document.getElementById('project');
  const name = (text) => el.replaceChildren(h('span', { class: 'visually-hidden' }, 'Project: '), text);
  if (projectNames.has(pid)) return name(projectNames.get(pid));
  el.replaceChildren();
  api.project(pid).then((p) => {
    projectNames.set(pid, p.name);
    if (currentProject === pid && !location.hash.startsWith('#/admin')) name(p.name);
  }, () => {});
}

/** What the thread list says of a thread that is not idle. */
const STATUS_NOTE = { generating: 'answering… · ', awaiting_input: 'waiting for input · ' };

function threadList(pid, currentTid) {
  const items = h('ul', { class: 'tl', 'aria-label': 'Threads' });
  const more = h('button', { class: 'link', hidden: true, 'data-testid': 'more-threads' }, 'Older threads');
  const problem = h('p', { class: 'error', role: 'alert', hidden: true });
  // A search over titles, asked of the service a moment after typing stops.
  const search = h('input', { type: 'search', class: 'tl-search', placeholder: 'Search titles',
    'aria-label': 'Search thread titles', 'data-testid': 'thread-search', autocomplete: 'off', spellcheck: 'false' });
  const none = h('p', { class: 'muted tl-none', role: 'status', 'data-testid': 'no-threads', hidden: true });
  let query = '';
  let asked = 0;
  const form = newThreadForm(pid);
  const open = h('button', { class: 'primary', 'data-testid': 'new-thread', 'aria-expanded': 'false',
    onclick: () => form.toggle() }, 'New thread');
  form.onToggle = (opened) => open.setAttribute('aria-expanded', String(opened));
  let next = null;
  let alive = true;
  // The thread whose delete button asks "Delete?" now: kept here, not in
  // the button, so a refresh of the list meanwhile does not forget it.
  let armed = null;
  let disarm = null;

  const item = (t) => {
    const href = `#/projects/${pid}/threads/${t.id}`;
    const del = h('button', { class: 'tl-delete', 'data-testid': 'delete-thread',
      'aria-label': `Delete thread ${t.title || 'Untitled'}`, title: 'Delete' }, '×');
    const arm = (on) => { del.textContent = on ? 'Delete?' : '×'; del.classList.toggle('armed', on); };
    arm(armed === t.id);
    del.addEventListener('click', async () => {
      const disarmAll = () => items.querySelectorAll('.tl-delete.armed').forEach((b) => {
        b.textContent = '×';
        b.classList.remove('armed');
      });
      if (armed !== t.id) {
        disarmAll();
        armed = t.id;
        arm(true);
        clearTimeout(disarm);
        disarm = setTimeout(() => { armed = null; disarmAll(); }, 3000);
        return;
      }
      clearTimeout(disarm);
      armed = null;
      try {
        await api.deleteThread(pid, t.id);
        announceThreads(pid);
        if (t.id === currentTid) location.hash = `#/projects/${pid}`; else await refresh();
      } catch (e) { problem.hidden = false; problem.textContent = say(e); }
    });
    return h('li', { class: t.id === currentTid ? 'tl-item current' : 'tl-item' },
      h('a', { href, 'data-testid': 'thread-link', 'data-thread-id': t.id,
        'aria-current': t.id === currentTid ? 'page' : null },
      h('span', { class: t.title ? 'tl-title' : 'tl-title untitled' }, t.title || UNTITLED),
      h('span', { class: 'tl-meta' }, STATUS_NOTE[t.status] || '', ago(t.updated_at))),
      del);
  };

  async function load(cursor) {
    // Only the latest load counts (a search typed meanwhile wins).
    const mine = ++asked;
    const page = await api.threads(pid, { limit: 20, cursor, search: query });
    if (!alive || mine !== asked) return;
    if (!cursor) items.replaceChildren();
    items.append(...page.data.map(item));
    next = page.next_cursor;
    more.hidden = !next;
    const empty = !cursor && page.data.length === 0;
    none.hidden = !empty;
    none.textContent = !empty ? '' : query ? `No thread has “${query}” in its title.` : 'No threads yet.';
  }
  const refresh = () => load(null);
  const fail = (e) => { problem.hidden = false; problem.textContent = say(e); };
  more.addEventListener('click', () => load(next).catch(fail));
  const searchSoon = debounce(() => {
    if (search.value.trim() === query) return;
    query = search.value.trim();
    refresh().then(() => { problem.hidden = true; }, fail);
  }, 250);
  search.addEventListener('input', searchSoon);
  search.addEventListener('keydown', (e) => { if (e.key === 'Enter') e.preventDefault(); });
  // Titles change in other tabs (a rename, a new thread named by its
  // first question): this list follows.
  const refreshSoon = debounce(() => refresh().catch(() => {}), 150);
  const unlisten = onThreadsChanged(pid, refreshSoon);

  const element = h('aside', { class: 'sidebar', 'aria-label': 'Threads of this project' },
    h('div', { class: 'sidebar-head' }, open), form.element,
    h('div', { class: 'tl-find', role: 'search' }, search), problem, items, none, more);
  return {
    element, refresh, refreshSoon,
    problem: (text) => { problem.hidden = false; problem.textContent = text; },
    stop: () => { alive = false; searchSoon.cancel(); refreshSoon.cancel(); unlisten(); },
  };
}

function newThreadForm(pid) {
  const title = h('input', { name: 'title', maxlength: 200, placeholder: 'Title', 'data-testid': 'thread-title' });
  const system = h('textarea', { name: 'system', rows: 3, placeholder: 'System prompt (optional)',
    'data-testid': 'thread-system' });
  const model = h('input', { name: 'model', maxlength: 200, placeholder: 'Model (optional)', 'data-testid': 'thread-model' });
  const problem = h('p', { class: 'error', role: 'alert', hidden: true });
  const element = h('form', { class: 'new-thread', hidden: true, 'data-testid': 'new-thread-form' },
    h('label', {}, 'Title', title), h('label', {}, 'System prompt', system), h('label', {}, 'Model', model), problem,
    h('div', { class: 'row' },
      h('button', { class: 'primary', 'data-testid': 'create-thread' }, 'Create'),
      h('button', { type: 'button', class: 'link', onclick: () => form.toggle(false) }, 'Cancel')));
  const form = {
    element,
    onToggle() {},
    toggle(opened = element.hidden) {
      element.hidden = !opened;
      this.onToggle(opened);
      if (opened) title.focus();
    },
  };
  element.addEventListener('keydown', (e) => { if (e.key === 'Escape') form.toggle(false); });
  element.addEventListener('submit', async (e) => {
    e.preventDefault();
    try {
      const thread = await api.createThread(pid, { title: title.value.trim(), system: system.value, model: model.value.trim() });
      announceThreads(pid);
      location.hash = `#/projects/${pid}/threads/${thread.id}`;
    } catch (err) {
      if (refused(err, pid)) return;
      problem.hidden = false;
      problem.textContent = say(err);
    }
  });
  return form;
}

// --------------------------------------------------------- thread view

const CONNECTION = {
  live: ['live', 'Live'],
  connecting: ['reconnecting', 'Connecting…'],
  reconnecting: ['reconnecting', 'Reconnecting…'],
  paused: ['reconnecting', 'Waiting for a connection…'],
  offline: ['offline', 'Offline, retrying…'],
  closed: ['offline', 'Closed'],
};

/** Why an answer was cut, as `message.continued` names it. */
const CUT_REASONS = {
  provider_error: 'the model provider reported an error',
  connection_lost: 'the connection to the model provider dropped',
  stalled: 'the model provider stopped sending',
  restart: 'the service restarted',
  owner_lost: 'the server running it stopped',
  handoff: 'the server running it was replaced',
};

function threadView(pid, tid, main, list) {
  // Its title, renamed in place; every tab hears of it (`thread.updated`).
  const title = new ThreadTitle({
    save: async (value) => {
      const thread = await api.updateThread(pid, tid, { title: value });
      tell('');
      showThread(thread);
      announceThreads(pid);
      return thread;
    },
    problem: (e) => { if (!refused(e, pid)) tell(say(e)); },
  });
  const model = h('span', { class: 'muted small' });
  const presence = h('span', { 'data-testid': 'presence' }, '1');
  const connection = h('span', { class: 'conn', 'data-testid': 'connection', 'data-state': 'reconnecting', role: 'status' },
    'Connecting…');
  const system = h('details', { class: 'system', hidden: true }, h('summary', {}, 'System prompt'), h('pre', {}));
  // (Focusable, so a keyboard can scroll the transcript.)
  const messages = h('div', { class: 'messages', 'data-testid': 'messages', 'aria-live': 'polite', tabindex: 0,
    role: 'log', 'aria-label': 'Messages' });
  const notice = h('p', { class: 'notice', role: 'alert', hidden: true, 'data-testid': 'notice' });
  const composer = h('textarea', { rows: 2, 'data-testid': 'composer', 'aria-label': 'Your message',
    placeholder: 'Ask something. Enter sends, Shift+Enter starts a new line.' });
  const send = h('button', { class: 'primary', 'data-testid': 'send' }, 'Send');
  const stop = h('button', { type: 'button', class: 'danger', 'data-testid': 'stop', hidden: true }, 'Stop');
  const form = h('form', { class: 'composer' }, composer, h('div', { class: 'composer-actions' }, stop, send));
  // Copy, Retry, Regenerate and Edit on the messages (./message-actions.js).
  const editor = new QuestionEditor(composer);
  const actions = new MessageActions({
    regenerate: () => again(),
    edit: (m) => editor.start(m.content),
    problem: (text) => tell(text),
  });
  // An empty thread says what to do; between Send and the answer's first
  // text the page shows that it waits; a reader scrolled up during an
  // answer is offered the way back down.
  const empty = h('div', { class: 'empty-thread', 'data-testid': 'empty-thread', hidden: true },
    h('p', {}, 'No messages yet.'),
    h('p', { class: 'muted' }, 'Ask anything below to start. Enter sends, Shift+Enter starts a new line; '
      + 'every tab of this thread sees the answer as it is written.'));
  const waiting = h('div', { class: 'waiting', 'data-testid': 'waiting', role: 'status', hidden: true },
    h('span', { class: 'dot' }), h('span', { class: 'dot' }), h('span', { class: 'dot' }),
    h('span', { class: 'visually-hidden' }, 'Waiting for the answer…'));
  const jump = h('button', { type: 'button', class: 'jump small', 'data-testid': 'jump', hidden: true },
    'Jump to latest ↓');
  main.append(h('section', { class: 'thread' },
    h('header', { class: 'thread-head' },
      h('a', { class: 'back', href: `#/projects/${pid}` }, '← Threads'),
      h('div', { class: 'thread-name' }, title.element, model),
      h('div', { class: 'thread-status' },
        h('span', { class: 'presence', title: 'Tabs and clients watching this thread' }, presence, ' watching'),
        connection,
        // Web Push for this thread (./notify.js).
        new NotifyToggle({ pid, tid, api, problem: (text) => tell(text) }).element)),
    system, empty, messages, jump, notice, editor.element, form));

  const rendered = new Map();
  let sending = false;
  // The answer a POST of this tab started, until the view has it.
  let started = null;
  const busy = (view) => sending || Boolean(started && !view.transcript.get(started));
  const tell = (text) => { notice.hidden = !text; notice.textContent = text || ''; };

  function showThread(t) {
    title.show(t);
    document.title = `${t.title || UNTITLED} · convo`;
    model.textContent = t.model ? ` · ${t.model}` : '';
    system.hidden = !t.system;
    system.querySelector('pre').textContent = t.system || '';
  }
  api.thread(pid, tid).then(showThread, (e) => { if (!refused(e, pid)) tell(say(e)); });

  function update(view, change) {
    // A delta changes only its message's text: drawn at the next frame,
    // with the others that arrive before it; nothing else to do now.
    if (change.t === 'event' && change.event.type === 'message.delta') {
      if (view.transcript.get(change.event.message_id)) drawSoon(change.event.message_id);
      return;
    }
    const nearBottom = messages.scrollHeight - messages.scrollTop - messages.clientHeight < 80;
    if (change.t === 'snapshot') {
      messages.replaceChildren();
      rendered.clear();
      view.messages.forEach((m) => renderMessage(m));
      list.refresh().catch(() => {});
    } else if (change.t === 'event') {
      const id = change.event.message_id || change.event.message?.id;
      const m = id && view.transcript.get(id);
      if (m) renderMessage(m);
      if (['message.created', 'message.completed', 'message.awaiting', 'message.step'].includes(change.event.type)) {
        list.refresh().catch(() => {});
      }
      if (change.event.type === 'error' && change.event.code === 'bad_request') tell(change.event.message);
      if (change.event.type === 'thread.updated' && change.event.thread) {
        showThread(change.event.thread);
        list.refreshSoon();
        announceThreads(pid);
      }
    }
    // Back after a drop or a restart: statuses in the list may be stale.
    if (change.t === 'state' && view.state === 'live') list.refresh().catch(() => {});
    const [state, label] = CONNECTION[view.state] || CONNECTION.reconnecting;
    connection.dataset.state = state;
    connection.textContent = view.state === 'closed' && view.detail === 'thread_deleted' ? 'Deleted' : label;
    presence.textContent = String(view.watching);
    presence.dataset.tabs = String(view.tabs);
    presence.dataset.connections = String(view.subscribers);
    // An answer that waits for tools can be stopped too.
    stop.hidden = !view.generating && !view.awaiting;
    send.disabled = sending;
    if (view.state === 'closed') {
      tell(view.detail === 'thread_deleted' ? 'This thread was deleted.' : 'This thread does not exist.');
      composer.disabled = true;
      send.disabled = true;
    }
    if (change.event?.type !== 'message.delta') actions.sync(view, busy(view));
    empty.hidden = view.messages.length > 0 || view.state === 'connecting';
    showWaiting(view);
    if (nearBottom || change.t === 'snapshot') messages.scrollTop = messages.scrollHeight;
  }

  /** Waiting: a question is being sent, or the newest answer is being
   * written and has no text yet. */
  function showWaiting(view) {
    const last = view.messages[view.messages.length - 1];
    const answering = last?.role === 'assistant' && last.status === 'streaming';
    const written = answering && last.blocks.some((b) => b.text);
    waiting.hidden = !((sending && !answering) || (answering && !written));
    // Always the last item of the transcript, below the answer it waits for.
    if (messages.lastChild !== waiting) messages.append(waiting);
  }
  messages.addEventListener('scroll', () => {
    if (messages.scrollHeight - messages.scrollTop - messages.clientHeight < 80) jump.hidden = true;
  });
  jump.addEventListener('click', () => {
    messages.scrollTop = messages.scrollHeight;
    jump.hidden = true;
  });

  // The messages deltas changed, drawn at the next frame: however many
  // deltas arrive, the page draws at most once per frame, and each draw
  // costs what changed (./markdown-view.js). A hidden tab gets no frames:
  // a timer draws it (rarely), so it is current when shown.
  const dirty = new Set();
  let drawing = false;
  function drawSoon(id) {
    dirty.add(id);
    if (drawing) return;
    drawing = true;
    if (document.hidden) setTimeout(draw, 250); else requestAnimationFrame(draw);
  }
  function draw() {
    drawing = false;
    const nearBottom = messages.scrollHeight - messages.scrollTop - messages.clientHeight < 80;
    for (const id of dirty) {
      const m = watch.view.transcript.get(id);
      if (m && rendered.has(id)) renderMessage(m);
    }
    dirty.clear();
    showWaiting(watch.view);
    if (nearBottom) messages.scrollTop = messages.scrollHeight;
    else jump.hidden = false;
  }

  function renderMessage(m) {
    let r = rendered.get(m.id);
    if (!r) {
      r = {
        badge: h('span', { class: 'badge', 'data-testid': 'message-status' }),
        thinking: h('div', { class: 'thinking-blocks' }),
        text: h('div', { class: 'text', 'data-testid': 'message', 'data-role': m.role, 'data-message-id': m.id }),
        tools: h('div', { class: 'tool-blocks' }),
        error: h('p', { class: 'msg-error', hidden: true, 'data-testid': 'message-error' }),
        continued: h('p', { class: 'msg-note', hidden: true, 'data-testid': 'message-continued' }),
        blocks: new Map(),
        calls: new Map(),
      };
      r.article = h('article', { class: `msg msg-${m.role}`, 'data-message-id': m.id },
        h('div', { class: 'msg-meta' }, h('span', { class: 'role' }, m.role === 'user' ? 'You' : 'Assistant'),
          m.model ? h('span', { class: 'muted small' }, m.model) : null, r.badge, actions.element(m)),
        r.thinking, r.text, r.tools, r.continued, r.error);
      rendered.set(m.id, r);
      const after = [...rendered.values()].map((x) => x.article).find((a) => Number(a.dataset.position) > m.position);
      r.article.dataset.position = String(m.position);
      messages.insertBefore(r.article, after || null);
    }
    r.article.dataset.status = m.status;
    r.text.dataset.status = m.status;
    const badge = m.status.replace('_', ' ');
    if (r.badge.textContent !== badge) r.badge.textContent = badge;
    r.badge.dataset.status = m.status;
    r.badge.hidden = m.role === 'user' && m.status === 'complete';
    // A question as typed (plain text); an answer as Markdown.
    if (m.role !== 'assistant') {
      if (r.text.textContent !== m.content) r.text.textContent = m.content;
    } else {
      r.markdown ||= new MarkdownView(r.text);
      r.markdown.render(m.content, m.status !== 'streaming');
    }
    m.blocks.forEach((b, i) => {
      // A block is whole once a later one began or the step ended.
      const whole = i < m.blocks.length - 1 || m.status !== 'streaming';
      if (b.kind === 'thinking') renderThinking(r, b, i);
      else if (b.kind === 'tool_use') renderCall(callCard(r, b.id || `#${i}`, b.name, decide), b, whole);
      else if (b.kind === 'tool_result') renderResult(callCard(r, b.tool_use_id || `#${i}`, undefined, decide), b);
    });
    // A call told only by `message.awaiting` (its block not seen yet).
    for (const p of m.pending || []) {
      const call = callCard(r, p.tool_call_id, p.name, decide);
      if (!call.input.textContent) call.input.textContent = JSON.stringify(p.input ?? {}, null, 2);
    }
    r.calls.forEach((call, id) => renderCallState(call, m, id));
    const error = m.error ? `${m.error.message} (${m.error.code})` : '';
    r.error.hidden = !error;
    r.error.textContent = error;
    renderContinued(r.continued, m);
  }

  /** Says that an answer was cut and went on in place (issue 28), and, in
   * a tab that saw it happen, why. */
  function renderContinued(note, m) {
    const n = m.continuations || 0;
    note.hidden = n === 0;
    const text = n === 0 ? '' : n === 1 ? 'Continued after an interruption' : `Continued after ${n} interruptions`;
    if (note.textContent !== text) note.textContent = text;
    const why = CUT_REASONS[m.continued_reason];
    if (why) note.title = `Cut short: ${why}; the answer went on where it stopped.`;
    else note.removeAttribute('title');
  }

  function renderThinking(r, block, index) {
    let el = r.blocks.get(index);
    if (!el) {
      el = h('details', { class: 'block thinking', 'data-testid': 'thinking' }, h('summary', {}, 'Thinking'), h('pre', {}));
      el.body = el.querySelector('pre');
      r.thinking.append(el);
      r.blocks.set(index, el);
    }
    // Its text only grows: what is new is added (a block replaced, by a
    // replay, is a new object: drawn afresh).
    if (el.block === block && block.text.length >= el.shown) {
      if (block.text.length > el.shown) el.body.append(block.text.slice(el.shown));
    } else {
      el.body.textContent = block.text;
    }
    el.block = block;
    el.shown = block.text.length;
  }

  /** Posts this tab's decision. A 409 means another tab (or client)
   * decided first: its decision arrives as `tool.resolved` and is shown
   * like this tab's, so there is nothing to tell. */
  async function decide(call, id, approved) {
    call.approve.disabled = true;
    call.deny.disabled = true;
    try {
      await client.approve(pid, tid, id, approved);
    } catch (e) {
      if (e instanceof ApiError && e.status === 409) return;
      call.approve.disabled = false;
      call.deny.disabled = false;
      if (!refused(e, pid)) tell(say(e));
    }
  }

  const watch = client.watch(pid, tid, update);
  update(watch.view, { t: 'snapshot' });

  async function ask() {
    const content = composer.value;
    if (!content.trim() || sending) return;
    sending = true;
    send.disabled = true;
    showWaiting(watch.view);
    tell('');
    actions.sync(watch.view, true);
    try {
      started = (await client.send(pid, tid, content))?.assistant_message?.id || null;
      composer.value = '';
      editor.done();
    } catch (e) {
      if (e instanceof ApiError && e.code === 'thread_busy' && watch.view.awaiting) {
        tell('The answer waits for a tool call: decide it (or let the application answer), or stop the answer.');
      } else if (!refused(e, pid)) tell(say(e));
    } finally {
      sending = false;
      send.disabled = false;
      actions.sync(watch.view, busy(watch.view));
      showWaiting(watch.view);
      composer.focus();
    }
  }

  /** Retry and Regenerate: the newest question asked again, for a new
   * answer (the thread keeps the earlier one). */
  async function again() {
    if (busy(watch.view)) return;
    sending = true;
    send.disabled = true;
    actions.sync(watch.view, true);
    showWaiting(watch.view);
    tell('');
    try {
      started = (await api.regenerate(pid, tid))?.assistant_message?.id || null;
    } catch (e) {
      if (!refused(e, pid)) tell(say(e));
    } finally {
      sending = false;
      send.disabled = false;
      actions.sync(watch.view, busy(watch.view));
      showWaiting(watch.view);
    }
  }
  form.addEventListener('submit', (e) => { e.preventDefault(); ask(); });
  composer.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) { e.preventDefault(); ask(); }
  });
  stop.addEventListener('click', async () => {
    try { await client.cancel(pid, tid); } catch (e) {
      if (!(e instanceof ApiError && e.code === 'not_generating')) tell(say(e));
    }
  });
  composer.focus();
  return () => watch.close();
}

// -------------------------------------------------------- operators

function adminView() {
  document.getElementById('project').textContent = '';
  document.title = 'Operators · convo';
  if (SECURED && !saved.admin()) {
    // Another tab of this browser session may hold the token.
    askOtherTabs().then(() => (saved.admin() ? route() : adminForm()));
    return;
  }
  const stats = h('dl', { class: 'stats', 'data-testid': 'admin-stats' });
  const rows = h('tbody', {});
  const updated = h('p', { class: 'muted small', 'data-testid': 'admin-updated' });
  const problem = h('p', { class: 'error', role: 'alert', hidden: true });
  show(h('section', { class: 'admin' },
    h('h1', {}, 'Operators'),
    h('p', { class: 'muted' }, 'The service as it runs: refreshed every 1.5 s.'),
    problem, stats,
    h('h2', {}, 'Live threads'),
    h('div', { class: 'table-wrap' }, h('table', { 'data-testid': 'admin-threads' },
      h('thead', {}, h('tr', {}, ['Thread', 'Subscribers', 'Generating', 'Mailbox', 'Last activity', ''].map((c) => h('th', {}, c)))),
      rows)),
    updated));

  const stat = (label, value) => h('div', { class: 'stat' }, h('dt', {}, label), h('dd', {}, String(value)));
  let timer = null;
  let alive = true;
  async function refresh() {
    try {
      const [s, t] = await Promise.all([adminApi.adminStats(), adminApi.adminThreads()]);
      if (!alive) return;
      problem.hidden = true;
      stats.replaceChildren(...[
        stat('Uptime', `${Math.round(s.uptime_secs)} s`),
        stat('Provider', s.provider),
        stat('Live threads', s.threads.live),
        stat('Generating', s.threads.generating),
        stat('Subscribers', `${s.subscribers.total} (SSE ${s.subscribers.sse}, WS ${s.subscribers.ws})`),
        stat('Chunks in / out', `${s.chunks.in} / ${s.chunks.out}`),
        stat('Slow consumers', s.slow_consumers),
        stat('Catch-ups', s.catch_ups),
        stat('Write queue', s.persistence.queue_depth),
        stat('Batches', s.persistence.batches),
        stat('Rows per batch', s.persistence.rows_per_batch.toFixed(1)),
        stat('Last batch', `${s.persistence.last_batch_ms.toFixed(1)} ms`),
      ]);
      rows.replaceChildren(...t.data.map((row) => h('tr', { 'data-testid': 'admin-thread', 'data-thread-id': row.thread_id },
        h('td', {}, h('code', { title: row.thread_id }, row.thread_id.slice(0, 8) + '…')),
        h('td', {}, String(row.subscribers)),
        h('td', {}, row.generating ? 'yes' : 'no'),
        h('td', {}, String(row.mailbox_depth)),
        h('td', {}, ago(row.last_activity)),
        h('td', {}, h('button', { class: 'danger small', 'data-testid': 'admin-stop',
          'aria-label': `Stop thread ${row.thread_id}`,
          onclick: () => adminApi.stopThread(row.thread_id).then(refresh, (e) => { problem.hidden = false; problem.textContent = say(e); }),
        }, 'Stop')))));
      if (t.data.length === 0) rows.append(h('tr', {}, h('td', { colspan: 6, class: 'muted' }, 'No live thread.')));
      updated.textContent = `Updated ${new Date().toLocaleTimeString()}`;
    } catch (e) {
      if (!alive) return;
      if (e instanceof ApiError && e.status === 401) { saved.forgetAdmin(); return adminForm('That token was refused.'); }
      problem.hidden = false;
      problem.textContent = say(e);
    }
    if (alive) timer = setTimeout(refresh, 1500);
  }
  refresh();
  leave = () => { alive = false; clearTimeout(timer); };
}

function adminForm(problem = null) {
  const form = h('form', { class: 'card narrow', 'data-testid': 'admin-form' },
    h('h1', {}, 'Operators'),
    h('p', { class: 'muted' }, 'The operators\' view needs the admin token. It is kept for this tab only.'),
    problem && h('p', { class: 'error', role: 'alert' }, problem),
    h('label', {}, 'Admin token', h('input', { name: 'token', type: 'password', required: true, autocomplete: 'off',
      'data-testid': 'admin-token' })),
    h('button', { class: 'primary', 'data-testid': 'admin-submit' }, 'Open'));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    saved.setAdmin(form.elements.token.value.trim());
    route();
  });
  show(form);
  form.elements.token.focus();
}

window.addEventListener('hashchange', route);
route();
