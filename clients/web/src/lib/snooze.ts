/** The snooze choices a notification center offers. */
export type SnoozeChoice = "1h" | "tonight" | "tomorrow" | "nextweek";

/** One snooze choice at a given moment: its label and when the notification comes back. */
export interface SnoozeOption {
  choice: SnoozeChoice;
  label: string;
  until: Date;
}

/** At what local hour "tonight" brings a notification back, and "tomorrow" and "next week". */
export const TONIGHT_HOUR = 20;
export const MORNING_HOUR = 9;

/**
 * The snooze choices at now, in the browser's local time: in 1 hour;
 * tonight at 20:00 (offered until 19:00, when it is at least an hour
 * away); tomorrow at 09:00; next week, on Monday at 09:00 (from a
 * Sunday, the Monday after next, since tomorrow is a choice of its own).
 */
export function snoozeOptions(now: Date = new Date()): SnoozeOption[] {
  const at = (daysAhead: number, hour: number) => {
    const d = new Date(now.getFullYear(), now.getMonth(), now.getDate() + daysAhead, hour, 0, 0, 0);
    return d;
  };
  const out: SnoozeOption[] = [{ choice: "1h", label: "1 hour", until: new Date(now.getTime() + 3_600_000) }];
  const tonight = at(0, TONIGHT_HOUR);
  if (tonight.getTime() - now.getTime() >= 3_600_000) out.push({ choice: "tonight", label: "Tonight", until: tonight });
  out.push({ choice: "tomorrow", label: "Tomorrow", until: at(1, MORNING_HOUR) });
  // Days to the next Monday (getDay: Sunday 0, Monday 1); from a Monday, a
  // week; from a Sunday, the Monday after tomorrow's ("tomorrow" is there).
  let toMonday = (8 - now.getDay()) % 7 || 7;
  if (toMonday === 1) toMonday = 8;
  out.push({ choice: "nextweek", label: "Next week", until: at(toMonday, MORNING_HOUR) });
  return out;
}

/** When a snoozed notification comes back, said briefly: "at 20:00", "tomorrow at 09:00", "Mon 09:00". */
export function snoozeLabel(until: Date, now: Date = new Date()): string {
  const time = until.toLocaleTimeString("en-GB", { hour: "2-digit", minute: "2-digit" });
  const day = (d: Date) => new Date(d.getFullYear(), d.getMonth(), d.getDate()).getTime();
  const days = Math.round((day(until) - day(now)) / 86_400_000);
  if (days <= 0) return `at ${time}`;
  if (days === 1) return `tomorrow at ${time}`;
  if (days < 7) return `${until.toLocaleDateString("en-GB", { weekday: "short" })} ${time}`;
  return until.toLocaleDateString("en-GB", { day: "numeric", month: "short" }) + ` ${time}`;
}
