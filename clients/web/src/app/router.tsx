import { useSyncExternalStore, type AnchorHTMLAttributes, type MouseEvent } from "react";

const NAV = "notify:navigate";

function subscribe(cb: () => void): () => void {
  window.addEventListener("popstate", cb);
  window.addEventListener(NAV, cb);
  return () => {
    window.removeEventListener("popstate", cb);
    window.removeEventListener(NAV, cb);
  };
}

/** The current path; re-renders on navigation. */
export function usePath(): string {
  return useSyncExternalStore(subscribe, () => location.pathname);
}

export function navigate(to: string, replace = false): void {
  if (to === location.pathname + location.search) return;
  if (replace) history.replaceState(null, "", to);
  else history.pushState(null, "", to);
  window.dispatchEvent(new Event(NAV));
}

/** A link that navigates without reloading the page. */
export function Link({ to, ...rest }: { to: string } & AnchorHTMLAttributes<HTMLAnchorElement>) {
  const onClick = (e: MouseEvent<HTMLAnchorElement>) => {
    if (e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
    e.preventDefault();
    navigate(to);
  };
  const active = typeof location !== "undefined" && location.pathname === to;
  return <a href={to} aria-current={active ? "page" : undefined} {...rest} onClick={onClick} />;
}
