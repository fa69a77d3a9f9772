// Web push for the browser tests, without the browser's push service
// (Chromium's is Google's, out of reach here): a VAPID key pair for
// notifyd, a PushManager in the page that subscribes to a local push
// service instead, and that push service, which checks notifyd's VAPID
// signature and decrypts each message (RFC 8030, 8291, 8292) with the
// subscription's private key, as a browser would.
import { createDecipheriv, createECDH, createHmac, createPublicKey, randomBytes, verify } from "node:crypto";
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import type { IncomingMessage, Server } from "node:http";
import { createServer } from "node:https";
import { join } from "node:path";

const b64u = (b: Buffer | Uint8Array) => Buffer.from(b).toString("base64url");

/** A P-256 key pair, base64url: the public key uncompressed (65 bytes), the private one the 32-byte scalar. */
export interface KeyPair {
  publicKey: string;
  privateKey: string;
}

export function p256KeyPair(): KeyPair {
  const ecdh = createECDH("prime256v1");
  ecdh.generateKeys();
  return { publicKey: b64u(ecdh.getPublicKey()), privateKey: b64u(ecdh.getPrivateKey()) };
}

/** A self-signed certificate for 127.0.0.1 (openssl), in dir: cert.pem and key.pem. */
export interface TLSFiles {
  certFile: string;
  cert: Buffer;
  key: Buffer;
}

export function selfSigned(dir: string): TLSFiles {
  const certFile = join(dir, "push-cert.pem");
  const keyFile = join(dir, "push-key.pem");
  const res = spawnSync(
    "openssl",
    ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
      "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", keyFile, "-out", certFile],
    { stdio: ["ignore", "ignore", "pipe"], timeout: 30_000 },
  );
  if (res.status !== 0) throw new Error(`openssl req failed: ${res.stderr?.toString() ?? res.error}`);
  return { certFile, cert: readFileSync(certFile), key: readFileSync(keyFile) };
}

/**
 * notifyd's flags for web push with this VAPID key pair, sending to
 * loopback endpoints whose certificate is tls's.
 */
export function webPushFlags(vapid: KeyPair, tls: TLSFiles): string[] {
  return [
    "--webpush-vapid-public-key",
    vapid.publicKey,
    "--webpush-vapid-private-key",
    vapid.privateKey,
    "--webpush-subject",
    "mailto:ops@example.com",
    "--delivery-allow-private",
    "--delivery-ca-file",
    tls.certFile,
  ];
}

/** A subscription the page's PushManager hands out: its endpoint and keys, and the private key to read its messages. */
export interface FakeSubscription {
  endpoint: string;
  p256dh: string;
  auth: string;
  /** The user agent's private key (base64url), for decryption. */
  privateKey: string;
}

/** A push message as the push service received it. */
export interface ReceivedPush {
  path: string;
  headers: IncomingMessage["headers"];
  /** The decrypted payload. */
  text: string;
  /** The VAPID JWT's claims. */
  claims: { aud: string; exp: number; sub: string };
}

/**
 * A local RFC 8030 push service over https: POST /push/<id> with an aes128gcm body
 * and a VAPID authorization; each message is checked and decrypted, kept in
 * received, and answered 201. Subscriptions are made with subscription().
 */
export class PushService {
  readonly received: ReceivedPush[] = [];
  readonly refused: { path: string; why: string }[] = [];
  private readonly subs = new Map<string, FakeSubscription>();
  private server?: Server;
  base = "";
  private seq = 0;

  constructor(
    private readonly vapidPublicKey: string,
    readonly tls?: TLSFiles,
  ) {}

  async start(): Promise<void> {
    if (!this.tls) throw new Error("push service: no certificate");
    this.server = createServer({ cert: this.tls.cert, key: this.tls.key }, (req, res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      req.on("data", (c: Buffer) => {
        size += c.length;
        if (size <= 8192) chunks.push(c);
      });
      req.on("end", () => {
        const path = req.url ?? "";
        const refuse = (code: number, why: string) => {
          this.refused.push({ path, why });
          res.writeHead(code, { "content-type": "text/plain" }).end(why);
        };
        const sub = this.subs.get(path);
        if (req.method !== "POST" || !sub) return refuse(404, "no such subscription");
        if (size > 4096) return refuse(413, "payload too large");
        try {
          const claims = this.checkVapid(String(req.headers.authorization ?? ""));
          if (req.headers["content-encoding"] !== "aes128gcm") throw new Error(`content-encoding ${req.headers["content-encoding"]}`);
          const text = decrypt(Buffer.concat(chunks), sub);
          this.received.push({ path, headers: req.headers, text, claims });
          res.writeHead(201, { location: `${this.base}/msg/${this.received.length}` }).end();
        } catch (err) {
          refuse(400, String(err));
        }
      });
    });
    await new Promise<void>((r) => this.server!.listen(0, "127.0.0.1", () => r()));
    const addr = this.server.address();
    if (!addr || typeof addr !== "object") throw new Error("push service: no address");
    this.base = `https://127.0.0.1:${addr.port}`;
  }

  async stop(): Promise<void> {
    await new Promise<void>((r) => (this.server ? this.server.close(() => r()) : r()));
  }

  /** A new subscription: an endpoint here and a fresh key pair and auth secret. */
  subscription(): FakeSubscription {
    const ecdh = createECDH("prime256v1");
    ecdh.generateKeys();
    const path = `/push/${++this.seq}-${randomBytes(4).toString("hex")}`;
    const sub = { endpoint: this.base + path, p256dh: b64u(ecdh.getPublicKey()), auth: b64u(randomBytes(16)), privateKey: b64u(ecdh.getPrivateKey()) };
    this.subs.set(path, sub);
    return sub;
  }

  /** The messages received for a subscription, decrypted. */
  messagesFor(sub: FakeSubscription): ReceivedPush[] {
    const path = new URL(sub.endpoint).pathname;
    return this.received.filter((m) => m.path === path);
  }

  /** Checks `vapid t=<JWT>, k=<key>` (RFC 8292): notifyd's key, ES256 over the JWT, this origin, not expired. */
  private checkVapid(auth: string): ReceivedPush["claims"] {
    const m = /^vapid t=([^,\s]+),\s*k=([A-Za-z0-9_-]+)$/.exec(auth);
    if (!m) throw new Error(`authorization is not vapid: ${auth.slice(0, 40)}`);
    const [, jwt, k] = m;
    if (k !== this.vapidPublicKey) throw new Error("vapid k is not notifyd's public key");
    const [h, p, s] = jwt.split(".");
    const header = JSON.parse(Buffer.from(h, "base64url").toString()) as { alg: string };
    if (header.alg !== "ES256") throw new Error(`vapid alg ${header.alg}`);
    const pub = Buffer.from(k, "base64url");
    const key = createPublicKey({ key: { kty: "EC", crv: "P-256", x: b64u(pub.subarray(1, 33)), y: b64u(pub.subarray(33, 65)) }, format: "jwk" });
    if (!verify("sha256", Buffer.from(`${h}.${p}`), { key, dsaEncoding: "ieee-p1363" }, Buffer.from(s, "base64url"))) {
      throw new Error("vapid signature does not verify");
    }
    const claims = JSON.parse(Buffer.from(p, "base64url").toString()) as ReceivedPush["claims"];
    if (claims.aud !== this.base) throw new Error(`vapid aud ${claims.aud}, want ${this.base}`);
    if (!(claims.exp * 1000 > Date.now())) throw new Error("vapid token expired");
    return claims;
  }
}

const hmac = (key: Buffer, data: Buffer) => createHmac("sha256", key).update(data).digest();

/** Decrypts an RFC 8291 message (one aes128gcm record, RFC 8188) for sub. */
export function decrypt(body: Buffer, sub: FakeSubscription): string {
  const salt = body.subarray(0, 16);
  const rs = body.readUInt32BE(16);
  const idlen = body[20];
  const asPublic = body.subarray(21, 21 + idlen);
  const record = body.subarray(21 + idlen);
  if (idlen !== 65 || record.length > rs) throw new Error(`bad aes128gcm header (idlen ${idlen}, rs ${rs}, record ${record.length})`);
  const ecdh = createECDH("prime256v1");
  ecdh.setPrivateKey(Buffer.from(sub.privateKey, "base64url"));
  const uaPublic = Buffer.from(sub.p256dh, "base64url");
  const secret = ecdh.computeSecret(asPublic);
  const prkKey = hmac(Buffer.from(sub.auth, "base64url"), secret);
  const ikm = hmac(prkKey, Buffer.concat([Buffer.from("WebPush: info\0"), uaPublic, asPublic, Buffer.from([1])]));
  const prk = hmac(salt, ikm);
  const cek = hmac(prk, Buffer.from("Content-Encoding: aes128gcm\0\x01")).subarray(0, 16);
  const nonce = hmac(prk, Buffer.from("Content-Encoding: nonce\0\x01")).subarray(0, 12);
  const d = createDecipheriv("aes-128-gcm", cek, nonce);
  d.setAuthTag(record.subarray(record.length - 16));
  const plain = Buffer.concat([d.update(record.subarray(0, record.length - 16)), d.final()]);
  // The last record ends with the delimiter 0x02, then zero padding.
  let end = plain.length - 1;
  while (end >= 0 && plain[end] === 0) end--;
  if (plain[end] !== 2) throw new Error("no last-record delimiter");
  return plain.subarray(0, end).toString("utf8");
}

/**
 * An init script for the page: PushManager subscribes to sub instead of the
 * browser's push service (kept in localStorage, like a real subscription
 * outlives the page), and records the applicationServerKey it was asked for.
 * Everything else (the service worker, permissions, notifications) is
 * Chromium's own.
 */
export function fakePushManagerScript(sub: FakeSubscription): string {
  return `(() => {
    const SUB = ${JSON.stringify({ endpoint: sub.endpoint, p256dh: sub.p256dh, auth: sub.auth })};
    const KEY = "test-push-subscription";
    const fromB64 = (s) => Uint8Array.from(atob(s.replace(/-/g, "+").replace(/_/g, "/") + "===".slice((s.length + 3) % 4)), (c) => c.charCodeAt(0));
    const toB64 = (b) => btoa(String.fromCharCode(...new Uint8Array(b))).replace(/\\+/g, "-").replace(/\\//g, "_").replace(/=+$/, "");
    function make(appKey) {
      return {
        endpoint: SUB.endpoint,
        expirationTime: null,
        options: { userVisibleOnly: true, applicationServerKey: fromB64(appKey).buffer },
        getKey: (name) => (name === "p256dh" ? fromB64(SUB.p256dh).buffer : name === "auth" ? fromB64(SUB.auth).buffer : null),
        toJSON: () => ({ endpoint: SUB.endpoint, expirationTime: null, keys: { p256dh: SUB.p256dh, auth: SUB.auth } }),
        unsubscribe: async () => { localStorage.removeItem(KEY); return true; },
      };
    }
    PushManager.prototype.getSubscription = async function () {
      const key = localStorage.getItem(KEY);
      return key ? make(key) : null;
    };
    PushManager.prototype.subscribe = async function (opts) {
      if (Notification.permission !== "granted") throw new DOMException("Registration failed - permission denied", "NotAllowedError");
      if (!opts || !opts.userVisibleOnly) throw new DOMException("userVisibleOnly is required", "NotAllowedError");
      const key = toB64(opts.applicationServerKey);
      if (localStorage.getItem(KEY) && localStorage.getItem(KEY) !== key) throw new DOMException("subscribed with another key", "InvalidStateError");
      localStorage.setItem(KEY, key);
      return make(key);
    };
  })();`;
}
