import type { TokenSource } from "../lib/client";

export type Role = "guest" | "restaurant" | "cashier" | "admin" | "service";

/** Who is signed in to the demo. */
export interface Identity {
  role: Role;
  sub: string;
  restaurantId?: string;
  /** Rooms to watch instead of the role's defaults (advanced). */
  rooms?: string[];
}

export interface Session extends Identity {
  token: string;
  /** The token's expiry, Unix ms (0: none). */
  exp: number;
}

const KEY = "notify-demo-session";

export function loadSession(): Session | null {
  try {
    const raw = localStorage.getItem(KEY);
    if (!raw) return null;
    const s = JSON.parse(raw) as Session;
    return s && s.role && s.sub && typeof s.token === "string" ? s : null;
  } catch {
    return null;
  }
}

export function saveSession(s: Session): void {
  localStorage.setItem(KEY, JSON.stringify(s));
}

export function clearSession(): void {
  localStorage.removeItem(KEY);
}

/** The exp claim of a JWT, in Unix ms (0 when it has none or cannot be read). */
export function tokenExp(token: string): number {
  try {
    const payload = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const claims = JSON.parse(atob(payload)) as { exp?: number };
    return claims.exp ? claims.exp * 1000 : 0;
  } catch {
    return 0;
  }
}

/**
 * Mints a token with notifyd's dev endpoint (POST /dev/token, dev mode
 * only). A real app gets its tokens from its own sign-in instead.
 */
export async function mintToken(id: { role: Role; sub: string; restaurantId?: string; ttlSeconds?: number }): Promise<string> {
  const res = await fetch("/dev/token", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ role: id.role, sub: id.sub, restaurantId: id.restaurantId ?? "", ttlSeconds: id.ttlSeconds ?? 0 }),
  });
  const body = (await res.json().catch(() => ({}))) as { token?: string; error?: string };
  if (!res.ok || !body.token) {
    if (res.status === 404) throw new Error("this notifyd is not in dev mode: POST /dev/token is off");
    throw new Error(body.error || `POST /dev/token: HTTP ${res.status}`);
  }
  return body.token;
}

/** Signs in: a fresh token for id, kept in localStorage. */
export async function signIn(id: Identity): Promise<Session> {
  const token = await mintToken(id);
  const s: Session = { ...id, token, exp: tokenExp(token) };
  saveSession(s);
  return s;
}

/**
 * The NotifyClient's token source: the stored token while it has more
 * than 30s left, else (or when refused as expired) a fresh one.
 */
export function sessionTokenSource(initial: Session): TokenSource {
  let cur = initial;
  return async ({ refresh }) => {
    if (!refresh && cur.token && (cur.exp === 0 || cur.exp - Date.now() > 30_000)) return cur.token;
    const token = await mintToken(cur);
    cur = { ...cur, token, exp: tokenExp(token) };
    saveSession(cur);
    return token;
  };
}

/** Where a role starts. */
export function homeOf(role: Role): string {
  switch (role) {
    case "guest":
      return "/guest";
    case "restaurant":
      return "/restaurant";
    case "cashier":
      return "/till";
    case "admin":
      return "/admin";
    default:
      return "/settings";
  }
}
