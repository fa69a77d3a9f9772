import type { Tone } from "../lib/events";

/** The icon of a tone (decorative: the text says the same). */
export const toneIcon: Record<Tone, string> = {
  success: "✓",
  info: "i",
  warning: "!",
  error: "×",
};

/** "just now", "5 min ago", "3 h ago", else a date. */
export function relativeTime(d: Date | undefined, now = Date.now()): string {
  if (!d) return "";
  const s = Math.round((now - d.getTime()) / 1000);
  if (s < 45) return "just now";
  if (s < 3600) return `${Math.max(1, Math.round(s / 60))} min ago`;
  if (s < 86_400) return `${Math.round(s / 3600)} h ago`;
  return d.toLocaleDateString();
}

/** The unread badge's text: the count, or "99+" above 99. */
export function badgeText(n: number, max = 99): string {
  return n > max ? `${max}+` : String(n);
}
