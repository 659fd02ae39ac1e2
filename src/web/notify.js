// "Notify me": Web Push for one thread, so a person who closes the tab is
// told when an answer is ready or waits for them.
//
// On: the service worker (/sw.js, scope /) is registered, the browser
// subscribed with the service's VAPID key (GET /v1/push/public-key,
// `userVisibleOnly`), and the subscription POSTed for this thread
// (/v1/projects/{pid}/push-subscriptions with `thread_id`). Off: that
// subscription is DELETEd; the browser's own subscription stays for the
// other threads it serves. The id of each thread's subscription is kept
// in localStorage, so the toggle shows the same state after a reload.
// Where the browser has no Web Push, or the service has push off (the
// page's `convo-push` meta says so; the key would answer 404), there is no
// toggle, and nothing is asked.

import { h } from './dom.js';

const stored = {
  get: (tid) => localStorage.getItem(`convo.push.${tid}`),
  set: (tid, id) => localStorage.setItem(`convo.push.${tid}`, id),
  forget: (tid) => localStorage.removeItem(`convo.push.${tid}`),
};

const pushOn = document.querySelector('meta[name="convo-push"]')?.content === 'true';
const supported = () => pushOn && 'serviceWorker' in navigator && 'PushManager' in window
  && 'Notification' in window;

/** A base64url text as the bytes `applicationServerKey` takes. */
function bytesOf(base64url) {
  const text = atob(base64url.replace(/-/g, '+').replace(/_/g, '/'));
  return Uint8Array.from(text, (c) => c.charCodeAt(0));
}

/** Whether a subscription's key (an ArrayBuffer; none known: the same)
 * is `bytes`. */
function sameKey(buffer, bytes) {
  if (!buffer) return true;
  const known = new Uint8Array(buffer);
  return known.length === bytes.length && known.every((b, i) => b === bytes[i]);
}

/** The service's VAPID key, asked once per page: null when push is off
 * (404); asked again next time when the service could not be reached. */
let publicKey = null;
function vapidKey(api) {
  publicKey ||= api.request('GET', '/v1/push/public-key').then((r) => r.key, (e) => {
    if (e?.status !== 404) publicKey = null;
    return null;
  });
  return publicKey;
}

/** The page's service worker, registered once. */
async function worker() {
  await navigator.serviceWorker.register('/sw.js', { scope: '/' });
  return navigator.serviceWorker.ready;
}

/** The toggle of thread `tid` of project `pid`: `element` goes in the
 * thread's header; `problem(text)` tells the reader what went wrong. */
export class NotifyToggle {
  constructor({ pid, tid, api, problem }) {
    Object.assign(this, { pid, tid, api, problem });
    this.element = h('button', { type: 'button', class: 'small', 'data-testid': 'notify-toggle', hidden: true,
      'aria-pressed': 'false', title: 'Get a notification when an answer here is ready or waits for you' },
    'Notify me');
    this.element.addEventListener('click', () => this.toggle());
    this.show(Boolean(stored.get(tid)));
    if (supported()) {
      vapidKey(api).then((key) => { this.element.hidden = !key; });
    }
  }

  show(on) {
    this.element.setAttribute('aria-pressed', String(on));
    this.element.classList.toggle('primary', on);
  }

  async toggle() {
    if (this.busy) return;
    this.busy = true;
    this.element.disabled = true;
    try {
      if (stored.get(this.tid)) await this.off();
      else await this.on();
    } catch (e) {
      this.problem(`Notifications: ${e?.message || e}`);
    } finally {
      this.busy = false;
      this.element.disabled = false;
    }
  }

  async on() {
    const key = await vapidKey(this.api);
    if (!key) throw new Error('this service does not send them');
    if (await Notification.requestPermission() !== 'granted') {
      throw new Error('this browser blocks them for this site; allow them in its settings');
    }
    const registration = await worker();
    const serverKey = bytesOf(key);
    let subscription = await registration.pushManager.getSubscription();
    if (subscription && !sameKey(subscription.options?.applicationServerKey, serverKey)) {
      // Made for another key (the service's changed): pushes would be refused.
      await subscription.unsubscribe();
      subscription = null;
    }
    subscription ||= await registration.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: serverKey });
    const { endpoint, keys } = subscription.toJSON();
    const path = `/v1/projects/${this.pid}/push-subscriptions`;
    const { id } = await this.api.request('POST', path, { endpoint, keys, thread_id: this.tid });
    stored.set(this.tid, id);
    this.show(true);
  }

  async off() {
    const id = stored.get(this.tid);
    try {
      await this.api.request('DELETE', `/v1/projects/${this.pid}/push-subscriptions/${id}`);
    } catch (e) {
      // (Gone already: the push service forgot the browser.)
      if (e?.status !== 404) throw e;
    }
    stored.forget(this.tid);
    this.show(false);
  }
}
