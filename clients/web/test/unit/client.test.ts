import { Code, ConnectError } from "@connectrpc/connect";
import { afterEach, beforeEach, describe, expect, test, vi } from "vitest";
import type { PointsAdded } from "../../src/gen/notify/v1/events_pb";
import type { Event } from "../../src/gen/notify/v1/notify_pb";
import { NotifyClient, type ConnectionState } from "../../src/lib/client";
import { FakeServer, pointsAdded, settle, statusError } from "./harness";

let server: FakeServer;
let client: NotifyClient;
let states: ConnectionState[];

function newClient(opts: ConstructorParameters<typeof NotifyClient>[0] = {}): NotifyClient {
  const c = new NotifyClient({ transport: server.transport, random: () => 0.5, backoff: { baseMs: 100, maxMs: 1000 }, ...opts });
  states = [];
  c.onState((s) => states.push(s));
  return c;
}

/** Advances fake time by ms, letting promises run in between. */
async function advance(ms: number): Promise<void> {
  await vi.advanceTimersByTimeAsync(ms);
  await settle();
}

const rooms = [
  { room: "guest:g1", epoch: "e1", offset: 5 },
  { room: "user:g1", epoch: "u1", offset: 0 },
];

beforeEach(() => {
  vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "Date"] });
  server = new FakeServer();
});

afterEach(() => {
  client?.disconnect();
  vi.useRealTimers();
});

describe("connection", () => {
  test("connects with the bearer token, reports states, typed handlers get their payload", async () => {
    client = newClient();
    const got: [PointsAdded, Event][] = [];
    const all: string[] = [];
    client.on("pointsAdded", (ev, env) => got.push([ev, env]));
    client.on("systemAlert", () => all.push("wrong handler"));
    client.onEvent((env) => all.push(env.id));
    client.connect({ token: "tok-1" });
    const s = await server.waitStreams(1);
    expect(client.state).toBe("connecting");
    expect(s.headers.get("authorization")).toBe("Bearer tok-1");
    expect(s.req.rooms).toEqual([]);
    s.connected(rooms).events(pointsAdded("guest:g1", 6, "e1", "a"));
    await settle();
    expect(client.state).toBe("connected");
    expect(states).toEqual(["connecting", "connected"]);
    expect(got).toHaveLength(1);
    expect(got[0][0].amount).toBe(10n);
    expect(got[0][0].newBalance).toBe(106n);
    expect(got[0][1].room).toBe("guest:g1");
    expect(all).toEqual(["a"]);
    expect(client.positions().get("guest:g1")).toEqual({ offset: 6n, epoch: "e1" });
    expect(client.positions().get("user:g1")).toEqual({ offset: 0n, epoch: "u1" });
  });

  test("names the rooms asked for and sends only their positions", async () => {
    client = newClient();
    client.connect({
      token: "t",
      rooms: ["guest:g1", "guest:g1", "admin"],
      positions: { "guest:g1": { offset: 3n, epoch: "e1" }, "other:x": { offset: 1n, epoch: "z" } },
    });
    const s = await server.waitStreams(1);
    expect(s.req.rooms).toEqual(["guest:g1", "admin"]);
    expect(s.req.positions.map((p) => [p.room, p.offset, p.epoch])).toEqual([["guest:g1", 3n, "e1"]]);
  });

  test("reconnects with exponential backoff and full jitter after failures", async () => {
    client = newClient();
    client.connect({ token: "t" });
    // random() = 0.5: waits are half the ceiling: 50, 100, 200, 400, 500, 500 (max 1000).
    const expected = [50, 100, 200, 400, 500, 500];
    for (let i = 0; i < expected.length; i++) {
      const s = await server.waitStreams(i + 1);
      s.end(new ConnectError("connection refused", Code.Unavailable));
      await settle();
      expect(client.state).toBe("reconnecting");
      await advance(expected[i] - 1);
      expect(server.streams).toHaveLength(i + 1);
      await advance(1);
      expect(server.streams).toHaveLength(i + 2);
    }
  });

  test("a stream that was up for a while resets the backoff", async () => {
    client = newClient({ healthyAfterMs: 500 });
    client.connect({ token: "t" });
    for (let i = 1; i <= 3; i++) {
      (await server.waitStreams(i)).end(new ConnectError("down", Code.Unavailable));
      await settle();
      await advance(1000);
    }
    const s = await server.waitStreams(4);
    s.connected(rooms);
    await settle();
    await advance(600);
    s.end(new ConnectError("network", Code.Unknown));
    await settle();
    await advance(49);
    expect(server.streams).toHaveLength(4);
    await advance(1);
    expect(server.streams).toHaveLength(5);
  });

  test("honours disconnected.reconnectDelay", async () => {
    client = newClient();
    client.connect({ token: "t" });
    const s = await server.waitStreams(1);
    s.connected(rooms).disconnected(2000).end(statusError(Code.Unavailable, "SERVER_RESTART"));
    await settle();
    expect(client.state).toBe("reconnecting");
    await advance(1999);
    expect(server.streams).toHaveLength(1);
    await advance(1);
    expect(server.streams).toHaveLength(2);
  });

  test("a stream ended cleanly by the server is reconnected", async () => {
    client = newClient();
    client.connect({ token: "t" });
    (await server.waitStreams(1)).connected(rooms).end();
    await settle();
    await advance(50);
    expect(server.streams).toHaveLength(2);
  });

  test("a silent stream is taken for dead after two heartbeat intervals", async () => {
    client = newClient();
    client.connect({ token: "t" });
    const s = await server.waitStreams(1);
    s.connected(rooms, 1000);
    await settle();
    await advance(2500);
    s.send({ control: { case: "heartbeat", value: {} } });
    await settle();
    await advance(2900);
    expect(server.streams).toHaveLength(1);
    expect(client.state).toBe("connected");
    await advance(200); // 3000ms of silence
    expect(client.state).toBe("reconnecting");
    await advance(1000);
    expect(server.streams).toHaveLength(2);
  });

  test("disconnect stops everything", async () => {
    client = newClient();
    client.connect({ token: "t" });
    const s = await server.waitStreams(1);
    s.connected(rooms);
    await settle();
    client.disconnect();
    await settle();
    expect(client.state).toBe("disconnected");
    expect(s.closedByClient).toBe(true);
    await advance(60_000);
    expect(server.streams).toHaveLength(1);
  });
});

describe("resume and dedupe", () => {
  test("sends the last positions on reconnection and drops what it already had", async () => {
    client = newClient();
    const seen: string[] = [];
    client.onEvent((ev) => seen.push(`${ev.room}@${ev.offset}/${ev.epoch}`));
    client.connect({ token: "t" });
    const s1 = await server.waitStreams(1);
    s1.connected(rooms).events(pointsAdded("guest:g1", 6, "e1"), pointsAdded("guest:g1", 7, "e1"), pointsAdded("user:g1", 1, "u1"));
    s1.end(new ConnectError("reset", Code.Unavailable));
    await settle();
    await advance(50);
    const s2 = await server.waitStreams(2);
    expect(s2.req.positions.map((p) => [p.room, p.offset, p.epoch])).toEqual([
      ["guest:g1", 7n, "e1"],
      ["user:g1", 1n, "u1"],
    ]);
    // The server replays from the positions; the seam may overlap.
    s2.connected([
      { room: "guest:g1", epoch: "e1", offset: 9, recovered: true },
      { room: "user:g1", epoch: "u1", offset: 1, recovered: true },
    ]);
    s2.events(pointsAdded("guest:g1", 6, "e1"), pointsAdded("guest:g1", 7, "e1"), pointsAdded("guest:g1", 8, "e1"), pointsAdded("guest:g1", 9, "e1"));
    s2.events(pointsAdded("user:g1", 1, "u1"), pointsAdded("user:g1", 2, "u1"));
    await settle();
    expect(seen).toEqual([
      "guest:g1@6/e1",
      "guest:g1@7/e1",
      "user:g1@1/u1",
      "guest:g1@8/e1",
      "guest:g1@9/e1",
      "user:g1@2/u1",
    ]);
    expect(client.stats.duplicatesDropped).toBe(3);
    // A new epoch is a new history: a low offset is taken.
    s2.events(pointsAdded("guest:g1", 1, "e2"));
    await settle();
    expect(seen.at(-1)).toBe("guest:g1@1/e2");
    expect(client.positions().get("guest:g1")).toEqual({ offset: 1n, epoch: "e2" });
  });

  test("recovered=false in the same epoch calls onGap and continues live from the room's top", async () => {
    client = newClient();
    const gaps: string[] = [];
    client.onGap((room, st) => gaps.push(`${room}:${st.epoch}:${st.offset}`));
    client.connect({ token: "t" });
    const s1 = await server.waitStreams(1);
    s1.connected(rooms).events(pointsAdded("guest:g1", 6, "e1"));
    await settle();
    expect(gaps).toEqual([]); // no position was given the first time
    s1.end(new ConnectError("reset", Code.Unavailable));
    await settle();
    await advance(50);
    const s2 = await server.waitStreams(2);
    // Events 7..150 left the history window: not replayable.
    s2.connected([
      { room: "guest:g1", epoch: "e1", offset: 150, recovered: false },
      { room: "user:g1", epoch: "u1", offset: 0, recovered: true },
    ]);
    await settle();
    expect(gaps).toEqual(["guest:g1:e1:150"]);
    expect(client.stats.gaps).toBe(1);
    expect(client.positions().get("guest:g1")).toEqual({ offset: 150n, epoch: "e1" });
    const seen: bigint[] = [];
    client.onEvent((ev) => seen.push(ev.offset));
    s2.events(pointsAdded("guest:g1", 150, "e1"), pointsAdded("guest:g1", 151, "e1"));
    await settle();
    expect(seen).toEqual([151n]);
  });

  test("recovered=false with a new epoch (server restart) takes the replay from start_offset 0", async () => {
    client = newClient();
    const gaps: string[] = [];
    client.onGap((room, st) => gaps.push(`${room}:${st.epoch}:${st.offset}`));
    client.connect({ token: "t" });
    const s1 = await server.waitStreams(1);
    s1.connected(rooms).events(pointsAdded("guest:g1", 6, "e1"));
    s1.disconnected(100).end(statusError(Code.Unavailable, "SERVER_RESTART"));
    await settle();
    await advance(100);
    const seen: string[] = [];
    client.onEvent((ev) => seen.push(`${ev.offset}/${ev.epoch}`));
    const s2 = await server.waitStreams(2);
    expect(s2.req.positions.find((p) => p.room === "guest:g1")).toMatchObject({ offset: 6n, epoch: "e1" });
    // Two events were published after the restart, before this stream: the
    // server replays the new epoch from its first event.
    s2.connected([
      { room: "guest:g1", epoch: "NEW", offset: 2, recovered: false, startOffset: 0 },
      { room: "user:g1", epoch: "u1", offset: 0, recovered: true },
    ]);
    await settle();
    expect(client.positions().get("guest:g1")).toEqual({ offset: 0n, epoch: "NEW" });
    s2.events(pointsAdded("guest:g1", 1, "NEW"), pointsAdded("guest:g1", 2, "NEW"));
    await settle();
    expect(gaps).toEqual(["guest:g1:NEW:2"]);
    expect(seen).toEqual(["1/NEW", "2/NEW"]);
    expect(client.positions().get("guest:g1")).toEqual({ offset: 2n, epoch: "NEW" });
    // A stream cut before its replay arrived resumes from offset 0 of that
    // epoch, which the server then replays in full.
    s2.disconnected(100).end(statusError(Code.Unavailable, "SERVER_RESTART"));
    await settle();
    await advance(100);
    const s3 = await server.waitStreams(3);
    s3.connected([
      { room: "guest:g1", epoch: "NEWER", offset: 4, recovered: false, startOffset: 0 },
      { room: "user:g1", epoch: "u1", offset: 0, recovered: true },
    ]);
    await settle();
    s3.end(new ConnectError("reset", Code.Unavailable));
    await settle();
    await advance(50);
    const s4 = await server.waitStreams(4);
    expect(s4.req.positions.find((p) => p.room === "guest:g1")).toMatchObject({ offset: 0n, epoch: "NEWER" });
  });

  test("recovered=false honours start_offset when the server starts at the top", async () => {
    client = newClient();
    client.connect({ token: "t" });
    const s1 = await server.waitStreams(1);
    s1.connected(rooms).events(pointsAdded("guest:g1", 6, "e1"));
    s1.end(new ConnectError("reset", Code.Unavailable));
    await settle();
    await advance(50);
    const s2 = await server.waitStreams(2);
    // A new epoch that the server does not replay (it no longer holds it whole).
    s2.connected([
      { room: "guest:g1", epoch: "NEW", offset: 70, recovered: false, startOffset: 70 },
      { room: "user:g1", epoch: "u1", offset: 0, recovered: true },
    ]);
    await settle();
    expect(client.positions().get("guest:g1")).toEqual({ offset: 70n, epoch: "NEW" });
    const seen: bigint[] = [];
    client.onEvent((ev) => seen.push(ev.offset));
    s2.events(pointsAdded("guest:g1", 70, "NEW"), pointsAdded("guest:g1", 71, "NEW"));
    await settle();
    expect(seen).toEqual([71n]);
  });

  test("tracks the unread count", async () => {
    client = newClient();
    const counts: number[] = [];
    client.onUnread((n) => counts.push(n));
    client.connect({ token: "t" });
    (await server.waitStreams(1)).connected(rooms).unread(3).unread(0);
    await settle();
    expect(counts).toEqual([3, 0]);
    expect(client.unread).toBe(0);
  });
});

describe("errors", () => {
  for (const [name, err] of [
    ["PermissionDenied", statusError(Code.PermissionDenied, "PERMISSION_DENIED")],
    ["InvalidArgument", statusError(Code.InvalidArgument, "INVALID_ROOM")],
    ["Unauthenticated TOKEN_INVALID", statusError(Code.Unauthenticated, "TOKEN_INVALID")],
    ["Unauthenticated without a reason", new ConnectError("no", Code.Unauthenticated)],
  ] as const) {
    test(`${name} stops reconnecting`, async () => {
      client = newClient();
      const errors: Code[] = [];
      client.onError((e) => errors.push(e.code));
      client.connect({ token: "t" });
      (await server.waitStreams(1)).end(err);
      await settle();
      expect(client.state).toBe("disconnected");
      expect(client.lastError?.code).toBe(err.code);
      expect(errors).toEqual([err.code]);
      await advance(120_000);
      expect(server.streams).toHaveLength(1);
    });
  }

  test("TOKEN_EXPIRED gets a fresh token and reconnects at once", async () => {
    client = newClient();
    const asked: boolean[] = [];
    let n = 0;
    client.connect({
      getToken: async ({ refresh }) => {
        asked.push(refresh);
        return `tok-${++n}`;
      },
    });
    const s1 = await server.waitStreams(1);
    s1.connected(rooms).events(pointsAdded("guest:g1", 6, "e1"));
    await settle();
    await advance(1000);
    s1.send({ control: { case: "disconnected", value: { reason: 2 } } }).end(statusError(Code.Unauthenticated, "TOKEN_EXPIRED"));
    await settle();
    const s2 = await server.waitStreams(2); // no timer advanced: at once
    expect(s2.headers.get("authorization")).toBe("Bearer tok-2");
    expect(asked).toEqual([false, true]);
    expect(s2.req.positions.find((p) => p.room === "guest:g1")?.offset).toBe(6n);
  });

  test("TOKEN_EXPIRED again right away backs off instead of looping", async () => {
    client = newClient();
    client.connect({ getToken: async () => "stale" });
    (await server.waitStreams(1)).end(statusError(Code.Unauthenticated, "TOKEN_EXPIRED"));
    await settle();
    (await server.waitStreams(2)).end(statusError(Code.Unauthenticated, "TOKEN_EXPIRED"));
    await settle();
    expect(server.streams).toHaveLength(2);
    await advance(50);
    expect(server.streams).toHaveLength(3);
  });

  test("TOKEN_EXPIRED with a fixed token stops", async () => {
    client = newClient();
    client.connect({ token: "fixed" });
    (await server.waitStreams(1)).end(statusError(Code.Unauthenticated, "TOKEN_EXPIRED"));
    await settle();
    expect(client.state).toBe("disconnected");
  });

  test("a failing token source is retried with backoff", async () => {
    client = newClient();
    let fail = true;
    client.connect({
      getToken: async () => {
        if (fail) throw new Error("auth server down");
        return "ok";
      },
    });
    await settle();
    expect(client.state).toBe("reconnecting");
    fail = false;
    await advance(50);
    const s = await server.waitStreams(1);
    expect(s.headers.get("authorization")).toBe("Bearer ok");
  });
});

describe("offline queue", () => {
  test("calls made while disconnected are sent in order once connected", async () => {
    client = newClient();
    const results: string[] = [];
    const p1 = client.markRead(["1"]).then((r) => results.push(`markRead ${r.unreadCount}`));
    const p2 = client.confirmAction({ actionId: "a1", action: 1, amount: 50n, restaurantId: "r1" }).then((r) => results.push(r.eventId));
    const p3 = client.markRead(["2"]).then(() => results.push("markRead 2"));
    expect(client.pendingCalls).toBe(3);
    client.connect({ token: "t" });
    const s = await server.waitStreams(1);
    await settle();
    expect(server.calls).toHaveLength(0); // not before the stream is up
    s.connected(rooms);
    await Promise.all([p1, p2, p3]);
    expect(server.methods()).toEqual(["markRead", "confirmAction", "markRead"]);
    expect(server.calls.map((c) => c.auth)).toEqual(["Bearer t", "Bearer t", "Bearer t"]);
    expect((server.calls[0].req as { ids: string[] }).ids).toEqual(["1"]);
    expect(results).toEqual(["markRead 0", "confirm-a1", "markRead 2"]);
    expect(client.pendingCalls).toBe(0);
  });

  test("calls made while reconnecting wait for the next stream, in order", async () => {
    client = newClient();
    client.connect({ token: "t" });
    const s1 = await server.waitStreams(1);
    s1.connected(rooms);
    await settle();
    await client.markRead(["1"]);
    s1.end(new ConnectError("network", Code.Unavailable));
    await settle();
    expect(client.state).toBe("reconnecting");
    const later = [client.markRead(["2"]), client.markAllRead(), client.deleteNotification("3")];
    await settle();
    expect(server.methods()).toEqual(["markRead"]);
    await advance(50);
    (await server.waitStreams(2)).connected(rooms);
    await Promise.all(later);
    expect(server.methods()).toEqual(["markRead", "markRead", "markAllRead", "deleteNotification"]);
  });

  test("a call that fails on the way stays first in line and is retried", async () => {
    client = newClient();
    client.connect({ token: "t" });
    (await server.waitStreams(1)).connected(rooms);
    await settle();
    server.failNext = [new ConnectError("blip", Code.Unavailable)];
    const done: string[] = [];
    const a = client.markRead(["1"]).then(() => done.push("1"));
    const b = client.markRead(["2"]).then(() => done.push("2"));
    await settle();
    expect(done).toEqual([]);
    expect(client.pendingCalls).toBe(2);
    await advance(50);
    await Promise.all([a, b]);
    expect(done).toEqual(["1", "2"]);
    expect(server.calls.map((c) => (c.req as { ids: string[] }).ids[0])).toEqual(["1", "1", "2"]);
  });

  test("a call refused for good is rejected and the queue goes on", async () => {
    client = newClient();
    client.connect({ token: "t" });
    (await server.waitStreams(1)).connected(rooms);
    await settle();
    server.failNext = [statusError(Code.NotFound, "NOT_FOUND")];
    const a = client.markRead(["nope"]);
    const b = client.markRead(["2"]);
    await expect(a).rejects.toMatchObject({ code: Code.NotFound });
    await expect(b).resolves.toBeDefined();
  });

  test("an expired token is refreshed for a call", async () => {
    client = newClient();
    let n = 0;
    client.connect({ getToken: async () => `tok-${++n}` });
    (await server.waitStreams(1)).connected(rooms);
    await settle();
    server.failNext = [statusError(Code.Unauthenticated, "TOKEN_EXPIRED")];
    await client.markRead(["1"]);
    expect(server.calls.map((c) => c.auth)).toEqual(["Bearer tok-2", "Bearer tok-3"]);
  });

  test("disconnect and permanent errors reject what is queued", async () => {
    client = newClient();
    const a = client.markRead(["1"]);
    client.connect({ token: "t" });
    (await server.waitStreams(1)).end(statusError(Code.PermissionDenied, "PERMISSION_DENIED"));
    await expect(a).rejects.toMatchObject({ code: Code.FailedPrecondition });
    const b = client.markRead(["2"]);
    client.disconnect();
    await expect(b).rejects.toMatchObject({ code: Code.Canceled });
  });

  test("the queue is bounded", async () => {
    client = newClient({ maxQueue: 2 });
    void client.markRead(["1"]).catch(() => {});
    void client.markRead(["2"]).catch(() => {});
    await expect(client.markRead(["3"])).rejects.toMatchObject({ code: Code.ResourceExhausted });
  });
});
