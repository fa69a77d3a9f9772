import { useSyncExternalStore } from "react";
import type { PushState, PushStatus, WebPushControl } from "../lib/push";

/** The state of a WebPushControl, re-rendering on every change. */
export function usePushState(control: WebPushControl): PushState {
  return useSyncExternalStore(control.subscribe, control.getState, control.getState);
}

const says: Record<PushStatus, string> = {
  checking: "Checking this browser…",
  unsupported: "This browser cannot receive push notifications.",
  unavailable: "This server sends no web push notifications.",
  off: "Notifications reach you only while this app is open.",
  denied: "Notifications are blocked for this site: allow them in the browser's site settings, then reload.",
  working: "One moment…",
  on: "On: this browser gets a notification when you are away.",
  error: "Notifications could not be turned on.",
};

export interface PushToggleProps {
  control: WebPushControl;
}

/**
 * The "Turn on notifications" control: what web push does in this browser
 * (on, off, blocked, not supported, not offered by the server) and the
 * button that turns it on or off. The permission is asked on the click.
 */
export function PushToggle({ control }: PushToggleProps) {
  const s = usePushState(control);
  const on = s.status === "on";
  const canToggle = s.status === "off" || s.status === "on" || s.status === "error";
  return (
    <div className="notify-push" data-testid="push-control" data-state={s.status} data-permission={s.permission}>
      <p className="notify-push__status" role="status" data-testid="push-status">
        {says[s.status]}
      </p>
      {s.error && (
        <p className="notify-push__error" data-testid="push-error">
          {s.error}
        </p>
      )}
      {(canToggle || s.status === "working") && (
        <button
          type="button"
          className={`notify-push__button${on ? " notify-push__button--off" : ""}`}
          data-testid="push-toggle"
          aria-pressed={on}
          disabled={!canToggle}
          onClick={() => void (on ? control.turnOff() : control.turnOn())}
        >
          {on ? "Turn off notifications" : "Turn on notifications"}
        </button>
      )}
    </div>
  );
}
