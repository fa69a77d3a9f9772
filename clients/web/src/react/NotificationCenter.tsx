import { useEffect, useId, useRef, useState } from "react";
import type { NotificationAction } from "../gen/notify/v1/notify_pb";
import { stepText, type DeliveryInfo } from "../lib/deliveries";
import { snoozeLabel, snoozeOptions, type SnoozeOption } from "../lib/snooze";
import type { InboxTab, NotificationItem } from "../lib/store";
import { badgeText, relativeTime, toneIcon } from "./format";
import { useNotifications } from "./useNotifications";

export interface NotificationCenterProps {
  /** Counts above this show as "max+". Default 99. */
  maxBadge?: number;
  /** Open at first render (tests, stories). */
  defaultOpen?: boolean;
  /** The clock of the snooze choices (tests). Default: now. */
  now?: () => Date;
  /**
   * Show where each notification was also sent (web push, email...): its
   * delivery timeline, read while the panel is open and every
   * deliveryRefreshMs while one may still change. Default true.
   */
  deliveries?: boolean;
  /** Default 4000. */
  deliveryRefreshMs?: number;
}

const tabs: { tab: InboxTab; label: string; empty: string }[] = [
  { tab: "unread", label: "Unread", empty: "Nothing unread" },
  { tab: "all", label: "All", empty: "No notifications yet" },
  { tab: "archived", label: "Archived", empty: "Nothing archived" },
  { tab: "snoozed", label: "Snoozed", empty: "Nothing snoozed" },
];

/**
 * A bell with the badge of unseen notifications, and a dropdown of the
 * inbox: tabs (Unread, All, Archived, Snoozed) with their counts, each
 * entry with its priority, category, time and action; click to read;
 * archive, snooze (1 hour, tonight, tomorrow, next week), delete; select
 * several for bulk actions; mark all read, archive all read. What the list
 * shows while open is marked seen.
 */
export function NotificationCenter({
  maxBadge = 99,
  defaultOpen = false,
  now = () => new Date(),
  deliveries = true,
  deliveryRefreshMs = 4000,
}: NotificationCenterProps) {
  const n = useNotifications();
  const [open, setOpen] = useState(defaultOpen);
  const [selected, setSelected] = useState<ReadonlySet<string>>(new Set());
  const [snoozing, setSnoozing] = useState<string[] | null>(null); // ids the snooze menu is open for
  const root = useRef<HTMLDivElement>(null);
  const panelId = useId();

  useEffect(() => {
    if (!open) return;
    const onDown = (e: MouseEvent) => {
      if (root.current && !root.current.contains(e.target as Node)) setOpen(false);
    };
    const onKey = (e: KeyboardEvent) => {
      if (e.key !== "Escape") return;
      if (snoozing) setSnoozing(null);
      else setOpen(false);
    };
    document.addEventListener("mousedown", onDown);
    document.addEventListener("keydown", onKey);
    return () => {
      document.removeEventListener("mousedown", onDown);
      document.removeEventListener("keydown", onKey);
    };
  }, [open, snoozing]);

  // Shown is seen: while the list is open, what it lists is marked seen.
  const { markSeen } = n;
  useEffect(() => {
    if (!open) return;
    const ids = n.tabItems.filter((i) => !i.seen).map((i) => i.id);
    if (ids.length > 0) void markSeen(ids);
  }, [open, n.tabItems, markSeen]);

  // Where the listed notifications were also sent: read when the panel
  // opens (again, whatever was known), then as the list changes, and
  // re-read while a delivery may still change (waiting, retrying).
  const { store } = n;
  const showDeliveries = deliveries && n.deliveriesAvailable;
  const eventIds = n.tabItems.map((i) => i.eventId).join(",");
  const opened = useRef(false);
  useEffect(() => {
    if (!open || !showDeliveries || !eventIds) {
      if (!open) opened.current = false;
      return;
    }
    const ids = eventIds.split(",");
    void store.loadDeliveries(ids, { force: !opened.current });
    opened.current = true;
    const t = setInterval(() => void store.loadDeliveries(ids, { staleMs: deliveryRefreshMs }), deliveryRefreshMs);
    return () => clearInterval(t);
  }, [open, showDeliveries, eventIds, store, deliveryRefreshMs]);

  // A selection belongs to the list it was made in.
  const shown = new Set(n.tabItems.map((i) => i.id));
  const sel = [...selected].filter((id) => shown.has(id));
  useEffect(() => setSelected(new Set()), [n.tab]);

  const toggle = (id: string) =>
    setSelected((s) => {
      const next = new Set(s);
      if (next.has(id)) next.delete(id);
      else next.add(id);
      return next;
    });
  const done = () => {
    setSelected(new Set());
    setSnoozing(null);
  };
  const snooze = (ids: string[], o: SnoozeOption) => {
    done();
    void n.snooze(ids, o.until);
  };

  const countOf: Record<InboxTab, number> = {
    unread: n.counts.unread,
    all: n.counts.inbox,
    archived: n.counts.archived,
    snoozed: n.counts.snoozed,
  };
  const label = n.unseen > 0 ? `Notifications, ${n.unseen} new, ${n.unread} unread` : n.unread > 0 ? `Notifications, ${n.unread} unread` : "Notifications";
  const current = tabs.find((t) => t.tab === n.tab) ?? tabs[1];
  const allSelected = n.tabItems.length > 0 && sel.length === n.tabItems.length;
  return (
    <div className="notify-center" ref={root}>
      <button
        type="button"
        className="notify-bell"
        aria-label={label}
        aria-expanded={open}
        aria-controls={panelId}
        data-testid="notification-bell"
        onClick={() => setOpen((o) => !o)}
      >
        <BellIcon size={22} />
        {n.unseen > 0 && (
          <span className="notify-badge" data-testid="unread-badge" data-count={n.unseen} data-unread={n.unread}>
            {badgeText(n.unseen, maxBadge)}
          </span>
        )}
      </button>
      {open && (
        <div className="notify-panel" id={panelId} role="dialog" aria-label="Notifications" data-testid="notification-panel">
          <div className="notify-panel__head">
            <h2>Notifications</h2>
            <div className="notify-panel__actions">
              {(n.tab === "all" || n.tab === "unread") && (
                <>
                  <button
                    type="button"
                    className="notify-link"
                    data-testid="mark-all-read"
                    disabled={n.unread === 0}
                    onClick={() => void n.markAllRead()}
                  >
                    Mark all as read
                  </button>
                  <button
                    type="button"
                    className="notify-link"
                    data-testid="archive-read"
                    disabled={n.counts.inbox - n.counts.unread <= 0}
                    onClick={() => void n.archiveAllRead()}
                  >
                    Archive read
                  </button>
                </>
              )}
            </div>
          </div>
          <div className="notify-tabs" role="tablist" aria-label="Show">
            {tabs.map((t) => (
              <button
                key={t.tab}
                type="button"
                role="tab"
                className="notify-tab"
                aria-selected={n.tab === t.tab}
                data-testid="notification-tab"
                data-tab={t.tab}
                onClick={() => void n.setTab(t.tab)}
              >
                {t.label}
                {countOf[t.tab] > 0 && (
                  <span className="notify-tab__count" data-testid="tab-count">
                    {badgeText(countOf[t.tab], maxBadge)}
                  </span>
                )}
              </button>
            ))}
          </div>
          {n.tabItems.length > 0 && (
            <div className={`notify-bulk${sel.length > 0 ? " notify-bulk--active" : ""}`} data-testid="bulk-bar" data-selected={sel.length}>
              <label className="notify-bulk__all">
                <input
                  type="checkbox"
                  data-testid="select-all"
                  checked={allSelected}
                  onChange={() => setSelected(allSelected ? new Set() : new Set(n.tabItems.map((i) => i.id)))}
                />
                {sel.length > 0 ? `${sel.length} selected` : "Select all"}
              </label>
              {sel.length > 0 && (
                <span className="notify-bulk__buttons">
                  <button type="button" className="notify-link" data-testid="bulk-read" onClick={() => (done(), void n.markReadMany(sel))}>
                    Read
                  </button>
                  <button type="button" className="notify-link" data-testid="bulk-unread" onClick={() => (done(), void n.markUnread(sel))}>
                    Unread
                  </button>
                  {n.tab === "archived" ? (
                    <button type="button" className="notify-link" data-testid="bulk-unarchive" onClick={() => (done(), void n.unarchive(sel))}>
                      Unarchive
                    </button>
                  ) : (
                    <button type="button" className="notify-link" data-testid="bulk-archive" onClick={() => (done(), void n.archive(sel))}>
                      Archive
                    </button>
                  )}
                  {n.tab === "snoozed" ? (
                    <button type="button" className="notify-link" data-testid="bulk-unsnooze" onClick={() => (done(), void n.unsnooze(sel))}>
                      Unsnooze
                    </button>
                  ) : (
                    <button
                      type="button"
                      className="notify-link"
                      data-testid="bulk-snooze"
                      aria-haspopup="menu"
                      aria-expanded={snoozing !== null && snoozing.length === sel.length && snoozing.every((id) => sel.includes(id))}
                      onClick={() => setSnoozing(sel)}
                    >
                      Snooze
                    </button>
                  )}
                  <button type="button" className="notify-link" data-testid="bulk-delete" onClick={() => (done(), void n.removeMany(sel))}>
                    Delete
                  </button>
                </span>
              )}
            </div>
          )}
          {snoozing && (
            <SnoozeMenu
              options={snoozeOptions(now())}
              count={snoozing.length}
              onPick={(o) => snooze(snoozing, o)}
              onClose={() => setSnoozing(null)}
            />
          )}
          {n.error && (
            <p className="notify-panel__error" role="status" data-testid="notification-error">
              {n.error}
            </p>
          )}
          {n.tabItems.length === 0 ? (
            <div className="notify-empty" data-testid="notification-empty" data-tab={n.tab}>
              {(n.loaded && !n.tabLoading) || n.connection === "disconnected" ? (
                <>
                  <BellIcon className="notify-empty__icon" size={32} />
                  <p>{current.empty}</p>
                </>
              ) : (
                <p>Loading…</p>
              )}
            </div>
          ) : (
            <ul className="notify-list" data-testid="notification-list" data-tab={n.tab}>
              {n.tabItems.map((it) => (
                <Item
                  key={it.id}
                  item={it}
                  deliveries={showDeliveries ? n.deliveries[it.eventId] : undefined}
                  tab={n.tab}
                  selected={selected.has(it.id)}
                  now={now}
                  onSelect={toggle}
                  onRead={n.markRead}
                  onDelete={n.remove}
                  onArchive={(id) => void n.archive([id])}
                  onUnarchive={(id) => void n.unarchive([id])}
                  onSnooze={(id) => setSnoozing([id])}
                  onUnsnooze={(id) => void n.unsnooze([id])}
                  onConfirm={(item) => void n.confirm(item)}
                />
              ))}
            </ul>
          )}
          {n.tabHasMore && (
            <button
              type="button"
              className="notify-more"
              data-testid="notification-load-more"
              disabled={n.loading || n.tabLoading}
              onClick={() => void n.loadMoreTab()}
            >
              {n.loading || n.tabLoading ? "Loading…" : "Older notifications"}
            </button>
          )}
        </div>
      )}
    </div>
  );
}

/** The snooze choices, for one notification or a selection. */
function SnoozeMenu({
  options,
  count,
  onPick,
  onClose,
}: {
  options: SnoozeOption[];
  count: number;
  onPick: (o: SnoozeOption) => void;
  onClose: () => void;
}) {
  const first = useRef<HTMLButtonElement>(null);
  useEffect(() => first.current?.focus(), []);
  return (
    <div className="notify-snooze" role="menu" aria-label={count > 1 ? `Snooze ${count} notifications until` : "Snooze until"} data-testid="snooze-menu">
      <span className="notify-snooze__title">{count > 1 ? `Snooze ${count} until…` : "Snooze until…"}</span>
      {options.map((o, i) => (
        <button
          key={o.choice}
          ref={i === 0 ? first : undefined}
          type="button"
          role="menuitem"
          className="notify-snooze__option"
          data-testid="snooze-option"
          data-choice={o.choice}
          data-until={o.until.toISOString()}
          onClick={() => onPick(o)}
        >
          <span>{o.label}</span>
          <time dateTime={o.until.toISOString()}>{o.choice === "1h" ? "" : snoozeLabel(o.until)}</time>
        </button>
      ))}
      <button type="button" className="notify-link notify-snooze__cancel" data-testid="snooze-cancel" onClick={onClose}>
        Cancel
      </button>
    </div>
  );
}

/** Whether an action's link may be opened here: an http(s) URL or a path of this app. */
export function safeHref(url: string): string | undefined {
  if (url.startsWith("/") && !url.startsWith("//")) return url;
  try {
    const u = new URL(url);
    return u.protocol === "https:" || u.protocol === "http:" ? u.href : undefined;
  } catch {
    return undefined;
  }
}

function ActionButton({ action, item, onConfirm, onRead }: { action: NotificationAction; item: NotificationItem; onConfirm: (i: NotificationItem) => void; onRead: (id: string) => void }) {
  if (action.target.case === "url") {
    const href = safeHref(action.target.value);
    if (!href) return null;
    const external = !href.startsWith("/");
    return (
      <a
        className="notify-action"
        data-testid="notification-action"
        href={href}
        {...(external ? { target: "_blank", rel: "noopener noreferrer" } : {})}
        onClick={() => onRead(item.id)}
        dir="auto"
      >
        {action.label}
      </a>
    );
  }
  if (action.target.case === "confirm") {
    return (
      <button type="button" className="notify-action" data-testid="notification-action" onClick={() => onConfirm(item)} dir="auto">
        {action.label}
      </button>
    );
  }
  return null;
}

function Item({
  item,
  deliveries,
  tab,
  selected,
  now,
  onSelect,
  onRead,
  onDelete,
  onArchive,
  onUnarchive,
  onSnooze,
  onUnsnooze,
  onConfirm,
}: {
  item: NotificationItem;
  deliveries?: DeliveryInfo;
  tab: InboxTab;
  selected: boolean;
  now: () => Date;
  onSelect: (id: string) => void;
  onRead: (id: string) => void;
  onDelete: (id: string) => void;
  onArchive: (id: string) => void;
  onUnarchive: (id: string) => void;
  onSnooze: (id: string) => void;
  onUnsnooze: (id: string) => void;
  onConfirm: (item: NotificationItem) => void;
}) {
  const time = item.time ?? item.createdAt;
  return (
    <li
      className={`notify-item notify-item--${item.tone}${item.read ? "" : " notify-item--unread"}${selected ? " notify-item--selected" : ""}`}
      data-testid="notification-item"
      data-read={item.read ? "true" : "false"}
      data-seen={item.seen ? "true" : "false"}
      data-archived={item.archived ? "true" : "false"}
      data-snoozed={item.snoozedUntil ? "true" : "false"}
      data-priority={item.priority}
      data-category={item.category}
      data-notification-id={item.id}
      data-event-id={item.eventId}
      data-kind={item.kind}
    >
      <input
        type="checkbox"
        className="notify-item__select"
        data-testid="notification-select"
        checked={selected}
        aria-label={`Select: ${item.title}`}
        onChange={() => onSelect(item.id)}
      />
      <button
        type="button"
        className="notify-item__body"
        onClick={() => onRead(item.id)}
        aria-label={`${item.read ? "" : "Unread: "}${item.title}. ${item.message}`}
      >
        <span className={`notify-icon notify-icon--${item.tone}`} aria-hidden="true">
          {toneIcon[item.tone]}
        </span>
        <span className="notify-item__text">
          <span className="notify-item__title" data-testid="notification-title">
            <span className="notify-user-text" dir="auto">
              {item.title}
            </span>
            {item.priority !== "normal" && (
              <span className={`notify-priority notify-priority--${item.priority}`} data-testid="notification-priority">
                {item.priority}
              </span>
            )}
          </span>
          <span className="notify-item__message" dir="auto">
            {item.message}
          </span>
          <span className="notify-item__meta">
            {item.category && (
              <span className="notify-chip" data-testid="notification-category" dir="auto">
                {item.category}
              </span>
            )}
            {item.tags.map((t) => (
              <span key={t} className="notify-chip notify-chip--tag" data-testid="notification-tag" dir="auto">
                #{t}
              </span>
            ))}
            <time className="notify-item__time" dateTime={time.toISOString()} title={time.toLocaleString()}>
              {relativeTime(time)}
            </time>
            {item.snoozedUntil && (
              <span className="notify-item__snoozed" data-testid="notification-snoozed-until" data-until={item.snoozedUntil.toISOString()}>
                back {snoozeLabel(item.snoozedUntil, now())}
              </span>
            )}
          </span>
        </span>
      </button>
      <span className="notify-item__tools">
        {item.action && <ActionButton action={item.action} item={item} onConfirm={onConfirm} onRead={onRead} />}
        {tab === "snoozed" ? (
          <button type="button" className="notify-tool" aria-label="Unsnooze" title="Back to the inbox now" data-testid="notification-unsnooze" onClick={() => onUnsnooze(item.id)}>
            <ToolIcon d="M4 12a8 8 0 1 0 2.3-5.7M4 4v4h4" />
          </button>
        ) : (
          <button type="button" className="notify-tool" aria-label="Snooze" title="Snooze" aria-haspopup="menu" data-testid="notification-snooze" onClick={() => onSnooze(item.id)}>
            <ToolIcon d="M12 21a8 8 0 1 0 0-16 8 8 0 0 0 0 16zm0-12v4l3 2M5 3 2 6m17-3 3 3" />
          </button>
        )}
        {item.archived ? (
          <button type="button" className="notify-tool" aria-label="Unarchive" title="Back to the inbox" data-testid="notification-unarchive" onClick={() => onUnarchive(item.id)}>
            <ToolIcon d="M4 8h16v12H4zM2 4h20v4H2zm10 14v-7m-3 3 3-3 3 3" />
          </button>
        ) : (
          <button type="button" className="notify-tool" aria-label="Archive" title="Archive" data-testid="notification-archive" onClick={() => onArchive(item.id)}>
            <ToolIcon d="M4 8h16v12H4zM2 4h20v4H2zm10 7v7m-3-3 3 3 3-3" />
          </button>
        )}
        <button type="button" className="notify-item__delete" aria-label="Delete notification" data-testid="notification-delete" onClick={() => onDelete(item.id)}>
          ×
        </button>
      </span>
      {deliveries && deliveries.routes.length > 0 && <Deliveries info={deliveries} />}
    </li>
  );
}

/**
 * Where a notification was also sent: one chip per channel and target with
 * its latest step ("Web push: sent", "Email: not sent"), and the whole
 * timeline when opened.
 */
function Deliveries({ info }: { info: DeliveryInfo }) {
  return (
    <details className="notify-deliveries" data-testid="notification-deliveries" data-settled={info.settled ? "true" : "false"}>
      <summary aria-label="Where it was also sent">
        {info.routes.map((r) => (
          <span
            key={`${r.channel}|${r.target}`}
            className={`notify-delivery notify-delivery--${r.state}`}
            data-testid="delivery-route"
            data-channel={r.channel}
            data-state={r.state}
            title={[r.target, r.detail].filter(Boolean).join(": ")}
          >
            {r.channelLabel}: {stepText[r.state]}
          </span>
        ))}
      </summary>
      <ol className="notify-deliveries__steps" data-testid="delivery-steps">
        {info.routes.flatMap((r) =>
          r.steps.map((st, i) => (
            <li key={`${r.channel}|${r.target}|${i}`} data-testid="delivery-step" data-channel={r.channel} data-state={st.state}>
              {st.time && (
                <time dateTime={st.time.toISOString()} title={st.time.toLocaleString()}>
                  {st.time.toLocaleTimeString()}
                </time>
              )}{" "}
              {r.channelLabel}
              {r.target && (
                <>
                  {" "}
                  <span className="notify-user-text" dir="auto">
                    {r.target}
                  </span>
                </>
              )}
              : {stepText[st.state]}
              {st.attempt > 1 ? ` (attempt ${st.attempt})` : ""}
              {st.detail && (
                <>
                  {" — "}
                  <span className="notify-user-text" dir="auto">
                    {st.detail}
                  </span>
                </>
              )}
            </li>
          )),
        )}
      </ol>
    </details>
  );
}

/** A tool's icon, drawn (symbols and emoji need fonts that may be missing). */
function ToolIcon({ d }: { d: string }) {
  return (
    <svg viewBox="0 0 24 24" width={16} height={16} aria-hidden="true" fill="none" stroke="currentColor" strokeWidth="2" strokeLinecap="round" strokeLinejoin="round">
      <path d={d} />
    </svg>
  );
}

/** The bell, drawn (an emoji needs a font that may be missing). */
function BellIcon({ size, className }: { size: number; className?: string }) {
  return (
    <svg
      className={className}
      viewBox="0 0 24 24"
      width={size}
      height={size}
      aria-hidden="true"
      fill="none"
      stroke="currentColor"
      strokeWidth="2"
      data-testid="bell-icon"
    >
      <path
        strokeLinecap="round"
        strokeLinejoin="round"
        d="M15 17h5l-1.4-1.4A2 2 0 0 1 18 14.2V11a6 6 0 0 0-4-5.7V5a2 2 0 1 0-4 0v.3C7.7 6.2 6 8.4 6 11v3.2c0 .5-.2 1-.6 1.4L4 17h5m6 0v1a3 3 0 1 1-6 0v-1m6 0H9"
      />
    </svg>
  );
}
