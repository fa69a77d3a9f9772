import type { Toast } from "../lib/store";
import { toneIcon } from "./format";
import { useNotifications } from "./useNotifications";

export interface ToastContainerProps {
  position?: "top-right" | "top-left" | "bottom-right" | "bottom-left";
  /** "auto" follows prefers-color-scheme (and a notify-dark / notify-light class above). */
  theme?: "auto" | "light" | "dark";
}

/**
 * The toasts of the notification store: colour and icon per kind, a close
 * button, auto-hide after each toast's duration (the store's timers), in an
 * aria-live region. A toast shows at most two lines of title and four of
 * message (the notification center has the whole text), long words wrap, and
 * the event's text is isolated from the text around it (dir="auto").
 */
export function ToastContainer({ position = "top-right", theme = "auto" }: ToastContainerProps) {
  const { toasts, dismissToast } = useNotifications();
  const themeClass = theme === "dark" ? " notify-dark" : theme === "light" ? " notify-light" : "";
  return (
    <div
      className={`notify-toasts notify-toasts--${position}${themeClass}`}
      role="region"
      aria-label="Notifications"
      aria-live="polite"
      aria-relevant="additions"
      data-testid="toast-container"
    >
      {toasts.map((t) => (
        <ToastView key={t.id} toast={t} onClose={dismissToast} />
      ))}
    </div>
  );
}

function ToastView({ toast, onClose }: { toast: Toast; onClose: (id: string) => void }) {
  return (
    <div
      className={`notify-toast notify-toast--${toast.tone}`}
      role={toast.tone === "error" ? "alert" : "status"}
      data-testid="toast"
      data-tone={toast.tone}
      data-event-id={toast.eventId}
    >
      <span className={`notify-icon notify-icon--${toast.tone}`} aria-hidden="true">
        {toneIcon[toast.tone]}
      </span>
      <div className="notify-toast__text">
        <strong className="notify-toast__title" data-testid="toast-title" dir="auto">
          {toast.title}
        </strong>
        {toast.message && (
          <p className="notify-toast__message" data-testid="toast-message" dir="auto">
            {toast.message}
          </p>
        )}
      </div>
      <button type="button" className="notify-toast__close" aria-label="Close notification" data-testid="toast-close" onClick={() => onClose(toast.id)}>
        ×
      </button>
      {toast.durationMs > 0 && (
        <span className="notify-toast__timer" style={{ animationDuration: `${toast.durationMs}ms` }} aria-hidden="true" />
      )}
    </div>
  );
}
