// convo.js: the browser client of the convo service. A JavaScript module
// with no dependencies, served by the service at /client/convo.js.
//
//   import { connect } from '/client/convo.js';
//   const client = connect({ credentials: () => sessionStorage.getItem('key') });
//   const watch = client.watch(projectId, threadId, (view, change) => render(view.messages));
//   await client.send(projectId, threadId, 'Hello');
//
// What it does for you (see README, "Browser client"):
// - `Transcript` rebuilds messages from history and events: deltas are
//   merged by their UTF-8 byte offset, so a replayed or repeated delta
//   never shows twice and a missing one is noticed (then the history is
//   fetched again); `cursor_ahead` replays replace the block's text.
// - `Stream` is one subscription: typed events, resume from the last
//   cursor on every reconnect (kept in sessionStorage when asked, so a
//   reload resumes too), stream tokens minted through a callback and
//   refreshed before and after they expire, a stall watchdog, a server
//   `error` event told apart from a dropped connection.
// - `connect()` gives a client whose tabs share one connection per thread:
//   a SharedWorker holds the streams and hands each tab a snapshot, then
//   the events after it. Without SharedWorker each tab has its own.
//
// This file is the stable entry point other pages import; the code lives
// in one module per concept next to it, each served at /client/<name>.js
// (relative imports, so a copy of the directory works anywhere):
//   api.js         REST `Api` and `ApiError`
//   transcript.js  `Transcript`, `utf8Length`
//   sse.js         Server-Sent Events read from a fetch body
//   stream.js      `Stream`
//   hub.js         `Hub`: one stream and transcript per thread, many tabs
//   rpc.js         `Rpc`: calls between tabs and the SharedWorker
//   client.js      `connect`, `Client`: a tab's side
// and convo-worker.js, the SharedWorker, imports hub.js and rpc.js.
// Only the names below are the client's public interface.

export { Api, ApiError } from './api.js';
export { Transcript, utf8Length } from './transcript.js';
export { Stream } from './stream.js';
export { Hub } from './hub.js';
export { Rpc } from './rpc.js';
export { Client, connect } from './client.js';
