// Time, in Chromium against a real notifyd: the admin page schedules an
// alert and cancels it, and lists what is scheduled as it fires; the
// settings page sets quiet hours in an IANA time zone and digests, which
// notifyd keeps, and shows the digests waiting.
import { rmSync } from "node:fs";
import type { Browser, BrowserContext, Page } from "playwright-core";
import { afterAll, afterEach, beforeAll, describe, expect, test } from "vitest";
import { Notifyd, buildNotifyd, launchChromium, pointsAdded, screenshot, until, waitConnection } from "./helpers";
import { PushService, p256KeyPair, selfSigned, webPushFlags } from "./push";

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
  expect(pageErrors.splice(0)).toEqual([]);
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

async function newPage(timezoneId: string): Promise<Page> {
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 1000 }, timezoneId });
  contexts.push(ctx);
  ctx.setDefaultTimeout(15_000);
  const page = await ctx.newPage();
  page.on("pageerror", (e) => pageErrors.push(e.message));
  return page;
}

async function signIn(page: Page, base: string, who: "admin" | "guest", home: string): Promise<void> {
  await page.goto(`${base}/`);
  await page.getByTestId(`signin-${who}`).click();
  await page.waitForURL(`${base}${home}`);
  await waitConnection(page, "connected");
}

/** A REST call with a token for who; the parsed JSON answer. */
async function rest<T>(s: Notifyd, who: { role: string; sub: string }, method: string, path: string, body?: unknown): Promise<T> {
  const token = await s.token(who);
  const res = await fetch(`${s.base}${path}`, {
    method,
    headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(5000),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${text}`);
  return JSON.parse(text) as T;
}

type Scheduled = { id: string; cancelKey: string; state: string; deliverTime: string; eventId?: string; request?: { systemAlert?: { title: string } } };

const admin = { role: "admin", sub: "adm1" };
const guest = { role: "guest", sub: "g1" };

describe("scheduling in the demo app against a real notifyd", () => {
  test("the admin page schedules an alert, lists it and cancels it; one scheduled by the backend fires at its time", async () => {
    const s = await server("schedule");
    const page = await newPage("Europe/Paris");
    await signIn(page, s.base, "admin", "/admin");
    await page.getByTestId("scheduled-empty").waitFor();

    // In some minutes: pending, with a cancel key.
    const form = page.getByTestId("alert-form");
    await form.getByLabel("Title").fill("Maintenance tonight");
    await page.getByTestId("alert-when").selectOption("in");
    await page.getByTestId("alert-delay-minutes").fill("30");
    const before = Date.now();
    await page.getByTestId("alert-submit").click();
    await until("scheduled", async () => ((await page.getByTestId("alert-status").textContent()) ?? "").startsWith("Scheduled for"));
    const item = page.locator('[data-testid="scheduled-item"][data-state="pending"]');
    await item.waitFor();
    expect(await item.locator("strong").textContent()).toBe("Maintenance tonight");
    let list = (await rest<{ scheduled?: Scheduled[] }>(s, admin, "GET", "/v1/scheduled")).scheduled ?? [];
    expect(list).toHaveLength(1);
    expect(list[0].state).toBe("SCHEDULED_STATE_PENDING");
    expect(list[0].cancelKey).toMatch(/^alert-/);
    const due = Date.parse(list[0].deliverTime) - before;
    expect(due).toBeGreaterThan(29 * 60_000);
    expect(due).toBeLessThan(31 * 60_000);
    expect(await item.getAttribute("data-cancel-key")).toBe(list[0].cancelKey);

    // At a time, in the admin's zone: 09:30 in Paris the day after tomorrow.
    const day = new Intl.DateTimeFormat("en-CA", { timeZone: "Europe/Paris" }).format(new Date(Date.now() + 2 * 86_400_000));
    await page.getByTestId("alert-when").selectOption("at");
    await page.getByTestId("alert-deliver-at").fill(`${day}T09:30`);
    await form.getByLabel("Title").fill("Summer menu");
    await page.getByTestId("alert-submit").click();
    await until("two pending", async () => (await page.locator('[data-testid="scheduled-item"][data-state="pending"]').count()) === 2);
    list = (await rest<{ scheduled?: Scheduled[] }>(s, admin, "GET", "/v1/scheduled")).scheduled ?? [];
    expect(list.map((x) => x.request?.systemAlert?.title)).toEqual(["Maintenance tonight", "Summer menu"]);
    const paris = new Intl.DateTimeFormat("en-CA", { timeZone: "Europe/Paris", year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", hourCycle: "h23" });
    expect(paris.format(new Date(list[1].deliverTime))).toBe(`${day}, 09:30`);
    await screenshot(page, "schedule-two-pending");

    // Cancel the first: it stays listed, cancelled; notifyd agrees.
    await page.locator(`[data-testid="scheduled-item"][data-cancel-key="${list[0].cancelKey}"] [data-testid="scheduled-cancel"]`).click();
    await page.locator(`[data-testid="scheduled-item"][data-cancel-key="${list[0].cancelKey}"][data-state="cancelled"]`).waitFor();
    expect(await page.getByTestId("alert-status").textContent()).toBe("Cancelled.");
    const after = (await rest<{ scheduled?: Scheduled[] }>(s, admin, "GET", "/v1/scheduled?includeDone=true")).scheduled ?? [];
    expect(after.find((x) => x.cancelKey === list[0].cancelKey)?.state).toBe("SCHEDULED_STATE_CANCELLED");

    // The backend schedules one for 2 s from now: the page sees it fire, and the alert arrives.
    await rest(s, admin, "POST", "/v1/events", {
      systemAlert: { level: "ALERT_LEVEL_WARNING", title: "Soon", message: "fires in 2 s", source: "ALERT_SOURCE_SYSTEM" },
      delay: "2s",
      cancelKey: "soon",
    });
    await page.locator('[data-testid="scheduled-item"][data-cancel-key="soon"]').waitFor();
    await page.locator('[data-testid="scheduled-item"][data-cancel-key="soon"][data-state="published"]').waitFor({ timeout: 20_000 });
    await until("the alert in the list", async () => (await page.getByTestId("alert-item").allTextContents()).some((t) => t.includes("Soon")));
    expect(await page.locator('[data-testid="scheduled-item"][data-cancel-key="soon"] [data-testid="scheduled-cancel"]').count()).toBe(0);
    await screenshot(page, "schedule-cancelled-and-published");
  });

  test("the settings page sets quiet hours in a time zone and digests; changing another setting keeps them", async () => {
    const s = await server("quiet");
    const page = await newPage("America/New_York");
    await signIn(page, s.base, "guest", "/guest");
    await page.getByRole("link", { name: "Settings" }).click();
    await page.getByTestId("quiet-form").waitFor();
    expect(await page.getByTestId("quiet-stored").textContent()).toBe("none");
    // The browser's zone is the default.
    expect(await page.getByTestId("time-zone").inputValue()).toBe("America/New_York");

    await page.getByTestId("quiet-enabled").check();
    await page.getByTestId("quiet-start").fill("21:30");
    await page.getByTestId("quiet-end").fill("06:45");
    await page.getByTestId("time-zone").selectOption("Asia/Tokyo");
    await page.getByTestId("quiet-save").click();
    await until("saved", async () => (await page.getByTestId("quiet-status").textContent()) === "Saved.");
    expect(await page.getByTestId("quiet-stored").textContent()).toBe("21:30–06:45 (Asia/Tokyo)");
    type Prefs = { preferences: { sound?: boolean; timeZone?: string; quietHours?: { start: string; end: string }; digests?: { eventType: string; window?: string; key?: string }[] } };
    let p = (await rest<Prefs>(s, guest, "GET", "/v1/inbox/preferences")).preferences;
    expect(p.timeZone).toBe("Asia/Tokyo");
    expect(p.quietHours).toEqual({ start: "21:30", end: "06:45" });

    // Points added: one summary an hour, per restaurant; points redeemed: each one.
    const row = (t: string) => page.locator(`[data-testid="digest-row"][data-type="${t}"]`);
    await row("POINTS_ADDED").getByTestId("digest-window").selectOption("3600");
    await row("POINTS_ADDED").getByTestId("digest-per-restaurant").check();
    await row("POINTS_REDEEMED").getByTestId("digest-window").selectOption("0");
    await page.getByTestId("digest-save").click();
    await until("digests saved", async () => (await page.getByTestId("digest-status").textContent()) === "Saved.");
    p = (await rest<Prefs>(s, guest, "GET", "/v1/inbox/preferences")).preferences;
    expect(p.digests?.map((d) => [d.eventType, d.window ?? "0s", d.key ?? ""])).toEqual([
      ["EVENT_TYPE_POINTS_ADDED", "3600s", "restaurant_id"],
      ["EVENT_TYPE_POINTS_REDEEMED", "0s", ""],
    ]);
    expect(p.quietHours).toEqual({ start: "21:30", end: "06:45" });

    // Another setting (sound) is one more UpdatePreferences: quiet hours and digests stay.
    await page.getByLabel("Sound").uncheck();
    await until("sound off on the server", async () => (await rest<Prefs>(s, guest, "GET", "/v1/inbox/preferences")).preferences.sound !== true);
    p = (await rest<Prefs>(s, guest, "GET", "/v1/inbox/preferences")).preferences;
    expect(p.timeZone).toBe("Asia/Tokyo");
    expect(p.quietHours).toEqual({ start: "21:30", end: "06:45" });
    expect(p.digests).toHaveLength(2);

    // A reload shows what notifyd keeps.
    await page.reload();
    await page.getByTestId("quiet-form").waitFor();
    expect(await page.getByTestId("quiet-enabled").isChecked()).toBe(true);
    expect(await page.getByTestId("quiet-start").inputValue()).toBe("21:30");
    expect(await page.getByTestId("time-zone").inputValue()).toBe("Asia/Tokyo");
    expect(await row("POINTS_ADDED").getByTestId("digest-window").inputValue()).toBe("3600");
    expect(await row("POINTS_ADDED").getByTestId("digest-per-restaurant").isChecked()).toBe(true);
    expect(await row("POINTS_REDEEMED").getByTestId("digest-window").inputValue()).toBe("0");
    await screenshot(page, "settings-quiet-hours-digests");

    // Quiet hours off again.
    await page.getByTestId("quiet-enabled").uncheck();
    await page.getByTestId("quiet-save").click();
    await until("saved", async () => (await page.getByTestId("quiet-status").textContent()) === "Saved.");
    p = (await rest<Prefs>(s, guest, "GET", "/v1/inbox/preferences")).preferences;
    expect(p.quietHours).toBeUndefined();
    expect(p.digests).toHaveLength(2);
  });

  test("open digests are listed and can be sent at once: one push with the points summed", async () => {
    // A digest holds what would go out on push and email: web push is on
    // and g1 has a subscription (registered over REST, as the push test's
    // page does).
    const vapid = p256KeyPair();
    const ps = new PushService(vapid.publicKey, selfSigned(tmp));
    await ps.start();
    try {
      const s = await Notifyd.create(bin, tmp, "digest", webPushFlags(vapid, ps.tls!));
      servers.push(s);
      await s.start();
      const sub = ps.subscription();
      await rest(s, guest, "POST", "/v1/delivery/devices", { webPush: { endpoint: sub.endpoint, keys: { p256dh: sub.p256dh, auth: sub.auth } }, label: "test" });
      await rest(s, guest, "PUT", "/v1/inbox/preferences", {
        preferences: { enabled: true, digests: [{ eventType: "EVENT_TYPE_POINTS_ADDED", window: "3600s" }] },
      });
      const page = await newPage("UTC");
      await signIn(page, s.base, "guest", "/guest");
      await s.publish(pointsAdded("g1", 100, 600));
      await s.publish(pointsAdded("g1", 50, 650));
      await page.getByRole("link", { name: "Settings" }).click();
      const open = page.locator('[data-testid="open-digest"][data-type="POINTS_ADDED"]');
      await until("two events, 150 points", async () => /^2 points added \(\+150 points\)/.test((await open.textContent({ timeout: 1000 })) ?? ""), 20_000);
      expect(ps.messagesFor(sub)).toEqual([]);
      await page.getByTestId("digest-release").click();
      await until("released", async () => /^Sent 1 summary now\./.test((await page.getByTestId("digest-status").textContent()) ?? ""));
      await page.getByTestId("open-digests-empty").waitFor();
      await screenshot(page, "settings-digest-released");
      // The summary went out as one push.
      const msg = (await until("the summary's push", () => ps.messagesFor(sub)[0], 20_000))!;
      expect(msg.text).toMatch(/150/);
      expect(ps.messagesFor(sub)).toHaveLength(1);
    } finally {
      await ps.stop();
    }
  });
});
