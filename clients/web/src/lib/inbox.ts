// InboxStore: the inbox side of NotificationStore (store.ts). It keeps the
// inbox's pages and the center's tab, the live counts, the writes applied at
// once and sent through the client's queue, the preferences, and the toasts
// raised by live events.
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { ConnectError } from "@connectrpc/connect";
import {
  InboxAction,
  NotificationState as ProtoState,
  type InboxCounts,
  type InboxFilterSchema,
  type Notification,
  PreferencesSchema,
  type Preferences,
} from "../gen/notify/v1/inbox_pb";
import type { Event, ReturnedNotification } from "../gen/notify/v1/notify_pb";
import type { InboxLive, NotifyClient } from "./client";
import { describeEvent, type Tone } from "./events";
import { Observable } from "./observable";
import {
  adjust,
  dedupe,
  inTab,
  isInboxRoom,
  newerId,
  noCounts,
  tabState,
  toItem,
  withoutType,
  type Counts,
  type InboxTab,
  type NotificationItem,
  type NotificationState,
  type NotificationStoreOptions,
  type PreferencesUpdate,
  type Toast,
} from "./state";

let toastSeq = 0;

/**
 * InboxStore is what NotificationStore (store.ts) is built on: the whole
 * store but the reading of delivery timelines, which NotificationStore adds.
 */
export class InboxStore extends Observable<NotificationState> {
  protected readonly client: NotifyClient;
  private readonly opts: Required<Omit<NotificationStoreOptions, "toastFilter">> & Pick<NotificationStoreOptions, "toastFilter">;
  private pageToken = "";
  private tabToken = "";
  private tabLoad = 0; // the latest tab load; older answers are dropped
  private unsub: (() => void)[] = [];
  private toastedEvents = new Set<string>();
  private timers = new Map<string, ReturnType<typeof setTimeout>>();
  private refreshTimer?: ReturnType<typeof setTimeout>;
  private refreshing?: Promise<void>;
  private refreshAgain = false;
  private awaited = new Map<string, number>(); // event ids expected in the inbox → tries
  private seenSent = new Set<string>(); // ids a markSeen is on its way for
  private legacy = false; // the server answers lists without counts: the badge shows unread
  private started = false;

  constructor(client: NotifyClient, opts: NotificationStoreOptions = {}) {
    super({
      items: [],
      unread: 0,
      unseen: 0,
      counts: { ...noCounts },
      hasMore: false,
      loaded: false,
      loading: false,
      tab: "all",
      tabItems: [],
      tabHasMore: false,
      tabLoading: false,
      toasts: [],
      connection: client.state,
      pending: client.pendingCalls,
      gaps: 0,
      reloads: 0,
      deliveries: {},
      deliveriesAvailable: true,
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
      c.onInbox((live) => this.onLive(live)),
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
   * Loads the newest page of the inbox and merges it in (and the tab's
   * first page, for another tab); with full, pages on until it meets a
   * notification it already had (at most 10 pages), so everything missed
   * during a gap is back, each event once.
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
          if (this.getState().tab !== "all") await this.loadTab(true);
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
    let counts: InboxCounts | undefined;
    let unreadCount: bigint | undefined;
    for (let page = 0; page < 10; page++) {
      const res = await this.client.listNotifications({ pageSize: this.opts.pageSize, pageToken: token });
      fetched = fetched.concat(res.notifications);
      counts = res.counts;
      unreadCount = res.unreadCount;
      nextToken = res.nextPageToken;
      const metKnown = res.notifications.some((n) => known.has(n.id));
      if (!full || !wasLoaded || metKnown || !nextToken) break;
      token = nextToken;
    }
    const fresh = fetched.map(toItem);
    // What the server listed replaces what was here over the same span of
    // ids (an item archived, snoozed or deleted elsewhere leaves); older
    // items, past the pages fetched, stay.
    const oldest = nextToken && fresh.length ? fresh[fresh.length - 1].id : undefined;
    this.setState((s) => {
      const kept = s.items.filter((i) => oldest !== undefined && newerId(i.id, oldest) > 0);
      const items = dedupe([...fresh, ...kept]);
      const hasMore = s.loaded ? s.hasMore || !!nextToken : !!nextToken;
      return {
        items,
        ...this.withCounts(counts, unreadCount),
        loaded: true,
        hasMore,
        ...(s.tab === "all" ? { tabItems: items, tabHasMore: hasMore } : {}),
      };
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

  /** Loads the next (older) page of the inbox. */
  async loadMore(): Promise<void> {
    if (!this.pageToken) return;
    this.setState({ loading: true });
    try {
      const res = await this.client.listNotifications({ pageSize: this.opts.pageSize, pageToken: this.pageToken });
      this.pageToken = res.nextPageToken;
      const more = res.notifications.map(toItem);
      this.setState((s) => {
        const items = dedupe([...s.items, ...more.filter((m) => !s.items.some((i) => i.id === m.id))]);
        return {
          items,
          hasMore: !!res.nextPageToken,
          ...this.withCounts(res.counts, res.unreadCount),
          error: undefined,
          ...(s.tab === "all" ? { tabItems: items, tabHasMore: !!res.nextPageToken } : {}),
        };
      });
    } catch (err) {
      this.setState({ error: ConnectError.from(err).rawMessage });
    } finally {
      this.setState({ loading: false });
    }
  }

  /** Shows a tab of the center: its list is loaded from the server. */
  async setTab(tab: InboxTab): Promise<void> {
    if (tab === "all") {
      this.tabLoad++;
      this.setState((s) => ({ tab, tabItems: s.items, tabHasMore: s.hasMore, tabLoading: false }));
      return;
    }
    this.setState({ tab, tabItems: [], tabHasMore: false });
    await this.loadTab(true);
  }

  /** Loads the next page of the current tab. */
  async loadMoreTab(): Promise<void> {
    if (this.getState().tab === "all") return this.loadMore();
    if (this.tabToken) await this.loadTab(false);
  }

  private async loadTab(first: boolean): Promise<void> {
    const tab = this.getState().tab;
    if (tab === "all") return;
    const load = ++this.tabLoad;
    this.setState({ tabLoading: true });
    try {
      const res = await this.client.listNotifications({ pageSize: this.opts.pageSize, pageToken: first ? "" : this.tabToken, state: tabState[tab] });
      if (load !== this.tabLoad || this.getState().tab !== tab) return;
      this.tabToken = res.nextPageToken;
      const got = res.notifications.map(toItem);
      this.setState((s) => ({
        tabItems: first ? got : dedupe([...s.tabItems, ...got.filter((g) => !s.tabItems.some((i) => i.id === g.id))]),
        tabHasMore: !!res.nextPageToken,
        ...this.withCounts(res.counts, res.unreadCount),
        error: undefined,
      }));
    } catch (err) {
      this.setState({ error: ConnectError.from(err).rawMessage });
    } finally {
      if (load === this.tabLoad) this.setState({ tabLoading: false });
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

  /**
   * The state's counts from a server answer (unseen and unread also at top
   * level). A server without counts (before they existed) gives the unread
   * count only, which the badge then shows.
   */
  private withCounts(c: InboxCounts | undefined, unreadCount?: bigint): Partial<NotificationState> {
    if (!c) {
      if (unreadCount === undefined) return {};
      this.legacy = true;
      const unread = Number(unreadCount);
      return { unread, unseen: unread, counts: { ...this.getState().counts, unread, unseen: unread } };
    }
    this.legacy = false;
    const counts: Counts = {
      unseen: Number(c.unseen),
      unread: Number(c.unread),
      archived: Number(c.archived),
      snoozed: Number(c.snoozed),
      inbox: Number(c.inbox),
    };
    return { counts, unread: counts.unread, unseen: counts.unseen };
  }

  private onLive(live: InboxLive): void {
    if (this.legacy) live = { ...live, unseen: live.unread };
    const prev = this.getState();
    this.setState((s) => ({ unread: live.unread, unseen: live.unseen, counts: { ...s.counts, unread: live.unread, unseen: live.unseen } }));
    for (const r of live.returned) this.announceReturn(r);
    // A new inbox row: the counts rise after the row is written. Back from
    // snooze, or changed by another client: the lists follow.
    if (live.unread > prev.unread || live.unseen > prev.unseen || live.returned.length > 0 || this.awaited.size > 0) {
      this.scheduleRefresh(0);
    } else if (live.unread !== prev.unread || live.unseen !== prev.unseen) {
      this.scheduleRefresh(200);
    }
  }

  /** A toast for a notification back from snooze. */
  private announceReturn(r: ReturnedNotification): void {
    const v = r.event ? describeEvent(r.event) : undefined;
    this.showToast({ tone: "info", title: v ? v.title : "A notification is back", message: "Back from snooze", eventId: r.event?.id });
  }

  // ---- state changes ------------------------------------------------------

  /**
   * Applies change to the items with these ids, here at once (both lists,
   * and the counts), then sends it; the server's answer sets the counts.
   * Items that no longer belong to a list leave it.
   */
  private async change<R extends { counts?: InboxCounts; unreadCount?: bigint }>(
    ids: string[],
    patch: (i: NotificationItem) => NotificationItem,
    send: () => Promise<R>,
  ): Promise<void> {
    const want = new Set(ids);
    const now = Date.now();
    this.setState((s) => {
      const counts = { ...s.counts };
      const seenIds = new Set<string>();
      const apply = (list: NotificationItem[], tab: InboxTab, countIt: boolean) =>
        list
          .map((i) => {
            if (!want.has(i.id)) return i;
            const next = patch(i);
            if (countIt && !seenIds.has(i.id)) {
              seenIds.add(i.id);
              adjust(counts, i, next, now);
            }
            return next;
          })
          .filter((i) => !want.has(i.id) || inTab(tab, i, now));
      const items = apply(s.items, "all", true);
      const tabItems = s.tab === "all" ? items : apply(s.tabItems, s.tab, true);
      return { items, tabItems, counts, unread: counts.unread, unseen: counts.unseen };
    });
    try {
      const res = await send();
      if (res.counts) this.setState(this.withCounts(res.counts));
      else if (res.unreadCount !== undefined) {
        const unread = Number(res.unreadCount);
        this.setState((s) => ({ unread, counts: { ...s.counts, unread } }));
      }
    } catch (err) {
      this.fail(err);
    }
  }

  /** Marks one notification read (and seen): at once here, then on the server (queued while offline). */
  async markRead(id: string): Promise<void> {
    const it = this.find(id);
    if (!it || it.read) return;
    await this.change([id], (i) => ({ ...i, read: true, seen: true }), () => this.client.markRead([id]));
  }

  /** Marks notifications read. */
  async markReadMany(ids: string[]): Promise<void> {
    if (ids.length === 0) return;
    await this.change(ids, (i) => ({ ...i, read: true, seen: true }), () => this.client.markRead(ids));
  }

  /** Marks notifications unread. */
  async markUnread(ids: string[]): Promise<void> {
    if (ids.length === 0) return;
    await this.change(ids, (i) => ({ ...i, read: false }), () => this.client.markUnread(ids));
  }

  /**
   * Marks notifications seen (the center calls it for what it shows while
   * open); ids already seen, or already being marked, are skipped.
   */
  async markSeen(ids: string[]): Promise<void> {
    const todo = ids.filter((id) => !this.seenSent.has(id) && this.find(id)?.seen === false);
    if (todo.length === 0) return;
    todo.forEach((id) => this.seenSent.add(id));
    try {
      await this.change(todo, (i) => ({ ...i, seen: true }), () => this.client.markSeen(todo));
    } finally {
      todo.forEach((id) => this.seenSent.delete(id));
    }
  }

  /** Archives notifications. */
  async archive(ids: string[]): Promise<void> {
    if (ids.length === 0) return;
    await this.change(ids, (i) => ({ ...i, archived: true, snoozedUntil: undefined }), () => this.client.archive(ids));
  }

  /** Moves archived notifications back to the inbox. */
  async unarchive(ids: string[]): Promise<void> {
    if (ids.length === 0) return;
    await this.change(ids, (i) => ({ ...i, archived: false }), () => this.client.unarchive(ids));
    void this.refresh();
  }

  /** Snoozes notifications until a time: they come back unseen and unread. */
  async snooze(ids: string[], until: Date): Promise<void> {
    if (ids.length === 0) return;
    await this.change(
      ids,
      (i) => ({ ...i, snoozedUntil: until, archived: false, seen: false, read: false }),
      () => this.client.snooze(ids, until),
    );
  }

  /** Brings snoozed notifications back now. */
  async unsnooze(ids: string[]): Promise<void> {
    if (ids.length === 0) return;
    await this.change(ids, (i) => ({ ...i, snoozedUntil: undefined }), () => this.client.unsnooze(ids));
    void this.refresh();
  }

  /** Marks every notification of the inbox read. */
  async markAllRead(): Promise<void> {
    const ids = this.getState().items.filter((i) => !i.read).map((i) => i.id);
    // The stream's counts follow, for the items not loaded here.
    await this.change(ids, (i) => ({ ...i, read: true, seen: true }), () => this.client.markAllRead());
  }

  /** Marks every notification of the inbox seen. */
  async markAllSeen(): Promise<void> {
    const ids = this.getState().items.filter((i) => !i.seen).map((i) => i.id);
    await this.bulk(ids, (i) => ({ ...i, seen: true }), { action: InboxAction.SEEN });
  }

  /** Archives every read notification of the inbox. */
  async archiveAllRead(): Promise<void> {
    const ids = this.getState().items.filter((i) => i.read).map((i) => i.id);
    await this.bulk(ids, (i) => ({ ...i, archived: true, snoozedUntil: undefined }), {
      action: InboxAction.ARCHIVE,
      filter: { state: ProtoState.READ },
    });
  }

  /** Deletes every notification matching a filter (the archived ones, ...). */
  async deleteWhere(filter: MessageInitShape<typeof InboxFilterSchema>): Promise<void> {
    await this.bulk([], (i) => i, { action: InboxAction.DELETE, filter });
    void this.refresh();
  }

  private async bulk(
    known: string[],
    patch: (i: NotificationItem) => NotificationItem,
    req: { action: InboxAction; filter?: MessageInitShape<typeof InboxFilterSchema> },
  ): Promise<void> {
    await this.change(known, patch, () => this.client.bulkUpdate(req));
  }

  /** Deletes one notification. */
  async remove(id: string): Promise<void> {
    if (!this.find(id)) return;
    await this.change([id], (i) => ({ ...i, deleted: true }) as NotificationItem, () => this.client.deleteNotification(id));
  }

  /** Deletes notifications. */
  async removeMany(ids: string[]): Promise<void> {
    for (const id of ids) await this.remove(id);
  }

  /**
   * Takes a notification's confirm action: sends its ConfirmAction (queued
   * while offline, safe to repeat), then marks the notification read.
   */
  async confirm(item: NotificationItem): Promise<void> {
    const a = item.action;
    if (a?.target.case !== "confirm") return;
    try {
      await this.client.confirmAction(a.target.value);
      this.showToast({ tone: "success", title: a.label, message: "Confirmed" });
      await this.markRead(item.id);
    } catch (err) {
      this.fail(err);
    }
  }

  private find(id: string): NotificationItem | undefined {
    const s = this.getState();
    return s.items.find((i) => i.id === id) ?? s.tabItems.find((i) => i.id === id);
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

  /**
   * Changes some preferences: the others (quiet hours, digests, fields of a
   * newer server) are sent back as they were read, since the call replaces
   * them all. Resolves to whether the server took them (on refusal, error
   * says why and the old preferences are back).
   */
  async updatePreferences(p: PreferencesUpdate): Promise<boolean> {
    const cur = this.getState().preferences ?? (await this.loadPreferences());
    const next: PreferencesUpdate = {
      ...(cur ? withoutType(cur) : {}),
      enabled: cur?.enabled ?? true,
      sound: cur?.sound ?? true,
      email: cur?.email ?? false,
      mutedTypes: cur?.mutedTypes ?? [],
      ...p,
    };
    // At once here; the server's answer (or the old value, on failure) follows.
    if (cur) this.setState({ preferences: create(PreferencesSchema, next) });
    try {
      const res = await this.client.updatePreferences(next);
      this.setState({ preferences: res.preferences, error: undefined });
      return true;
    } catch (err) {
      this.setState({ preferences: cur, error: ConnectError.from(err).rawMessage });
      return false;
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
