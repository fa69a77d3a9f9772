import { create } from "@bufbuild/protobuf";
import { durationFromMs, durationMs, timestampDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { useEffect, useState, type FormEvent } from "react";
import { EventType } from "../../gen/notify/v1/events_pb";
import { DigestRuleSchema, type Preferences } from "../../gen/notify/v1/inbox_pb";
import type { Digest } from "../../gen/notify/v1/schedule_pb";
import type { WebPushControl } from "../../lib/push";
import { PushToggle } from "../../react/PushToggle";
import { useNotifications } from "../../react/useNotifications";
import type { Session } from "../session";

const types = Object.entries(EventType)
  .filter(([, v]) => typeof v === "number" && v !== EventType.UNSPECIFIED)
  .map(([name, v]) => ({ name: name.toLowerCase().replace(/_/g, " "), key: name, value: v as EventType }));

/** The event types whose payload has a restaurant_id: their digests can be one per restaurant. */
const perRestaurant = new Set<EventType>(types.map((t) => t.value).filter((t) => t !== EventType.SYSTEM_ALERT && t !== EventType.ADMIN_NOTIFICATION));

/** The digest windows offered, in seconds; "" follows the server, "0" sends each event. */
const windows: [string, string][] = [
  ["", "as the server says"],
  ["0", "each one"],
  ["900", "every 15 minutes"],
  ["3600", "every hour"],
  ["10800", "every 3 hours"],
  ["86400", "once a day"],
];

/** This browser's IANA time zone. */
function browserZone(): string {
  try {
    return Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
  } catch {
    return "UTC";
  }
}

/** The IANA zones the browser knows, UTC first. */
function zones(): string[] {
  try {
    return ["UTC", ...Intl.supportedValuesOf("timeZone").filter((z) => z !== "UTC")];
  } catch {
    return ["UTC", browserZone()];
  }
}

export function Settings({ session, push }: { session: Session; push: WebPushControl }) {
  const n = useNotifications();
  const p = n.preferences;
  useEffect(() => {
    void n.loadPreferences();
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, []);
  return (
    <div className="grid">
      <section className="card" aria-labelledby="push-title">
        <h1 id="push-title">Notifications on this device</h1>
        <p className="muted small">
          When you are away from the app, notify can reach {session.sub} here with a notification from the browser. Events you saw live are not
          pushed again.
        </p>
        <PushToggle control={push} />
      </section>
      {!p ? (
        <section className="card">
          <h2>Notification settings</h2>
          <p className="muted">{n.error ? `Cannot load: ${n.error}` : "Loading…"}</p>
        </section>
      ) : (
        <>
          <LivePreferences p={p} />
          <QuietHoursForm p={p} />
          <DigestForm p={p} />
        </>
      )}
    </div>
  );
}

function LivePreferences({ p }: { p: Preferences }) {
  const n = useNotifications();
  const muted = new Set(p.mutedTypes);
  const toggleType = (t: EventType) => {
    const next = new Set(muted);
    if (next.has(t)) next.delete(t);
    else next.add(t);
    void n.updatePreferences({ mutedTypes: [...next] });
  };
  return (
    <section className="card" aria-labelledby="settings-title">
      <h2 id="settings-title">Notification settings</h2>
      <div className="form" data-testid="preferences">
        <label className="check">
          <input type="checkbox" checked={p.enabled} onChange={(e) => void n.updatePreferences({ enabled: e.target.checked })} data-testid="pref-enabled" />
          Live notifications
        </label>
        <label className="check">
          <input type="checkbox" checked={p.sound} onChange={(e) => void n.updatePreferences({ sound: e.target.checked })} />
          Sound
        </label>
        <label className="check">
          <input type="checkbox" checked={p.email} onChange={(e) => void n.updatePreferences({ email: e.target.checked })} />
          Email me too
        </label>
        <fieldset>
          <legend>Mute these (still kept in the inbox)</legend>
          {types.map((t) => (
            <label key={t.value} className="check">
              <input type="checkbox" checked={muted.has(t.value)} onChange={() => toggleType(t.value)} />
              {t.name}
            </label>
          ))}
        </fieldset>
      </div>
    </section>
  );
}

/**
 * Quiet hours: push and email wait until they end, in the user's time zone
 * (the live stream and the inbox get events at once; critical alerts are
 * sent anyway).
 */
function QuietHoursForm({ p }: { p: Preferences }) {
  const n = useNotifications();
  const [on, setOn] = useState(!!p.quietHours && p.quietHours.start !== p.quietHours.end);
  const [start, setStart] = useState(p.quietHours?.start || "22:00");
  const [end, setEnd] = useState(p.quietHours?.end || "07:00");
  const [zone, setZone] = useState(p.timeZone || browserZone());
  const [status, setStatus] = useState("");
  const [allZones] = useState(zones);
  const save = async (e: FormEvent) => {
    e.preventDefault();
    setStatus("Saving…");
    const ok = await n.updatePreferences({ timeZone: zone, quietHours: on ? { start, end } : undefined });
    setStatus(ok ? "Saved." : `Not saved: ${n.store.getState().error ?? "refused"}`);
  };
  const stored = p.quietHours && p.quietHours.start !== p.quietHours.end ? `${p.quietHours.start}–${p.quietHours.end} (${p.timeZone || "UTC"})` : "none";
  return (
    <section className="card" aria-labelledby="quiet-title">
      <h2 id="quiet-title">Quiet hours</h2>
      <p className="muted small">
        Push and email wait until quiet hours end; the app still shows everything at once. Critical alerts are sent anyway. Now:{" "}
        <span data-testid="quiet-stored">{stored}</span>
      </p>
      <form className="form" onSubmit={save} data-testid="quiet-form">
        <label className="check">
          <input type="checkbox" checked={on} onChange={(e) => setOn(e.target.checked)} data-testid="quiet-enabled" />
          Hold push and email at night
        </label>
        <div className="form-row">
          <label>
            From
            <input type="time" value={start} onChange={(e) => setStart(e.target.value)} disabled={!on} required data-testid="quiet-start" />
          </label>
          <label>
            Until
            <input type="time" value={end} onChange={(e) => setEnd(e.target.value)} disabled={!on} required data-testid="quiet-end" />
          </label>
        </div>
        <label>
          Time zone
          <select value={zone} onChange={(e) => setZone(e.target.value)} data-testid="time-zone">
            {(allZones.includes(zone) ? allZones : [zone, ...allZones]).map((z) => (
              <option key={z} value={z}>
                {z}
              </option>
            ))}
          </select>
        </label>
        <button type="submit" className="btn" data-testid="quiet-save">
          Save quiet hours
        </button>
        {status && (
          <p className="small" role="status" data-testid="quiet-status">
            {status}
          </p>
        )}
      </form>
    </section>
  );
}

type DigestChoice = { window: string; perRestaurant: boolean };

function choicesOf(p: Preferences): Record<number, DigestChoice> {
  const out: Record<number, DigestChoice> = {};
  for (const d of p.digests) {
    out[d.eventType] = { window: d.window ? String(Math.round(durationMs(d.window) / 1000)) : "0", perRestaurant: d.key === "restaurant_id" };
  }
  return out;
}

/**
 * Digests: per event type, one summary on push and email per window
 * instead of one message per event (the inbox and the live stream still
 * get each event at once).
 */
function DigestForm({ p }: { p: Preferences }) {
  const n = useNotifications();
  const [choices, setChoices] = useState(() => choicesOf(p));
  const [status, setStatus] = useState("");
  const [open, setOpen] = useState<Digest[] | null>(null);
  const [openError, setOpenError] = useState("");

  /** Reads the open digests; false when the server has no ScheduleService. */
  const loadOpen = async (): Promise<boolean> => {
    try {
      setOpen((await n.client.listDigests()).digests);
      setOpenError("");
    } catch (err) {
      const e = ConnectError.from(err);
      setOpenError(e.code === Code.Unimplemented ? "this server keeps no digests" : e.rawMessage);
      return e.code !== Code.Unimplemented;
    }
    return true;
  };
  // Events join open digests as they come: read them again every few seconds.
  useEffect(() => {
    let t: ReturnType<typeof setInterval> | undefined;
    let gone = false;
    void loadOpen().then((more) => {
      if (more && !gone) t = setInterval(() => void loadOpen().then((again) => again || clearInterval(t)), 4000);
    });
    return () => {
      gone = true;
      clearInterval(t);
    };
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, []);

  const set = (t: EventType, c: Partial<DigestChoice>) =>
    setChoices((cur) => ({ ...cur, [t]: { ...(cur[t] ?? { window: "", perRestaurant: false }), ...c } }));
  const save = async (e: FormEvent) => {
    e.preventDefault();
    setStatus("Saving…");
    const digests = types
      .filter((t) => (choices[t.value]?.window ?? "") !== "")
      .map((t) => {
        const c = choices[t.value];
        const secs = Number(c.window);
        return create(DigestRuleSchema, {
          eventType: t.value,
          // Zero: this type is sent one by one, whatever the server's digests.
          window: durationFromMs(secs * 1000),
          key: secs > 0 && c.perRestaurant && perRestaurant.has(t.value) ? "restaurant_id" : "",
        });
      });
    const ok = await n.updatePreferences({ digests });
    setStatus(ok ? "Saved." : `Not saved: ${n.store.getState().error ?? "refused"}`);
    if (ok) setChoices(choicesOf(n.store.getState().preferences ?? p));
  };
  const release = async () => {
    try {
      const res = await n.client.releaseDigest();
      setStatus(`Sent ${res.released.length} summar${res.released.length === 1 ? "y" : "ies"} now.`);
    } catch (err) {
      setStatus(`Not sent: ${ConnectError.from(err).rawMessage}`);
    }
    await loadOpen();
  };

  return (
    <section className="card card--wide" aria-labelledby="digest-title">
      <h2 id="digest-title">Summaries</h2>
      <p className="muted small">Instead of a push or an email for each event, one summary per period, with the count and the points added up.</p>
      <form className="form" onSubmit={save} data-testid="digest-form">
        <table className="digest-table">
          <thead>
            <tr>
              <th scope="col">Event</th>
              <th scope="col">Push and email</th>
              <th scope="col">Per restaurant</th>
            </tr>
          </thead>
          <tbody>
            {types.map((t) => {
              const c = choices[t.value] ?? { window: "", perRestaurant: false };
              const summarized = Number(c.window) > 0;
              return (
                <tr key={t.value} data-testid="digest-row" data-type={t.key}>
                  <th scope="row">{t.name}</th>
                  <td>
                    <select aria-label={`${t.name}: how often`} value={c.window} onChange={(e) => set(t.value, { window: e.target.value })} data-testid="digest-window">
                      {windows.map(([v, label]) => (
                        <option key={v} value={v}>
                          {label}
                        </option>
                      ))}
                    </select>
                  </td>
                  <td>
                    {perRestaurant.has(t.value) && (
                      <input
                        type="checkbox"
                        aria-label={`${t.name}: one summary per restaurant`}
                        checked={c.perRestaurant}
                        disabled={!summarized}
                        onChange={(e) => set(t.value, { perRestaurant: e.target.checked })}
                        data-testid="digest-per-restaurant"
                      />
                    )}
                  </td>
                </tr>
              );
            })}
          </tbody>
        </table>
        <button type="submit" className="btn" data-testid="digest-save">
          Save summaries
        </button>
        {status && (
          <p className="small" role="status" data-testid="digest-status">
            {status}
          </p>
        )}
      </form>
      <h3>Waiting to be summarized</h3>
      {openError ? (
        <p className="muted small">Cannot list them: {openError}</p>
      ) : !open ? (
        <p className="muted small">Loading…</p>
      ) : open.length === 0 ? (
        <p className="muted small" data-testid="open-digests-empty">
          Nothing waiting.
        </p>
      ) : (
        <>
          <ul className="feed" data-testid="open-digests">
            {open.map((d) => (
              <li key={`${d.eventType}|${d.key}`} className="feed__item" data-testid="open-digest" data-type={EventType[d.eventType]}>
                {Number(d.count)} {(EventType[d.eventType] ?? "event").toLowerCase().replace(/_/g, " ")}
                {d.points ? ` (${Number(d.points) > 0 ? "+" : ""}${Number(d.points)} points)` : ""}
                {d.key ? ` at ${d.key}` : ""}
                {d.closeTime && <span className="muted small"> · sent at {timestampDate(d.closeTime).toLocaleTimeString()}</span>}
              </li>
            ))}
          </ul>
          <button type="button" className="btn btn--ghost" onClick={() => void release()} data-testid="digest-release">
            Send the summaries now
          </button>
        </>
      )}
    </section>
  );
}
