import { useState } from "react";
import type { Session } from "../session";
import { Feed, pointsTodayText, useRestaurantFeeds } from "./restaurantFeeds";

/**
 * The restaurant owner's dashboard: the till's total for today, today's
 * points events, and the live feeds. Each figure says where it comes from,
 * and one that is not known yet says so instead of showing 0.
 */
export function RestaurantDashboard({ session }: { session: Session }) {
  const rid = session.restaurantId ?? "";
  const f = useRestaurantFeeds(rid);
  const [demoError, setDemoError] = useState("");

  const simulate = async () => {
    setDemoError("");
    try {
      await f.simulatePurchase();
    } catch (err) {
      setDemoError(err instanceof Error ? err.message : String(err));
    }
  };

  return (
    <div className="grid">
      <section className="card" aria-labelledby="total-title">
        <h1 id="total-title">Restaurant {rid}</h1>
        <p className="muted">Points moved at the till today</p>
        <div className="balance">
          {f.total ? (
            <>
              <span className="balance__value" data-testid="today-total" data-state="known">
                {Number(f.total.value).toLocaleString("en-US")}
              </span>
              <span className="balance__unit">points today</span>
            </>
          ) : (
            <span className="balance__none" data-testid="today-total" data-state="unknown">
              No till transactions today yet
            </span>
          )}
        </div>
        <p className="muted small">
          {f.total ? "From the day's total on the latest till transaction." : "The total comes with the till's next transaction."}
        </p>
        <p className="small" data-testid="points-today">
          Points events: {pointsTodayText(f.pointsToday)}
        </p>
        {f.gap && (
          <p className="banner banner--warning" data-testid="feed-gap">
            Some live updates were missed while offline; the feed may be incomplete.
          </p>
        )}
        <div className="actions">
          <button type="button" className="btn btn--ghost" onClick={() => void simulate()} data-testid="demo-purchase">
            Demo: simulate a purchase
          </button>
        </div>
        {demoError && (
          <p className="error small" role="alert">
            {demoError}
          </p>
        )}
      </section>
      <Feed title="Live transactions" testid="transaction" entries={f.transactions} empty="No transactions yet." />
      <Feed title="Points activity" testid="points" entries={f.points} empty="No points activity yet." />
      <Feed title="Guests and confirmations" testid="confirmation" entries={f.confirmations} empty="Nothing yet." />
    </div>
  );
}
