import { Code, ConnectError } from "@connectrpc/connect";
import { afterEach, beforeEach, describe, expect, test, vi } from "vitest";
import { NotifyClient } from "../../src/lib/client";
import { NotificationStore } from "../../src/lib/store";
import { FakeServer, pointsAdded, settle, type Stream } from "./harness";

let server: FakeServer;
let client: NotifyClient;
let store: NotificationStore;

async function advance(ms: number): Promise<void> {
  await vi.advanceTimersByTimeAsync(ms);
  await settle();
}

const rooms = [
  { room: "guest:g1", epoch: "e1", offset: 0 },
  { room: "user:g1", epoch: "u1", offset: 0 },
];

async function start(): Promise<Stream> {
  client = new NotifyClient({ transport: server.transport, random: () => 0.5, backoff: { baseMs: 100, maxMs: 1000 } });
  store = new NotificationStore(client, { toastMs: 3000, pageSize: 2 });
  store.start();
  client.connect({ token: "t" });
  const s = await server.waitStreams(1);
  s.connected(rooms);
  await settle();
  await advance(0);
  return s;
}

beforeEach(() => {
  vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "Date"] });
  server = new FakeServer();
});

afterEach(() => {
  store?.stop();
  client?.disconnect();
  vi.useRealTimers();
});

describe("NotificationStore", () => {
  test("loads the inbox when first connected", async () => {
    server.addToInbox(pointsAdded("guest:g1", 1, "e1", "ev1"));
    server.addToInbox(pointsAdded("guest:g1", 2, "e1", "ev2"));
    server.addToInbox(pointsAdded("guest:g1", 3, "e1", "ev3"));
    await start();
    const st = store.getState();
    expect(st.loaded).toBe(true);
    expect(st.items.map((i) => i.eventId)).toEqual(["ev3", "ev2"]); // page size 2, newest first
    expect(st.hasMore).toBe(true);
    expect(st.unread).toBe(3);
    expect(st.items[0].title).toBe("+10 points");
    await store.loadMore();
    expect(store.getState().items.map((i) => i.eventId)).toEqual(["ev3", "ev2", "ev1"]);
    expect(store.getState().hasMore).toBe(false);
  });

  test("a live event raises one toast and its inbox row is pulled, even when written after delivery", async () => {
    const s = await start();
    const ev = pointsAdded("guest:g1", 1, "e1", "live1", 100);
    const copy = pointsAdded("user:g1", 1, "u1", "live1", 100); // same event, second room
    s.events(ev, copy);
    await settle();
    expect(store.getState().toasts.map((t) => [t.title, t.tone, t.eventId])).toEqual([["+100 points", "success", "live1"]]);
    await advance(60);
    expect(store.getState().items).toHaveLength(0); // the row is not written yet
    server.addToInbox(ev);
    await advance(400);
    expect(store.getState().items.map((i) => i.eventId)).toEqual(["live1"]);
    s.unread(1);
    await advance(10);
    expect(store.getState().unread).toBe(1);
  });

  test("toasts hide themselves after their duration and can be closed", async () => {
    await start();
    const a = store.showToast({ tone: "info", title: "a" });
    store.showToast({ tone: "error", title: "b", durationMs: 0 });
    await advance(2999);
    expect(store.getState().toasts.map((t) => t.title)).toEqual(["a", "b"]);
    await advance(1);
    expect(store.getState().toasts.map((t) => t.title)).toEqual(["b"]);
    store.dismissToast(store.getState().toasts[0].id);
    expect(store.getState().toasts).toEqual([]);
    expect(a).toMatch(/^t\d+$/);
    for (let i = 0; i < 8; i++) store.showToast({ tone: "info", title: `n${i}` });
    expect(store.getState().toasts.map((t) => t.title)).toEqual(["n3", "n4", "n5", "n6", "n7"]);
  });

  test("a gap reloads the inbox: what was missed appears, each event once", async () => {
    server.addToInbox(pointsAdded("guest:g1", 1, "e1", "before"));
    const s1 = await start();
    expect(store.getState().items.map((i) => i.eventId)).toEqual(["before"]);
    s1.disconnected(100).end(new ConnectError("restart", Code.Unavailable));
    await settle();
    // Published while the stream was down: in the inbox, not replayable.
    for (let i = 0; i < 5; i++) server.addToInbox(pointsAdded("guest:g1", i + 1, "e2", `missed${i}`));
    await advance(100);
    const s2 = await server.waitStreams(2);
    s2.connected([
      { room: "guest:g1", epoch: "e2", offset: 5, recovered: false },
      { room: "user:g1", epoch: "u1", offset: 0, recovered: true },
    ]);
    await settle();
    await advance(10);
    const ids = store.getState().items.map((i) => i.eventId);
    expect(ids).toEqual(["missed4", "missed3", "missed2", "missed1", "missed0", "before"]);
    expect(store.getState().gaps).toBe(1);
    expect(store.getState().unread).toBe(6);
    // A live event after the gap still comes once.
    const ev = pointsAdded("guest:g1", 6, "e2", "after");
    server.addToInbox(ev);
    s2.events(ev);
    await advance(100);
    expect(store.getState().items.map((i) => i.eventId).filter((id) => id === "after")).toHaveLength(1);
    expect(new Set(store.getState().items.map((i) => i.eventId)).size).toBe(store.getState().items.length);
  });

  test("markRead is immediate here and queued for the server while offline", async () => {
    server.addToInbox(pointsAdded("guest:g1", 1, "e1", "x"));
    server.addToInbox(pointsAdded("guest:g1", 2, "e1", "y"));
    const s = await start();
    s.end(new ConnectError("network", Code.Unavailable));
    await settle();
    expect(client.state).toBe("reconnecting");
    const done = store.markRead("2");
    await settle();
    expect(store.getState().items.find((i) => i.id === "2")?.read).toBe(true);
    expect(store.getState().unread).toBe(1);
    expect(store.getState().pending).toBe(1);
    expect(server.methods()).not.toContain("markRead");
    await advance(50);
    (await server.waitStreams(2)).connected(rooms);
    await done;
    expect(server.methods()).toContain("markRead");
    expect(server.inbox.find((n) => n.id === "2")?.read).toBe(true);
    expect(store.getState().unread).toBe(1);
    expect(store.getState().pending).toBe(0);
  });

  test("markAllRead and remove", async () => {
    server.addToInbox(pointsAdded("guest:g1", 1, "e1", "x"));
    server.addToInbox(pointsAdded("guest:g1", 2, "e1", "y"));
    await start();
    await store.remove("2");
    expect(store.getState().items.map((i) => i.id)).toEqual(["1"]);
    expect(store.getState().unread).toBe(1);
    await store.markAllRead();
    expect(store.getState().unread).toBe(0);
    expect(store.getState().items.every((i) => i.read)).toBe(true);
    expect(server.methods()).toEqual(expect.arrayContaining(["deleteNotification", "markAllRead"]));
  });

  test("reflects the connection state and a permanent error", async () => {
    const s = await start();
    expect(store.getState().connection).toBe("connected");
    s.end(new ConnectError("not your room", Code.PermissionDenied));
    await settle();
    expect(store.getState().connection).toBe("disconnected");
    expect(store.getState().connectionError).toBe("not your room");
  });
});
