import { useMemo, useState, type FormEvent } from "react";
import { AlertLevel, AlertSource } from "../../gen/notify/v1/events_pb";
import { relativeTime } from "../../react/format";
import { useNotifications } from "../../react/useNotifications";
import { now } from "../demo";
import type { Session } from "../session";

const levels: [string, AlertLevel][] = [
  ["info", AlertLevel.INFO],
  ["warning", AlertLevel.WARNING],
  ["error", AlertLevel.ERROR],
  ["critical", AlertLevel.CRITICAL],
];

export function AdminAlerts({ session }: { session: Session }) {
  const n = useNotifications();
  const alerts = useMemo(() => n.items.filter((i) => i.kind === "systemAlert" || i.kind === "adminNotification"), [n.items]);
  const [level, setLevel] = useState<AlertLevel>(AlertLevel.WARNING);
  const [title, setTitle] = useState("High load");
  const [message, setMessage] = useState("Redemptions are slower than usual.");
  const [status, setStatus] = useState("");

  const publish = async (e: FormEvent) => {
    e.preventDefault();
    setStatus("Publishing…");
    try {
      // Admins may publish system alerts themselves.
      await n.client.publish({
        payload: { case: "systemAlert", value: { level, title, message, source: AlertSource.SYSTEM, occurredAt: now() } },
      });
      setStatus("Published.");
    } catch (err) {
      setStatus(`Failed: ${err instanceof Error ? err.message : String(err)}`);
    }
  };

  return (
    <div className="grid">
      <section className="card" aria-labelledby="alerts-title">
        <h1 id="alerts-title">System alerts</h1>
        <p className="muted">
          Signed in as admin {session.sub}. {n.unread} unread.
        </p>
        {alerts.length === 0 ? (
          <p className="muted" data-testid="alerts-empty">
            No alerts. All quiet.
          </p>
        ) : (
          <ul className="feed" data-testid="alert-list">
            {alerts.map((a) => (
              <li
                key={a.id}
                className={`feed__item feed__item--${a.tone}${a.read ? "" : " feed__item--unread"}`}
                data-testid="alert-item"
                data-priority={a.priority}
              >
                <strong className="user-text" dir="auto">
                  {a.title}
                </strong>{" "}
                {a.priority !== "normal" && <span className={`notify-priority notify-priority--${a.priority}`}>{a.priority}</span>}
                <div className="muted user-text feed__message" dir="auto">
                  {a.message}
                </div>
                <time className="muted small">{relativeTime(a.time)}</time>{" "}
                {!a.read && (
                  <button type="button" className="notify-link small" onClick={() => void n.markRead(a.id)}>
                    Mark read
                  </button>
                )}
              </li>
            ))}
          </ul>
        )}
      </section>
      <section className="card" aria-labelledby="publish-title">
        <h2 id="publish-title">Raise an alert</h2>
        <form className="form" onSubmit={publish} data-testid="alert-form">
          <label>
            Level
            <select value={level} onChange={(e) => setLevel(Number(e.target.value) as AlertLevel)}>
              {levels.map(([name, v]) => (
                <option key={v} value={v}>
                  {name}
                </option>
              ))}
            </select>
          </label>
          <label>
            Title
            <input value={title} onChange={(e) => setTitle(e.target.value)} required />
          </label>
          <label>
            Message
            <input value={message} onChange={(e) => setMessage(e.target.value)} />
          </label>
          <button type="submit" className="btn" data-testid="alert-submit">
            Publish to admins
          </button>
          {status && (
            <p className="small" role="status">
              {status}
            </p>
          )}
        </form>
      </section>
    </div>
  );
}
