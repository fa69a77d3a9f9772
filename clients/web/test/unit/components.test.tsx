import { renderToString } from "react-dom/server";
import { afterEach, describe, expect, test } from "vitest";
import { NotifyClient } from "../../src/lib/client";
import { NotificationStore } from "../../src/lib/store";
import { NotifyProvider } from "../../src/react/context";
import { badgeText, relativeTime } from "../../src/react/format";
import { NotificationCenter } from "../../src/react/NotificationCenter";
import { ToastContainer } from "../../src/react/ToastContainer";
import { FakeServer, pointsAdded } from "./harness";

let stores: NotificationStore[] = [];

afterEach(() => {
  stores.forEach((s) => s.stop());
  stores = [];
});

async function setup(unread: number, read = 0) {
  const server = new FakeServer();
  for (let i = 0; i < unread + read; i++) {
    const n = server.addToInbox(pointsAdded("guest:g1", i + 1, "e1", `ev${i + 1}`));
    n.read = i < read;
  }
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

  test("the bell shows 99+ above 99 unread, and the list highlights unread entries", async () => {
    const { client, store } = await setup(150, 2);
    expect(store.getState().unread).toBe(150);
    const html = render(client, store, <NotificationCenter defaultOpen />);
    expect(html).toMatch(/data-testid="unread-badge"[^>]*>99\+</);
    expect(html).toContain('aria-label="Notifications, 150 unread"');
    expect(html.match(/data-testid="notification-item"/g)).toHaveLength(10);
    expect(html).toContain('data-testid="notification-load-more"');
    expect(html).toContain("notify-item--unread");
    expect(html).toContain('data-testid="mark-all-read"');
  });

  test("exactly 99 unread shows 99; none shows no badge and the empty state", async () => {
    const a = await setup(99);
    expect(render(a.client, a.store, <NotificationCenter />)).toMatch(/data-testid="unread-badge"[^>]*>99</);
    const b = await setup(0);
    const html = render(b.client, b.store, <NotificationCenter defaultOpen />);
    expect(html).not.toContain("unread-badge");
    expect(html).toContain('data-testid="notification-empty"');
    expect(html).toContain("No notifications yet");
    // A drawn bell, not an emoji that a font may lack.
    expect(html).toMatch(/data-testid="notification-empty"><svg class="notify-empty__icon"/);
    expect(html).not.toContain("🔔");
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
});
