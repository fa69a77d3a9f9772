import { useEffect } from "react";
import { EventType } from "../../gen/notify/v1/events_pb";
import { useNotifications } from "../../react/useNotifications";

const types = Object.entries(EventType)
  .filter(([, v]) => typeof v === "number" && v !== EventType.UNSPECIFIED)
  .map(([name, v]) => ({ name: name.toLowerCase().replace(/_/g, " "), value: v as EventType }));

export function Settings() {
  const n = useNotifications();
  const p = n.preferences;
  useEffect(() => {
    void n.loadPreferences();
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, []);
  if (!p) {
    return (
      <section className="card">
        <h1>Notification settings</h1>
        <p className="muted">{n.error ? `Cannot load: ${n.error}` : "Loading…"}</p>
      </section>
    );
  }
  const muted = new Set(p.mutedTypes);
  const toggleType = (t: EventType) => {
    const next = new Set(muted);
    if (next.has(t)) next.delete(t);
    else next.add(t);
    void n.updatePreferences({ mutedTypes: [...next] });
  };
  return (
    <section className="card" aria-labelledby="settings-title">
      <h1 id="settings-title">Notification settings</h1>
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
