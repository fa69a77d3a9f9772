import type { Event } from "../gen/notify/v1/notify_pb";
import { NotifyClient, type Position } from "../lib/client";
import { WebPushControl } from "../lib/push";
import { deliveryPushBackend } from "../lib/pushBackend";
import { NotificationStore } from "../lib/store";
import { grpcWebBaseUrl } from "./config";
import { navigate } from "./router";
import { sessionTokenSource, type Session } from "./session";

/** One signed-in session's client and store. */
export interface Runtime {
  client: NotifyClient;
  store: NotificationStore;
  /** Web push in this browser for the session's user ("Turn on notifications"). */
  push: WebPushControl;
  start(): void;
  stop(): void;
}

const debug = typeof location !== "undefined" && new URLSearchParams(location.search).has("debug");

export function createRuntime(session: Session): Runtime {
  const getToken = sessionTokenSource(session);
  const client = new NotifyClient({
    baseUrl: grpcWebBaseUrl(),
    getToken,
    backoff: { baseMs: 250, maxMs: 10_000 },
    logger: debug ? console : undefined,
  });
  // Events replayed from history on the first connection are old news: no toast.
  const replayTop = new Map<string, Position>();
  let firstConnection = true;
  client.onConnected((c) => {
    if (!firstConnection) return replayTop.clear();
    firstConnection = false;
    for (const r of c.rooms) replayTop.set(r.room, { offset: r.offset, epoch: r.epoch });
  });
  const isReplay = (ev: Event) => {
    const top = replayTop.get(ev.room);
    return !!top && top.epoch === ev.epoch && ev.offset <= top.offset;
  };
  const store = new NotificationStore(client, { toastFilter: (ev) => !isReplay(ev) });

  let rooms = session.rooms ?? [];
  const positions = new Map<string, Position>();
  if (rooms.length === 0 && (session.role === "restaurant" || session.role === "cashier") && session.restaurantId) {
    // The dashboard wants the recent feed: name the rooms, and ask for the
    // history the server still holds (offset 0) in the restaurant's rooms.
    const r = `restaurant:${session.restaurantId}`;
    rooms = [r, `${r}:points`, `${r}:transactions`, `user:${session.sub}`];
    for (const room of rooms.slice(0, 3)) positions.set(room, { offset: 0n, epoch: "" });
  }
  const push = new WebPushControl({ backend: deliveryPushBackend(client) });
  // A click on a push notification: the service worker focused this window
  // and says which page to show.
  push.onWorkerMessage((m) => {
    if (m.type === "notify:click" && typeof m.url === "string") navigate(m.url);
  });
  return {
    client,
    store,
    push,
    start() {
      store.start();
      client.connect({ getToken, rooms, positions });
      void push.init();
      (window as unknown as { __notify?: unknown }).__notify = { client, store, push };
    },
    stop() {
      store.stop();
      push.stop();
      client.disconnect();
    },
  };
}
