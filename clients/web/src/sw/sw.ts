// The demo app's service worker, served at /sw.js (built by
// vite.sw.config.ts into dist/sw.js, a classic script with no imports): it
// shows notifyd's web push messages and brings the app forward when one is
// clicked. Typed against the WebWorker library (tsconfig.sw.json).
import { clickUrl, notificationFor, parsePush, pickWindow, type WorkerMessage } from "./payload";

declare const self: ServiceWorkerGlobalScope;

/**
 * Keeps the worker alive until p settles. Events the browser dispatches
 * accept waitUntil; one dispatched by script (a test's synthetic click)
 * throws, and the work still runs.
 */
function keep(event: ExtendableEvent, p: Promise<unknown>): void {
  try {
    event.waitUntil(p);
  } catch {
    void p.catch(() => {});
  }
}

async function post(msg: WorkerMessage): Promise<void> {
  const windows = await self.clients.matchAll({ type: "window", includeUncontrolled: true });
  for (const w of windows) w.postMessage(msg);
}

self.addEventListener("install", () => {
  // A new version takes over at once: it holds no caches to migrate.
  void self.skipWaiting();
});

self.addEventListener("activate", (event) => {
  keep(event, self.clients.claim());
});

self.addEventListener("push", (event) => {
  let text = "";
  try {
    text = event.data?.text() ?? "";
  } catch {
    // Undecryptable or binary data: shown as an empty push.
  }
  const payload = parsePush(text);
  const n = notificationFor(payload);
  // Every push shows a notification (the subscription is userVisibleOnly);
  // open windows also hear of it, to refresh what they show.
  keep(event, Promise.all([self.registration.showNotification(n.title, n.options), post({ type: "notify:push", payload })]));
});

self.addEventListener("notificationclick", (event) => {
  event.notification.close();
  const url = clickUrl(event.notification.data);
  const eventId = String((event.notification.data as { eventId?: unknown } | null)?.eventId ?? "");
  keep(
    event,
    (async () => {
      const windows = await self.clients.matchAll({ type: "window", includeUncontrolled: true });
      const w = pickWindow(windows, url, self.location.origin);
      if (!w) {
        await self.clients.openWindow(url);
        return;
      }
      // The app routes on its own, without a reload: it is told where to go.
      w.postMessage({ type: "notify:click", eventId, url } satisfies WorkerMessage);
      await w.focus().catch(() => {});
    })(),
  );
});

// The browser replaced the subscription (expiry, key rotation by the push
// service): subscribe again with the same key. The worker holds no token to
// register the new one with notifyd; open windows are told, and the app
// registers it when it next starts (WebPushControl.init) otherwise.
self.addEventListener("pushsubscriptionchange", (event) => {
  const e = event as ExtendableEvent & { oldSubscription?: PushSubscription | null };
  const key = e.oldSubscription?.options.applicationServerKey;
  if (!key) return;
  keep(
    e,
    self.registration.pushManager
      .subscribe({ userVisibleOnly: true, applicationServerKey: key })
      .then(() => post({ type: "notify:resubscribed" })),
  );
});
