import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { afterEach, beforeEach, describe, expect, test, vi } from "vitest";
import { NotifyClient } from "../../src/lib/client";
import { NotificationStore } from "../../src/lib/store";
import { InboxAction, NotificationState } from "../../src/gen/notify/v1/inbox_pb";
import { ReturnedNotificationSchema } from "../../src/gen/notify/v1/notify_pb";
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

describe("NotificationStore: inbox states", () => {
  const ids = () => store.getState().items.map((i) => i.eventId);

  test("counts come from the list; archive and snooze leave the inbox at once, with the counts", async () => {
    for (let i = 1; i <= 4; i++) server.addToInbox(pointsAdded("guest:g1", i, "e1", `ev${i}`));
    store = undefined as unknown as NotificationStore;
    client = new NotifyClient({ transport: server.transport, random: () => 0.5 });
    store = new NotificationStore(client, { pageSize: 10 });
    store.start();
    client.connect({ token: "t" });
    (await server.waitStreams(1)).connected(rooms);
    await advance(0);
    expect(store.getState().counts).toEqual({ unseen: 4, unread: 4, archived: 0, snoozed: 0, inbox: 4 });
    expect(store.getState().unseen).toBe(4);

    const archiving = store.archive(["1", "2"]);
    // At once, before the server answers.
    expect(ids()).toEqual(["ev4", "ev3"]);
    expect(store.getState().counts).toEqual({ unseen: 2, unread: 2, archived: 2, snoozed: 0, inbox: 2 });
    await archiving;
    expect(server.inbox.filter((n) => n.archived).map((n) => n.id)).toEqual(["1", "2"]);

    const until = new Date(Date.now() + 3_600_000);
    await store.snooze(["3"], until);
    expect(ids()).toEqual(["ev4"]);
    expect(store.getState().counts).toEqual({ unseen: 1, unread: 1, archived: 2, snoozed: 1, inbox: 1 });
    const call = server.calls.find((c) => c.method === "snooze")!.req as { ids: string[]; until: { seconds: bigint } };
    expect(call.ids).toEqual(["3"]);
    expect(Number(call.until.seconds)).toBe(Math.floor(until.getTime() / 1000));

    // Tabs list what the server keeps in each state.
    await store.setTab("archived");
    expect(store.getState().tabItems.map((i) => i.eventId)).toEqual(["ev2", "ev1"]);
    expect(store.getState().tabItems.every((i) => i.archived)).toBe(true);
    await store.setTab("snoozed");
    expect(store.getState().tabItems.map((i) => [i.eventId, i.snoozedUntil?.getTime()])).toEqual([["ev3", until.getTime()]]);
    await store.unsnooze(["3"]);
    expect(store.getState().tabItems).toEqual([]);
    await advance(10);
    expect(ids()).toEqual(["ev4", "ev3"]);
    await store.setTab("unread");
    expect(store.getState().tabItems.map((i) => i.eventId)).toEqual(["ev4", "ev3"]);
    // Reading in the Unread tab takes the entry out of it.
    await store.markRead("4");
    expect(store.getState().tabItems.map((i) => i.eventId)).toEqual(["ev3"]);
    await store.setTab("all");
    expect(store.getState().tabItems).toBe(store.getState().items);
  });

  test("a notification back from snooze: a toast, the lists and the badge follow the stream", async () => {
    const ev = pointsAdded("guest:g1", 1, "e1", "snz", 30);
    server.addToInbox(ev);
    const s = await start();
    await store.snooze(["1"], new Date(Date.now() + 2000));
    expect(store.getState().items).toEqual([]);
    // The server's clock passes the end; the stream announces it.
    server.now = () => Date.now() + 3000;
    s.inbox(1, 1, [create(ReturnedNotificationSchema, { id: "1", event: ev, snoozeUntil: timestampFromMs(Date.now() + 2000) })]);
    await settle();
    expect(store.getState().unseen).toBe(1);
    expect(store.getState().toasts.map((t) => [t.title, t.message])).toEqual([["+30 points", "Back from snooze"]]);
    await advance(10);
    expect(ids()).toEqual(["snz"]);
    expect(store.getState().items[0].seen).toBe(false);
    expect(store.getState().counts.snoozed).toBe(0);
  });

  test("the counts on the stream move the badge; another client's change reloads the lists", async () => {
    for (let i = 1; i <= 3; i++) server.addToInbox(pointsAdded("guest:g1", i, "e1", `ev${i}`));
    const s = await start();
    expect(store.getState().unseen).toBe(3);
    // Another client archives one, and the stream says so.
    server.inbox[0].archived = true;
    s.inbox(2, 2);
    await advance(250);
    expect(store.getState().unseen).toBe(2);
    expect(ids()).toEqual(["ev3", "ev2"]);
    expect(store.getState().counts.archived).toBe(1);
  });

  test("markSeen sends each id once, even when asked again while on its way", async () => {
    for (let i = 1; i <= 2; i++) server.addToInbox(pointsAdded("guest:g1", i, "e1", `ev${i}`));
    await start();
    const a = store.markSeen(["2"]);
    const b = store.markSeen(["2", "1"]);
    await Promise.all([a, b]);
    const sent = server.calls.filter((c) => c.method === "markSeen").map((c) => (c.req as { ids: string[] }).ids);
    expect(sent).toEqual([["2"], ["1"]]);
    expect(store.getState().unseen).toBe(0);
    await store.markSeen(["2", "1"]);
    expect(server.calls.filter((c) => c.method === "markSeen")).toHaveLength(2);
  });

  test("bulk: archive all read, mark all seen", async () => {
    for (let i = 1; i <= 4; i++) server.addToInbox(pointsAdded("guest:g1", i, "e1", `ev${i}`));
    await start();
    await store.markReadMany(["1", "2"]);
    await store.archiveAllRead();
    expect(ids()).toEqual(["ev4", "ev3"]);
    const bulk = server.calls.find((c) => c.method === "bulkUpdate")!.req as { action: number; filter: { state: number } };
    expect([bulk.action, bulk.filter.state]).toEqual([InboxAction.ARCHIVE, NotificationState.READ]);
    expect(store.getState().counts).toEqual({ unseen: 2, unread: 2, archived: 2, snoozed: 0, inbox: 2 });
    await store.markAllSeen();
    expect(store.getState().unseen).toBe(0);
    expect(server.inbox.filter((n) => !n.archived).every((n) => n.seen)).toBe(true);
  });

  test("a server without counts: the badge shows the unread count", async () => {
    server.legacy = true;
    for (let i = 1; i <= 2; i++) server.addToInbox(pointsAdded("guest:g1", i, "e1", `ev${i}`)).seen = true;
    const s = await start();
    expect(store.getState().unseen).toBe(2);
    s.unread(1);
    await advance(10);
    expect([store.getState().unread, store.getState().unseen]).toEqual([1, 1]);
  });
});
