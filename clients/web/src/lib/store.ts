import { timestampDate } from "@bufbuild/protobuf/wkt";
import { ConnectError } from "@connectrpc/connect";
import type { Notification, Preferences } from "../gen/notify/v1/inbox_pb";
import type { Event } from "../gen/notify/v1/notify_pb";
import type { ConnectionState, NotifyClient } from "./client";
import { describeEvent, type EventView, type Tone } from "./events";
import { Observable } from "./observable";

/** One entry of the notification center: an inbox notification, described. */
export interface NotificationItem extends EventView {
  /** The inbox id (for markRead and delete). */
  id: string;
  /** The event's id, the same in every room it was routed to. */
  eventId: string;
  read: boolean;
  createdAt: Date;
  event: Event;
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
  /** The inbox, newest first, one entry per event. */
  items: NotificationItem[];
  /** The inbox unread count (from the stream, or the last write's answer). */
  unread: number;
  /** A next page exists (loadMore). */
  hasMore: boolean;
  /** The first page arrived. */
  loaded: boolean;
  loading: boolean;
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

/** Rooms whose events enter the caller's inbox. */
function isInboxRoom(room: string): boolean {
  return room.startsWith("guest:") || room.startsWith("user:") || room === "admin";
}

let toastSeq = 0;

/**
 * NotificationStore is the notification center's state, framework-agnostic:
 * the inbox (InboxService, paged, newest first, one entry per event id), the
 * live unread count, preferences and a toast queue. It follows a
 * NotifyClient: live events raise toasts and pull the new inbox rows, a
 * room that could not be resumed reloads the inbox, and writes go through
 * the client's offline queue.
 */
export class NotificationStore extends Observable<NotificationState> {
  private readonly client: NotifyClient;
  private readonly opts: Required<Omit<NotificationStoreOptions, "toastFilter">> & Pick<NotificationStoreOptions, "toastFilter">;
  private pageToken = "";
  private unsub: (() => void)[] = [];
  private toastedEvents = new Set<string>();
  private timers = new Map<string, ReturnType<typeof setTimeout>>();
  private refreshTimer?: ReturnType<typeof setTimeout>;
  private refreshing?: Promise<void>;
  private refreshAgain = false;
  private awaited = new Map<string, number>(); // event ids expected in the inbox → tries
  private started = false;

  constructor(client: NotifyClient, opts: NotificationStoreOptions = {}) {
    super({
      items: [],
      unread: 0,
      hasMore: false,
      loaded: false,
      loading: false,
      toasts: [],
      connection: client.state,
      pending: client.pendingCalls,
      gaps: 0,
      reloads: 0,
    });
    this.client = client;
    this.opts = {
      pageSize: opts.pageSize ?? 30,
      toastMs: opts.toastMs ?? 5000,
      maxToasts: opts.maxToasts ?? 5,
      toastFilter: opts.toastFilter,
    };
  }

  /** Follows the client. Call once after creating the client; stop() undoes it. */
  start(): void {
    if (this.started) return;
    this.started = true;
    const c = this.client;
    this.unsub.push(
      c.onState((connection) => {
        this.setState({ connection, connectionError: connection === "disconnected" ? c.lastError?.rawMessage : undefined });
      }),
      c.onConnected(() => {
        if (!this.getState().loaded) void this.refresh();
      }),
      c.onUnread((unread) => {
        const prev = this.getState().unread;
        this.setState({ unread });
        // A new inbox row: the count rises after the row is written.
        if (unread > prev || this.awaited.size > 0) this.scheduleRefresh(0);
      }),
      c.onEvent((ev) => this.onEvent(ev)),
      c.onGap(() => {
        this.setState((s) => ({ gaps: s.gaps + 1 }));
        this.scheduleRefresh(0, true);
      }),
      c.onError((err) => this.setState({ connectionError: err.rawMessage })),
      c.onQueue((pending) => this.setState({ pending })),
    );
  }

  /** Stops following the client and clears timers. */
  stop(): void {
    this.unsub.forEach((u) => u());
    this.unsub = [];
    this.started = false;
    clearTimeout(this.refreshTimer);
    this.timers.forEach((t) => clearTimeout(t));
    this.timers.clear();
  }

  // ---- inbox --------------------------------------------------------------

  /**
   * Loads the newest page and merges it in; with full, pages on until it
   * meets a notification it already had (at most 10 pages), so everything
   * missed during a gap is back, each event once.
   */
  refresh(full = false): Promise<void> {
    if (this.refreshing) {
      this.refreshAgain = true;
      return this.refreshing;
    }
    this.refreshing = (async () => {
      this.setState({ loading: true });
      try {
        do {
          this.refreshAgain = false;
          await this.loadNewest(full);
        } while (this.refreshAgain);
        this.setState({ error: undefined });
      } catch (err) {
        this.setState({ error: ConnectError.from(err).rawMessage });
      } finally {
        this.setState({ loading: false });
        this.refreshing = undefined;
      }
    })();
    return this.refreshing;
  }

  private async loadNewest(full: boolean): Promise<void> {
    const known = new Set(this.getState().items.map((i) => i.id));
    const wasLoaded = this.getState().loaded;
    let token = "";
    let fetched: Notification[] = [];
    let nextToken = "";
    let unread = this.getState().unread;
    for (let page = 0; page < 10; page++) {
      const res = await this.client.listNotifications({ pageSize: this.opts.pageSize, pageToken: token });
      fetched = fetched.concat(res.notifications);
      unread = Number(res.unreadCount);
      nextToken = res.nextPageToken;
      const metKnown = res.notifications.some((n) => known.has(n.id));
      if (!full || !wasLoaded || metKnown || !nextToken) break;
      token = nextToken;
    }
    const fresh = fetched.map(toItem);
    this.setState((s) => {
      const byId = new Map(s.items.map((i) => [i.id, i]));
      for (const it of fresh) byId.set(it.id, it); // the server's read state wins
      return { items: dedupe([...byId.values()]), unread, loaded: true, hasMore: s.loaded ? s.hasMore : !!nextToken };
    });
    if (!wasLoaded) this.pageToken = nextToken;
    // Events that arrived live before their inbox row was written.
    const have = new Set(this.getState().items.map((i) => i.eventId));
    for (const [id, tries] of this.awaited) {
      if (have.has(id)) this.awaited.delete(id);
      else if (tries >= 4) this.awaited.delete(id);
      else {
        this.awaited.set(id, tries + 1);
        this.scheduleRefresh(100 * 2 ** tries);
      }
    }
  }

  /** Loads the next (older) page. */
  async loadMore(): Promise<void> {
    if (!this.pageToken) return;
    this.setState({ loading: true });
    try {
      const res = await this.client.listNotifications({ pageSize: this.opts.pageSize, pageToken: this.pageToken });
      this.pageToken = res.nextPageToken;
      const more = res.notifications.map(toItem);
      this.setState((s) => ({
        items: dedupe([...s.items, ...more.filter((m) => !s.items.some((i) => i.id === m.id))]),
        hasMore: !!res.nextPageToken,
        unread: Number(res.unreadCount),
        error: undefined,
      }));
    } catch (err) {
      this.setState({ error: ConnectError.from(err).rawMessage });
    } finally {
      this.setState({ loading: false });
    }
  }

  private scheduleRefresh(ms: number, full = false): void {
    if (full) {
      clearTimeout(this.refreshTimer);
      this.refreshTimer = undefined;
      void this.refresh(true);
      return;
    }
    if (this.refreshTimer) return;
    this.refreshTimer = setTimeout(() => {
      this.refreshTimer = undefined;
      void this.refresh();
    }, ms);
  }

  /** Marks one notification read: at once here, then on the server (queued while offline). */
  async markRead(id: string): Promise<void> {
    const it = this.getState().items.find((i) => i.id === id);
    if (!it || it.read) return;
    this.setState((s) => ({
      items: s.items.map((i) => (i.id === id ? { ...i, read: true } : i)),
      unread: Math.max(0, s.unread - 1),
    }));
    try {
      const res = await this.client.markRead([id]);
      this.setState({ unread: Number(res.unreadCount) });
    } catch (err) {
      this.fail(err);
    }
  }

  /** Marks every notification read. */
  async markAllRead(): Promise<void> {
    this.setState((s) => ({ items: s.items.map((i) => (i.read ? i : { ...i, read: true })), unread: 0 }));
    try {
      const res = await this.client.markAllRead();
      this.setState({ unread: Number(res.unreadCount) });
    } catch (err) {
      this.fail(err);
    }
  }

  /** Deletes one notification. */
  async remove(id: string): Promise<void> {
    const it = this.getState().items.find((i) => i.id === id);
    if (!it) return;
    this.setState((s) => ({
      items: s.items.filter((i) => i.id !== id),
      unread: it.read ? s.unread : Math.max(0, s.unread - 1),
    }));
    try {
      const res = await this.client.deleteNotification(id);
      this.setState({ unread: Number(res.unreadCount) });
    } catch (err) {
      this.fail(err);
    }
  }

  private fail(err: unknown): void {
    this.setState({ error: ConnectError.from(err).rawMessage });
    void this.refresh();
  }

  // ---- preferences --------------------------------------------------------

  async loadPreferences(): Promise<Preferences | undefined> {
    try {
      const res = await this.client.getPreferences();
      this.setState({ preferences: res.preferences });
      return res.preferences;
    } catch (err) {
      this.setState({ error: ConnectError.from(err).rawMessage });
      return undefined;
    }
  }

  async updatePreferences(p: Partial<Pick<Preferences, "enabled" | "sound" | "email" | "mutedTypes">>): Promise<void> {
    const cur = this.getState().preferences ?? (await this.loadPreferences());
    const next = {
      enabled: p.enabled ?? cur?.enabled ?? true,
      sound: p.sound ?? cur?.sound ?? true,
      email: p.email ?? cur?.email ?? false,
      mutedTypes: p.mutedTypes ?? cur?.mutedTypes ?? [],
    };
    // At once here; the server's answer (or the old value, on failure) follows.
    if (cur) this.setState({ preferences: { ...cur, ...next } });
    try {
      const res = await this.client.updatePreferences(next);
      this.setState({ preferences: res.preferences, error: undefined });
    } catch (err) {
      this.setState({ preferences: cur, error: ConnectError.from(err).rawMessage });
    }
  }

  // ---- live events and toasts ---------------------------------------------

  private onEvent(ev: Event): void {
    if (isInboxRoom(ev.room) && !this.getState().items.some((i) => i.eventId === ev.id)) {
      this.awaited.set(ev.id, this.awaited.get(ev.id) ?? 0);
      this.scheduleRefresh(50);
    }
    // An event routed to two rooms of the stream comes twice: one toast.
    if (this.toastedEvents.has(ev.id)) return;
    this.toastedEvents.add(ev.id);
    if (this.toastedEvents.size > 2000) {
      const first = this.toastedEvents.values().next().value;
      if (first !== undefined) this.toastedEvents.delete(first);
    }
    if (this.opts.toastFilter && !this.opts.toastFilter(ev)) return;
    const v = describeEvent(ev);
    this.showToast({ tone: v.tone, title: v.title, message: v.message, eventId: ev.id });
  }

  /** Shows a toast; it hides itself after durationMs (default toastMs; 0: never). */
  showToast(t: { tone: Tone; title: string; message?: string; durationMs?: number; eventId?: string }): string {
    const id = `t${++toastSeq}`;
    const toast: Toast = {
      id,
      tone: t.tone,
      title: t.title,
      message: t.message ?? "",
      durationMs: t.durationMs ?? this.opts.toastMs,
      eventId: t.eventId,
      createdAt: Date.now(),
    };
    this.setState((s) => {
      const toasts = [...s.toasts, toast];
      const drop = toasts.slice(0, Math.max(0, toasts.length - this.opts.maxToasts));
      drop.forEach((d) => this.clearToastTimer(d.id));
      return { toasts: toasts.slice(drop.length) };
    });
    if (toast.durationMs > 0) {
      this.timers.set(
        id,
        setTimeout(() => this.dismissToast(id), toast.durationMs),
      );
    }
    return id;
  }

  dismissToast(id: string): void {
    this.clearToastTimer(id);
    this.setState((s) => (s.toasts.some((t) => t.id === id) ? { toasts: s.toasts.filter((t) => t.id !== id) } : {}));
  }

  clearToasts(): void {
    this.timers.forEach((t) => clearTimeout(t));
    this.timers.clear();
    this.setState({ toasts: [] });
  }

  private clearToastTimer(id: string): void {
    const t = this.timers.get(id);
    if (t) clearTimeout(t);
    this.timers.delete(id);
  }
}

function toItem(n: Notification): NotificationItem {
  const ev = n.event!;
  const view = describeEvent(ev);
  return {
    ...view,
    id: n.id,
    eventId: ev?.id ?? n.id,
    read: n.read,
    createdAt: n.createTime ? timestampDate(n.createTime) : (view.time ?? new Date(0)),
    event: ev,
    time: view.time ?? (n.createTime ? timestampDate(n.createTime) : undefined),
  };
}

/** Newest first, one entry per event id (an admin may own an event twice). */
function dedupe(items: NotificationItem[]): NotificationItem[] {
  const sorted = [...items].sort((a, b) => b.createdAt.getTime() - a.createdAt.getTime() || newerId(a.id, b.id));
  const seen = new Set<string>();
  return sorted.filter((i) => (seen.has(i.eventId) ? false : (seen.add(i.eventId), true)));
}

/** Orders ids newest first; ids are opaque, but longer-then-greater fits counters. */
function newerId(a: string, b: string): number {
  if (a.length !== b.length) return b.length - a.length;
  return a < b ? 1 : a > b ? -1 : 0;
}
