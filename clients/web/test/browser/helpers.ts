// Browser tests run the built app (clients/web/dist) in Debian's Chromium,
// through playwright-core, against a real notifyd built from this checkout.
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { createWriteStream, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { request as httpsRequest } from "node:https";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium, type Browser, type Page } from "playwright-core";

const here = dirname(fileURLToPath(import.meta.url));
export const webDir = resolve(here, "../..");
export const repoRoot = resolve(webDir, "../..");
export const distDir = join(webDir, "dist");
export const artifacts = join(webDir, "test-artifacts");

export const chromiumPath = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
const chromiumArgs = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--no-first-run",
  "--disable-quic",
];

/** Resolves when check returns a truthy value; fails after timeoutMs with what. */
export async function until<T>(what: string, check: () => T | Promise<T>, timeoutMs = 15_000, everyMs = 50): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs}ms waiting for ${what}${last ? ` (last error: ${String(last)})` : ""}`);
    }
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** A free TCP port on 127.0.0.1. */
export function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const addr = srv.address();
      srv.close(() => (addr && typeof addr === "object" ? resolvePort(addr.port) : reject(new Error("no port"))));
    });
  });
}

/** Builds notifyd from this checkout into a temporary directory. */
export function buildNotifyd(): { bin: string; tmp: string } {
  if (!existsSync(join(distDir, "index.html"))) {
    throw new Error(`${distDir} has no index.html: build the app first (make web, or npm run build)`);
  }
  if (!existsSync(chromiumPath)) {
    throw new Error(`no Chromium at ${chromiumPath}: apt-get install -y chromium (make test-web does it)`);
  }
  const tmp = mkdtempSync(join(tmpdir(), "notify-web-e2e-"));
  const bin = join(tmp, "notifyd");
  const res = spawnSync("go", ["build", "-o", bin, "./cmd/notifyd"], { cwd: repoRoot, stdio: "inherit", timeout: 600_000 });
  if (res.status !== 0) throw new Error(`go build ./cmd/notifyd failed (${res.status ?? res.signal ?? res.error})`);
  return { bin, tmp };
}

export function launchChromium(): Promise<Browser> {
  return chromium.launch({ executablePath: chromiumPath, args: chromiumArgs, headless: true, timeout: 60_000 });
}

/** A self-signed certificate for 127.0.0.1 (openssl), its files in dir. */
export function selfSigned(dir: string): { cert: string; key: string; pem: string } {
  const cert = join(dir, "cert.pem");
  const key = join(dir, "key.pem");
  const res = spawnSync(
    "openssl",
    ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "1",
      "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", key, "-out", cert],
    { stdio: ["ignore", "ignore", "pipe"], timeout: 30_000 },
  );
  if (res.status !== 0) throw new Error(`openssl req failed: ${res.stderr?.toString() ?? res.error}`);
  return { cert, key, pem: readFileSync(cert, "utf8") };
}

/** A notifyd process with fixed ports and data directory, so that it can be restarted. */
export class Notifyd {
  private proc?: ChildProcess;
  private exited?: Promise<void>;
  readonly base: string;
  private starts = 0;

  constructor(
    private readonly bin: string,
    readonly httpPort: number,
    readonly grpcPort: number,
    readonly dataDir: string,
    private readonly name: string,
    private readonly extraArgs: string[] = [],
    /** With a certificate, both ports serve TLS and this process trusts it. */
    private readonly tls?: { cert: string; key: string; pem: string },
  ) {
    this.base = `${tls ? "https" : "http"}://127.0.0.1:${httpPort}`;
  }

  /** extraArgs are more notifyd flags (--allowed-origins, ...), or make them from the ports. */
  static async create(
    bin: string,
    tmp: string,
    name: string,
    extraArgs: string[] | ((ports: { httpPort: number; grpcPort: number }) => string[]) = [],
    tls?: { cert: string; key: string; pem: string },
  ): Promise<Notifyd> {
    const dataDir = join(tmp, `data-${name}`);
    rmSync(dataDir, { recursive: true, force: true });
    mkdirSync(dataDir, { recursive: true });
    const httpPort = await freePort();
    const grpcPort = await freePort();
    const args = typeof extraArgs === "function" ? extraArgs({ httpPort, grpcPort }) : extraArgs;
    return new Notifyd(bin, httpPort, grpcPort, dataDir, name, args, tls);
  }

  /** An HTTP request to this notifyd: fetch, or over TLS node:https trusting its certificate. */
  private async request(path: string, init: { method?: string; headers?: Record<string, string>; body?: string; timeoutMs: number }): Promise<{ ok: boolean; status: number; text: string }> {
    if (!this.tls) {
      const res = await fetch(this.base + path, { method: init.method, headers: init.headers, body: init.body, signal: AbortSignal.timeout(init.timeoutMs) });
      return { ok: res.ok, status: res.status, text: await res.text() };
    }
    const ca = this.tls.pem;
    return new Promise((resolveReq, reject) => {
      const req = httpsRequest(this.base + path, { method: init.method ?? "GET", headers: init.headers, ca, timeout: init.timeoutMs }, (res) => {
        let text = "";
        res.setEncoding("utf8");
        res.on("data", (c: string) => (text += c));
        res.on("end", () => resolveReq({ ok: (res.statusCode ?? 0) >= 200 && (res.statusCode ?? 0) < 300, status: res.statusCode ?? 0, text }));
        res.on("error", reject);
      });
      req.on("timeout", () => req.destroy(new Error(`${path}: timed out`)));
      req.on("error", reject);
      req.end(init.body);
    });
  }

  async start(): Promise<void> {
    mkdirSync(artifacts, { recursive: true });
    const log = createWriteStream(join(artifacts, `notifyd-${this.name}.log`), { flags: this.starts++ ? "a" : "w" });
    const args = [
      "--dev",
      "--grpc-addr",
      `127.0.0.1:${this.grpcPort}`,
      "--http-addr",
      `127.0.0.1:${this.httpPort}`,
      "--data-dir",
      this.dataDir,
      "--web-dir",
      distDir,
      "--reconnect-delay-min",
      "100ms",
      "--reconnect-delay-max",
      "300ms",
      "--shutdown-drain",
      "5s",
      "--log-level",
      "debug",
      ...(this.tls ? ["--tls-cert-file", this.tls.cert, "--tls-key-file", this.tls.key] : []),
      ...this.extraArgs,
    ];
    const p = spawn(this.bin, args, { stdio: ["ignore", "pipe", "pipe"] });
    p.stdout!.pipe(log, { end: false });
    p.stderr!.pipe(log, { end: false });
    this.proc = p;
    this.exited = new Promise((r) => p.once("exit", () => r()));
    await until(
      `notifyd ${this.name} ready on ${this.base}`,
      async () => {
        if (p.exitCode !== null) throw new Error(`notifyd exited with ${p.exitCode}: see test-artifacts/notifyd-${this.name}.log`);
        return (await this.request("/readyz", { timeoutMs: 1000 })).ok;
      },
      20_000,
    );
  }

  /** SIGTERM, then wait for the exit (SIGKILL after timeoutMs). */
  async stop(timeoutMs = 15_000): Promise<void> {
    const p = this.proc;
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    p.kill("SIGTERM");
    const killed = await Promise.race([this.exited!.then(() => false), new Promise<boolean>((r) => setTimeout(() => r(true), timeoutMs))]);
    if (killed) {
      p.kill("SIGKILL");
      await this.exited;
      throw new Error(`notifyd ${this.name} did not stop within ${timeoutMs}ms of SIGTERM`);
    }
  }

  /** Kills without waiting for a graceful stop (cleanup). */
  kill(): void {
    if (this.proc && this.proc.exitCode === null && this.proc.signalCode === null) this.proc.kill("SIGKILL");
  }

  async token(body: { role: string; sub: string; restaurantId?: string }): Promise<string> {
    const res = await this.request("/dev/token", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
      timeoutMs: 5000,
    });
    if (!res.ok) throw new Error(`POST /dev/token: ${res.status} ${res.text}`);
    return (JSON.parse(res.text) as { token: string }).token;
  }

  /** Publishes an event over REST (POST /v1/events) with a service token; returns the event id. */
  async publish(event: Record<string, unknown>): Promise<string> {
    const svc = await this.token({ role: "service", sub: "loyalty-backend" });
    const res = await this.request("/v1/events", {
      method: "POST",
      headers: { Authorization: `Bearer ${svc}`, "Content-Type": "application/json" },
      body: JSON.stringify(event),
      timeoutMs: 5000,
    });
    if (!res.ok) throw new Error(`POST /v1/events: ${res.status} ${res.text}`);
    return (JSON.parse(res.text) as { eventId: string }).eventId;
  }
}

export function pointsAdded(guestId: string, amount: number, newBalance: number, description = "Lunch") {
  return {
    pointsAdded: {
      guestId,
      cardId: `card-${guestId}`,
      restaurantId: "r1",
      restaurantName: "Chez Max",
      amount,
      newBalance,
      transactionId: `t-${guestId}-${newBalance}`,
      description,
    },
  };
}

export async function screenshot(page: Page, name: string): Promise<void> {
  mkdirSync(artifacts, { recursive: true });
  await page.screenshot({ path: join(artifacts, `${name}.png`), fullPage: true, timeout: 10_000 }).catch(() => {});
}

/** The data-state of the connection badge. */
export function connectionState(page: Page): Promise<string | null> {
  return page.getByTestId("connection-state").getAttribute("data-state", { timeout: 2000 });
}

export async function waitConnection(page: Page, state: string, timeoutMs = 20_000): Promise<void> {
  await page.locator(`[data-testid="connection-state"][data-state="${state}"]`).waitFor({ timeout: timeoutMs });
}

/** The unread badge's text, or "" when it is not shown. */
export async function badge(page: Page): Promise<string> {
  const b = page.getByTestId("unread-badge");
  return (await b.count()) ? ((await b.textContent({ timeout: 2000 })) ?? "") : "";
}

/** Opens the notification center if it is closed. */
export async function openCenter(page: Page): Promise<void> {
  if ((await page.getByTestId("notification-panel").count()) === 0) {
    await page.getByTestId("notification-bell").click({ timeout: 5000 });
    await page.getByTestId("notification-panel").waitFor({ timeout: 5000 });
  }
}

/** Closes the notification center if it is open. */
export async function closeCenter(page: Page): Promise<void> {
  if ((await page.getByTestId("notification-panel").count()) > 0) {
    await page.keyboard.press("Escape");
    await page.getByTestId("notification-panel").waitFor({ state: "detached", timeout: 5000 });
  }
}

/** The count a tab of the open center shows, or "" when none. */
export async function tabCount(page: Page, tab: string): Promise<string> {
  const c = page.locator(`[data-testid="notification-tab"][data-tab="${tab}"] [data-testid="tab-count"]`);
  return (await c.count()) ? ((await c.textContent({ timeout: 2000 })) ?? "") : "";
}

/** The event ids of the notification center's entries, opening it if needed. */
export async function centerEventIds(page: Page): Promise<string[]> {
  if ((await page.getByTestId("notification-panel").count()) === 0) {
    await page.getByTestId("notification-bell").click({ timeout: 5000 });
    await page.getByTestId("notification-panel").waitFor({ timeout: 5000 });
  }
  return page.getByTestId("notification-item").evaluateAll((els) => els.map((e) => e.getAttribute("data-event-id") ?? ""));
}
