import { timestampDate } from "@bufbuild/protobuf/wkt";
import { DeliveryChannel, DeliveryState, type DeliveryStep, type DeliveryTimeline } from "../gen/notify/v1/delivery_pb";

/** A delivery channel, by its short name. */
export type ChannelName = "webPush" | "fcm" | "apns" | "email" | "webhook" | "live" | "other";

/** A step of a delivery, by its short name. */
export type StepState = "queued" | "scheduled" | "sent" | "delivered" | "retrying" | "failed" | "cancelled" | "held" | "unknown";

/** One step of a delivery, as the center shows it. */
export interface StepView {
  state: StepState;
  time?: Date;
  attempt: number;
  /** The provider's answer or the reason ("seen: read in the inbox"). */
  detail: string;
}

/**
 * One way a notification went: a channel and a target (a device's label,
 * a masked address), with its steps oldest first and where it stands now.
 */
export interface DeliveryRoute {
  channel: ChannelName;
  /** "Web push", "Email", ... */
  channelLabel: string;
  target: string;
  /** The latest step's state. */
  state: StepState;
  /** The latest step's detail. */
  detail: string;
  time?: Date;
  steps: StepView[];
}

/** Where a notification was also sent, as last read from the server. */
export interface DeliveryInfo {
  routes: DeliveryRoute[];
  /** No route can change any more by itself (each is sent, delivered, failed or cancelled). */
  settled: boolean;
  /** When it was read, Date.now() ms. */
  loadedAt: number;
}

const channelNames: Record<number, [ChannelName, string]> = {
  [DeliveryChannel.WEB_PUSH]: ["webPush", "Web push"],
  [DeliveryChannel.FCM]: ["fcm", "Mobile push"],
  [DeliveryChannel.APNS]: ["apns", "Mobile push"],
  [DeliveryChannel.EMAIL]: ["email", "Email"],
  [DeliveryChannel.WEBHOOK]: ["webhook", "Webhook"],
  [DeliveryChannel.LIVE]: ["live", "Live"],
};

const stateNames: Record<number, StepState> = {
  [DeliveryState.QUEUED]: "queued",
  [DeliveryState.SCHEDULED]: "scheduled",
  [DeliveryState.SENT]: "sent",
  [DeliveryState.DELIVERED]: "delivered",
  [DeliveryState.RETRYING]: "retrying",
  [DeliveryState.FAILED]: "failed",
  [DeliveryState.CANCELLED]: "cancelled",
  [DeliveryState.HELD]: "held",
};

/**
 * States after which a route changes no more by itself (held: a throttle
 * folded it into the next send, which has a route of its own).
 */
const final = new Set<StepState>(["sent", "delivered", "failed", "cancelled", "held"]);

/** Words for a step's state. */
export const stepText: Record<StepState, string> = {
  queued: "queued",
  scheduled: "waiting",
  sent: "sent",
  delivered: "delivered",
  retrying: "retrying",
  failed: "failed",
  cancelled: "not sent",
  held: "held back",
  unknown: "unknown",
};

function step(s: DeliveryStep): StepView {
  return { state: stateNames[s.state] ?? "unknown", time: s.time ? timestampDate(s.time) : undefined, attempt: s.attempt, detail: s.detail };
}

/**
 * A timeline's steps grouped by channel and target, in the order each
 * route first appears; each route's state is its latest step's.
 */
export function routesOf(t: DeliveryTimeline | undefined): DeliveryRoute[] {
  const routes = new Map<string, DeliveryRoute>();
  for (const s of t?.steps ?? []) {
    const [channel, channelLabel] = channelNames[s.channel] ?? (["other", "Other"] as const);
    const key = `${s.channel}\u0000${s.target}`;
    let r = routes.get(key);
    if (!r) {
      r = { channel, channelLabel, target: s.target, state: "unknown", detail: "", steps: [] };
      routes.set(key, r);
    }
    const v = step(s);
    r.steps.push(v);
    r.state = v.state;
    r.detail = v.detail;
    r.time = v.time;
  }
  return [...routes.values()];
}

/** Whether no route will change by itself any more. */
export function settled(routes: DeliveryRoute[]): boolean {
  return routes.every((r) => final.has(r.state));
}
