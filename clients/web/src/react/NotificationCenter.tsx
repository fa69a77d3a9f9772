import { useEffect, useId, useRef, useState } from "react";
import type { NotificationItem } from "../lib/store";
import { badgeText, relativeTime, toneIcon } from "./format";
import { useNotifications } from "./useNotifications";

export interface NotificationCenterProps {
  /** Counts above this show as "max+". Default 99. */
  maxBadge?: number;
  /** Open at first render (tests, stories). */
  defaultOpen?: boolean;
}

/**
 * A bell with the unread badge, and a dropdown of the inbox: unread entries
 * highlighted, click to mark read, mark all read, delete, priority and time,
 * an empty state and paging.
 */
export function NotificationCenter({ maxBadge = 99, defaultOpen = false }: NotificationCenterProps) {
  const n = useNotifications();
  const [open, setOpen] = useState(defaultOpen);
  const root = useRef<HTMLDivElement>(null);
  const panelId = useId();

  useEffect(() => {
    if (!open) return;
    const onDown = (e: MouseEvent) => {
      if (root.current && !root.current.contains(e.target as Node)) setOpen(false);
    };
    const onKey = (e: KeyboardEvent) => {
      if (e.key === "Escape") setOpen(false);
    };
    document.addEventListener("mousedown", onDown);
    document.addEventListener("keydown", onKey);
    return () => {
      document.removeEventListener("mousedown", onDown);
      document.removeEventListener("keydown", onKey);
    };
  }, [open]);

  const label = n.unread > 0 ? `Notifications, ${n.unread} unread` : "Notifications";
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
        {n.unread > 0 && (
          <span className="notify-badge" data-testid="unread-badge" data-count={n.unread}>
            {badgeText(n.unread, maxBadge)}
          </span>
        )}
      </button>
      {open && (
        <div className="notify-panel" id={panelId} role="dialog" aria-label="Notifications" data-testid="notification-panel">
          <div className="notify-panel__head">
            <h2>Notifications</h2>
            <button
              type="button"
              className="notify-link"
              data-testid="mark-all-read"
              disabled={n.unread === 0}
              onClick={() => void n.markAllRead()}
            >
              Mark all as read
            </button>
          </div>
          {n.error && (
            <p className="notify-panel__error" role="status" data-testid="notification-error">
              {n.error}
            </p>
          )}
          {n.items.length === 0 ? (
            <div className="notify-empty" data-testid="notification-empty">
              {n.loaded || n.connection === "disconnected" ? (
                <>
                  <BellIcon className="notify-empty__icon" size={32} />
                  <p>No notifications yet</p>
                </>
              ) : (
                <p>Loading…</p>
              )}
            </div>
          ) : (
            <ul className="notify-list" data-testid="notification-list">
              {n.items.map((it) => (
                <Item key={it.id} item={it} onRead={n.markRead} onDelete={n.remove} />
              ))}
            </ul>
          )}
          {n.hasMore && (
            <button
              type="button"
              className="notify-more"
              data-testid="notification-load-more"
              disabled={n.loading}
              onClick={() => void n.loadMore()}
            >
              {n.loading ? "Loading…" : "Older notifications"}
            </button>
          )}
        </div>
      )}
    </div>
  );
}

function Item({
  item,
  onRead,
  onDelete,
}: {
  item: NotificationItem;
  onRead: (id: string) => void;
  onDelete: (id: string) => void;
}) {
  const time = item.time ?? item.createdAt;
  return (
    <li
      className={`notify-item notify-item--${item.tone}${item.read ? "" : " notify-item--unread"}`}
      data-testid="notification-item"
      data-read={item.read ? "true" : "false"}
      data-notification-id={item.id}
      data-event-id={item.eventId}
      data-kind={item.kind}
    >
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
          <time className="notify-item__time" dateTime={time.toISOString()} title={time.toLocaleString()}>
            {relativeTime(time)}
          </time>
        </span>
      </button>
      <button
        type="button"
        className="notify-item__delete"
        aria-label="Delete notification"
        data-testid="notification-delete"
        onClick={() => onDelete(item.id)}
      >
        ×
      </button>
    </li>
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
