// The notification store's state: its types (the center's items, tabs,
// counts and toasts, the whole NotificationState, the store's options) and
// the pure functions over its items (an inbox Notification as an item, which
// tab an item is in, how a change moves the counts, newest first).
import type { MessageInitShape } from "@bufbuild/protobuf";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { Priority as ProtoPriority } from "../gen/notify/v1/events_pb";
import { NotificationState as ProtoState, type Notification, type PreferencesSchema, type Preferences } from "../gen/notify/v1/inbox_pb";
import type { Event, NotificationAction } from "../gen/notify/v1/notify_pb";
import type { ConnectionState } from "./client";
import type { DeliveryInfo } from "./deliveries";
import { describeEvent, type EventView, type Priority, type Tone } from "./events";

/** One entry of the notification center: an inbox notification, described. */
export interface NotificationItem extends EventView {
  /** The inbox id (for markRead and delete). */
  id: string;
  /** The event's id, the same in every room it was routed to. */
  eventId: string;
  read: boolean;
  /** Shown to the user: the badge counts the unseen ones. */
  seen: boolean;
  /** Out of the inbox, kept. */
  archived: boolean;
  /** Set while snoozed: when it comes back. */
  snoozedUntil?: Date;
  /** The publisher's category (points, card, alerts, ...). */
  category: string;
  tags: string[];
  /** What the user can do from it: a link or a confirmation. */
  action?: NotificationAction;
  /** When it leaves the inbox, if it does. */
  expiresAt?: Date;
  createdAt: Date;
  event: Event;
}

/** The notification center's tabs: the inbox's unread, the whole inbox, the archive, the snoozed. */
export type InboxTab = "unread" | "all" | "archived" | "snoozed";

/** The inbox's notifications per state. */
export interface Counts {
  /** In the inbox, not seen: the badge. */
  unseen: number;
  /** In the inbox, not read. */
  unread: number;
  archived: number;
  snoozed: number;
  /** In the inbox (neither archived nor snoozed). */
  inbox: number;
}

/** A transient message shown by ToastContainer. */
export interface Toast {
  id: string;
  tone: Tone;
  title: string;
  message: string;
  /** Auto-hide after this long; 0 keeps it until closed. */
  durationMs: number;
  /** The event that raised it, if any. */
  eventId?: string;
  createdAt: number;
}

export interface NotificationState {
  /** The inbox (neither archived nor snoozed), newest first, one entry per event. */
  items: NotificationItem[];
  /** The inbox unread count (from the stream, or the last call's answer). */
  unread: number;
  /** The inbox unseen count, which the badge shows. */
  unseen: number;
  /** The counts per state. */
  counts: Counts;
  /** A next page of items exists (loadMore). */
  hasMore: boolean;
  /** The first page arrived. */
  loaded: boolean;
  loading: boolean;
  /** The center's tab and its list ("all": the same as items). */
  tab: InboxTab;
  tabItems: NotificationItem[];
  tabHasMore: boolean;
  tabLoading: boolean;
  /** The last failed inbox call's message. */
  error?: string;
  preferences?: Preferences;
  toasts: Toast[];
  connection: ConnectionState;
  /** Why the client stopped, when it did (PermissionDenied, ...). */
  connectionError?: string;
  /** Calls waiting to be sent (made offline). */
  pending: number;
  /** Rooms that came back not recovered, with when (the last of each). */
  gaps: number;
  /** Inbox reloads done after a gap. */
  reloads: number;
  /**
   * Where each notification was also sent (web push, email...), by event
   * id, for the notifications loadDeliveries was asked about.
   */
  deliveries: Record<string, DeliveryInfo>;
  /** The server keeps delivery timelines (false once it answered Unimplemented). */
  deliveriesAvailable: boolean;
}

export interface NotificationStoreOptions {
  /** Inbox page size. Default 30. */
  pageSize?: number;
  /** How long toasts stay. Default 5000ms. */
  toastMs?: number;
  /** Most toasts shown at once; older ones go first. Default 5. */
  maxToasts?: number;
  /** Whether an event raises a toast. Default: every event. */
  toastFilter?: (ev: Event) => boolean;
}

/** Preferences to change: any of their fields (nested messages as plain objects or messages). */
export type PreferencesUpdate = Omit<Exclude<MessageInitShape<typeof PreferencesSchema>, Preferences>, "$typeName">;

export function withoutType(p: Preferences): PreferencesUpdate {
  const { $typeName: _t, $unknown: _u, ...rest } = p;
  return rest;
}

/** Rooms whose events enter the caller's inbox. */
export function isInboxRoom(room: string): boolean {
  return room.startsWith("guest:") || room.startsWith("user:") || room === "admin";
}

/** The server's state of each tab. */
export const tabState: Record<InboxTab, ProtoState> = {
  unread: ProtoState.UNREAD,
  all: ProtoState.INBOX,
  archived: ProtoState.ARCHIVED,
  snoozed: ProtoState.SNOOZED,
};

export const noCounts: Counts = { unseen: 0, unread: 0, archived: 0, snoozed: 0, inbox: 0 };

/** Whether an item belongs to a tab's list at now. */
export function inTab(tab: InboxTab, i: NotificationItem & { deleted?: boolean }, now = Date.now()): boolean {
  if (i.deleted) return false;
  const snoozed = !!i.snoozedUntil && i.snoozedUntil.getTime() > now;
  switch (tab) {
    case "archived":
      return i.archived;
    case "snoozed":
      return snoozed && !i.archived;
    case "unread":
      return !i.archived && !snoozed && !i.read;
    default:
      return !i.archived && !snoozed;
  }
}

/** Moves counts from an item's state before a change to its state after. */
export function adjust(c: Counts, before: NotificationItem, after: NotificationItem & { deleted?: boolean }, now: number): void {
  const add = (i: NotificationItem & { deleted?: boolean }, k: 1 | -1) => {
    if (i.deleted) return;
    if (inTab("archived", i, now)) c.archived += k;
    else if (inTab("snoozed", i, now)) c.snoozed += k;
    else {
      c.inbox += k;
      if (!i.read) c.unread += k;
      if (!i.seen) c.unseen += k;
    }
  };
  add(before, -1);
  add(after, 1);
  for (const k of Object.keys(c) as (keyof Counts)[]) c[k] = Math.max(0, c[k]);
}

const priorityOf: Partial<Record<ProtoPriority, Priority>> = {
  [ProtoPriority.LOW]: "low",
  [ProtoPriority.MEDIUM]: "normal",
  [ProtoPriority.HIGH]: "high",
  [ProtoPriority.CRITICAL]: "critical",
};

export function toItem(n: Notification): NotificationItem {
  const ev = n.event!;
  const view = describeEvent(ev);
  return {
    ...view,
    priority: priorityOf[n.priority] ?? view.priority,
    id: n.id,
    eventId: ev?.id ?? n.id,
    read: n.read,
    seen: n.seen,
    archived: n.archived,
    snoozedUntil: n.snoozeUntil ? timestampDate(n.snoozeUntil) : undefined,
    category: n.category,
    tags: n.tags,
    action: n.action,
    expiresAt: n.expireTime ? timestampDate(n.expireTime) : undefined,
    createdAt: n.createTime ? timestampDate(n.createTime) : (view.time ?? new Date(0)),
    event: ev,
    time: view.time ?? (n.createTime ? timestampDate(n.createTime) : undefined),
  };
}

/** Newest first, one entry per event id (an admin may own an event twice). */
export function dedupe(items: NotificationItem[]): NotificationItem[] {
  const sorted = [...items].sort((a, b) => b.createdAt.getTime() - a.createdAt.getTime() || newerId(a.id, b.id));
  const seen = new Set<string>();
  return sorted.filter((i) => (seen.has(i.eventId) ? false : (seen.add(i.eventId), true)));
}

/** Orders ids newest first; ids are opaque, but longer-then-greater fits counters. */
export function newerId(a: string, b: string): number {
  if (a.length !== b.length) return b.length - a.length;
  return a < b ? 1 : a > b ? -1 : 0;
}
