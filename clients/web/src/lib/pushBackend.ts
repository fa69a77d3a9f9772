import { Code, ConnectError } from "@connectrpc/connect";
import type { NotifyClient } from "./client";
import type { PushBackend } from "./push";

/**
 * A short name for this browser among the user's devices ("Chrome on
 * Linux"), from its user agent.
 */
export function browserLabel(ua: string): string {
  const browser = /Edg\//.test(ua)
    ? "Edge"
    : /OPR\//.test(ua)
      ? "Opera"
      : /Firefox\//.test(ua)
        ? "Firefox"
        : /Chrom(e|ium)\//.test(ua)
          ? "Chrome"
          : /Safari\//.test(ua)
            ? "Safari"
            : "A browser";
  const os = /Android/.test(ua)
    ? "Android"
    : /iPhone|iPad|iPod/.test(ua)
      ? "iOS"
      : /Windows/.test(ua)
        ? "Windows"
        : /Mac OS X|Macintosh/.test(ua)
          ? "macOS"
          : /CrOS/.test(ua)
            ? "ChromeOS"
            : /Linux/.test(ua)
              ? "Linux"
              : "";
  return os ? `${browser} on ${os}` : browser;
}

/**
 * The PushBackend of notifyd's DeliveryService, for the client's user:
 * GetDeliveryConfig's VAPID public key ("" when the server has no web push,
 * or no DeliveryService at all), RegisterDevice with the subscription's
 * endpoint and keys, RemoveDevice by endpoint (an unknown one is no error).
 */
export function deliveryPushBackend(client: NotifyClient, label = typeof navigator !== "undefined" ? browserLabel(navigator.userAgent) : ""): PushBackend {
  return {
    async vapidPublicKey() {
      try {
        return (await client.getDeliveryConfig()).vapidPublicKey;
      } catch (err) {
        if (ConnectError.from(err).code === Code.Unimplemented) return "";
        throw err;
      }
    },
    async register(sub) {
      await client.registerDevice({
        device: { case: "webPush", value: { endpoint: sub.endpoint, keys: { p256dh: sub.p256dh, auth: sub.auth } } },
        label,
      });
    },
    async remove(endpoint) {
      try {
        await client.removeDevice({ token: endpoint });
      } catch (err) {
        if (ConnectError.from(err).code !== Code.NotFound) throw err;
      }
    },
  };
}
