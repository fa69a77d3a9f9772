// "Turn on notifications" and the service worker, in Chromium against a
// real notifyd with web push on. Chromium's push service is Google's, out of
// reach here: the page's PushManager subscribes to a local push service
// instead (push.ts), which receives notifyd's real web push requests, checks
// their VAPID signature and decrypts them; the decrypted message is then
// delivered to the app's service worker by Chromium itself (DevTools
// protocol, ServiceWorker.deliverPushMessage), as its push service would.
import { rmSync } from "node:fs";
import type { Browser, BrowserContext, CDPSession, Page, Worker } from "playwright-core";
import { afterAll, afterEach, beforeAll, describe, expect, test } from "vitest";
import { Notifyd, buildNotifyd, launchChromium, openCenter, pointsAdded, screenshot, until, waitConnection } from "./helpers";
import { PushService, fakePushManagerScript, p256KeyPair, selfSigned, webPushFlags, type FakeSubscription, type KeyPair, type TLSFiles } from "./push";

let bin: string;
let tmp: string;
let browser: Browser;
let tls: TLSFiles;
const servers: Notifyd[] = [];
const contexts: BrowserContext[] = [];
const pushServices: PushService[] = [];
const pageErrors: string[] = [];

beforeAll(async () => {
  ({ bin, tmp } = buildNotifyd());
  tls = selfSigned(tmp);
  browser = await launchChromium();
});

afterEach(async () => {
  for (const c of contexts.splice(0)) await c.close().catch(() => {});
  for (const s of servers.splice(0)) await s.stop().catch(() => s.kill());
  for (const p of pushServices.splice(0)) await p.stop();
  expect(pageErrors.splice(0)).toEqual([]);
});

afterAll(async () => {
  await browser?.close();
  servers.forEach((s) => s.kill());
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

/** notifyd with web push on (a fresh VAPID key pair), points pushed only if unseen after 2s, and its push service. */
async function setup(name: string): Promise<{ s: Notifyd; vapid: KeyPair; ps: PushService }> {
  const vapid = p256KeyPair();
  const ps = new PushService(vapid.publicKey, tls);
  pushServices.push(ps);
  await ps.start();
  const s = await Notifyd.create(bin, tmp, name, [...webPushFlags(vapid, tls), "--delivery-unseen-delay", "2s"]);
  servers.push(s);
  await s.start();
  return { s, vapid, ps };
}

/** A browser context where notifications are allowed and PushManager subscribes to sub. */
async function pushContext(base: string, sub: FakeSubscription): Promise<{ ctx: BrowserContext; page: Page; cdp: CDPSession }> {
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  contexts.push(ctx);
  ctx.setDefaultTimeout(15_000);
  await ctx.grantPermissions(["notifications"], { origin: base });
  await ctx.addInitScript(fakePushManagerScript(sub));
  const page = await ctx.newPage();
  page.on("pageerror", (e) => pageErrors.push(e.message));
  const cdp = await ctx.newCDPSession(page);
  return { ctx, page, cdp };
}

async function signInGuest(page: Page, base: string): Promise<void> {
  await page.goto(`${base}/`);
  await page.getByTestId("signin-guest").click();
  await page.waitForURL(`${base}/guest`);
  await waitConnection(page, "connected");
}

/** Waits for the push control's state; a timeout says what the control shows. */
async function waitPush(page: Page, state: string): Promise<void> {
  try {
    await page.locator(`[data-testid="push-control"][data-state="${state}"]`).waitFor({ timeout: 15_000 });
  } catch {
    const c = page.getByTestId("push-control");
    throw new Error(`push control not ${state}: ${await c.getAttribute("data-state")}: ${await c.textContent()}`);
  }
}

/** The app's service worker, once running. */
async function serviceWorker(ctx: BrowserContext, base: string): Promise<Worker> {
  return (await until("the service worker", () => ctx.serviceWorkers().find((w) => w.url() === `${base}/sw.js`)))!;
}

/** The id DevTools gives the app's service worker registration. */
async function registrationId(cdp: CDPSession, base: string): Promise<string> {
  const regs: { registrationId: string; scopeURL: string; isDeleted: boolean }[] = [];
  cdp.on("ServiceWorker.workerRegistrationUpdated", (e: { registrations: typeof regs }) => regs.push(...e.registrations));
  await cdp.send("ServiceWorker.enable");
  const reg = await until("the service worker's registration", () => regs.find((r) => r.scopeURL === `${base}/` && !r.isDeleted));
  return reg!.registrationId;
}

/** The user's devices, as notifyd has them (REST, with the user's own token). */
async function devices(s: Notifyd, sub: string): Promise<{ id: string; channel: string; label: string; hint: string }[]> {
  const token = await s.token({ role: "guest", sub });
  const res = await fetch(`${s.base}/v1/delivery/devices`, { headers: { Authorization: `Bearer ${token}` } });
  if (!res.ok) throw new Error(`GET /v1/delivery/devices: ${res.status} ${await res.text()}`);
  return ((await res.json()) as { devices?: never[] }).devices ?? [];
}

/** The service worker's global scope, as the test uses it (the tests are typed with DOM, not WebWorker). */
type WorkerScope = {
  registration: ServiceWorkerRegistration;
  dispatchEvent(e: Event): boolean;
  NotificationEvent: new (type: string, init: { notification: Notification }) => Event;
};

/** The notifications the service worker is showing. */
function shown(sw: Worker): Promise<{ title: string; body: string; tag: string; data: { eventId: string; url: string } }[]> {
  return sw.evaluate(async () => {
    const self = globalThis as unknown as WorkerScope;
    return (await self.registration.getNotifications()).map((n) => ({ title: n.title, body: n.body, tag: n.tag, data: n.data }));
  });
}

describe("web push in Chromium against a real notifyd", () => {
  test("Turn on notifications subscribes with notifyd's VAPID key and registers; a push reaches the service worker; a click opens the page", async () => {
    const { s, vapid, ps } = await setup("push-on");
    const sub = ps.subscription();
    const { ctx, page, cdp } = await pushContext(s.base, sub);
    await signInGuest(page, s.base);
    await page.getByRole("link", { name: "Settings" }).click();
    await page.getByTestId("push-control").waitFor();
    await waitPush(page, "off");
    expect(await page.getByTestId("push-toggle").textContent()).toBe("Turn on notifications");
    expect(await devices(s, "g1")).toEqual([]);

    await page.getByTestId("push-toggle").click();
    await waitPush(page, "on");
    expect(await page.getByTestId("push-toggle").textContent()).toBe("Turn off notifications");
    // Subscribed with the server's key, and registered for g1.
    expect(await page.evaluate(() => localStorage.getItem("test-push-subscription"))).toBe(vapid.publicKey);
    const devs = await devices(s, "g1");
    expect(devs).toHaveLength(1);
    expect(devs[0].channel).toBe("DELIVERY_CHANNEL_WEB_PUSH");
    expect(devs[0].label).toMatch(/^Chrome on /);
    await screenshot(page, "push-on");

    // The app is closed (no live stream): a PointsAdded is pushed after the unseen delay.
    const sw = await serviceWorker(ctx, s.base);
    const regId = await registrationId(cdp, s.base);
    await page.goto("about:blank");
    const eventId = await s.publish(pointsAdded("g1", 100, 600));
    const msg = await until("notifyd's web push", () => ps.messagesFor(sub)[0], 20_000);
    expect(ps.refused).toEqual([]);
    const payload = JSON.parse(msg.text) as { eventId: string; type: string; title: string; body: string; topic: string; data: { id: string } };
    expect(payload).toMatchObject({ eventId, type: "EVENT_TYPE_POINTS_ADDED", title: expect.stringContaining("100"), topic: expect.any(String) });
    expect(payload.data.id).toBe(eventId);
    expect(msg.headers.ttl).toBeDefined();
    expect(msg.headers.topic).toBeDefined();
    expect(msg.claims.sub).toBe("mailto:ops@example.com");

    // Chromium delivers it to the service worker, which shows it.
    await cdp.send("ServiceWorker.deliverPushMessage", { origin: s.base, registrationId: regId, data: msg.text });
    const notes = await until("the notification", async () => {
      const n = await shown(sw);
      return n.length > 0 ? n : undefined;
    });
    expect(notes).toEqual([{ title: payload.title, body: payload.body, tag: payload.topic, data: { eventId, type: "EVENT_TYPE_POINTS_ADDED", url: "/guest" } }]);

    // A newer balance replaces the older one (same topic): still one shown.
    await cdp.send("ServiceWorker.deliverPushMessage", {
      origin: s.base,
      registrationId: regId,
      data: JSON.stringify({ ...payload, eventId: "later", title: "+5 points", body: "Balance 605" }),
    });
    await until("the newer balance replaces the older", async () => {
      const n = await shown(sw);
      return n.length === 1 && n[0].title === "+5 points";
    });

    // A click on it brings the open app to the event's page, without a reload.
    await page.goto(`${s.base}/settings`);
    await waitConnection(page, "connected");
    await page.evaluate(() => ((window as unknown as { __loaded: boolean }).__loaded = true));
    await sw.evaluate(async () => {
      const self = globalThis as unknown as WorkerScope;
      const [n] = await self.registration.getNotifications();
      self.dispatchEvent(new self.NotificationEvent("notificationclick", { notification: n }));
    });
    await page.waitForURL(`${s.base}/guest`);
    expect(await page.evaluate(() => (window as unknown as { __loaded?: boolean }).__loaded)).toBe(true);
    expect(await shown(sw)).toEqual([]);

    // The notification center says where the event also went.
    await openCenter(page);
    const item = page.locator(`[data-testid="notification-item"][data-event-id="${eventId}"]`);
    const route = item.locator('[data-testid="delivery-route"][data-channel="webPush"]');
    await until("web push: sent, in the center", async () => (await route.getAttribute("data-state", { timeout: 1000 })) === "sent");
    expect(await route.textContent()).toBe("Web push: sent");
    await item.getByTestId("notification-deliveries").locator("summary").click();
    const steps = await item.getByTestId("delivery-step").evaluateAll((els) => els.map((e) => `${e.getAttribute("data-channel")}:${e.getAttribute("data-state")}`));
    expect(steps).toEqual(["webPush:scheduled", "webPush:sent"]);
    await screenshot(page, "push-delivery-timeline");
  });

  test("a push is not sent for what the user saw live, and the center says so", async () => {
    const { s, ps } = await setup("push-seen");
    const sub = ps.subscription();
    const { page } = await pushContext(s.base, sub);
    await signInGuest(page, s.base);
    await page.goto(`${s.base}/settings`);
    await page.getByTestId("push-toggle").click();
    await waitPush(page, "on");
    await page.getByRole("link", { name: "My card" }).click();

    const eventId = await s.publish(pointsAdded("g1", 50, 650));
    await page.locator(`[data-testid="toast"][data-event-id="${eventId}"]`).waitFor();
    await openCenter(page);
    const route = page.locator(`[data-testid="notification-item"][data-event-id="${eventId}"] [data-testid="delivery-route"][data-channel="webPush"]`);
    await until("web push: not sent", async () => (await route.getAttribute("data-state", { timeout: 1000 })) === "cancelled", 20_000);
    expect(await route.textContent()).toBe("Web push: not sent");
    expect(await route.getAttribute("title")).toMatch(/seen|live/);
    expect(ps.messagesFor(sub)).toEqual([]);
  });

  test("Turn off and sign out remove the subscription from notifyd; nothing is pushed after", async () => {
    const { s, ps } = await setup("push-off");
    const sub = ps.subscription();
    const { page } = await pushContext(s.base, sub);
    await signInGuest(page, s.base);
    await page.goto(`${s.base}/settings`);
    await page.getByTestId("push-toggle").click();
    await waitPush(page, "on");
    expect(await devices(s, "g1")).toHaveLength(1);

    // A reload finds the subscription and registers it again: still one device.
    await page.reload();
    await waitPush(page, "on");
    expect(await devices(s, "g1")).toHaveLength(1);

    await page.getByTestId("push-toggle").click();
    await waitPush(page, "off");
    expect(await devices(s, "g1")).toEqual([]);
    expect(await page.evaluate(() => localStorage.getItem("test-push-subscription"))).toBeNull();

    // On again, then sign out: the device goes with the session.
    await page.getByTestId("push-toggle").click();
    await waitPush(page, "on");
    await page.getByTestId("sign-out").click();
    await page.getByTestId("signin-guest").waitFor();
    await until("no device after sign-out", async () => (await devices(s, "g1")).length === 0);

    await s.publish(pointsAdded("g1", 10, 700));
    await new Promise((r) => setTimeout(r, 3000)); // past the unseen delay: a push would have been sent by now
    expect(ps.messagesFor(sub)).toEqual([]);
  });

  test("without web push on the server the control says so", async () => {
    const s = await Notifyd.create(bin, tmp, "push-none");
    servers.push(s);
    await s.start();
    const ps = new PushService("none");
    const { page } = await pushContext(s.base, ps.subscription());
    await signInGuest(page, s.base);
    await page.goto(`${s.base}/settings`);
    await waitPush(page, "unavailable");
    expect(await page.getByTestId("push-toggle").count()).toBe(0);
    expect(await page.getByTestId("push-status").textContent()).toMatch(/no web push/);
  });
});
