export { NotifyProvider, useNotify } from "./context";
export { useConnectionState, useNotifications, useNotifyEvent, useNotifyGap } from "./useNotifications";
export { NotificationCenter, safeHref } from "./NotificationCenter";
export type { NotificationCenterProps } from "./NotificationCenter";
export { ToastContainer } from "./ToastContainer";
export type { ToastContainerProps } from "./ToastContainer";
export { badgeText, relativeTime } from "./format";
export { PushToggle, usePushState } from "./PushToggle";
export type { PushToggleProps } from "./PushToggle";
