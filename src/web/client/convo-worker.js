// convo-worker.js: the shared worker of the browser client (/client/convo.js).
//
// Every tab of this origin that uses the client connects here, so a
// browser holds one stream per thread whatever the number of tabs, and
// HTTP/1.1's six connections per host stay free for the tabs' requests.
// The worker holds no credentials: it asks a tab for the history and for
// stream tokens (see `Hub` in hub.js and `Rpc` in rpc.js). It imports only
// those two parts of the client, not the convo.js entry: a worker has no
// use for the tab's side (`Client`), and relative imports resolve next to
// this file, so the worker and the client always come from one place.

import { Hub } from './hub.js';
import { Rpc } from './rpc.js';

let hub = null;
const tabs = new Set();

function broadcast(level, message) {
  for (const tab of tabs) tab.post({ t: 'log', level, message });
}

self.addEventListener('error', (e) => broadcast('error', e.message));
self.addEventListener('unhandledrejection', (e) => broadcast('error', String(e.reason)));

self.onconnect = (event) => {
  const port = event.ports[0];
  const tab = { visible: true };
  const gone = () => {
    if (!tabs.delete(tab)) return;
    hub?.drop(tab);
    port.close();
  };
  // What the tab says before its `hello` waits for it.
  let early = [];
  const receive = (m) => {
    if (early) return early.push(m);
    if (m.t === 'watch') hub.watch(tab, m.pid, m.tid);
    else if (m.t === 'unwatch') hub.unwatch(tab, m.pid, m.tid);
    else if (m.t === 'visible') { tab.visible = m.visible; hub.visible(tab); }
    else if (m.t === 'bye') gone();
  };
  const rpc = new Rpc(port, {
    hello({ tab: id, config, visible }) {
      hub = hub || new Hub(config);
      tab.visible = visible;
      tabs.add(tab);
      // Granted when the tab's own lock is released: the tab is gone,
      // even if it could not say goodbye.
      self.navigator.locks?.request(`convo-tab-${id}`, gone);
      const waiting = early;
      early = null;
      waiting.forEach(receive);
      return { tabs: tabs.size };
    },
    frame({ pid, tid, frame }) {
      return hub ? hub.frame(pid, tid, frame) : false;
    },
  }, receive);
  tab.post = (m) => rpc.post(m);
  tab.call = (method, args) => rpc.call(method, args);
  port.start();
};
