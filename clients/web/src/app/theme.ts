export type Theme = "auto" | "light" | "dark";
const KEY = "notify-demo-theme";

export function loadTheme(): Theme {
  const t = localStorage.getItem(KEY);
  return t === "light" || t === "dark" ? t : "auto";
}

/** Applies a theme: a class on <html> (auto follows prefers-color-scheme). */
export function applyTheme(t: Theme): void {
  const cl = document.documentElement.classList;
  cl.toggle("notify-dark", t === "dark");
  cl.toggle("notify-light", t === "light");
  localStorage.setItem(KEY, t);
}
