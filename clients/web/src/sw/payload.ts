// What the service worker makes of a push message. Pure functions, so that
// they are tested without a browser (test/unit/sw.test.ts); sw.ts binds them
// to the service worker's events.

/**
 * The JSON notifyd's web push sender encrypts into each push message
 * (internal/channel.WebPushPayload): the event's id and type, its text
 * rendered in the user's locale, the topic that collapses a newer message
 * onto an older one (a points balance), whether it is a CRITICAL alert, and
 * the event itself (the notify.v1.Event envelope in protojson) when it fits
 * the 4 KB record.
 */
export interface PushPayload {
  eventId: string;
  type: string;
  title: string;
  body: string;
  topic?: string;
  critical?: boolean;
  data?: unknown;
}

/** What the service worker shows for a push: showNotification(title, options). */
export interface ShownNotification {
  title: string;
  options: {
    body: string;
    tag?: string;
    renotify?: boolean;
    requireInteraction?: boolean;
    icon: string;
    badge: string;
    dir: "auto";
    timestamp?: number;
    data: NotificationData;
  };
}

/** What a shown notification keeps for its click. */
export interface NotificationData {
  eventId: string;
  type: string;
  /** The app's page to open: one of its own paths, never another origin. */
  url: string;
}

/** The messages the service worker posts to the app's windows. */
export type WorkerMessage =
  | { type: "notify:push"; payload: PushPayload }
  | { type: "notify:click"; eventId: string; url: string }
  | { type: "notify:resubscribed" };

// Bounds on what is shown: the server already cuts its text (120 and 400
// characters), a payload from elsewhere may not have.
const maxTitle = 120;
const maxBody = 400;

const fallbackTitle = "Max Loyalty";

function str(v: unknown, max: number): string {
  if (typeof v !== "string") return "";
  const chars = Array.from(v.replace(/[\r\n]+/g, " ").trim());
  return chars.length > max ? chars.slice(0, max - 1).join("") + "…" : chars.join("");
}

/**
 * Reads a push message's text: notifyd's JSON, or (from another sender, or
 * a test's plain text) the text itself as the body. Never throws: a push the
 * worker cannot read must still show something, since the subscription
 * promises userVisibleOnly.
 */
export function parsePush(text: string | null | undefined): PushPayload {
  const raw = (text ?? "").trim();
  let o: Record<string, unknown> | undefined;
  if (raw.startsWith("{")) {
    try {
      const v: unknown = JSON.parse(raw);
      if (v && typeof v === "object" && !Array.isArray(v)) o = v as Record<string, unknown>;
    } catch {
      // Not JSON after all: shown as text below.
    }
  }
  if (!o) return { eventId: "", type: "", title: fallbackTitle, body: str(raw, maxBody) };
  const p: PushPayload = {
    eventId: str(o.eventId, 200),
    type: str(o.type, 100),
    title: str(o.title, maxTitle) || fallbackTitle,
    body: str(o.body, maxBody),
  };
  const topic = str(o.topic, 100);
  if (topic) p.topic = topic;
  if (o.critical === true) p.critical = true;
  if (o.data !== undefined && o.data !== null) p.data = o.data;
  return p;
}

/**
 * The app's page for an event type ("EVENT_TYPE_POINTS_ADDED"): a push is
 * only sent to the users the event is for, so the type says whose page it
 * is. Unknown types open the app's start, which sends each role home.
 */
export function pageFor(type: string): string {
  switch (type) {
    case "EVENT_TYPE_POINTS_ADDED":
    case "EVENT_TYPE_POINTS_REDEEMED":
    case "EVENT_TYPE_POINTS_EXPIRED":
    case "EVENT_TYPE_CARD_CREATED":
    case "EVENT_TYPE_GUEST_CARD_UPDATED":
    case "EVENT_TYPE_GUEST_REGISTERED":
      return "/guest";
    case "EVENT_TYPE_RESTAURANT_GUEST_JOINED":
    case "EVENT_TYPE_RESTAURANT_STATUS_CHANGED":
    case "EVENT_TYPE_RESTAURANT_TRANSACTION":
      return "/restaurant";
    case "EVENT_TYPE_SYSTEM_ALERT":
    case "EVENT_TYPE_ADMIN_NOTIFICATION":
      return "/admin";
  }
  return "/";
}

/** The event's publish time, from the envelope in data, in Unix ms. */
function publishTime(data: unknown): number | undefined {
  if (!data || typeof data !== "object") return undefined;
  const t = (data as { publishTime?: unknown }).publishTime;
  if (typeof t !== "string") return undefined;
  const ms = Date.parse(t);
  return Number.isFinite(ms) ? ms : undefined;
}

/**
 * The notification for a push. Its tag is the payload's topic (a newer
 * points balance replaces the older one still on screen, as the push
 * service's Topic does for messages not yet delivered), else the event id
 * (a push sent twice, as an at-least-once queue may, shows once). A
 * CRITICAL alert stays until the user acts on it.
 */
export function notificationFor(p: PushPayload): ShownNotification {
  const tag = p.topic || p.eventId || undefined;
  const options: ShownNotification["options"] = {
    body: p.body,
    icon: "/favicon.svg",
    badge: "/favicon.svg",
    dir: "auto",
    data: { eventId: p.eventId, type: p.type, url: pageFor(p.type) },
  };
  if (tag) {
    options.tag = tag;
    // A replaced balance is news again.
    options.renotify = !!p.topic;
  }
  if (p.critical) options.requireInteraction = true;
  const ts = publishTime(p.data);
  if (ts !== undefined) options.timestamp = ts;
  return { title: p.title, options };
}

/**
 * The path a notification's click opens, from its data: only the app's own
 * absolute paths ("/guest"), anything else is "/".
 */
export function clickUrl(data: unknown): string {
  const url = data && typeof data === "object" ? (data as { url?: unknown }).url : undefined;
  return typeof url === "string" && /^\/(?![/\\])/.test(url) ? url : "/";
}

/** A window of the app, as clients.matchAll gives it (the part used here). */
export interface AppWindow {
  url: string;
  focused?: boolean;
  visibilityState?: string;
}

/**
 * Which of the app's open windows a click focuses: the one already on the
 * page, else a focused or visible one, else any; undefined opens a new one.
 */
export function pickWindow<W extends AppWindow>(windows: readonly W[], url: string, origin: string): W | undefined {
  const mine = windows.filter((w) => {
    try {
      return new URL(w.url).origin === origin;
    } catch {
      return false;
    }
  });
  return (
    mine.find((w) => new URL(w.url).pathname === url) ??
    mine.find((w) => w.focused) ??
    mine.find((w) => w.visibilityState === "visible") ??
    mine[0]
  );
}
