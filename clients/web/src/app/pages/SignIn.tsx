import { useState, type FormEvent } from "react";
import { signIn, type Identity, type Role, type Session } from "../session";

const presets: { id: string; label: string; who: Identity; note: string }[] = [
  { id: "guest", label: "Demo guest", who: { role: "guest", sub: "g1" }, note: "card g1: live points balance" },
  { id: "restaurant", label: "Demo restaurant", who: { role: "restaurant", sub: "rest1", restaurantId: "r1" }, note: "r1: live transactions" },
  { id: "cashier", label: "Demo cashier", who: { role: "cashier", sub: "cash1", restaurantId: "r1" }, note: "r1: the till's view" },
  { id: "admin", label: "Demo admin", who: { role: "admin", sub: "adm1" }, note: "system alerts" },
];

export function SignIn({ onSignedIn }: { onSignedIn: (s: Session) => void }) {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState("");
  const [role, setRole] = useState<Role>("guest");
  const [sub, setSub] = useState("g1");
  const [restaurantId, setRestaurantId] = useState("r1");
  const [rooms, setRooms] = useState("");

  const go = async (who: Identity) => {
    setBusy(true);
    setError("");
    try {
      onSignedIn(await signIn(who));
    } catch (err) {
      setError(err instanceof Error ? err.message : String(err));
    } finally {
      setBusy(false);
    }
  };

  const submit = (e: FormEvent) => {
    e.preventDefault();
    const needsRestaurant = role === "restaurant" || role === "cashier";
    void go({
      role,
      sub: sub.trim(),
      restaurantId: needsRestaurant || restaurantId.trim() ? restaurantId.trim() : undefined,
      rooms: rooms
        .split(",")
        .map((r) => r.trim())
        .filter(Boolean),
    });
  };

  return (
    <main className="signin">
      <section className="card signin__card">
        <h1>
          <span aria-hidden="true">★</span> Max Loyalty
        </h1>
        <p className="muted">Sign in to the notify demo (tokens from this dev-mode server).</p>
        <div className="presets">
          {presets.map((p) => (
            <button key={p.id} type="button" className="preset" data-testid={`signin-${p.id}`} disabled={busy} onClick={() => void go(p.who)}>
              <strong>{p.label}</strong>
              <span>{p.note}</span>
            </button>
          ))}
        </div>
        <details className="custom">
          <summary>Someone else</summary>
          <form onSubmit={submit} className="form">
            <label>
              Role
              <select value={role} onChange={(e) => setRole(e.target.value as Role)} data-testid="signin-role">
                <option value="guest">guest</option>
                <option value="restaurant">restaurant</option>
                <option value="cashier">cashier</option>
                <option value="admin">admin</option>
              </select>
            </label>
            <label>
              User id
              <input value={sub} onChange={(e) => setSub(e.target.value)} required data-testid="signin-sub" />
            </label>
            <label>
              Restaurant id
              <input value={restaurantId} onChange={(e) => setRestaurantId(e.target.value)} data-testid="signin-restaurant-id" />
            </label>
            <label>
              Rooms (optional, comma-separated; default: the role's rooms)
              <input value={rooms} onChange={(e) => setRooms(e.target.value)} placeholder="guest:g1, user:g1" data-testid="signin-rooms" />
            </label>
            <button type="submit" className="btn" disabled={busy} data-testid="signin-submit">
              Sign in
            </button>
          </form>
        </details>
        {error && (
          <p className="error" role="alert" data-testid="signin-error">
            {error}
          </p>
        )}
      </section>
    </main>
  );
}
