import { Emitter, Observable } from "./observable";

/**
 * Where web push stands in this browser for the signed-in user:
 *
 * - "checking": init() has not finished;
 * - "unsupported": the browser has no service workers, Push API or notifications;
 * - "unavailable": notifyd has no web push configured (no VAPID key);
 * - "off": not subscribed (turnOn() asks the browser's permission first);
 * - "denied": the user blocked notifications for this site, which only the
 *   browser's site settings undo;
 * - "working": a turnOn() or turnOff() is under way;
 * - "on": subscribed, and the subscription is registered with notifyd;
 * - "error": the last step failed (error says why); turnOn() tries again.
 */
export type PushStatus = "checking" | "unsupported" | "unavailable" | "off" | "denied" | "working" | "on" | "error";

export interface PushState {
  status: PushStatus;
  /** Notification.permission, or "unsupported". */
  permission: NotificationPermission | "unsupported";
  /** This browser's push endpoint while "on". */
  endpoint?: string;
  /** Why the last step failed, or what the user should know ("dismissed"). */
  error?: string;
}

/** A browser's push subscription as notifyd stores it (RFC 8291 keys, base64url). */
export interface WebPushSubscriptionInfo {
  endpoint: string;
  p256dh: string;
  auth: string;
  /** When the push service expires it, Unix ms; undefined: never said. */
  expirationTime?: number;
}

/** The server side of web push: notifyd's calls, for the signed-in user. */
export interface PushBackend {
  /**
   * The application server's VAPID public key (P-256, uncompressed,
   * base64url), the applicationServerKey to subscribe with; "" when the
   * server sends no web push.
   */
  vapidPublicKey(): Promise<string>;
  /** Registers (or refreshes) this browser's subscription for the user. */
  register(sub: WebPushSubscriptionInfo): Promise<void>;
  /** Removes the subscription from the user's devices; an unknown one is no error. */
  remove(endpoint: string): Promise<void>;
}

/** The browser's pieces used here, replaceable in unit tests. */
export interface PushEnvironment {
  serviceWorker?: ServiceWorkerContainer;
  notification?: { readonly permission: NotificationPermission; requestPermission(): Promise<NotificationPermission> };
  /** Whether the browser has the Push API (window.PushManager). */
  pushManager: boolean;
}

/** The browser's own environment (nothing supported outside a browser). */
export function browserPushEnvironment(): PushEnvironment {
  const g = globalThis as { navigator?: Navigator; Notification?: typeof Notification; PushManager?: unknown };
  return {
    serviceWorker: g.navigator && "serviceWorker" in g.navigator ? g.navigator.serviceWorker : undefined,
    notification: g.Notification,
    pushManager: typeof g.PushManager !== "undefined",
  };
}

export interface WebPushControlOptions {
  backend: PushBackend;
  /** The service worker's script, served at the app's root. Default "/sw.js". */
  workerUrl?: string;
  /** Default: the browser's. */
  env?: PushEnvironment;
}

/** A message from the service worker (see src/sw/payload.ts, WorkerMessage). */
export type WorkerMessage = { type: string; [k: string]: unknown };

/** Decodes base64url or base64, padded or not. */
export function base64UrlDecode(s: string): Uint8Array<ArrayBuffer> {
  const b64 = s.trim().replace(/-/g, "+").replace(/_/g, "/").replace(/=+$/, "");
  const bin = atob(b64 + "=".repeat((4 - (b64.length % 4)) % 4));
  const out = new Uint8Array(new ArrayBuffer(bin.length));
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

/** Encodes bytes as base64url without padding, as RFC 8291 keys travel. */
export function base64UrlEncode(b: ArrayBuffer | Uint8Array): string {
  const bytes = b instanceof Uint8Array ? b : new Uint8Array(b);
  let bin = "";
  for (const x of bytes) bin += String.fromCharCode(x);
  return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function sameBytes(a: ArrayBuffer | null | undefined, b: Uint8Array): boolean {
  if (!a || a.byteLength !== b.length) return false;
  const x = new Uint8Array(a);
  return x.every((v, i) => v === b[i]);
}

/** A subscription's endpoint and keys, from toJSON() (or getKey where toJSON lacks them). */
export function subscriptionInfo(sub: PushSubscription): WebPushSubscriptionInfo {
  const j = sub.toJSON();
  const key = (name: PushEncryptionKeyName) => {
    const k = sub.getKey(name);
    return k ? base64UrlEncode(k) : "";
  };
  const info: WebPushSubscriptionInfo = {
    endpoint: j.endpoint ?? sub.endpoint,
    p256dh: j.keys?.p256dh ?? key("p256dh"),
    auth: j.keys?.auth ?? key("auth"),
  };
  const exp = j.expirationTime ?? sub.expirationTime;
  if (typeof exp === "number") info.expirationTime = exp;
  return info;
}

function message(err: unknown): string {
  if (err instanceof Error) return err.name && err.name !== "Error" && err.name !== "ConnectError" ? `${err.name}: ${err.message}` : err.message;
  return String(err);
}

/**
 * WebPushControl is the "Turn on notifications" state machine of one
 * signed-in user in this browser: it registers the service worker, asks the
 * browser's permission, subscribes with the server's VAPID public key
 * (PushManager.subscribe with applicationServerKey, userVisibleOnly), and
 * registers the subscription with notifyd; turnOff() removes it from both.
 * A subscription found at start is registered again (the user may be
 * another one than last time, or the server may have lost it), and one made
 * with another key than the server's (the server's key changed) is replaced.
 * Steps run one at a time. An observable: getState() and subscribe(), as
 * React's useSyncExternalStore expects.
 */
export class WebPushControl extends Observable<PushState> {
  private readonly backend: PushBackend;
  private readonly workerUrl: string;
  private readonly env: PushEnvironment;
  private chain: Promise<unknown> = Promise.resolve();
  private readonly messages = new Emitter<[WorkerMessage]>();
  private unlisten?: () => void;

  constructor(opts: WebPushControlOptions) {
    const env = opts.env ?? browserPushEnvironment();
    super({ status: "checking", permission: env.notification?.permission ?? "unsupported" });
    this.backend = opts.backend;
    this.workerUrl = opts.workerUrl ?? "/sw.js";
    this.env = env;
  }

  /** Whether this browser can do web push at all. */
  get supported(): boolean {
    return !!(this.env.serviceWorker && this.env.notification && this.env.pushManager);
  }

  /** Calls l with each message the service worker posts to this window ("notify:push", "notify:click"). */
  onWorkerMessage(l: (m: WorkerMessage) => void): () => void {
    return this.messages.add(l);
  }

  /**
   * Registers the service worker, listens to it, and finds where push
   * stands: a subscription already there is registered with notifyd again.
   */
  init(): Promise<void> {
    if (!this.supported) {
      this.setState({ status: "unsupported", permission: this.env.notification?.permission ?? "unsupported" });
      return Promise.resolve();
    }
    if (!this.unlisten) {
      const sw = this.env.serviceWorker!;
      const onMessage = (e: MessageEvent) => {
        const d = e.data as WorkerMessage | undefined;
        if (!d || typeof d.type !== "string" || !d.type.startsWith("notify:")) return;
        // The worker subscribed again by itself: register the new subscription.
        if (d.type === "notify:resubscribed") void this.init();
        this.messages.emit(d);
      };
      sw.addEventListener("message", onMessage);
      this.unlisten = () => sw.removeEventListener("message", onMessage);
    }
    return this.run(async () => {
      const permission = this.env.notification!.permission;
      this.setState({ permission });
      const reg = await this.registration();
      const existing = await reg.pushManager.getSubscription();
      if (permission === "denied") return this.setState({ status: "denied", endpoint: undefined, error: undefined });
      const key = await this.backend.vapidPublicKey();
      if (!key) return this.setState({ status: "unavailable", endpoint: undefined, error: undefined });
      if (!existing || permission !== "granted") return this.setState({ status: "off", endpoint: undefined, error: undefined });
      const sub = await this.subscribeWith(reg, existing, key);
      await this.backend.register(subscriptionInfo(sub));
      this.setState({ status: "on", endpoint: sub.endpoint, error: undefined });
    });
  }

  /**
   * Turns web push on: asks the browser's permission (call it from the
   * click: browsers ask only on a user's gesture), subscribes, registers.
   */
  turnOn(): Promise<void> {
    if (!this.supported) return Promise.resolve();
    const n = this.env.notification!;
    // Asked before anything else is awaited, while the click's activation holds.
    const asked = n.permission === "default" ? n.requestPermission() : Promise.resolve(n.permission);
    return this.run(async () => {
      this.setState({ status: "working", error: undefined });
      const permission = await asked;
      this.setState({ permission });
      if (permission === "denied") return this.setState({ status: "denied" });
      if (permission !== "granted") return this.setState({ status: "off", error: "Notifications were not allowed: the browser's question was dismissed." });
      const key = await this.backend.vapidPublicKey();
      if (!key) return this.setState({ status: "unavailable" });
      const reg = await this.registration();
      const sub = await this.subscribeWith(reg, await reg.pushManager.getSubscription(), key);
      await this.backend.register(subscriptionInfo(sub));
      this.setState({ status: "on", endpoint: sub.endpoint });
    });
  }

  /**
   * Turns web push off: removes the subscription from notifyd, then
   * unsubscribes the browser. When notifyd cannot be reached the browser
   * still unsubscribes (nothing reaches it any more), and notifyd forgets
   * the subscription when the push service answers that it is gone.
   */
  turnOff(): Promise<void> {
    if (!this.supported) return Promise.resolve();
    return this.run(async () => {
      this.setState({ status: "working", error: undefined });
      const reg = await this.env.serviceWorker!.getRegistration(this.workerUrl);
      const sub = await reg?.pushManager.getSubscription();
      let removeErr: unknown;
      if (sub) {
        try {
          await this.backend.remove(sub.endpoint);
        } catch (err) {
          removeErr = err;
        }
        await sub.unsubscribe();
      }
      this.setState({
        status: "off",
        endpoint: undefined,
        error: removeErr ? `Unsubscribed here, but notifyd could not be told (${message(removeErr)}).` : undefined,
      });
    });
  }

  /** Stops listening to the service worker. */
  stop(): void {
    this.unlisten?.();
    this.unlisten = undefined;
  }

  /** Runs steps one at a time; a failure becomes the "error" state. */
  private run(step: () => Promise<void>): Promise<void> {
    const next = this.chain.then(async () => {
      try {
        await step();
      } catch (err) {
        this.setState({ status: "error", error: message(err) });
      }
    });
    this.chain = next;
    return next;
  }

  /** The worker's registration once it is active (PushManager.subscribe needs an active worker). */
  private async registration(): Promise<ServiceWorkerRegistration> {
    const sw = this.env.serviceWorker!;
    await sw.register(this.workerUrl, { scope: "/" });
    return sw.ready;
  }

  /** existing when it was made with key, else a new subscription with key. */
  private async subscribeWith(reg: ServiceWorkerRegistration, existing: PushSubscription | null, key: string): Promise<PushSubscription> {
    const appKey = base64UrlDecode(key);
    if (existing) {
      if (sameBytes(existing.options.applicationServerKey, appKey)) return existing;
      // Subscribed with another key: the push service would refuse the server's pushes.
      await existing.unsubscribe();
    }
    return reg.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: appKey });
  }
}
