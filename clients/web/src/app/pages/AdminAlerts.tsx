import { durationFromMs, timestampDate, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { useCallback, useEffect, useMemo, useState, type FormEvent } from "react";
import { AlertLevel, AlertSource } from "../../gen/notify/v1/events_pb";
import { ScheduledState, type ScheduledPublish } from "../../gen/notify/v1/notify_pb";
import { relativeTime } from "../../react/format";
import { useNotifications } from "../../react/useNotifications";
import { now, randomId } from "../demo";
import type { Session } from "../session";

type When = "now" | "in" | "at";

/** A datetime-local input's value for a time (local, to the minute). */
function localInput(d: Date): string {
  const p = (n: number) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}`;
}

const stateName: Record<ScheduledState, string> = {
  [ScheduledState.UNSPECIFIED]: "unknown",
  [ScheduledState.PENDING]: "pending",
  [ScheduledState.RUNNING]: "publishing",
  [ScheduledState.PUBLISHED]: "published",
  [ScheduledState.CANCELLED]: "cancelled",
  [ScheduledState.FAILED]: "failed",
};

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
  const [when, setWhen] = useState<When>("now");
  const [minutes, setMinutes] = useState(5);
  const [at, setAt] = useState(() => localInput(new Date(Date.now() + 3_600_000)));
  const [scheduled, setScheduled] = useState<ScheduledPublish[] | null>(null);
  const [listError, setListError] = useState("");

  /** Reads the list; false when the server has no ScheduleService (asking again is pointless). */
  const loadScheduled = useCallback(async (): Promise<boolean> => {
    try {
      setScheduled((await n.client.listScheduled({ includeDone: true, pageSize: 50 })).scheduled);
      setListError("");
    } catch (err) {
      const e = ConnectError.from(err);
      if (e.code === Code.Unimplemented) {
        setListError("this server does not schedule publishes");
        return false;
      }
      setListError(e.rawMessage);
    }
    return true;
  }, [n.client]);
  // What waits for its time changes by itself: read again every few seconds.
  useEffect(() => {
    let t: ReturnType<typeof setInterval> | undefined;
    let gone = false;
    void loadScheduled().then((more) => {
      if (more && !gone) t = setInterval(() => void loadScheduled().then((again) => again || clearInterval(t)), 3000);
    });
    return () => {
      gone = true;
      clearInterval(t);
    };
  }, [loadScheduled]);

  const publish = async (e: FormEvent) => {
    e.preventDefault();
    setStatus(when === "now" ? "Publishing…" : "Scheduling…");
    try {
      // Admins may publish system alerts themselves, now or later; a
      // scheduled one gets a cancel key to cancel it by.
      const later =
        when === "in"
          ? { delay: durationFromMs(minutes * 60_000), cancelKey: randomId("alert-") }
          : when === "at"
            ? { deliverAt: timestampFromDate(new Date(at)), cancelKey: randomId("alert-") }
            : {};
      const res = await n.client.publish({
        payload: { case: "systemAlert", value: { level, title, message, source: AlertSource.SYSTEM, occurredAt: now() } },
        ...later,
      });
      if (res.scheduled) {
        const t = res.scheduled.deliverTime ? timestampDate(res.scheduled.deliverTime) : undefined;
        setStatus(`Scheduled${t ? ` for ${t.toLocaleString()}` : ""}.`);
        void loadScheduled();
      } else {
        setStatus("Published.");
      }
    } catch (err) {
      setStatus(`Failed: ${err instanceof Error ? err.message : String(err)}`);
    }
  };

  const cancel = async (sp: ScheduledPublish) => {
    try {
      await n.client.cancelScheduled(sp.cancelKey ? { cancelKey: sp.cancelKey } : { id: sp.id });
      setStatus("Cancelled.");
    } catch (err) {
      setStatus(`Not cancelled: ${ConnectError.from(err).rawMessage}`);
    }
    void loadScheduled();
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
          <label>
            When
            <select value={when} onChange={(e) => setWhen(e.target.value as When)} data-testid="alert-when">
              <option value="now">now</option>
              <option value="in">in some minutes</option>
              <option value="at">at a time</option>
            </select>
          </label>
          {when === "in" && (
            <label>
              Minutes from now
              <input
                type="number"
                min={1}
                max={129600}
                value={minutes}
                onChange={(e) => setMinutes(Math.max(1, Number(e.target.value) || 1))}
                data-testid="alert-delay-minutes"
              />
            </label>
          )}
          {when === "at" && (
            <label>
              At (your local time)
              <input type="datetime-local" value={at} onChange={(e) => setAt(e.target.value)} required data-testid="alert-deliver-at" />
            </label>
          )}
          <button type="submit" className="btn" data-testid="alert-submit">
            {when === "now" ? "Publish to admins" : "Schedule for admins"}
          </button>
          {status && (
            <p className="small" role="status" data-testid="alert-status">
              {status}
            </p>
          )}
        </form>
      </section>
      <section className="card" aria-labelledby="scheduled-title">
        <h2 id="scheduled-title">Scheduled alerts</h2>
        {listError ? (
          <p className="muted small">Cannot list them: {listError}</p>
        ) : !scheduled ? (
          <p className="muted small">Loading…</p>
        ) : scheduled.length === 0 ? (
          <p className="muted small" data-testid="scheduled-empty">
            Nothing scheduled.
          </p>
        ) : (
          <ul className="feed" data-testid="scheduled-list">
            {scheduled.map((sp) => {
              const req = sp.request?.payload;
              const what = req?.case === "systemAlert" ? req.value.title : (sp.request?.payload.case ?? "event");
              const t = sp.deliverTime ? timestampDate(sp.deliverTime) : undefined;
              return (
                <li
                  key={sp.id}
                  className="feed__item"
                  data-testid="scheduled-item"
                  data-state={stateName[sp.state]}
                  data-id={sp.id}
                  data-cancel-key={sp.cancelKey}
                >
                  <strong className="user-text" dir="auto">
                    {what}
                  </strong>{" "}
                  <span className="muted small" data-testid="scheduled-state">
                    {stateName[sp.state]}
                  </span>
                  {t && (
                    <time className="muted small" dateTime={t.toISOString()}>
                      {t.toLocaleString()}
                    </time>
                  )}
                  {sp.detail && <div className="muted small">{sp.detail}</div>}
                  {sp.state === ScheduledState.PENDING && (
                    <button type="button" className="notify-link small" onClick={() => void cancel(sp)} data-testid="scheduled-cancel">
                      Cancel
                    </button>
                  )}
                </li>
              );
            })}
          </ul>
        )}
      </section>
    </div>
  );
}
