import { createContext, useContext, type ReactNode } from "react";
import type { NotifyClient } from "../lib/client";
import type { NotificationStore } from "../lib/store";

interface NotifyContextValue {
  client: NotifyClient;
  store: NotificationStore;
}

const NotifyContext = createContext<NotifyContextValue | null>(null);

/** Makes a NotifyClient and its NotificationStore available to the hooks and components below. */
export function NotifyProvider({ client, store, children }: NotifyContextValue & { children: ReactNode }) {
  return <NotifyContext.Provider value={{ client, store }}>{children}</NotifyContext.Provider>;
}

/** The client and store of the nearest NotifyProvider. */
export function useNotify(): NotifyContextValue {
  const v = useContext(NotifyContext);
  if (!v) throw new Error("useNotify: no <NotifyProvider> above this component");
  return v;
}
