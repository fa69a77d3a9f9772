// The demo app as a new user sees it: long and hostile event text stays in
// its place, and every page tells the truth about what it knows.
import { rmSync } from "node:fs";
import type { Browser, BrowserContext, Page } from "playwright-core";
import { afterAll, afterEach, beforeAll, describe, expect, test } from "vitest";
import { Notifyd, buildNotifyd, launchChromium, pointsAdded, screenshot, until, waitConnection } from "./helpers";

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

async function newPage(): Promise<Page> {
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 800 }, colorScheme: "light" });
  contexts.push(ctx);
  ctx.setDefaultTimeout(15_000);
  const page = await ctx.newPage();
  page.on("pageerror", (e) => pageErrors.push(e.message));
  return page;
}

async function signIn(page: Page, base: string, preset: "guest" | "restaurant" | "cashier", home: string): Promise<void> {
  await page.goto(`${base}/`);
  await page.getByTestId(`signin-${preset}`).click();
  await page.waitForURL(`${base}${home}`);
  await waitConnection(page, "connected");
}

/** Whether the element at the centre of the test id's element is that element (or inside it). */
async function uncovered(page: Page, testid: string): Promise<boolean> {
  return page.getByTestId(testid).evaluate((el) => {
    const r = el.getBoundingClientRect();
    const top = document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2);
    return !!top && (top === el || el.contains(top));
  });
}

/** Nothing on the page is wider than the window, and no card overflows. */
async function overflows(page: Page): Promise<string[]> {
  return page.evaluate(() => {
    const out: string[] = [];
    const doc = document.documentElement;
    if (doc.scrollWidth > window.innerWidth) out.push(`page ${doc.scrollWidth}px wide in a ${window.innerWidth}px window`);
    for (const el of document.querySelectorAll<HTMLElement>(".card, .notify-toast, .feed__item")) {
      if (el.scrollWidth > el.clientWidth + 1) out.push(`${el.className}: content ${el.scrollWidth}px in ${el.clientWidth}px`);
      const r = el.getBoundingClientRect();
      if (r.right > window.innerWidth + 1) out.push(`${el.className}: right edge at ${r.right}px`);
    }
    return out;
  });
}

/**
 * Whether the words "New balance" in el's text are laid out left to right
 * (N before e before w), as English must be whatever text comes before.
 */
async function readsLeftToRight(page: Page, selector: string): Promise<boolean> {
  return page.locator(selector).first().evaluate((el) => {
    const walker = document.createTreeWalker(el, NodeFilter.SHOW_TEXT);
    for (let n = walker.nextNode(); n; n = walker.nextNode()) {
      const i = n.textContent!.indexOf("New balance");
      if (i < 0) continue;
      const x = (k: number) => {
        const r = document.createRange();
        r.setStart(n!, i + k);
        r.setEnd(n!, i + k + 1);
        return r.getBoundingClientRect().left;
      };
      return x(0) < x(1) && x(1) < x(2);
    }
    throw new Error(`no "New balance" in ${el.textContent}`);
  });
}

const words = (n: number) => Array.from({ length: n }, (_, i) => `word${i}`).join(" ");

describe("the demo app tells the truth", () => {
  test("a 2,000-character event makes a bounded toast: the bell and Sign out stay uncovered", async () => {
    const s = await server("long-toast");
    const page = await newPage();
    try {
      await signIn(page, s.base, "guest", "/guest");
      const long = words(400).slice(0, 2000);
      const ids: string[] = [];
      for (let i = 0; i < 5; i++) ids.push(await s.publish(pointsAdded("g1", 10 + i, 100 + i, long)));
      for (const id of ids) await page.locator(`[data-testid="toast"][data-event-id="${id}"]`).waitFor();
      await screenshot(page, "truth-long-toasts");
      const box = await page.locator(`[data-testid="toast"][data-event-id="${ids[0]}"]`).boundingBox();
      expect(box!.height, "one toast's height").toBeLessThan(800 / 3);
      expect(await uncovered(page, "notification-bell"), "the bell is covered").toBe(true);
      expect(await uncovered(page, "sign-out"), "Sign out is covered").toBe(true);
      // The whole text is in the notification center, wrapped in the panel.
      await page.getByTestId("notification-bell").click();
      const msg = page.locator(`[data-testid="notification-item"][data-event-id="${ids[4]}"] .notify-item__message`);
      expect(await msg.textContent()).toContain(long);
      expect(await overflows(page)).toEqual([]);
    } catch (err) {
      await screenshot(page, "truth-long-toasts-failure");
      throw err;
    }
  });

  test("long unbroken strings wrap inside toasts, cards and feeds", async () => {
    const s = await server("unbroken");
    const page = await newPage();
    try {
      await signIn(page, s.base, "guest", "/guest");
      const ev = pointsAdded("g1", 10, 110, "x".repeat(400));
      (ev.pointsAdded as Record<string, unknown>).restaurantName = "W".repeat(200);
      const id = await s.publish(ev);
      await page.locator(`[data-testid="toast"][data-event-id="${id}"]`).waitFor();
      await page.locator(`[data-testid="activity-item"][data-event-id="${id}"]`).waitFor();
      await screenshot(page, "truth-unbroken");
      expect(await overflows(page)).toEqual([]);
    } catch (err) {
      await screenshot(page, "truth-unbroken-failure");
      throw err;
    }
  });

  test("a U+202E in an event does not reorder the text around it", async () => {
    const s = await server("bidi");
    const page = await newPage();
    try {
      await signIn(page, s.base, "guest", "/guest");
      const id = await s.publish(pointsAdded("g1", 10, 600, "Lunch \u202Eevil"));
      const toastMsg = `[data-testid="toast"][data-event-id="${id}"] [data-testid="toast-message"]`;
      const item = `[data-testid="activity-item"][data-event-id="${id}"]`;
      await page.locator(toastMsg).waitFor();
      await page.locator(item).waitFor();
      await page.getByTestId("notification-bell").click();
      const center = `[data-testid="notification-item"][data-event-id="${id}"] .notify-item__message`;
      await page.locator(center).waitFor();
      await screenshot(page, "truth-bidi");
      expect(await readsLeftToRight(page, toastMsg), "toast").toBe(true);
      expect(await readsLeftToRight(page, item), "activity feed").toBe(true);
      expect(await readsLeftToRight(page, center), "notification center").toBe(true);
      expect(await page.locator(toastMsg).getAttribute("dir")).toBe("auto");
    } catch (err) {
      await screenshot(page, "truth-bidi-failure");
      throw err;
    }
  });

  test("the guest card says the balance is not known before the first points event, and a redemption is a request", async () => {
    const s = await server("guest-truth");
    const page = await newPage();
    try {
      await signIn(page, s.base, "guest", "/guest");
      const balance = page.getByTestId("points-balance");
      await until("the inbox read", async () => (await balance.getAttribute("data-state")) === "unknown");
      expect(await balance.textContent()).toBe("Not known yet");
      expect(await page.locator(".loyalty-card").innerText()).not.toContain("—");
      expect(await page.getByTestId("confirm-redemption").isDisabled()).toBe(true);
      expect(await page.getByTestId("confirm-unavailable").textContent()).toContain("not known");
      await screenshot(page, "truth-guest-unknown");

      await s.publish(pointsAdded("g1", 600, 600));
      await until("balance 600", async () => (await balance.textContent()) === "600");
      expect(await balance.getAttribute("data-state")).toBe("known");

      await page.getByTestId("confirm-redemption").click();
      const status = page.locator('[data-testid="confirm-status"][data-state="sent"]');
      await status.waitFor();
      const text = (await status.textContent()) ?? "";
      expect(text).toContain("50-point redemption");
      expect(text).toContain("Your balance changes when the restaurant applies it");
      expect(text).not.toMatch(/[0-9a-f]{8}…/);
      expect(await balance.textContent()).toBe("600");
      await screenshot(page, "truth-guest-redemption");
    } catch (err) {
      await screenshot(page, "truth-guest-failure");
      throw err;
    }
  });

  test("the restaurant's total says where it comes from, and points events are counted apart", async () => {
    const s = await server("restaurant-truth");
    const page = await newPage();
    try {
      await signIn(page, s.base, "restaurant", "/restaurant");
      const id = await s.publish(pointsAdded("g1", 100, 600));
      await page.locator(`[data-testid="points-item"][data-event-id="${id}"]`).waitFor();
      const total = page.getByTestId("today-total");
      expect(await total.getAttribute("data-state")).toBe("unknown");
      expect(await total.textContent()).not.toBe("0");
      await until("points today", async () => ((await page.getByTestId("points-today").textContent()) ?? "").includes("+100 added"));
      await screenshot(page, "truth-restaurant-points-only");

      const svc = await s.token({ role: "service", sub: "pos" });
      const r = await fetch(`${s.base}/v1/events`, {
        method: "POST",
        headers: { Authorization: `Bearer ${svc}` },
        body: JSON.stringify({
          restaurantTransaction: { restaurantId: "r1", transactionId: "tx1", guestId: "g1", type: "TRANSACTION_TYPE_PURCHASE", amount: 40, totalToday: 40 },
        }),
      });
      expect(r.status).toBe(200);
      await until("today's total 40", async () => (await total.textContent()) === "40");
      expect(await total.getAttribute("data-state")).toBe("known");
      await screenshot(page, "truth-restaurant-total");
    } catch (err) {
      await screenshot(page, "truth-restaurant-failure");
      throw err;
    }
  });

  test("the cashier gets the till, not the owner's dashboard", async () => {
    const s = await server("cashier");
    const page = await newPage();
    try {
      await signIn(page, s.base, "cashier", "/till");
      await page.getByTestId("till").waitFor();
      expect(await page.getByTestId("today-total").count()).toBe(0);
      expect(await page.locator("nav").innerText()).toContain("Till");
      expect(await page.locator("nav").innerText()).not.toContain("Dashboard");
      // A guest's confirmation reaches the till (a guest confirms only at a
      // restaurant that has sent them an event).
      await s.publish(pointsAdded("g1", 100, 100));
      const guest = await s.token({ role: "guest", sub: "g1" });
      const r = await fetch(`${s.base}/v1/actions:confirm`, {
        method: "POST",
        headers: { Authorization: `Bearer ${guest}` },
        body: JSON.stringify({ actionId: "act-1", action: "ACTION_TYPE_POINTS_REDEEM", amount: 50, restaurantId: "r1" }),
      });
      expect(r.status).toBe(200);
      await page.getByTestId("confirmation-item").first().waitFor();
      await screenshot(page, "truth-cashier-till");
      await page.goto(`${s.base}/restaurant`);
      await page.getByTestId("wrong-role").waitFor();
    } catch (err) {
      await screenshot(page, "truth-cashier-failure");
      throw err;
    }
  });

  test("the empty notification center draws its bell instead of a glyph a font may lack", async () => {
    const s = await server("empty-center");
    const page = await newPage();
    try {
      await signIn(page, s.base, "guest", "/guest");
      await page.getByTestId("notification-bell").click();
      const empty = page.getByTestId("notification-empty");
      await until("the empty state", async () => ((await empty.textContent()) ?? "").includes("No notifications yet"));
      expect(await empty.locator("svg").count()).toBe(1);
      expect(await empty.textContent()).toBe("No notifications yet");
      await screenshot(page, "truth-empty-center");
    } catch (err) {
      await screenshot(page, "truth-empty-center-failure");
      throw err;
    }
  });

  test("no page errors", () => {
    expect(pageErrors).toEqual([]);
  });
});
