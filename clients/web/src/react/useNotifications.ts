import { useEffect, useMemo, useRef, useSyncExternalStore } from "react";
import type { Event } from "../gen/notify/v1/notify_pb";
import type { ConnectionState } from "../lib/client";
import type { EventCase, PayloadOf } from "../lib/events";
import type { InboxTab, NotificationItem, NotificationState } from "../lib/store";
import { useNotify } from "./context";

/**
 * The notification state (inbox, the center's tab, counts, toasts,
 * connection) and its actions (read, seen, archive, snooze, bulk, tabs),
 * re-rendering on every change.
 */
export function useNotifications() {
  const { client, store } = useNotify();
  const state: NotificationState = useSyncExternalStore(store.subscribe, store.getState, store.getState);
  const actions = useMemo(
    () => ({
      markRead: (id: string) => store.markRead(id),
      markReadMany: (ids: string[]) => store.markReadMany(ids),
      markUnread: (ids: string[]) => store.markUnread(ids),
      markSeen: (ids: string[]) => store.markSeen(ids),
      markAllRead: () => store.markAllRead(),
      markAllSeen: () => store.markAllSeen(),
      archive: (ids: string[]) => store.archive(ids),
      unarchive: (ids: string[]) => store.unarchive(ids),
      archiveAllRead: () => store.archiveAllRead(),
      snooze: (ids: string[], until: Date) => store.snooze(ids, until),
      unsnooze: (ids: string[]) => store.unsnooze(ids),
      confirm: (item: NotificationItem) => store.confirm(item),
      remove: (id: string) => store.remove(id),
      removeMany: (ids: string[]) => store.removeMany(ids),
      setTab: (tab: InboxTab) => store.setTab(tab),
      loadMoreTab: () => store.loadMoreTab(),
      loadMore: () => store.loadMore(),
      refresh: () => store.refresh(true),
      dismissToast: (id: string) => store.dismissToast(id),
      showToast: store.showToast.bind(store),
      updatePreferences: store.updatePreferences.bind(store),
      loadPreferences: () => store.loadPreferences(),
    }),
    [store],
  );
  return { ...state, ...actions, client, store, isConnected: state.connection === "connected" };
}

/** The client's connection state. */
export function useConnectionState(): ConnectionState {
  const { client } = useNotify();
  return useSyncExternalStore(
    (cb) => client.onState(cb),
    () => client.state,
    () => client.state,
  );
}

/**
 * Calls handler with every live event of a kind while the component is
 * mounted; the latest handler is used without resubscribing.
 */
export function useNotifyEvent<K extends EventCase>(kind: K, handler: (ev: PayloadOf<K>, env: Event) => void): void {
  const { client } = useNotify();
  const ref = useRef(handler);
  ref.current = handler;
  useEffect(() => client.on(kind, (ev, env) => ref.current(ev, env)), [client, kind]);
}

/** Calls handler when a room could not be resumed (reload what it shows). */
export function useNotifyGap(handler: (room: string) => void): void {
  const { client } = useNotify();
  const ref = useRef(handler);
  ref.current = handler;
  useEffect(() => client.onGap((room) => ref.current(room)), [client]);
}
