import { useState } from "react";
import { TransactionType } from "../../gen/notify/v1/events_pb";
import type { Event } from "../../gen/notify/v1/notify_pb";
import { describeEvent, type EventView } from "../../lib/events";
import { relativeTime } from "../../react/format";
import { useNotifications, useNotifyEvent, useNotifyGap } from "../../react/useNotifications";
import { now, publishAsService, randomId } from "../demo";
import type { Session } from "../session";

type Entry = EventView & { id: string; event: Event };

const MAX = 20;

function add(list: Entry[], ev: Event): Entry[] {
  if (list.some((e) => e.id === ev.id)) return list; // one entry per event
  return [{ ...describeEvent(ev), id: ev.id, event: ev }, ...list].slice(0, MAX);
}

export function RestaurantDashboard({ session }: { session: Session }) {
  const n = useNotifications();
  const rid = session.restaurantId ?? "";
  const [transactions, setTransactions] = useState<Entry[]>([]);
  const [points, setPoints] = useState<Entry[]>([]);
  const [confirmations, setConfirmations] = useState<Entry[]>([]);
  const [total, setTotal] = useState<{ value: bigint; offset: bigint; epoch: string }>();
  const [gap, setGap] = useState(false);
  const [demoError, setDemoError] = useState("");

  useNotifyEvent("restaurantTransaction", (tx, env) => {
    if (tx.restaurantId !== rid) return;
    setTransactions((l) => add(l, env));
    // The latest transaction carries the day's total.
    setTotal((cur) => (!cur || cur.epoch !== env.epoch || env.offset > cur.offset ? { value: tx.totalToday, offset: env.offset, epoch: env.epoch } : cur));
  });
  const onPoints = (_: unknown, env: Event) => {
    if (env.room === `restaurant:${rid}:points`) setPoints((l) => add(l, env));
  };
  useNotifyEvent("pointsAdded", onPoints);
  useNotifyEvent("pointsRedeemed", onPoints);
  useNotifyEvent("pointsExpired", onPoints);
  useNotifyEvent("actionConfirmed", (_, env) => setConfirmations((l) => add(l, env)));
  useNotifyEvent("restaurantGuestJoined", (_, env) => setConfirmations((l) => add(l, env)));
  useNotifyGap((room) => {
    if (room.startsWith(`restaurant:${rid}`) && n.client.stats.connects > 1) setGap(true);
  });

  const simulate = async () => {
    setDemoError("");
    try {
      const amount = BigInt(10 + Math.floor(Math.random() * 90));
      const guest = `g${1 + Math.floor(Math.random() * 3)}`;
      const tid = randomId("t");
      await publishAsService(n.client, {
        idempotencyKey: randomId("demo-"),
        payload: {
          case: "restaurantTransaction",
          value: {
            restaurantId: rid,
            transactionId: tid,
            guestId: guest,
            guestName: `Guest ${guest}`,
            type: TransactionType.PURCHASE,
            amount,
            totalToday: (total?.value ?? 0n) + amount,
            occurredAt: now(),
          },
        },
      });
    } catch (err) {
      setDemoError(err instanceof Error ? err.message : String(err));
    }
  };

  return (
    <div className="grid">
      <section className="card" aria-labelledby="total-title">
        <h1 id="total-title">Restaurant {rid}</h1>
        <p className="muted">Today's points</p>
        <div className="balance">
          <span className="balance__value" data-testid="today-total">
            {total ? Number(total.value).toLocaleString("en-US") : "0"}
          </span>
          <span className="balance__unit">points today</span>
        </div>
        {gap && (
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
      <Feed title="Live transactions" testid="transaction" entries={transactions} empty="No transactions yet today." />
      <Feed title="Points activity" testid="points" entries={points} empty="No points activity yet." />
      <Feed title="Guests and confirmations" testid="confirmation" entries={confirmations} empty="Nothing yet." />
    </div>
  );
}

function Feed({ title, testid, entries, empty }: { title: string; testid: string; entries: Entry[]; empty: string }) {
  return (
    <section className="card" aria-label={title}>
      <h2>{title}</h2>
      {entries.length === 0 ? (
        <p className="muted">{empty}</p>
      ) : (
        <ul className="feed" data-testid={`${testid}-list`}>
          {entries.map((e) => (
            <li key={e.id} className={`feed__item feed__item--${e.tone}`} data-testid={`${testid}-item`} data-event-id={e.id}>
              <strong>{e.title}</strong> <span className="muted">{e.message}</span>
              <time className="muted small">{relativeTime(e.time)}</time>
            </li>
          ))}
        </ul>
      )}
    </section>
  );
}
