import { describe, expect, test } from "vitest";
import { WebPushControl, base64UrlDecode, base64UrlEncode, type PushBackend, type PushEnvironment, type WebPushSubscriptionInfo } from "../../src/lib/push";

// A P-256 public key (uncompressed, 65 bytes) and another one.
const keyA = "BNcRdreALRFXTkOOUHK1EtK2wtaz5Ry4YfYCA_0QTpQtUbVlUls0VJXg7A8u-Ts1XbjhazAkj7I99e8QcYP7DkM";
const keyB = base64UrlEncode(new Uint8Array(65).fill(4));

class FakeSubscription {
  unsubscribed = false;
  expirationTime = null;
  constructor(
    readonly endpoint: string,
    readonly options: { applicationServerKey: ArrayBuffer | null; userVisibleOnly: boolean },
    private readonly pm: FakePushManager,
  ) {}
  toJSON() {
    return { endpoint: this.endpoint, expirationTime: null, keys: { p256dh: "p256-" + this.endpoint, auth: "auth-" + this.endpoint } };
  }
  getKey() {
    return null;
  }
  async unsubscribe() {
    this.unsubscribed = true;
    if (this.pm.sub === (this as unknown)) this.pm.sub = null;
    return true;
  }
}

class FakePushManager {
  sub: FakeSubscription | null = null;
  subscribes = 0;
  fail?: Error;
  async getSubscription() {
    return this.sub;
  }
  async subscribe(opts: { userVisibleOnly: boolean; applicationServerKey: Uint8Array }) {
    if (this.fail) throw this.fail;
    if (!opts.userVisibleOnly) throw new Error("userVisibleOnly is required");
    if (this.sub) throw new DOMException("subscribed with another key", "InvalidStateError");
    this.subscribes++;
    const key = opts.applicationServerKey.slice().buffer;
    this.sub = new FakeSubscription(`https://push.example/sub/${this.subscribes}`, { applicationServerKey: key, userVisibleOnly: true }, this);
    return this.sub;
  }
}

function fakeEnv(permission: NotificationPermission, answer: NotificationPermission = "granted") {
  const pushManager = new FakePushManager();
  const registration = { pushManager };
  const listeners = new Set<(e: MessageEvent) => void>();
  const n = {
    permission,
    asked: 0,
    async requestPermission() {
      n.asked++;
      n.permission = answer;
      return answer;
    },
  };
  const registered: string[] = [];
  const sw = {
    async register(url: string) {
      registered.push(url);
      return registration;
    },
    get ready() {
      return Promise.resolve(registration);
    },
    async getRegistration() {
      return registered.length ? registration : undefined;
    },
    addEventListener(_: string, l: (e: MessageEvent) => void) {
      listeners.add(l);
    },
    removeEventListener(_: string, l: (e: MessageEvent) => void) {
      listeners.delete(l);
    },
  };
  const env: PushEnvironment = { serviceWorker: sw as unknown as ServiceWorkerContainer, notification: n, pushManager: true };
  const post = (data: unknown) => listeners.forEach((l) => l({ data } as MessageEvent));
  return { env, pushManager, n, registered, post, listeners };
}

class FakeBackend implements PushBackend {
  key = keyA;
  subs = new Map<string, WebPushSubscriptionInfo>();
  registers = 0;
  failRegister?: Error;
  failRemove?: Error;
  async vapidPublicKey() {
    return this.key;
  }
  async register(s: WebPushSubscriptionInfo) {
    this.registers++;
    if (this.failRegister) throw this.failRegister;
    this.subs.set(s.endpoint, s);
  }
  async remove(endpoint: string) {
    if (this.failRemove) throw this.failRemove;
    this.subs.delete(endpoint);
  }
}

describe("WebPushControl", () => {
  test("base64url round trip", () => {
    const b = base64UrlDecode(keyA);
    expect(b.length).toBe(65);
    expect(b[0]).toBe(4);
    expect(base64UrlEncode(b)).toBe(keyA);
    expect(base64UrlDecode(keyA + "=")).toEqual(b);
  });

  test("off at start; turnOn asks, subscribes with the server's key and registers", async () => {
    const { env, pushManager, n, registered } = fakeEnv("default");
    const backend = new FakeBackend();
    const c = new WebPushControl({ backend, env });
    expect(c.getState().status).toBe("checking");
    await c.init();
    expect(c.getState()).toMatchObject({ status: "off", permission: "default" });
    expect(registered).toEqual(["/sw.js"]);
    expect(n.asked).toBe(0);

    const seen: string[] = [];
    c.subscribe((s, prev) => void (s.status !== prev.status && seen.push(s.status)));
    await c.turnOn();
    expect(n.asked).toBe(1);
    expect(seen).toEqual(["working", "on"]);
    expect(c.getState()).toMatchObject({ status: "on", permission: "granted", endpoint: "https://push.example/sub/1" });
    expect(new Uint8Array(pushManager.sub!.options.applicationServerKey!)).toEqual(base64UrlDecode(keyA));
    expect([...backend.subs.values()]).toEqual([{ endpoint: "https://push.example/sub/1", p256dh: "p256-https://push.example/sub/1", auth: "auth-https://push.example/sub/1" }]);
  });

  test("a subscription found at start is registered again", async () => {
    const { env, pushManager } = fakeEnv("granted");
    const backend = new FakeBackend();
    await new WebPushControl({ backend, env }).turnOn();
    backend.subs.clear(); // the server lost it, or another user signs in
    const c = new WebPushControl({ backend, env });
    await c.init();
    expect(c.getState().status).toBe("on");
    expect(pushManager.subscribes).toBe(1);
    expect([...backend.subs.keys()]).toEqual(["https://push.example/sub/1"]);
  });

  test("a subscription with another key than the server's is replaced", async () => {
    const { env, pushManager } = fakeEnv("granted");
    const backend = new FakeBackend();
    await new WebPushControl({ backend, env }).turnOn();
    const old = pushManager.sub!;
    backend.key = keyB;
    const c = new WebPushControl({ backend, env });
    await c.init();
    expect(old.unsubscribed).toBe(true);
    expect(c.getState()).toMatchObject({ status: "on", endpoint: "https://push.example/sub/2" });
    expect(new Uint8Array(pushManager.sub!.options.applicationServerKey!)).toEqual(base64UrlDecode(keyB));
  });

  test("denied, dismissed, unavailable and unsupported", async () => {
    const denied = fakeEnv("default", "denied");
    const c1 = new WebPushControl({ backend: new FakeBackend(), env: denied.env });
    await c1.init();
    await c1.turnOn();
    expect(c1.getState()).toMatchObject({ status: "denied", permission: "denied" });
    expect(denied.pushManager.subscribes).toBe(0);
    await c1.init();
    expect(c1.getState().status).toBe("denied");

    const dismissed = fakeEnv("default", "default");
    const c2 = new WebPushControl({ backend: new FakeBackend(), env: dismissed.env });
    await c2.turnOn();
    expect(c2.getState().status).toBe("off");
    expect(c2.getState().error).toMatch(/dismissed/);

    const none = new FakeBackend();
    none.key = "";
    const e3 = fakeEnv("granted");
    const c3 = new WebPushControl({ backend: none, env: e3.env });
    await c3.init();
    expect(c3.getState().status).toBe("unavailable");
    await c3.turnOn();
    expect(c3.getState().status).toBe("unavailable");
    expect(e3.pushManager.subscribes).toBe(0);

    const c4 = new WebPushControl({ backend: new FakeBackend(), env: { pushManager: false } });
    await c4.init();
    expect(c4.getState()).toMatchObject({ status: "unsupported", permission: "unsupported" });
    await c4.turnOn();
    expect(c4.getState().status).toBe("unsupported");
  });

  test("a failed step is an error, and turnOn tries again", async () => {
    const { env, pushManager } = fakeEnv("granted");
    const backend = new FakeBackend();
    const c = new WebPushControl({ backend, env });
    pushManager.fail = new DOMException("Registration failed - push service error", "AbortError");
    await c.turnOn();
    expect(c.getState()).toMatchObject({ status: "error", error: "AbortError: Registration failed - push service error" });
    pushManager.fail = undefined;
    backend.failRegister = new Error("unavailable");
    await c.turnOn();
    expect(c.getState()).toMatchObject({ status: "error", error: "unavailable" });
    backend.failRegister = undefined;
    await c.turnOn();
    expect(c.getState().status).toBe("on");
    expect(pushManager.subscribes).toBe(1); // the browser's subscription was kept
    expect(backend.registers).toBe(2);
  });

  test("turnOff removes from the server and unsubscribes, even when the server cannot be told", async () => {
    const { env, pushManager } = fakeEnv("granted");
    const backend = new FakeBackend();
    const c = new WebPushControl({ backend, env });
    await c.turnOn();
    await c.turnOff();
    expect(c.getState()).toMatchObject({ status: "off", endpoint: undefined, error: undefined });
    expect(backend.subs.size).toBe(0);
    expect(pushManager.sub).toBeNull();

    await c.turnOn();
    backend.failRemove = new Error("unavailable");
    await c.turnOff();
    expect(c.getState().status).toBe("off");
    expect(c.getState().error).toMatch(/could not be told/);
    expect(pushManager.sub).toBeNull();
  });

  test("steps run one at a time, in order", async () => {
    const { env } = fakeEnv("granted");
    const backend = new FakeBackend();
    const c = new WebPushControl({ backend, env });
    const seen: string[] = [];
    c.subscribe((s, prev) => void (s.status !== prev.status && seen.push(s.status)));
    await Promise.all([c.turnOn(), c.turnOff(), c.turnOn()]);
    expect(seen).toEqual(["working", "on", "working", "off", "working", "on"]);
    expect(backend.subs.size).toBe(1);
  });

  test("the worker's messages reach listeners; a resubscription is registered", async () => {
    const { env, pushManager, post } = fakeEnv("granted");
    const backend = new FakeBackend();
    const c = new WebPushControl({ backend, env });
    await c.turnOn();
    await c.init();
    const got: string[] = [];
    c.onWorkerMessage((m) => got.push(m.type));
    post({ type: "notify:push", payload: { title: "t" } });
    post({ type: "other" });
    post("not an object");
    // The worker replaced the subscription by itself.
    await pushManager.sub!.unsubscribe();
    await pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: base64UrlDecode(keyA) });
    post({ type: "notify:resubscribed" });
    await c.init(); // queued behind the one the message started
    expect(got).toEqual(["notify:push", "notify:resubscribed"]);
    expect(backend.subs.has("https://push.example/sub/2")).toBe(true);
    c.stop();
  });
});
