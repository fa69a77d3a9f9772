// NotificationStore: the notification center's state (InboxStore, inbox.ts)
// with where each notification was also sent, its delivery timelines. The
// state's types are in state.ts; they are exported from here too.
import { Code, ConnectError } from "@connectrpc/connect";
import { routesOf, settled, type DeliveryInfo } from "./deliveries";
import { InboxStore } from "./inbox";
import type { NotificationState } from "./state";

export { inTab } from "./state";
export type { Counts, InboxTab, NotificationItem, NotificationState, NotificationStoreOptions, PreferencesUpdate, Toast } from "./state";

/**
 * NotificationStore is the notification center's state, framework-agnostic:
 * the inbox (InboxService, paged, newest first, one entry per event id) and
 * the list of the center's tab, the live counts (unseen for the badge,
 * unread, archived, snoozed), preferences and a toast queue. It follows a
 * NotifyClient: live events raise toasts and pull the new inbox rows,
 * notifications back from snooze come back into the lists with a toast, a
 * room that could not be resumed reloads the inbox, and writes are applied
 * here at once and go through the client's offline queue.
 *
 * The inbox's part is InboxStore's (inbox.ts); this class adds the
 * delivery timelines (loadDeliveries).
 */
export class NotificationStore extends InboxStore {
  private deliveryLoads = new Set<string>(); // event ids whose timelines are being read

  // ---- deliveries ---------------------------------------------------------

  /**
   * Reads where these events' notifications were also sent (their delivery
   * timelines, GetDeliveryStatus, 100 ids a call): those not read yet, and
   * those read more than staleMs ago that may still change (queued,
   * waiting, retrying); with force, every one not being read already. A
   * server without delivery timelines is asked once.
   */
  async loadDeliveries(eventIds: string[], opts: { staleMs?: number; force?: boolean } = {}): Promise<void> {
    const s = this.getState();
    if (!s.deliveriesAvailable) return;
    const staleMs = opts.staleMs ?? 3000;
    const now = Date.now();
    const ids = [...new Set(eventIds)].filter((id) => {
      if (!id || this.deliveryLoads.has(id)) return false;
      const d = s.deliveries[id];
      return !d || opts.force || (!d.settled && now - d.loadedAt >= staleMs);
    });
    for (let i = 0; i < ids.length; i += 100) {
      const chunk = ids.slice(i, i + 100);
      chunk.forEach((id) => this.deliveryLoads.add(id));
      try {
        const res = await this.client.getDeliveryStatus(chunk);
        const byId = new Map(res.timelines.map((t) => [t.eventId, t]));
        const loadedAt = Date.now();
        this.setState((st) => {
          const deliveries = { ...st.deliveries };
          for (const id of chunk) {
            const routes = routesOf(byId.get(id));
            deliveries[id] = { routes, settled: settled(routes), loadedAt };
          }
          return { deliveries: this.pruneDeliveries(deliveries, st) };
        });
      } catch (err) {
        const e = ConnectError.from(err);
        if (e.code === Code.Unimplemented) {
          this.setState({ deliveriesAvailable: false });
          return;
        }
        this.setState({ error: e.rawMessage });
        return;
      } finally {
        chunk.forEach((id) => this.deliveryLoads.delete(id));
      }
    }
  }

  /** Keeps at most 500 timelines, those of listed notifications first. */
  private pruneDeliveries(d: Record<string, DeliveryInfo>, s: NotificationState): Record<string, DeliveryInfo> {
    const keys = Object.keys(d);
    if (keys.length <= 500) return d;
    const listed = new Set([...s.items, ...s.tabItems].map((i) => i.eventId));
    const out: Record<string, DeliveryInfo> = {};
    for (const k of keys) if (listed.has(k)) out[k] = d[k];
    return out;
  }
}
