import { timestampDate } from "@bufbuild/protobuf/wkt";
import {
  ActionType,
  AlertLevel,
  CardStatus,
  Priority as ProtoPriority,
  RestaurantStatus,
  Tier,
  TransactionType,
} from "../gen/notify/v1/events_pb";
import type { Event } from "../gen/notify/v1/notify_pb";

/** The payload cases of an Event: "pointsAdded", "systemAlert", ... */
export type EventCase = NonNullable<Event["payload"]["case"]>;

/** The payload message of an Event case: PayloadOf<"pointsAdded"> is PointsAdded. */
export type PayloadOf<K extends EventCase> = Extract<Event["payload"], { case: K }>["value"];

/** Every payload case the contract knows, in field order. */
export const eventCases: readonly EventCase[] = [
  "pointsAdded",
  "pointsRedeemed",
  "pointsExpired",
  "cardCreated",
  "guestCardUpdated",
  "guestRegistered",
  "restaurantGuestJoined",
  "restaurantStatusChanged",
  "restaurantTransaction",
  "systemAlert",
  "adminNotification",
  "actionConfirmed",
];

/** How a notification looks: a toast's colour and icon follow the tone. */
export type Tone = "success" | "info" | "warning" | "error";

/** How urgent a notification is. */
export type Priority = "low" | "normal" | "high" | "critical";

/** The human side of an event: what a toast or the notification center shows. */
export interface EventView {
  kind: EventCase | "unknown";
  title: string;
  message: string;
  tone: Tone;
  priority: Priority;
  /** When it happened: the event's occurred_at, else its publish time. */
  time?: Date;
}

const num = (n: bigint | number) => Number(n).toLocaleString("en-US");

/**
 * Wraps text from an event (a name, a description, an id) in Unicode's
 * first-strong isolate (U+2068 … U+2069) before it goes into a sentence: a
 * right-to-left name reads right, and a stray bidi control in it (U+202E,
 * "right-to-left override") cannot reorder the words around it.
 */
export function isolate(text: string): string {
  return text ? `\u2068${text}\u2069` : "";
}
const u = isolate;

function cardStatus(s: CardStatus): string {
  return CardStatus[s]?.toLowerCase() ?? "unknown";
}

function tierName(t: Tier): string {
  const n = Tier[t] ?? "UNSPECIFIED";
  return n.charAt(0) + n.slice(1).toLowerCase();
}

function alertTone(l: AlertLevel): Tone {
  switch (l) {
    case AlertLevel.ERROR:
    case AlertLevel.CRITICAL:
      return "error";
    case AlertLevel.WARNING:
      return "warning";
    default:
      return "info";
  }
}

function alertPriority(l: AlertLevel): Priority {
  switch (l) {
    case AlertLevel.CRITICAL:
      return "critical";
    case AlertLevel.ERROR:
      return "high";
    case AlertLevel.INFO:
      return "low";
    default:
      return "normal";
  }
}

function priorityOf(p: ProtoPriority): Priority {
  switch (p) {
    case ProtoPriority.LOW:
      return "low";
    case ProtoPriority.HIGH:
      return "high";
    case ProtoPriority.CRITICAL:
      return "critical";
    default:
      return "normal";
  }
}

function toneOfPriority(p: Priority): Tone {
  return p === "critical" ? "error" : p === "high" ? "warning" : "info";
}

/** Describes an event for people. Unknown payloads get a neutral text. */
export function describeEvent(ev: Event): EventView {
  const p = ev.payload;
  const published = ev.publishTime ? timestampDate(ev.publishTime) : undefined;
  const at = (t?: { seconds: bigint; nanos: number }) => (t && t.seconds > 0n ? timestampDate(t as never) : published);
  switch (p.case) {
    case "pointsAdded": {
      const v = p.value;
      const where = u(v.restaurantName || v.restaurantId);
      return {
        kind: p.case,
        title: `+${num(v.amount)} points`,
        message: `${where ? `At ${where}. ` : ""}${v.description ? `${u(v.description)}. ` : ""}New balance: ${num(v.newBalance)}.`,
        tone: "success",
        priority: "normal",
        time: at(v.occurredAt),
      };
    }
    case "pointsRedeemed": {
      const v = p.value;
      return {
        kind: p.case,
        title: `−${num(v.amount)} points redeemed`,
        message: `${v.rewardName ? `Reward: ${u(v.rewardName)}. ` : ""}New balance: ${num(v.newBalance)}.`,
        tone: "info",
        priority: "normal",
        time: at(v.occurredAt),
      };
    }
    case "pointsExpired": {
      const v = p.value;
      return {
        kind: p.case,
        title: `${num(v.amount)} points expired`,
        message: `${v.expiryDate ? `Expired on ${u(v.expiryDate)}. ` : ""}${v.reason ? `${u(v.reason)}. ` : ""}New balance: ${num(v.newBalance)}.`,
        tone: "warning",
        priority: "normal",
        time: at(v.occurredAt),
      };
    }
    case "cardCreated": {
      const v = p.value;
      return {
        kind: p.case,
        title: "New loyalty card",
        message: `Card ${u(v.cardId)}${v.restaurantName || v.restaurantId ? ` at ${u(v.restaurantName || v.restaurantId)}` : ""}, ${num(v.initialPoints)} points to start.`,
        tone: "success",
        priority: "normal",
        time: at(v.occurredAt),
      };
    }
    case "guestCardUpdated": {
      const v = p.value;
      const parts: string[] = [];
      if (v.status) parts.push(`status ${cardStatus(v.status)}`);
      if (v.tier) parts.push(`tier ${tierName(v.tier)}`);
      const blocked = v.status === CardStatus.BLOCKED || v.status === CardStatus.SUSPENDED;
      return {
        kind: p.case,
        title: "Card updated",
        message: `Card ${u(v.cardId)}: ${parts.join(", ") || "updated"}.`,
        tone: blocked ? "warning" : "info",
        priority: blocked ? "high" : "normal",
        time: at(v.occurredAt),
      };
    }
    case "guestRegistered": {
      const v = p.value;
      return {
        kind: p.case,
        title: "Guest registered",
        message: `${u(v.guestName || v.guestId)} signed up${v.restaurantId ? ` at ${u(v.restaurantId)}` : ""}.`,
        tone: "info",
        priority: "low",
        time: at(v.occurredAt),
      };
    }
    case "restaurantGuestJoined": {
      const v = p.value;
      return {
        kind: p.case,
        title: "Guest joined",
        message: `${u(v.guestName || v.guestId)} joined the programme.`,
        tone: "info",
        priority: "low",
        time: at(v.occurredAt),
      };
    }
    case "restaurantStatusChanged": {
      const v = p.value;
      const status = RestaurantStatus[v.status]?.toLowerCase() ?? "unknown";
      return {
        kind: p.case,
        title: `Restaurant ${status}`,
        message: `${u(v.restaurantId)} is now ${status}${v.reason ? `: ${u(v.reason)}` : ""}.`,
        tone: v.status === RestaurantStatus.ACTIVE ? "success" : "warning",
        priority: v.status === RestaurantStatus.ACTIVE ? "normal" : "high",
        time: at(v.occurredAt),
      };
    }
    case "restaurantTransaction": {
      const v = p.value;
      const redemption = v.type === TransactionType.REDEMPTION;
      return {
        kind: p.case,
        title: redemption ? `Redemption −${num(v.amount)}` : `Purchase +${num(v.amount)}`,
        message: `${u(v.guestName || v.guestId)}. Today: ${num(v.totalToday)} points.`,
        tone: "info",
        priority: "low",
        time: at(v.occurredAt),
      };
    }
    case "systemAlert": {
      const v = p.value;
      return {
        kind: p.case,
        title: v.title || "System alert",
        message: v.message,
        tone: alertTone(v.level),
        priority: alertPriority(v.level),
        time: at(v.occurredAt),
      };
    }
    case "adminNotification": {
      const v = p.value;
      const priority = priorityOf(v.priority);
      return {
        kind: p.case,
        title: v.title || "Admin notification",
        message: v.actionRequired ? `${u(v.message)} (action required)` : v.message,
        tone: toneOfPriority(priority),
        priority,
        time: at(v.occurredAt),
      };
    }
    case "actionConfirmed": {
      const v = p.value;
      return {
        kind: p.case,
        // The guest's confirmation, not the redemption itself: the loyalty
        // backend applies it, and a points event follows.
        title: v.action === ActionType.POINTS_REDEEM ? "Guest confirmed a redemption" : "Guest confirmed an action",
        message: `Guest ${u(v.guestId)} confirmed ${v.action === ActionType.POINTS_REDEEM ? "redeeming " : ""}${num(v.amount)} points.`,
        tone: "success",
        priority: "normal",
        time: at(v.occurredAt),
      };
    }
    default:
      return { kind: "unknown", title: "Notification", message: "", tone: "info", priority: "normal", time: published };
  }
}
