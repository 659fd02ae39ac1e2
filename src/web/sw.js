// The page's service worker (scope /): it only shows Web Push
// notifications. A push carries a notification's `data` (`{project_id,
// thread_id, message_id, status, preview, …}`, see API.md,
// Notifications); it is shown with a title from the status and the
// answer's first words, one per message (a later push of the same message
// replaces it). A click focuses a tab on that thread, or opens one.
// Nothing is cached and no request is intercepted.

const TITLES = {
  complete: 'An answer is ready',
  awaiting_input: 'An answer waits for you',
  failed: 'An answer failed',
  cancelled: 'An answer was stopped',
  interrupted: 'An answer was interrupted',
};

self.addEventListener('install', () => self.skipWaiting());
self.addEventListener('activate', (event) => event.waitUntil(self.clients.claim()));

/** The page of a notification's thread. */
function threadUrl(data) {
  if (!data.project_id || !data.thread_id) return new URL('/', self.location.origin).href;
  const path = `/#/projects/${encodeURIComponent(data.project_id)}/threads/${encodeURIComponent(data.thread_id)}`;
  return new URL(path, self.location.origin).href;
}

self.addEventListener('push', (event) => {
  let data = {};
  try {
    data = event.data ? event.data.json() : {};
  } catch (_) { /* not JSON: shown as a bare notification */ }
  const title = TITLES[data.status] || 'convo';
  const body = data.preview || (data.status === 'awaiting_input' ? 'A tool call needs your answer.' : '');
  event.waitUntil(self.registration.showNotification(title, {
    body,
    tag: data.message_id || undefined,
    data: { url: threadUrl(data) },
  }));
});

self.addEventListener('notificationclick', (event) => {
  event.notification.close();
  const url = event.notification.data?.url || new URL('/', self.location.origin).href;
  event.waitUntil((async () => {
    const tabs = await self.clients.matchAll({ type: 'window', includeUncontrolled: true });
    const open = tabs.find((tab) => tab.url === url);
    if (open) return open.focus();
    return self.clients.openWindow(url);
  })());
});
