import { timestampDate } from "@bufbuild/protobuf/wkt";
import { useState } from "react";
import { TransactionType } from "../../gen/notify/v1/events_pb";
import type { Event } from "../../gen/notify/v1/notify_pb";
import { describeEvent, type EventView } from "../../lib/events";
import { relativeTime } from "../../react/format";
import { useNotifications, useNotifyEvent, useNotifyGap } from "../../react/useNotifications";
import { now, publishAsService, randomId } from "../demo";

export type Entry = EventView & { id: string; event: Event };

const MAX = 20;

function add(list: Entry[], ev: Event): Entry[] {
  if (list.some((e) => e.id === ev.id)) return list; // one entry per event
  return [{ ...describeEvent(ev), id: ev.id, event: ev }, ...list].slice(0, MAX);
}

/** When an event happened: its occurred_at, else its publish time. */
function when(ev: Event): Date | undefined {
  const p = ev.payload;
  const occurred = p.case && "occurredAt" in p.value ? p.value.occurredAt : undefined;
  if (occurred && occurred.seconds > 0n) return timestampDate(occurred);
  return ev.publishTime ? timestampDate(ev.publishTime) : undefined;
}

function isToday(d: Date | undefined, today = new Date()): boolean {
  return !!d && d.getFullYear() === today.getFullYear() && d.getMonth() === today.getMonth() && d.getDate() === today.getDate();
}

/** The till's total for today: the latest of today's transactions carries it. */
export type TillTotal = { value: bigint; offset: bigint; epoch: string };

/** Points moved by today's points events (PointsAdded, PointsRedeemed, PointsExpired). */
export type PointsToday = { added: bigint; removed: bigint; events: number };

/**
 * The live feeds of restaurant rid, as the dashboard and the till show them:
 * its transactions, points events and guest confirmations (each the latest
 * 20), the till's total for today, and today's points events summed.
 */
export function useRestaurantFeeds(rid: string) {
  const n = useNotifications();
  const [transactions, setTransactions] = useState<Entry[]>([]);
  const [points, setPoints] = useState<Entry[]>([]);
  const [confirmations, setConfirmations] = useState<Entry[]>([]);
  const [total, setTotal] = useState<TillTotal>();
  const [today, setToday] = useState<{ seen: Set<string>; sum: PointsToday }>({ seen: new Set(), sum: { added: 0n, removed: 0n, events: 0 } });
  const [gap, setGap] = useState(false);

  useNotifyEvent("restaurantTransaction", (tx, env) => {
    if (tx.restaurantId !== rid) return;
    setTransactions((l) => add(l, env));
    // A transaction of another day carries that day's total, not today's.
    if (!isToday(when(env))) return;
    setTotal((cur) => (!cur || cur.epoch !== env.epoch || env.offset > cur.offset ? { value: tx.totalToday, offset: env.offset, epoch: env.epoch } : cur));
  });
  const onPoints = (_: unknown, env: Event) => {
    if (env.room !== `restaurant:${rid}:points`) return;
    setPoints((l) => add(l, env));
    if (!isToday(when(env))) return;
    setToday((cur) => {
      if (cur.seen.has(env.id)) return cur;
      const p = env.payload;
      const amount = p.case === "pointsAdded" || p.case === "pointsRedeemed" || p.case === "pointsExpired" ? p.value.amount : 0n;
      const sum = { ...cur.sum, events: cur.sum.events + 1 };
      if (p.case === "pointsAdded") sum.added += amount;
      else sum.removed += amount;
      return { seen: new Set(cur.seen).add(env.id), sum };
    });
  };
  useNotifyEvent("pointsAdded", onPoints);
  useNotifyEvent("pointsRedeemed", onPoints);
  useNotifyEvent("pointsExpired", onPoints);
  useNotifyEvent("actionConfirmed", (_, env) => setConfirmations((l) => add(l, env)));
  useNotifyEvent("restaurantGuestJoined", (_, env) => setConfirmations((l) => add(l, env)));
  useNotifyGap((room) => {
    if (room.startsWith(`restaurant:${rid}`) && n.client.stats.connects > 1) setGap(true);
  });

  /** Demo: a purchase at the till, published as the loyalty backend. */
  const simulatePurchase = async () => {
    const amount = BigInt(10 + Math.floor(Math.random() * 90));
    const guest = `g${1 + Math.floor(Math.random() * 3)}`;
    await publishAsService(n.client, {
      idempotencyKey: randomId("demo-"),
      payload: {
        case: "restaurantTransaction",
        value: {
          restaurantId: rid,
          transactionId: randomId("t"),
          guestId: guest,
          guestName: `Guest ${guest}`,
          type: TransactionType.PURCHASE,
          amount,
          totalToday: (total?.value ?? 0n) + amount,
          occurredAt: now(),
        },
      },
    });
  };

  return { transactions, points, confirmations, total, pointsToday: today.sum, gap, simulatePurchase };
}

const fmt = (n: bigint) => Number(n).toLocaleString("en-US");

/** "+150 added, −50 redeemed or expired, in 3 events", or that there were none. */
export function pointsTodayText(p: PointsToday): string {
  if (p.events === 0) return "No points events today yet.";
  return `+${fmt(p.added)} added, −${fmt(p.removed)} redeemed or expired, in ${p.events} event${p.events === 1 ? "" : "s"} today.`;
}

export function Feed({ title, testid, entries, empty }: { title: string; testid: string; entries: Entry[]; empty: string }) {
  return (
    <section className="card" aria-label={title}>
      <h2>{title}</h2>
      {entries.length === 0 ? (
        <p className="muted" data-testid={`${testid}-empty`}>
          {empty}
        </p>
      ) : (
        <ul className="feed" data-testid={`${testid}-list`}>
          {entries.map((e) => (
            <li key={e.id} className={`feed__item feed__item--${e.tone}`} data-testid={`${testid}-item`} data-event-id={e.id}>
              <strong className="user-text" dir="auto">
                {e.title}
              </strong>{" "}
              <span className="muted user-text feed__message" dir="auto">
                {e.message}
              </span>
              <time className="muted small">{relativeTime(e.time)}</time>
            </li>
          ))}
        </ul>
      )}
    </section>
  );
}
