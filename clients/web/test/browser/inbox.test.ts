// The notification center's inbox states in Chromium against a real
// notifyd: tabs (Unread, All, Archived, Snoozed), snooze (the choices, and a
// notification coming back live), bulk actions, and seen when shown.
import { rmSync } from "node:fs";
import type { Browser, BrowserContext, Page } from "playwright-core";
import { afterAll, afterEach, beforeAll, describe, expect, test } from "vitest";
import {
  Notifyd,
  badge,
  buildNotifyd,
  closeCenter,
  launchChromium,
  openCenter,
  pointsAdded,
  screenshot,
  tabCount,
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
  for (const s of servers.splice(0)) await s.stop().catch(() => s.kill());
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

async function guestPage(s: Notifyd): Promise<Page> {
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  contexts.push(ctx);
  ctx.setDefaultTimeout(15_000);
  const page = await ctx.newPage();
  page.on("pageerror", (e) => pageErrors.push(e.message));
  await page.goto(`${s.base}/`);
  await page.getByTestId("signin-guest").click();
  await page.waitForURL(`${s.base}/guest`);
  await waitConnection(page, "connected");
  return page;
}

/** A REST call as a backend service (on behalf of g1 where the path says so). */
async function asService(s: Notifyd, method: string, path: string, body?: unknown): Promise<Record<string, unknown>> {
  const tok = await s.token({ role: "service", sub: "loyalty-backend" });
  const res = await fetch(`${s.base}${path}`, {
    method,
    headers: { Authorization: `Bearer ${tok}`, ...(body ? { "Content-Type": "application/json" } : {}) },
    body: body ? JSON.stringify(body) : undefined,
    signal: AbortSignal.timeout(5000),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${text}`);
  return JSON.parse(text) as Record<string, unknown>;
}

/** g1's counts as the server keeps them. */
async function serverCounts(s: Notifyd): Promise<Record<string, string>> {
  return ((await asService(s, "GET", "/v1/users/g1/inbox/counts")).counts ?? {}) as Record<string, string>;
}

function items(page: Page) {
  return page.locator('[data-testid="notification-list"] [data-testid="notification-item"]');
}

async function shownEventIds(page: Page): Promise<string[]> {
  return items(page).evaluateAll((els) => els.map((e) => e.getAttribute("data-event-id") ?? ""));
}

async function tab(page: Page, name: string): Promise<void> {
  await page.locator(`[data-testid="notification-tab"][data-tab="${name}"]`).click();
  await until(`the ${name} tab`, async () => (await page.locator(`[data-testid="notification-list"][data-tab="${name}"], [data-testid="notification-empty"][data-tab="${name}"]`).count()) === 1);
}

function item(page: Page, eventId: string) {
  return page.locator(`[data-testid="notification-item"][data-event-id="${eventId}"]`);
}

describe("the notification center's inbox", () => {
  test("tabs: Unread, All and Archived list what the server keeps; shown is seen; priority and category show", async () => {
    const s = await server("tabs");
    const page = await guestPage(s);
    try {
      const ids = [await s.publish(pointsAdded("g1", 10, 110, "Coffee")), await s.publish(pointsAdded("g1", 20, 130, "Cake"))];
      ids.push(
        await s.publish({ ...pointsAdded("g1", 30, 160, "Dinner"), inbox: { priority: "PRIORITY_HIGH", category: "promo", tags: ["summer"] } }),
      );
      await until("badge 3", async () => (await badge(page)) === "3");

      // Opening the center shows the inbox, newest first, and marks it seen.
      await openCenter(page);
      await until("three entries", async () => (await shownEventIds(page)).length === 3);
      expect(await shownEventIds(page)).toEqual([...ids].reverse());
      await until("badge gone: all seen", async () => (await badge(page)) === "");
      await until("seen on the server", async () => (await serverCounts(s)).unseen === undefined);
      const promo = item(page, ids[2]);
      expect(await promo.getByTestId("notification-priority").textContent()).toBe("high");
      expect(await promo.getByTestId("notification-category").textContent()).toBe("promo");
      expect(await promo.getByTestId("notification-tag").textContent()).toBe("#summer");
      expect(await item(page, ids[0]).getByTestId("notification-category").textContent()).toBe("points");
      expect(await tabCount(page, "unread")).toBe("3");
      expect(await tabCount(page, "all")).toBe("3");
      await screenshot(page, "inbox-tabs-all");

      // Read one: the Unread tab lists the two others.
      await item(page, ids[1]).locator(".notify-item__body").click();
      await until("2 unread", async () => (await tabCount(page, "unread")) === "2");
      await tab(page, "unread");
      await until("the unread tab", async () => JSON.stringify(await shownEventIds(page)) === JSON.stringify([ids[2], ids[0]]));

      // Archive one from the Unread tab: it leaves, and shows in Archived.
      await item(page, ids[0]).getByTestId("notification-archive").click();
      await until("archived out of Unread", async () => JSON.stringify(await shownEventIds(page)) === JSON.stringify([ids[2]]));
      await until("1 archived", async () => (await tabCount(page, "archived")) === "1");
      await tab(page, "archived");
      await until("the archive", async () => JSON.stringify(await shownEventIds(page)) === JSON.stringify([ids[0]]));
      expect(await item(page, ids[0]).getAttribute("data-archived")).toBe("true");
      await screenshot(page, "inbox-tabs-archived");
      expect(await serverCounts(s)).toMatchObject({ archived: "1", inbox: "2", unread: "1" });

      // Back to the inbox.
      await item(page, ids[0]).getByTestId("notification-unarchive").click();
      await until("archive empty", async () => (await page.getByTestId("notification-empty").count()) === 1);
      await tab(page, "all");
      await until("three again", async () => (await shownEventIds(page)).length === 3);

      // After a reload the server's states stand: nothing unseen, one read.
      await page.reload();
      await waitConnection(page, "connected");
      await new Promise((r) => setTimeout(r, 300));
      expect(await badge(page)).toBe("");
      await openCenter(page);
      await until("reloaded", async () => (await shownEventIds(page)).length === 3);
      expect(await item(page, ids[1]).getAttribute("data-read")).toBe("true");
      expect(await item(page, ids[0]).getAttribute("data-read")).toBe("false");
    } catch (err) {
      await screenshot(page, "inbox-tabs-failure");
      throw err;
    }
  });

  test("snooze: the choices; a snoozed notification waits in Snoozed; one snoozed for 2 s comes back live, unseen, with a toast", async () => {
    const s = await server("snooze");
    const page = await guestPage(s);
    try {
      const a = await s.publish(pointsAdded("g1", 10, 110, "Coffee"));
      const b = await s.publish(pointsAdded("g1", 20, 130, "Cake"));
      await openCenter(page);
      await until("two entries", async () => (await shownEventIds(page)).length === 2);

      // The menu offers 1 hour, tonight (before 19:00), tomorrow and next week.
      await item(page, a).getByTestId("notification-snooze").click();
      const menu = page.getByTestId("snooze-menu");
      await menu.waitFor();
      const choices = await menu.getByTestId("snooze-option").evaluateAll((els) => els.map((e) => e.getAttribute("data-choice")));
      const hour = new Date().getHours();
      expect(choices).toEqual(hour < 19 ? ["1h", "tonight", "tomorrow", "nextweek"] : ["1h", "tomorrow", "nextweek"]);
      await screenshot(page, "inbox-snooze-menu");
      const before = Date.now();
      await menu.locator('[data-choice="1h"]').click();
      await until("snoozed out of the inbox", async () => JSON.stringify(await shownEventIds(page)) === JSON.stringify([b]));
      await until("1 snoozed", async () => (await tabCount(page, "snoozed")) === "1");
      await tab(page, "snoozed");
      await until("the snoozed tab", async () => JSON.stringify(await shownEventIds(page)) === JSON.stringify([a]));
      const untilAttr = await item(page, a).getByTestId("notification-snoozed-until").getAttribute("data-until");
      const back = Date.parse(untilAttr ?? "");
      expect(back - before).toBeGreaterThan(3_600_000 - 60_000);
      expect(back - before).toBeLessThan(3_600_000 + 60_000);
      const listed = await asService(s, "GET", "/v1/users/g1/inbox/notifications?state=NOTIFICATION_STATE_SNOOZED");
      const notes = listed.notifications as { snoozeUntil: string }[];
      expect(notes).toHaveLength(1);
      expect(Math.abs(Date.parse(notes[0].snoozeUntil) - back)).toBeLessThan(1000);
      await screenshot(page, "inbox-snoozed-tab");

      // Unsnooze: back in the inbox now.
      await item(page, a).getByTestId("notification-unsnooze").click();
      await until("snoozed tab empty", async () => (await page.getByTestId("notification-empty").count()) === 1);
      await tab(page, "all");
      await until("both back", async () => (await shownEventIds(page)).length === 2);

      // The backend snoozes b for 2 s on the guest's behalf, with the center
      // closed: b leaves, then comes back unseen with a toast and the badge.
      await closeCenter(page);
      const bid = await page.evaluate(async (ev) => {
        const n = (window as unknown as { __notify: { store: { getState(): { items: { id: string; eventId: string }[] } } } }).__notify;
        return n.store.getState().items.find((i) => i.eventId === ev)?.id;
      }, b);
      expect(bid).toBeTruthy();
      await asService(s, "POST", "/v1/users/g1/inbox/notifications:snooze", { ids: [bid], duration: "2s" });
      const snoozedAt = Date.now();
      await until("b out of the store's inbox", async () =>
        page.evaluate((ev) => {
          const n = (window as unknown as { __notify: { store: { getState(): { items: { eventId: string }[] } } } }).__notify;
          return !n.store.getState().items.some((i) => i.eventId === ev);
        }, b),
      );
      const toast = page.locator(`[data-testid="toast"][data-event-id="${b}"]`);
      await until("the toast of b's return", async () => (await toast.count()) > 0 && ((await toast.textContent()) ?? "").includes("Back from snooze"), 15_000);
      expect(Date.now() - snoozedAt).toBeGreaterThanOrEqual(1_500);
      await until("badge 1: b is back unseen", async () => (await badge(page)) === "1");
      await screenshot(page, "inbox-snooze-back");
      await openCenter(page);
      await until("b listed again", async () => (await shownEventIds(page)).includes(b));
      expect(await item(page, b).getAttribute("data-read")).toBe("false");
      await until("seen now that it is shown", async () => (await badge(page)) === "");
    } catch (err) {
      await screenshot(page, "inbox-snooze-failure");
      throw err;
    }
  });

  test("bulk: select, read, archive and unarchive several; archive all read; the server agrees", async () => {
    const s = await server("bulk");
    const page = await guestPage(s);
    try {
      const ids: string[] = [];
      for (let i = 1; i <= 5; i++) ids.push(await s.publish(pointsAdded("g1", i, 100 + i, `Item ${i}`)));
      await openCenter(page);
      await until("five entries", async () => (await shownEventIds(page)).length === 5);

      // Select three: the bar says so and reads them.
      for (const id of ids.slice(0, 3)) await item(page, id).getByTestId("notification-select").check();
      const bar = page.getByTestId("bulk-bar");
      expect(await bar.getAttribute("data-selected")).toBe("3");
      await screenshot(page, "inbox-bulk-selected");
      await bar.getByTestId("bulk-read").click();
      await until("three read", async () => (await items(page).evaluateAll((els) => els.filter((e) => e.getAttribute("data-read") === "true").length)) === 3);
      expect(await bar.getAttribute("data-selected")).toBe("0");
      await until("2 unread", async () => (await tabCount(page, "unread")) === "2");

      // Archive all read, from the header.
      await page.getByTestId("archive-read").click();
      await until("two left", async () => JSON.stringify(await shownEventIds(page)) === JSON.stringify([ids[4], ids[3]]));
      await until("3 archived", async () => (await tabCount(page, "archived")) === "3");
      expect(await serverCounts(s)).toMatchObject({ archived: "3", inbox: "2", unread: "2" });

      // Select all and snooze them for an hour.
      await page.getByTestId("select-all").check();
      expect(await bar.getAttribute("data-selected")).toBe("2");
      await bar.getByTestId("bulk-snooze").click();
      await page.getByTestId("snooze-menu").locator('[data-choice="1h"]').click();
      await until("the inbox empty", async () => (await page.getByTestId("notification-empty").count()) === 1);
      await until("2 snoozed", async () => (await tabCount(page, "snoozed")) === "2");

      // In the archive, unarchive two of the three.
      await tab(page, "archived");
      await until("the archive", async () => (await shownEventIds(page)).length === 3);
      for (const id of ids.slice(0, 2)) await item(page, id).getByTestId("notification-select").check();
      await page.getByTestId("bulk-unarchive").click();
      await until("one archived left", async () => JSON.stringify(await shownEventIds(page)) === JSON.stringify([ids[2]]));
      await tab(page, "all");
      await until("two back in the inbox", async () => JSON.stringify(await shownEventIds(page)) === JSON.stringify([ids[1], ids[0]]));
      expect(await serverCounts(s)).toMatchObject({ archived: "1", snoozed: "2", inbox: "2" });

      // Delete the two selected.
      await page.getByTestId("select-all").check();
      await page.getByTestId("bulk-delete").click();
      await until("the inbox empty again", async () => (await page.getByTestId("notification-empty").count()) === 1);
      await until("the server agrees", async () => (await serverCounts(s)).inbox === undefined);
      await screenshot(page, "inbox-bulk-done");
    } catch (err) {
      await screenshot(page, "inbox-bulk-failure");
      throw err;
    }
  });

  test("no page errors", () => {
    expect(pageErrors).toEqual([]);
  });
});
