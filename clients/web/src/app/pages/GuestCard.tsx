import { timestampMs } from "@bufbuild/protobuf/wkt";
import { useMemo, useState } from "react";
import { ActionType } from "../../gen/notify/v1/events_pb";
import type { Event } from "../../gen/notify/v1/notify_pb";
import { relativeTime } from "../../react/format";
import { useNotifications, useNotifyEvent } from "../../react/useNotifications";
import { now, publishAsService, randomId } from "../demo";
import type { Session } from "../session";

const pointsKinds = new Set(["pointsAdded", "pointsRedeemed", "pointsExpired"]);

/** The demo's redemption, in points. */
const REDEEM = 50n;

type Balance = { value: bigint; at: number; eventId: string };

function balanceOf(ev: Event): Balance | undefined {
  const p = ev.payload;
  if (p.case !== "pointsAdded" && p.case !== "pointsRedeemed" && p.case !== "pointsExpired") return undefined;
  const at = ev.publishTime ? timestampMs(ev.publishTime) : 0;
  return { value: p.value.newBalance, at, eventId: ev.id };
}

export function GuestCard({ session }: { session: Session }) {
  const n = useNotifications();
  const [live, setLive] = useState<Balance>();
  const [confirm, setConfirm] = useState<{ state: "sending" | "sent" | "failed"; text: string }>();
  const [demoError, setDemoError] = useState("");

  const onPoints = (_: unknown, env: Event) => {
    const b = balanceOf(env);
    if (b) setLive((cur) => (!cur || b.at >= cur.at ? b : cur));
  };
  useNotifyEvent("pointsAdded", onPoints);
  useNotifyEvent("pointsRedeemed", onPoints);
  useNotifyEvent("pointsExpired", onPoints);

  const activity = useMemo(() => n.items.filter((i) => pointsKinds.has(i.kind)), [n.items]);
  // The inbox is the source of truth after a reload or a gap; live events are newer.
  const fromInbox = activity.length ? balanceOf(activity[0].event) : undefined;
  const balance = live && (!fromInbox || live.at >= fromInbox.at) ? live : fromInbox;
  // The restaurant of the latest points event that names one: a guest
  // confirms only at a restaurant that has sent them an event.
  const restaurantId = activity
    .map((a) => {
      const p = a.event.payload;
      return p.case === "pointsAdded" || p.case === "pointsRedeemed" || p.case === "pointsExpired" ? p.value.restaurantId : "";
    })
    .find(Boolean);

  const addPoints = async () => {
    setDemoError("");
    try {
      const amount = 100n;
      await publishAsService(n.client, {
        idempotencyKey: randomId("demo-"),
        payload: {
          case: "pointsAdded",
          value: {
            guestId: session.sub,
            cardId: `card-${session.sub}`,
            restaurantId: restaurantId || "r1",
            restaurantName: "Chez Max",
            amount,
            newBalance: (balance?.value ?? 0n) + amount,
            transactionId: randomId("t"),
            description: "Lunch",
            occurredAt: now(),
          },
        },
      });
    } catch (err) {
      setDemoError(err instanceof Error ? err.message : String(err));
    }
  };

  const where = restaurantId || "r1";
  // A redemption needs a known balance that covers it.
  const cannotRedeem = !balance
    ? "Your balance is not known yet, so there is nothing to redeem."
    : balance.value < REDEEM
      ? `You need at least ${REDEEM} points to redeem; you have ${Number(balance.value).toLocaleString("en-US")}.`
      : "";

  const confirmRedemption = async () => {
    const actionId = randomId("act-");
    setConfirm({ state: "sending", text: n.client.state === "connected" ? "Sending…" : "Queued: sent when back online." });
    try {
      await n.client.confirmAction({
        actionId,
        action: ActionType.POINTS_REDEEM,
        amount: REDEEM,
        restaurantId: where,
      });
      // ConfirmAction tells the restaurant; the loyalty backend changes the
      // balance, and the new one arrives as a points event.
      setConfirm({
        state: "sent",
        text: `Sent to restaurant ${where}: you confirmed a ${REDEEM}-point redemption. Your balance changes when the restaurant applies it.`,
      });
    } catch (err) {
      setConfirm({ state: "failed", text: `Not sent: ${err instanceof Error ? err.message : String(err)}` });
    }
  };

  return (
    <div className="grid">
      <section className="card loyalty-card" aria-labelledby="card-title">
        <h1 id="card-title">My loyalty card</h1>
        <p className="muted">Guest {session.sub}</p>
        <div className="balance">
          {balance ? (
            <>
              <span className="balance__value" data-testid="points-balance" data-state="known" data-event-id={balance.eventId}>
                {Number(balance.value).toLocaleString("en-US")}
              </span>
              <span className="balance__unit">points</span>
            </>
          ) : (
            <span className="balance__none" data-testid="points-balance" data-state={n.loaded ? "unknown" : "loading"}>
              {n.loaded ? "Not known yet" : "Loading…"}
            </span>
          )}
        </div>
        <p className="muted small" data-testid="balance-note">
          {balance
            ? `As of your latest points event. ${n.isConnected ? "Updates live." : n.connection === "disconnected" ? "Live updates are off." : "Waiting for the connection…"}`
            : n.loaded
              ? "Your balance shows here with your next points event: none is in your notifications yet."
              : "Reading your notifications…"}
        </p>
        <div className="actions">
          <button
            type="button"
            className="btn"
            onClick={() => void confirmRedemption()}
            disabled={!!cannotRedeem}
            title={cannotRedeem || undefined}
            data-testid="confirm-redemption"
          >
            Confirm a {REDEEM.toString()}-point redemption
          </button>
          <button type="button" className="btn btn--ghost" onClick={() => void addPoints()} data-testid="demo-add-points">
            Demo: add 100 points
          </button>
        </div>
        {cannotRedeem && !confirm && (
          <p className="muted small" data-testid="confirm-unavailable">
            {cannotRedeem}
          </p>
        )}
        {confirm && (
          <p className="small" data-testid="confirm-status" data-state={confirm.state} role="status">
            {confirm.text}
          </p>
        )}
        {demoError && (
          <p className="error small" role="alert">
            {demoError}
          </p>
        )}
      </section>
      <section className="card" aria-labelledby="activity-title">
        <h2 id="activity-title">Recent activity</h2>
        {activity.length === 0 ? (
          <p className="muted" data-testid="activity-empty">
            No points activity yet.
          </p>
        ) : (
          <ul className="feed" data-testid="activity-list">
            {activity.slice(0, 20).map((a) => (
              <li key={a.id} data-testid="activity-item" data-event-id={a.eventId} className={`feed__item feed__item--${a.tone}`}>
                <strong className="user-text" dir="auto">
                  {a.title}
                </strong>{" "}
                <span className="muted user-text feed__message" dir="auto">
                  {a.message}
                </span>
                <time className="muted small">{relativeTime(a.time)}</time>
              </li>
            ))}
          </ul>
        )}
      </section>
    </div>
  );
}
