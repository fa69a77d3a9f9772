import { useEffect, useMemo, useRef, useSyncExternalStore } from "react";
import type { Event } from "../gen/notify/v1/notify_pb";
import type { ConnectionState } from "../lib/client";
import type { EventCase, PayloadOf } from "../lib/events";
import type { NotificationState } from "../lib/store";
import { useNotify } from "./context";

/**
 * The notification state (inbox, unread count, toasts, connection) and its
 * actions, re-rendering on every change.
 */
export function useNotifications() {
  const { client, store } = useNotify();
  const state: NotificationState = useSyncExternalStore(store.subscribe, store.getState, store.getState);
  const actions = useMemo(
    () => ({
      markRead: (id: string) => store.markRead(id),
      markAllRead: () => store.markAllRead(),
      remove: (id: string) => store.remove(id),
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
