// A page on another origin, allowed by --allowed-origins, calls every REST
// method the gateway routes, as Chromium enforces CORS on it.
import { createServer, type Server } from "node:http";
import { rmSync } from "node:fs";
import type { Browser, BrowserContext } from "playwright-core";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { Notifyd, buildNotifyd, freePort, launchChromium, pointsAdded, screenshot } from "./helpers";

let bin: string;
let tmp: string;
let browser: Browser;
let context: BrowserContext | undefined;
let server: Notifyd | undefined;
let site: Server | undefined;
let siteOrigin: string;

beforeAll(async () => {
  ({ bin, tmp } = buildNotifyd());
  browser = await launchChromium();
  // The other origin: a blank page on a port of its own.
  const port = await freePort();
  siteOrigin = `http://127.0.0.1:${port}`;
  site = createServer((_, res) => {
    res.writeHead(200, { "Content-Type": "text/html; charset=utf-8" });
    res.end("<!doctype html><title>another origin</title><p>another origin</p>");
  });
  await new Promise<void>((r) => site!.listen(port, "127.0.0.1", r));
  server = await Notifyd.create(bin, tmp, "cors", ["--allowed-origins", siteOrigin]);
  await server.start();
});

afterAll(async () => {
  await context?.close().catch(() => {});
  await server?.stop().catch(() => server?.kill());
  await new Promise((r) => (site ? site.close(r) : r(undefined)));
  await browser?.close();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

describe("CORS from an allowed origin", () => {
  test("DELETE and PUT pass Chromium's preflight; their answers can be read", async () => {
    const s = server!;
    const guest = await s.token({ role: "guest", sub: "g1" });
    await s.publish(pointsAdded("g1", 10, 10));
    context = await browser.newContext();
    const page = await context.newPage();
    const consoleErrors: string[] = [];
    page.on("console", (m) => {
      if (m.type() === "error") consoleErrors.push(m.text());
    });
    try {
      await page.goto(`${siteOrigin}/`);
      const results = await page.evaluate(
        async ({ api, token }) => {
          const call = async (method: string, path: string, body?: unknown) => {
            try {
              const res = await fetch(api + path, {
                method,
                headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
                body: body === undefined ? undefined : JSON.stringify(body),
              });
              return { status: res.status, body: await res.text() };
            } catch (err) {
              return { status: 0, body: String(err) };
            }
          };
          const list = await call("GET", "/v1/inbox/notifications");
          const id = (JSON.parse(list.body) as { notifications: { id: string }[] }).notifications[0]?.id ?? "none";
          return {
            list,
            del: await call("DELETE", `/v1/inbox/notifications/${id}`),
            put: await call("PUT", "/v1/inbox/preferences", { preferences: { enabled: true, sound: false } }),
            after: await call("GET", "/v1/inbox/notifications"),
          };
        },
        { api: s.base, token: guest },
      );
      await screenshot(page, "cors-other-origin");
      expect(results.list.status, results.list.body).toBe(200);
      expect(results.del.status, `DELETE: ${results.del.body} (${consoleErrors.join("; ")})`).toBe(200);
      expect(results.put.status, `PUT: ${results.put.body} (${consoleErrors.join("; ")})`).toBe(200);
      expect(JSON.parse(results.put.body)).toMatchObject({ preferences: {} });
      // The DELETE did delete.
      expect((JSON.parse(results.after.body) as { notifications?: unknown[] }).notifications ?? []).toEqual([]);
      expect(consoleErrors.filter((e) => e.includes("CORS"))).toEqual([]);
    } catch (err) {
      await screenshot(page, "cors-failure");
      throw err;
    }
  });
});
