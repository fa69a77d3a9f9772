import { rmSync } from "node:fs";
import type { Browser, BrowserContext, Page } from "playwright-core";
import { afterAll, afterEach, beforeAll, describe, expect, test } from "vitest";
import {
  Notifyd,
  badge,
  buildNotifyd,
  centerEventIds,
  closeCenter,
  tabCount,
  launchChromium,
  pointsAdded,
  screenshot,
  until,
  waitConnection,
} from "./helpers";

let bin: string;
let tmp: string;
let browser: Browser;
const servers: Notifyd[] = [];
const contexts: BrowserContext[] = [];
const pageErrors: string[] = [];

beforeAll(async () => {
  ({ bin, tmp } = buildNotifyd());
  browser = await launchChromium();
});

afterEach(async () => {
  for (const c of contexts.splice(0)) await c.close().catch(() => {});
  for (const s of servers.splice(0)) {
    await s.stop().catch(() => s.kill());
  }
});

afterAll(async () => {
  await browser?.close();
  servers.forEach((s) => s.kill());
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

async function server(name: string): Promise<Notifyd> {
  const s = await Notifyd.create(bin, tmp, name);
  servers.push(s);
  await s.start();
  return s;
}

async function newPage(opts: { colorScheme?: "light" | "dark" } = {}): Promise<Page> {
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 800 }, colorScheme: opts.colorScheme ?? "light" });
  contexts.push(ctx);
  ctx.setDefaultTimeout(15_000);
  const page = await ctx.newPage();
  page.on("pageerror", (e) => pageErrors.push(e.message));
  return page;
}

async function signInGuest(page: Page, base: string): Promise<void> {
  await page.goto(`${base}/`, { timeout: 15_000 });
  await page.getByTestId("signin-guest").click();
  await page.waitForURL(`${base}/guest`, { timeout: 10_000 });
  await waitConnection(page, "connected");
}

describe("the demo app against a real notifyd", () => {
  test("serves the app and signs in with a dev token", async () => {
    const s = await server("serve");
    const res = await fetch(`${s.base}/restaurant`);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("text/html; charset=utf-8");
    const page = await newPage();
    await page.goto(`${s.base}/`);
    await page.getByTestId("signin-restaurant").click();
    await page.waitForURL(`${s.base}/restaurant`);
    await waitConnection(page, "connected");
    // A restaurant's live feed and today's total.
    const svc = await s.token({ role: "service", sub: "pos" });
    for (const [i, total] of [
      [1, 40],
      [2, 65],
    ]) {
      const r = await fetch(`${s.base}/v1/events`, {
        method: "POST",
        headers: { Authorization: `Bearer ${svc}` },
        body: JSON.stringify({
          restaurantTransaction: { restaurantId: "r1", transactionId: `tx${i}`, guestId: "g1", guestName: "Ann", type: "TRANSACTION_TYPE_PURCHASE", amount: 25, totalToday: total },
        }),
      });
      expect(r.status).toBe(200);
    }
    await until("today's total 65", async () => (await page.getByTestId("today-total").textContent()) === "65");
    expect(await page.getByTestId("transaction-item").count()).toBe(2);
    await screenshot(page, "restaurant-dashboard");
  });

  test("(1) a PointsAdded shows a toast and raises the badge; marking it read lowers the badge and survives a reload", async () => {
    const s = await server("toast");
    const page = await newPage();
    try {
      await signInGuest(page, s.base);
      expect(await badge(page)).toBe("");

      const id = await s.publish(pointsAdded("g1", 100, 600));
      const toast = page.locator(`[data-testid="toast"][data-event-id="${id}"]`);
      await toast.waitFor({ timeout: 10_000 });
      expect(await toast.getAttribute("data-tone")).toBe("success");
      expect(await toast.getByTestId("toast-title").textContent()).toBe("+100 points");
      expect(await page.getByTestId("toast-container").getAttribute("aria-live")).toBe("polite");
      await until("badge 1", async () => (await badge(page)) === "1");
      await until("balance 600", async () => (await page.getByTestId("points-balance").textContent()) === "600");
      await screenshot(page, "1-toast-and-badge");

      // The toast can be closed by hand.
      await toast.getByTestId("toast-close").click();
      await toast.waitFor({ state: "detached", timeout: 5000 });

      // Open the center: one unread entry, now seen (the badge counts
      // unseen ones); click marks it read.
      expect(await centerEventIds(page)).toEqual([id]);
      const item = page.locator(`[data-testid="notification-item"][data-event-id="${id}"]`);
      expect(await item.getAttribute("data-read")).toBe("false");
      await until("entry seen", async () => (await item.getAttribute("data-seen")) === "true");
      await until("badge gone once seen", async () => (await badge(page)) === "");
      expect(await tabCount(page, "unread")).toBe("1");
      await item.locator(".notify-item__body").click();
      await until("entry read", async () => (await item.getAttribute("data-read")) === "true");
      await until("no unread", async () => (await tabCount(page, "unread")) === "");
      await screenshot(page, "1-marked-read");

      // The server kept it: after a reload the entry is still read, no badge.
      await page.reload();
      await waitConnection(page, "connected");
      await until("inbox reloaded", async () => (await centerEventIds(page)).length === 1);
      expect(await page.locator(`[data-testid="notification-item"][data-event-id="${id}"]`).getAttribute("data-read")).toBe("true");
      // The stream's unread count (0) arrived with Connected: still no badge.
      await new Promise((r) => setTimeout(r, 300));
      expect(await badge(page)).toBe("");
      expect(await page.getByTestId("points-balance").textContent()).toBe("600");
      await screenshot(page, "1-after-reload");

      // Dark mode follows prefers-color-scheme. (With the center closed, a
      // new notification is unseen: the badge shows it.)
      await closeCenter(page);
      await page.emulateMedia({ colorScheme: "dark" });
      await s.publish(pointsAdded("g1", 50, 650, "Dinner"));
      await page.getByTestId("toast").first().waitFor();
      const bg = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
      expect(bg).toBe("rgb(17, 20, 26)");
      await until("badge 1 again", async () => (await badge(page)) === "1");
      await screenshot(page, "1-dark-mode");
    } catch (err) {
      await screenshot(page, "1-failure");
      throw err;
    }
  });

  test("(2) notifyd restarted mid-session: the page reconnects by itself and what was published meanwhile appears exactly once", async () => {
    const s = await server("restart");
    const page = await newPage();
    try {
      await signInGuest(page, s.base);
      const before = await s.publish(pointsAdded("g1", 100, 100));
      await page.locator(`[data-testid="toast"][data-event-id="${before}"]`).waitFor();
      await until("one entry", async () => (await centerEventIds(page)).length === 1);

      // Keep the page from resubscribing until the events below are published,
      // so that they reach it as a gap (a new epoch: recovered=false).
      let blocked = 0;
      await page.route("**/notify.v1.NotificationService/Subscribe", (route) => {
        blocked++;
        return route.abort("connectionrefused");
      });
      await s.stop();
      await waitConnection(page, "reconnecting", 10_000);
      await page.getByTestId("reconnecting-banner").waitFor({ timeout: 5000 });
      await screenshot(page, "2-server-down");

      await s.start(); // same ports, same data directory
      const during = [
        await s.publish(pointsAdded("g1", 10, 110, "Coffee")),
        await s.publish(pointsAdded("g1", 20, 130, "Cake")),
        await s.publish(pointsAdded("g1", 30, 160, "Dinner")),
      ];
      await until("a blocked reconnection attempt", () => blocked > 0, 20_000);
      await page.unroute("**/notify.v1.NotificationService/Subscribe");

      // The page comes back by itself (its backoff is at most 10s).
      await waitConnection(page, "connected", 30_000);
      const want = [...during].reverse().concat(before);
      await until(
        "the events published while down in the center",
        async () => JSON.stringify(await centerEventIds(page)) === JSON.stringify(want),
        15_000,
      );
      await until("balance 160", async () => (await page.getByTestId("points-balance").textContent()) === "160");
      // notifyd replayed its new epoch on the stream too: one toast each.
      for (const id of during) {
        expect(await page.locator(`[data-testid="toast"][data-event-id="${id}"]`).count()).toBe(1);
      }
      // The center is open: what it shows is seen, and 4 are unread.
      await until("4 unread", async () => (await tabCount(page, "unread")) === "4");
      expect(await badge(page)).toBe("");
      const stats = await page.evaluate(() => {
        const n = (window as unknown as { __notify: { client: { stats: Record<string, number> } } }).__notify;
        return n.client.stats;
      });
      expect(stats.gaps).toBeGreaterThanOrEqual(1);

      // And live again: one more, once.
      const after = await s.publish(pointsAdded("g1", 5, 165, "Tea"));
      await until("the live event", async () => (await centerEventIds(page))[0] === after);
      await new Promise((r) => setTimeout(r, 500)); // let any duplicate show up
      const ids = await centerEventIds(page);
      expect(ids).toEqual([after, ...want]);
      expect(new Set(ids).size).toBe(ids.length);
      for (const id of [before, ...during, after]) {
        expect(await page.locator(`[data-testid="activity-item"][data-event-id="${id}"]`).count()).toBe(1);
        expect(await page.locator(`[data-testid="toast"][data-event-id="${id}"]`).count()).toBeLessThanOrEqual(1);
      }
      expect(await page.getByTestId("points-balance").textContent()).toBe("165");
      await until("5 unread", async () => (await tabCount(page, "unread")) === "5");
      expect(await badge(page)).toBe("");
      await screenshot(page, "2-after-restart");
    } catch (err) {
      await screenshot(page, "2-failure");
      throw err;
    }
  });

  test("(3) a guest cannot see another guest's events", async () => {
    const s = await server("isolation");

    // Watching guest:g2 with g1's token: PermissionDenied, shown, no retry loop.
    const spy = await newPage();
    try {
      await spy.goto(`${s.base}/`);
      await spy.locator("details.custom summary").click();
      await spy.getByTestId("signin-role").selectOption("guest");
      await spy.getByTestId("signin-sub").fill("g1");
      await spy.getByTestId("signin-rooms").fill("guest:g2");
      await spy.getByTestId("signin-submit").click();
      const banner = spy.getByTestId("connection-error");
      await banner.waitFor({ timeout: 15_000 });
      expect(await banner.getAttribute("data-code")).toBe("PermissionDenied");
      expect(await banner.textContent()).toContain("may not subscribe to guest:g2");
      await waitConnection(spy, "disconnected", 5000);
      await screenshot(spy, "3-permission-denied");
    } catch (err) {
      await screenshot(spy, "3-failure-spy");
      throw err;
    }

    // g1's own page never shows g2's events.
    const page = await newPage();
    try {
      await signInGuest(page, s.base);
      const other = await s.publish(pointsAdded("g2", 999, 9999, "Secret dinner"));
      const mine = await s.publish(pointsAdded("g1", 11, 111, "Snack"));
      await page.locator(`[data-testid="toast"][data-event-id="${mine}"]`).waitFor();
      await until("g1's entry", async () => (await centerEventIds(page)).includes(mine));
      await new Promise((r) => setTimeout(r, 500));
      expect(await centerEventIds(page)).toEqual([mine]);
      expect(await page.locator(`[data-event-id="${other}"]`).count()).toBe(0);
      const text = await page.locator("body").innerText();
      expect(text).not.toContain("9,999");
      expect(text).not.toContain("Secret dinner");
      expect(await page.getByTestId("points-balance").textContent()).toBe("111");
      await screenshot(page, "3-own-events-only");
    } catch (err) {
      await screenshot(page, "3-failure");
      throw err;
    }
  });

  test("no page errors", () => {
    expect(pageErrors).toEqual([]);
  });
});
