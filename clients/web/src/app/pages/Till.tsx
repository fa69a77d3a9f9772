import { useState } from "react";
import type { Session } from "../session";
import { Feed, useRestaurantFeeds } from "./restaurantFeeds";

/**
 * A cashier's till: the guests' confirmations to act on and the
 * restaurant's transactions. The owner's figures (the day's totals, points
 * activity) are the dashboard's, not the till's.
 */
export function Till({ session }: { session: Session }) {
  const rid = session.restaurantId ?? "";
  const f = useRestaurantFeeds(rid);
  const [demoError, setDemoError] = useState("");

  const ringUp = async () => {
    setDemoError("");
    try {
      await f.simulatePurchase();
    } catch (err) {
      setDemoError(err instanceof Error ? err.message : String(err));
    }
  };

  return (
    <div className="grid" data-testid="till">
      <section className="card" aria-labelledby="till-title">
        <h1 id="till-title">Till at restaurant {rid}</h1>
        <p className="muted">
          Signed in as cashier {session.sub}. Guests' confirmations and this restaurant's transactions arrive here live.
        </p>
        {f.gap && (
          <p className="banner banner--warning" data-testid="feed-gap">
            Some live updates were missed while offline; the lists may be incomplete.
          </p>
        )}
        <div className="actions">
          <button type="button" className="btn btn--ghost" onClick={() => void ringUp()} data-testid="demo-purchase">
            Demo: ring up a purchase
          </button>
        </div>
        {demoError && (
          <p className="error small" role="alert">
            {demoError}
          </p>
        )}
      </section>
      <Feed title="Guest confirmations" testid="confirmation" entries={f.confirmations} empty="No confirmations yet." />
      <Feed title="Transactions" testid="transaction" entries={f.transactions} empty="No transactions yet." />
    </div>
  );
}
