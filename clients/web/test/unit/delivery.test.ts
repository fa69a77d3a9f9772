import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { afterEach, describe, expect, test } from "vitest";
import { DeliveryChannel, DeliveryState } from "../../src/gen/notify/v1/delivery_pb";
import { EventType } from "../../src/gen/notify/v1/events_pb";
import { NotifyClient } from "../../src/lib/client";
import { routesOf, settled } from "../../src/lib/deliveries";
import { browserLabel, deliveryPushBackend } from "../../src/lib/pushBackend";
import { NotificationStore } from "../../src/lib/store";
import { FakeServer } from "./harness";

let stores: NotificationStore[] = [];
afterEach(() => {
  stores.forEach((s) => s.stop());
  stores = [];
});

function setup() {
  const server = new FakeServer();
  const client = new NotifyClient({ transport: server.transport, getToken: async () => "tok" });
  const store = new NotificationStore(client);
  stores.push(store);
  return { server, client, store };
}

describe("web push backend (DeliveryService)", () => {
  test("key, register and remove go to DeliveryService with the user's token", async () => {
    const { server, client } = setup();
    const b = deliveryPushBackend(client, "Chrome on Linux");
    expect(await b.vapidPublicKey()).toBe("");
    server.vapidPublicKey = "BKEY";
    expect(await b.vapidPublicKey()).toBe("BKEY");
    await b.register({ endpoint: "https://push.example/1", p256dh: "P", auth: "A" });
    const reg = server.devices.get("https://push.example/1")!;
    expect(reg.label).toBe("Chrome on Linux");
    expect(reg.device.case).toBe("webPush");
    expect(reg.device.value).toMatchObject({ endpoint: "https://push.example/1", keys: { p256dh: "P", auth: "A" } });
    await b.remove("https://push.example/1");
    expect(server.devices.size).toBe(0);
    await b.remove("https://push.example/1"); // NotFound: already gone
    expect(server.calls.every((c) => c.auth === "Bearer tok")).toBe(true);
  });

  test("a server without DeliveryService has no key; other errors are errors", async () => {
    const { server, client } = setup();
    const b = deliveryPushBackend(client);
    server.failNext.push(new ConnectError("unknown service", Code.Unimplemented));
    expect(await b.vapidPublicKey()).toBe("");
    server.failNext.push(new ConnectError("down", Code.Unavailable));
    await expect(b.vapidPublicKey()).rejects.toThrow(/down/);
  });

  test("browser labels", () => {
    expect(browserLabel("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/140.0.0.0 Safari/537.36")).toBe("Chrome on Linux");
    expect(browserLabel("Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Firefox/128.0")).toBe("Firefox on Windows");
    expect(browserLabel("Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 Version/17.0 Mobile/15E148 Safari/604.1")).toBe("Safari on iOS");
    expect(browserLabel("curl/8")).toBe("A browser");
  });
});

describe("delivery timelines", () => {
  test("steps are grouped by channel and target; the latest step is the route's state", () => {
    const { server } = setup();
    server.addStep("e1", { channel: DeliveryChannel.WEB_PUSH, target: "Chrome on Linux", state: DeliveryState.SCHEDULED, time: timestampFromMs(1000) });
    server.addStep("e1", { channel: DeliveryChannel.EMAIL, target: "a***@example.com", state: DeliveryState.QUEUED });
    server.addStep("e1", { channel: DeliveryChannel.EMAIL, target: "a***@example.com", state: DeliveryState.SENT, attempt: 1 });
    server.addStep("e1", { channel: DeliveryChannel.WEB_PUSH, target: "Chrome on Linux", state: DeliveryState.CANCELLED, detail: "seen: read in the inbox" });
    const routes = routesOf({ $typeName: "notify.v1.DeliveryTimeline", eventId: "e1", steps: server.timelines.get("e1")! });
    expect(routes.map((r) => [r.channel, r.channelLabel, r.target, r.state, r.detail, r.steps.length])).toEqual([
      ["webPush", "Web push", "Chrome on Linux", "cancelled", "seen: read in the inbox", 2],
      ["email", "Email", "a***@example.com", "sent", "", 2],
    ]);
    expect(routes[0].steps[0]).toMatchObject({ state: "scheduled", time: new Date(1000) });
    expect(settled(routes)).toBe(true);
    expect(settled([{ ...routes[0], state: "retrying" }])).toBe(false);
    expect(settled([{ ...routes[0], state: "held" }])).toBe(true);
    const held = routesOf({ $typeName: "notify.v1.DeliveryTimeline", eventId: "e2", steps: [{ ...server.timelines.get("e1")![0], state: DeliveryState.HELD }] });
    expect(held[0].state).toBe("held");
    expect(routesOf(undefined)).toEqual([]);
  });

  test("the store reads timelines once settled, again while they may change, and stops on Unimplemented", async () => {
    const { server, store } = setup();
    server.addStep("e1", { channel: DeliveryChannel.WEB_PUSH, target: "Chrome", state: DeliveryState.SCHEDULED });
    server.addStep("e2", { channel: DeliveryChannel.EMAIL, target: "a***", state: DeliveryState.SENT });
    await store.loadDeliveries(["e1", "e2", "e3", "e1"]);
    const d = store.getState().deliveries;
    expect(d.e1.settled).toBe(false);
    expect(d.e1.routes[0]).toMatchObject({ channel: "webPush", state: "scheduled" });
    expect(d.e2.settled).toBe(true);
    expect(d.e3).toMatchObject({ routes: [], settled: true });
    expect((server.calls.at(-1)!.req as { eventIds: string[] }).eventIds).toEqual(["e1", "e2", "e3"]);

    // Fresh: nothing asked. Stale: only the one that may change.
    const n = server.calls.length;
    await store.loadDeliveries(["e1", "e2"]);
    expect(server.calls.length).toBe(n);
    server.addStep("e1", { channel: DeliveryChannel.WEB_PUSH, target: "Chrome", state: DeliveryState.SENT });
    await store.loadDeliveries(["e1", "e2"], { staleMs: 0 });
    expect((server.calls.at(-1)!.req as { eventIds: string[] }).eventIds).toEqual(["e1"]);
    expect(store.getState().deliveries.e1).toMatchObject({ settled: true, routes: [{ state: "sent", steps: [{ state: "scheduled" }, { state: "sent" }] }] });
    await store.loadDeliveries(["e1", "e2"], { force: true });
    expect((server.calls.at(-1)!.req as { eventIds: string[] }).eventIds).toEqual(["e1", "e2"]);

    // 250 ids: three calls of at most 100.
    const before = server.calls.length;
    await store.loadDeliveries(Array.from({ length: 250 }, (_, i) => `x${i}`));
    expect(server.calls.slice(before).map((c) => (c.req as { eventIds: string[] }).eventIds.length)).toEqual([100, 100, 50]);

    server.failNext.push(new ConnectError("unknown service", Code.Unimplemented));
    await store.loadDeliveries(["y1"]);
    expect(store.getState().deliveriesAvailable).toBe(false);
    const after = server.calls.length;
    await store.loadDeliveries(["y2"]);
    expect(server.calls.length).toBe(after);
  });
});

describe("preferences", () => {
  test("changing one field keeps the others, quiet hours and digests included", async () => {
    const { server, store } = setup();
    server.preferences.timeZone = "Europe/Paris";
    server.preferences.quietHours = { $typeName: "notify.v1.QuietHours", start: "22:00", end: "07:00" };
    server.preferences.digests = [{ $typeName: "notify.v1.DigestRule", eventType: EventType.POINTS_ADDED, key: "", window: { $typeName: "google.protobuf.Duration", seconds: 3600n, nanos: 0 } }];
    await store.loadPreferences();
    expect(await store.updatePreferences({ sound: false })).toBe(true);
    expect(server.preferences).toMatchObject({ enabled: true, sound: false, timeZone: "Europe/Paris", quietHours: { start: "22:00", end: "07:00" } });
    expect(server.preferences.digests.map((d) => [d.eventType, d.window?.seconds])).toEqual([[EventType.POINTS_ADDED, 3600n]]);
    await store.updatePreferences({ quietHours: undefined, timeZone: "America/New_York" });
    expect(server.preferences.quietHours).toBeUndefined();
    expect(server.preferences.timeZone).toBe("America/New_York");
    expect(store.getState().preferences?.timeZone).toBe("America/New_York");
  });

  test("a refused update puts the old preferences back and says so", async () => {
    const { server, store } = setup();
    await store.loadPreferences();
    server.failNext.push(new ConnectError("bad time zone", Code.InvalidArgument));
    expect(await store.updatePreferences({ timeZone: "Mars/Base" })).toBe(false);
    expect(store.getState().preferences?.timeZone).toBe("");
    expect(store.getState().error).toBe("bad time zone");
  });
});
