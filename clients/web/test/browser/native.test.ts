// Over TLS, a page calls grpc-web on the native gRPC port: Chromium speaks
// HTTP/2 to it, passes its CORS preflight (the page is of the node's own
// host, on the HTTP port), gets a stream's messages and trailers, and goes
// on sending calls on the connection after the server asked it to empty
// its HPACK table (a one-stream connection does, once it is idle); and the
// web client itself (NotifyClient, Connect's grpc-web transport) streams
// and calls there, as does the demo app when its node says so
// (--app-grpc-web-url), and reaches it (else it stays on its origin).
import { rmSync } from "node:fs";
import { join } from "node:path";
import type { Browser, Page } from "playwright-core";
import { build } from "vite";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { Notifyd, buildNotifyd, freePort, launchChromium, pointsAdded, screenshot, selfSigned, until, waitConnection, webDir } from "./helpers";

let bin: string;
let tmp: string;
let browser: Browser;
let server: Notifyd | undefined;
let tls: ReturnType<typeof selfSigned>;

beforeAll(async () => {
  ({ bin, tmp } = buildNotifyd());
  browser = await launchChromium();
  tls = selfSigned(tmp);
  server = await Notifyd.create(bin, tmp, "native", [], tls);
  await server.start();
});

afterAll(async () => {
  await server?.stop().catch(() => server?.kill());
  await browser?.close();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

// The page's side: grpc-web calls by hand (frames of 1 flag byte, a 4-byte
// length and the message), their messages and trailers kept on window.
declare global {
  interface Window {
    NotifyLib: typeof import("../../src/lib");
    seen: string[];
    states: string[];
    grpcWeb: {
      frames: { flag: number; text: string }[];
      ended?: string;
      start(api: string, token: string, room: string): Promise<void>;
      unary(api: string, token: string, method: string): Promise<{ status: number; frames: { flag: number; text: string }[] }>;
    };
  }
}

function installClient(): void {
  const frame = (msg: Uint8Array) => {
    const b = new Uint8Array(5 + msg.length);
    new DataView(b.buffer).setUint32(1, msg.length);
    b.set(msg, 5);
    return b;
  };
  const headers = (token: string) => ({
    "Content-Type": "application/grpc-web+proto",
    "X-Grpc-Web": "1",
    Authorization: `Bearer ${token}`,
  });
  // Reads frames as they come, calling onFrame with each.
  const readFrames = async (body: ReadableStream<Uint8Array>, onFrame: (f: { flag: number; text: string }) => void) => {
    const reader = body.getReader();
    let buf = new Uint8Array(0);
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return;
      const next = new Uint8Array(buf.length + value.length);
      next.set(buf);
      next.set(value, buf.length);
      buf = next;
      while (buf.length >= 5) {
        const n = new DataView(buf.buffer, buf.byteOffset).getUint32(1);
        if (buf.length < 5 + n) break;
        onFrame({ flag: buf[0], text: new TextDecoder("latin1").decode(buf.subarray(5, 5 + n)) });
        buf = buf.slice(5 + n);
      }
    }
  };
  window.grpcWeb = {
    frames: [],
    async start(api, token, room) {
      // SubscribeRequest{rooms: [room]}: field 1, length-delimited.
      const r = new TextEncoder().encode(room);
      const msg = new Uint8Array([0x0a, r.length, ...r]);
      const res = await fetch(`${api}/notify.v1.NotificationService/Subscribe`, { method: "POST", headers: headers(token), body: frame(msg) });
      if (!res.ok || !res.body) throw new Error(`Subscribe: HTTP ${res.status}`);
      readFrames(res.body, (f) => window.grpcWeb.frames.push(f)).then(
        () => (window.grpcWeb.ended = "end"),
        (err) => (window.grpcWeb.ended = String(err)),
      );
    },
    async unary(api, token, method) {
      const res = await fetch(`${api}/${method}`, { method: "POST", headers: headers(token), body: frame(new Uint8Array(0)) });
      const frames: { flag: number; text: string }[] = [];
      if (res.body) await readFrames(res.body, (f) => frames.push(f));
      return { status: res.status, frames };
    },
  };
}

/**
 * Runs fn on a page of the node's host, on its HTTP port (the app's
 * origin: another origin than the native port's, granted by default), in
 * a context of its own that trusts the test's certificate; fails on any
 * console error, and keeps a screenshot named name when fn fails.
 */
async function onAppPage(
  name: string,
  fn: (page: Page) => Promise<void>,
  opts: { server?: Notifyd; allowConsole?: RegExp } = {},
): Promise<void> {
  const s = opts.server ?? server!;
  const context = await browser.newContext({ ignoreHTTPSErrors: true });
  const page = await context.newPage();
  const consoleErrors: string[] = [];
  page.on("console", (m) => {
    // Chromium fetches no service worker's script over a certificate it
    // does not trust, whatever the context ignores: the signed-in app's
    // web push needs a trusted certificate, which the test's is not.
    if (m.type() !== "error" || m.text().startsWith("An SSL certificate error occurred when fetching the script")) return;
    if (!opts.allowConsole?.test(m.text())) consoleErrors.push(m.text());
  });
  try {
    await page.goto(`${s.base}/`);
    await fn(page);
    expect(consoleErrors).toEqual([]);
  } catch (err) {
    await screenshot(page, name);
    throw err;
  } finally {
    await context.close();
  }
}

/**
 * Starts a node whose --app-grpc-web-url is url(its native port), signs
 * in to its demo app as the guest, and checks that an event published over
 * REST reaches the page and that every grpc-web call the page made went
 * to want(the node).
 */
async function demoAppCalls(name: string, url: (grpcPort: number) => string, want: (s: Notifyd) => string, allowConsole?: RegExp): Promise<void> {
  const s = await Notifyd.create(bin, tmp, name, (p) => ["--app-grpc-web-url", url(p.grpcPort)], tls);
  await s.start();
  try {
    await onAppPage(
      name,
      async (page) => {
        const calls: string[] = [];
        page.on("request", (r) => {
          if (r.url().includes("/notify.v1.")) calls.push(r.url());
        });
        await page.getByTestId("signin-guest").click();
        await page.waitForURL(`${s.base}/guest`);
        await waitConnection(page, "connected");
        const id = await s.publish(pointsAdded("g1", 100, 600));
        await page.locator(`[data-testid="toast"][data-event-id="${id}"]`).waitFor({ timeout: 10_000 });
        expect(calls.length).toBeGreaterThan(0);
        expect(calls.filter((u) => !u.startsWith(`${want(s)}/notify.v1.`))).toEqual([]);
      },
      { server: s, allowConsole },
    );
  } finally {
    await s.stop().catch(() => s.kill());
  }
}

describe("grpc-web on the native port", () => {
  test("Chromium streams over HTTP/2 with TLS, and its connection keeps working", async () => {
    const s = server!;
    const api = `https://127.0.0.1:${s.grpcPort}`;
    const guest = await s.token({ role: "guest", sub: "g1" });
    await onAppPage("native-grpc-web", async (page) => {
      await page.evaluate(installClient);
      // The native port speaks HTTP/2 alone: an answer is an HTTP/2 one
      // (Resource Timing hides the protocol of another origin).
      await page.evaluate(({ api, guest }) => window.grpcWeb.start(api, guest, "guest:g1"), { api, guest });
      // The first message is Connected (field 2 of SubscribeResponse).
      await until("Connected", () => page.evaluate(() => window.grpcWeb.frames.length >= 1));
      const first = await page.evaluate(() => window.grpcWeb.frames[0]);
      expect(first.flag).toBe(0);
      expect(first.text.charCodeAt(0)).toBe(0x12);

      const id = await s.publish(pointsAdded("g1", 10, 510));
      await until("the published event", () => page.evaluate((id) => window.grpcWeb.frames.some((f) => f.text.includes(id)), id));

      // More calls on the same connection, whose table the server has
      // asked to be emptied by now (the SETTINGS came before the event).
      for (let i = 0; i < 3; i++) {
        const r = await page.evaluate(({ api, guest }) => window.grpcWeb.unary(api, guest, "notify.v1.InboxService/GetUnreadCount"), { api, guest });
        expect(r.status).toBe(200);
        const trailer = r.frames.find((f) => f.flag === 0x80);
        expect(trailer?.text).toContain("grpc-status: 0");
      }
      // The stream lived through them.
      const id2 = await s.publish(pointsAdded("g1", 5, 515));
      await until("the second event", () => page.evaluate((id) => window.grpcWeb.frames.some((f) => f.text.includes(id)), id2));
      expect(await page.evaluate(() => window.grpcWeb.ended)).toBeUndefined();
    });
  });

  test("the web client (NotifyClient) streams and calls over the native port", async () => {
    const s = server!;
    const api = `https://127.0.0.1:${s.grpcPort}`;
    const guest = await s.token({ role: "guest", sub: "g2" });
    // The client library as an application bundles it, for the page.
    const out = await build({
      configFile: false,
      logLevel: "silent",
      build: { write: false, minify: false, lib: { entry: join(webDir, "src/lib/index.ts"), formats: ["iife"], name: "NotifyLib" } },
    });
    const chunk = (Array.isArray(out) ? out[0] : out) as { output: { type: string; code?: string }[] };
    const code = chunk.output.find((o) => o.type === "chunk")?.code;
    expect(code).toBeTruthy();

    await onAppPage("native-notify-client", async (page) => {
      await page.addScriptTag({ content: code! });
      await page.evaluate(
        ({ api, guest }) => {
          window.seen = [];
          window.states = [];
          const c = new window.NotifyLib.NotifyClient({ baseUrl: api });
          c.onState((st) => window.states.push(st));
          c.onEvent((ev) => window.seen.push(ev.id));
          c.connect({ token: guest, rooms: ["guest:g2"] });
          (window as unknown as { client: unknown }).client = c;
        },
        { api, guest },
      );
      await until("connected", () => page.evaluate(() => window.states.includes("connected")));
      const id = await s.publish(pointsAdded("g2", 10, 10));
      await until("the event through NotifyClient", () => page.evaluate((id) => window.seen.includes(id), id));
      // A unary call on the client's transport: the inbox has the event.
      const unread = await page.evaluate(async () => {
        const c = (window as unknown as { client: InstanceType<typeof window.NotifyLib.NotifyClient> }).client;
        const r = await c.inbox.getUnreadCount({}, { headers: await c.authHeaders() });
        return Number(r.unreadCount);
      });
      expect(unread).toBe(1);
    });
  });

  test("the demo app, told by its node (--app-grpc-web-url), makes its calls on the native port", async () => {
    await demoAppCalls("native-app", (grpcPort) => `https://127.0.0.1:${grpcPort}`, (s) => `https://127.0.0.1:${s.grpcPort}`);
  });

  test("the demo app stays on its page's origin when it cannot reach the URL its node names", async () => {
    const closed = await freePort(); // nothing listens there
    // The console's error is the page's probe of the closed port.
    await demoAppCalls("native-app-unreachable", () => `https://127.0.0.1:${closed}`, (s) => s.base, /ERR_CONNECTION_REFUSED/);
  });
});
