import type { Event } from "../gen/notify/v1/notify_pb";
import { NotifyClient, type Position } from "../lib/client";
import { NotificationStore } from "../lib/store";
import { sessionTokenSource, type Session } from "./session";

/** One signed-in session's client and store. */
export interface Runtime {
  client: NotifyClient;
  store: NotificationStore;
  start(): void;
  stop(): void;
}

const debug = typeof location !== "undefined" && new URLSearchParams(location.search).has("debug");

export function createRuntime(session: Session): Runtime {
  const getToken = sessionTokenSource(session);
  const client = new NotifyClient({
    baseUrl: location.origin,
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
  return {
    client,
    store,
    start() {
      store.start();
      client.connect({ getToken, rooms, positions });
      (window as unknown as { __notify?: unknown }).__notify = { client, store };
    },
    stop() {
      store.stop();
      client.disconnect();
    },
  };
}
