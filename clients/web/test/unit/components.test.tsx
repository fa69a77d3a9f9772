import { create } from "@bufbuild/protobuf";
import { renderToString } from "react-dom/server";
import { afterEach, describe, expect, test } from "vitest";
import { NotifyClient } from "../../src/lib/client";
import { NotificationStore } from "../../src/lib/store";
import { NotifyProvider } from "../../src/react/context";
import { badgeText, relativeTime } from "../../src/react/format";
import { Priority } from "../../src/gen/notify/v1/events_pb";
import { NotificationActionSchema } from "../../src/gen/notify/v1/notify_pb";
import { snoozeLabel, snoozeOptions } from "../../src/lib/snooze";
import { NotificationCenter, safeHref } from "../../src/react/NotificationCenter";
import { ToastContainer } from "../../src/react/ToastContainer";
import { DeliveryChannel, DeliveryState } from "../../src/gen/notify/v1/delivery_pb";
import { WebPushControl, type PushBackend, type PushState } from "../../src/lib/push";
import { PushToggle } from "../../src/react/PushToggle";
import { FakeServer, pointsAdded } from "./harness";

let stores: NotificationStore[] = [];

afterEach(() => {
  stores.forEach((s) => s.stop());
  stores = [];
});

async function setup(unread: number, read = 0, prepare?: (server: FakeServer) => void) {
  const server = new FakeServer();
  for (let i = 0; i < unread + read; i++) {
    const n = server.addToInbox(pointsAdded("guest:g1", i + 1, "e1", `ev${i + 1}`));
    n.read = i < read;
    n.seen = i < read;
  }
  prepare?.(server);
  const client = new NotifyClient({ transport: server.transport });
  // Inbox reads need a token, not a stream: connect for the token, then stop.
  client.connect({ token: "t" });
  client.disconnect();
  const store = new NotificationStore(client, { pageSize: 10 });
  stores.push(store);
  await store.refresh();
  return { client, store };
}

function render(client: NotifyClient, store: NotificationStore, ui: React.ReactNode): string {
  return renderToString(
    <NotifyProvider client={client} store={store}>
      {ui}
    </NotifyProvider>,
  );
}

describe("components", () => {
  test("badge text caps at 99+", () => {
    expect([0, 1, 99, 100, 1234].map((n) => badgeText(n))).toEqual(["0", "1", "99", "99+", "99+"]);
    expect(badgeText(10, 9)).toBe("9+");
  });

  test("relative times", () => {
    const now = Date.parse("2025-01-01T12:00:00Z");
    expect(relativeTime(new Date(now - 5_000), now)).toBe("just now");
    expect(relativeTime(new Date(now - 5 * 60_000), now)).toBe("5 min ago");
    expect(relativeTime(new Date(now - 3 * 3_600_000), now)).toBe("3 h ago");
    expect(relativeTime(undefined, now)).toBe("");
  });

  test("the bell shows 99+ above 99 unseen, and the list highlights unread entries", async () => {
    const { client, store } = await setup(150, 2);
    expect(store.getState().unread).toBe(150);
    expect(store.getState().unseen).toBe(150);
    const html = render(client, store, <NotificationCenter defaultOpen />);
    expect(html).toMatch(/data-testid="unread-badge"[^>]*>99\+</);
    expect(html).toContain('aria-label="Notifications, 150 new, 150 unread"');
    expect(html.match(/data-testid="notification-item"/g)).toHaveLength(10);
    expect(html).toContain('data-testid="notification-load-more"');
    expect(html).toContain("notify-item--unread");
    expect(html).toContain('data-testid="mark-all-read"');
  });

  test("exactly 99 unseen shows 99; none shows no badge and the empty state", async () => {
    const a = await setup(99);
    expect(render(a.client, a.store, <NotificationCenter />)).toMatch(/data-testid="unread-badge"[^>]*>99</);
    const b = await setup(0);
    const html = render(b.client, b.store, <NotificationCenter defaultOpen />);
    expect(html).not.toContain("unread-badge");
    expect(html).toContain('data-testid="notification-empty"');
    expect(html).toContain("No notifications yet");
    // A drawn bell, not an emoji that a font may lack.
    expect(html).toMatch(/data-testid="notification-empty"[^>]*><svg class="notify-empty__icon"/);
    expect(html).not.toContain("🔔");
  });

  test("the badge counts unseen: seen but unread shows no badge, and says so", async () => {
    const { client, store } = await setup(0, 0, (server) => {
      for (let i = 0; i < 3; i++) server.addToInbox(pointsAdded("guest:g1", i + 1, "e1", `s${i}`)).seen = true;
    });
    expect(store.getState().counts).toEqual({ unseen: 0, unread: 3, archived: 0, snoozed: 0, inbox: 3 });
    const html = render(client, store, <NotificationCenter />);
    expect(html).not.toContain("unread-badge");
    expect(html).toContain('aria-label="Notifications, 3 unread"');
  });

  test("tabs with their counts; each entry's priority, category, tags, state and a safe action", async () => {
    const { client, store } = await setup(2, 1, (server) => {
      const promo = server.addToInbox(pointsAdded("guest:g1", 9, "e1", "promo"));
      promo.priority = Priority.HIGH;
      promo.category = "promo";
      promo.tags = ["summer"];
      promo.action = create(NotificationActionSchema, { label: "Open card", target: { case: "url", value: "/cards/c1" } });
      const evil = server.addToInbox(pointsAdded("guest:g1", 10, "e1", "evil"));
      evil.action = create(NotificationActionSchema, { label: "Click", target: { case: "url", value: "javascript:alert(1)" } });
      server.addToInbox(pointsAdded("guest:g1", 11, "e1", "old")).archived = true;
    });
    const html = render(client, store, <NotificationCenter defaultOpen />);
    const tab = (t: string) => html.match(new RegExp(`aria-selected="(true|false)" data-testid="notification-tab" data-tab="${t}">[^<]*(<span[^>]*>(\\d+)</span>)?`));
    expect(tab("all")?.[1]).toBe("true");
    expect(tab("all")?.[3]).toBe("5");
    expect(tab("unread")?.[3]).toBe("4");
    expect(tab("archived")?.[3]).toBe("1");
    expect(tab("snoozed")?.[3]).toBeUndefined();
    expect(html).toMatch(/data-priority="high" data-category="promo" data-notification-id="\d+" data-event-id="promo"/);
    expect(html).toMatch(/data-testid="notification-priority">high</);
    expect(html).toMatch(/data-testid="notification-category" dir="auto">promo</);
    expect(html).toMatch(/data-testid="notification-tag" dir="auto">#<!-- -->summer</);
    expect(html).toMatch(/<a class="notify-action" data-testid="notification-action" href="\/cards\/c1"/);
    expect(html).not.toContain("javascript:");
    expect(html.match(/data-testid="notification-action"/g)).toHaveLength(1);
    // The archived entry is not in the All tab.
    expect(html).not.toContain('data-event-id="old"');
  });

  test("only http(s) links and the app's own paths are opened", () => {
    expect(safeHref("/cards/1")).toBe("/cards/1");
    expect(safeHref("https://example.com/x")).toBe("https://example.com/x");
    expect(safeHref("http://example.com")).toBe("http://example.com/");
    for (const bad of ["//evil.example", "javascript:alert(1)", "JAVASCRIPT:alert(1)", "data:text/html,x", "maxloyalty://cards/1", "cards/1", ""]) {
      expect(safeHref(bad)).toBeUndefined();
    }
  });

  test("snooze choices: 1 hour, tonight (until 19:00), tomorrow and next Monday morning", () => {
    const at = (s: string) => new Date(s); // local time
    const opts = (s: string) => snoozeOptions(at(s)).map((o) => [o.choice, o.until.toString()]);
    // Wednesday 10:00.
    expect(opts("2026-06-10T10:00:00")).toEqual([
      ["1h", at("2026-06-10T11:00:00").toString()],
      ["tonight", at("2026-06-10T20:00:00").toString()],
      ["tomorrow", at("2026-06-11T09:00:00").toString()],
      ["nextweek", at("2026-06-15T09:00:00").toString()],
    ]);
    // Late: no "tonight"; Monday: next week is the Monday after; Sunday:
    // not tomorrow (a choice of its own) but the Monday after.
    expect(opts("2026-06-10T19:30:00").map((o) => o[0])).toEqual(["1h", "tomorrow", "nextweek"]);
    expect(opts("2026-06-15T08:00:00")[3][1]).toBe(at("2026-06-22T09:00:00").toString());
    expect(opts("2026-06-14T12:00:00")[3][1]).toBe(at("2026-06-22T09:00:00").toString());
    expect(opts("2026-06-13T12:00:00")[3][1]).toBe(at("2026-06-15T09:00:00").toString());
    // Across a month's end.
    expect(opts("2026-06-30T10:00:00")[2][1]).toBe(at("2026-07-01T09:00:00").toString());
    expect(snoozeLabel(at("2026-06-10T20:00:00"), at("2026-06-10T10:00:00"))).toBe("at 20:00");
    expect(snoozeLabel(at("2026-06-11T09:00:00"), at("2026-06-10T10:00:00"))).toBe("tomorrow at 09:00");
  });

  test("toasts: a polite live region, tone, icon and close button", async () => {
    const { client, store } = await setup(0);
    store.showToast({ tone: "warning", title: "Points expired", message: "50 points", durationMs: 0 });
    store.showToast({ tone: "error", title: "Alert", durationMs: 0 });
    const html = render(client, store, <ToastContainer theme="dark" />);
    expect(html).toContain('aria-live="polite"');
    expect(html).toContain("notify-dark");
    expect(html).toMatch(/class="notify-toast notify-toast--warning" role="status" data-testid="toast" data-tone="warning"/);
    expect(html).toMatch(/role="alert" data-testid="toast" data-tone="error"/);
    expect(html.match(/data-testid="toast-close"/g)).toHaveLength(2);
    expect(html).toContain("Points expired");
    // The event's text is isolated from its neighbours, and clamped by class.
    expect(html).toMatch(/<strong class="notify-toast__title" data-testid="toast-title" dir="auto">Points expired</);
    expect(html).toMatch(/<p class="notify-toast__message" data-testid="toast-message" dir="auto">50 points</);
  });

  test("each entry says where it also went; the timeline is in its details", async () => {
    const { client, store } = await setup(0, 0, (server) => {
      server.addToInbox(pointsAdded("guest:g1", 1, "e1", "pushed"));
      server.addToInbox(pointsAdded("guest:g1", 2, "e1", "seen"));
      server.addToInbox(pointsAdded("guest:g1", 3, "e1", "nowhere"));
      server.addStep("pushed", { channel: DeliveryChannel.WEB_PUSH, target: "Chrome on Linux", state: DeliveryState.SCHEDULED });
      server.addStep("pushed", { channel: DeliveryChannel.WEB_PUSH, target: "Chrome on Linux", state: DeliveryState.SENT, attempt: 1 });
      server.addStep("seen", { channel: DeliveryChannel.WEB_PUSH, target: "Chrome on Linux", state: DeliveryState.CANCELLED, detail: "seen live" });
      server.addStep("seen", { channel: DeliveryChannel.EMAIL, target: "a***@example.com", state: DeliveryState.RETRYING, attempt: 2, detail: "421 try later" });
    });
    await store.loadDeliveries(["pushed", "seen", "nowhere"]);
    const html = render(client, store, <NotificationCenter defaultOpen />);
    // An entry's html: up to the next entry.
    const item = (id: string) => {
      const at = html.indexOf(`data-event-id="${id}"`);
      const next = html.indexOf('data-testid="notification-item"', at);
      return html.slice(at, next < 0 ? undefined : next);
    };
    expect(item("pushed")).toMatch(/data-testid="notification-deliveries" data-settled="true"/);
    expect(item("pushed")).toMatch(/data-testid="delivery-route" data-channel="webPush" data-state="sent" title="Chrome on Linux">Web push<!-- -->: <!-- -->sent</);
    expect(item("pushed").match(/data-testid="delivery-step"/g)).toHaveLength(2);
    expect(item("seen")).toMatch(/data-settled="false"/);
    expect(item("seen")).toMatch(/data-channel="webPush" data-state="cancelled" title="Chrome on Linux: seen live">Web push<!-- -->: <!-- -->not sent</);
    expect(item("seen")).toMatch(/data-channel="email" data-state="retrying"[^>]*>Email<!-- -->: <!-- -->retrying</);
    expect(item("seen")).toContain(" (attempt 2)");
    expect(item("nowhere")).not.toContain("notification-deliveries");
    expect(render(client, store, <NotificationCenter defaultOpen deliveries={false} />)).not.toContain("notification-deliveries");
  });

  test("the push toggle says what push does here and offers the right button", () => {
    const backend: PushBackend = { vapidPublicKey: async () => "", register: async () => {}, remove: async () => {} };
    const html = (st: Partial<PushState>) => {
      const c = new WebPushControl({ backend, env: { pushManager: false } });
      (c as unknown as { setState(s: Partial<PushState>): void }).setState({ permission: "default", ...st });
      return renderToString(<PushToggle control={c} />);
    };
    expect(html({ status: "off" })).toMatch(/data-state="off" data-permission="default".*only while this app is open.*aria-pressed="false"[^>]*>Turn on notifications</);
    expect(html({ status: "on", permission: "granted" })).toMatch(/aria-pressed="true"[^>]*>Turn off notifications</);
    expect(html({ status: "working" })).toMatch(/disabled=""[^>]*>Turn on notifications</);
    expect(html({ status: "error", error: "AbortError: push service error" })).toMatch(/data-testid="push-error">AbortError: push service error<.*Turn on notifications/);
    for (const [status, text] of [
      ["denied", "blocked for this site"],
      ["unsupported", "cannot receive push"],
      ["unavailable", "no web push"],
      ["checking", "Checking"],
    ] as const) {
      const h = html({ status });
      expect(h).toContain(text);
      expect(h).not.toContain("push-toggle");
    }
  });
});
