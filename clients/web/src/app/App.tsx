import { Code } from "@connectrpc/connect";
import { useEffect, useMemo, useState } from "react";
import { NotifyProvider } from "../react/context";
import { NotificationCenter } from "../react/NotificationCenter";
import { ToastContainer } from "../react/ToastContainer";
import { useNotifications } from "../react/useNotifications";
import { AdminAlerts } from "./pages/AdminAlerts";
import { GuestCard } from "./pages/GuestCard";
import { RestaurantDashboard } from "./pages/RestaurantDashboard";
import { Settings } from "./pages/Settings";
import { SignIn } from "./pages/SignIn";
import { Till } from "./pages/Till";
import { Link, navigate, usePath } from "./router";
import { createRuntime, type Runtime } from "./runtime";
import { clearSession, homeOf, loadSession, type Session } from "./session";
import { applyTheme, loadTheme, type Theme } from "./theme";

export function App() {
  const [session, setSession] = useState<Session | null>(() => loadSession());
  const path = usePath();
  const key = session ? `${session.role}|${session.sub}|${session.restaurantId ?? ""}|${(session.rooms ?? []).join(",")}` : "";
  // eslint-disable-next-line react-hooks/exhaustive-deps
  const runtime = useMemo(() => (session ? createRuntime(session) : null), [key]);

  useEffect(() => {
    if (!runtime) return;
    runtime.start();
    return () => runtime.stop();
  }, [runtime]);

  useEffect(() => {
    if (!session && path !== "/signin") navigate("/signin", true);
    else if (session && (path === "/" || path === "/signin")) navigate(homeOf(session.role), true);
  }, [session, path]);

  if (!session || !runtime) {
    return <SignIn onSignedIn={setSession} />;
  }
  const signOut = () => {
    // This browser stops receiving the user's pushes (best effort: the
    // push service's "gone" answer removes it from notifyd otherwise).
    if (runtime.push.getState().status === "on") void runtime.push.turnOff();
    clearSession();
    setSession(null);
  };
  return (
    <NotifyProvider client={runtime.client} store={runtime.store}>
      <Shell session={session} onSignOut={signOut}>
        <Page session={session} path={path} runtime={runtime} />
      </Shell>
      <ToastContainer position="bottom-right" />
    </NotifyProvider>
  );
}

/** Which roles each role-specific page is for. */
const pageRoles: Record<string, { roles: Session["role"][]; what: string }> = {
  "/guest": { roles: ["guest"], what: "a guest's loyalty card" },
  "/restaurant": { roles: ["restaurant"], what: "the restaurant owner's dashboard" },
  "/till": { roles: ["cashier", "restaurant"], what: "a cashier's till" },
  "/admin": { roles: ["admin"], what: "the administrators' alerts" },
};

function Page({ session, path, runtime }: { session: Session; path: string; runtime: Runtime }) {
  const only = pageRoles[path];
  if (only && !only.roles.includes(session.role)) {
    return (
      <section className="card" data-testid="wrong-role">
        <h1>Not for a {session.role}</h1>
        <p>
          This page is {only.what}. <Link to={homeOf(session.role)}>Go to yours</Link>
        </p>
      </section>
    );
  }
  switch (path) {
    case "/guest":
      return <GuestCard session={session} />;
    case "/restaurant":
      return <RestaurantDashboard session={session} />;
    case "/till":
      return <Till session={session} />;
    case "/admin":
      return <AdminAlerts session={session} />;
    case "/settings":
      return <Settings session={session} push={runtime.push} />;
    default:
      return (
        <section className="card">
          <h1>Not found</h1>
          <p>
            Nothing at {path}. <Link to={homeOf(session.role)}>Go home</Link>
          </p>
        </section>
      );
  }
}

const stateText = {
  connecting: "Connecting…",
  connected: "Live",
  reconnecting: "Reconnecting…",
  disconnected: "Offline",
} as const;

function Shell({ session, onSignOut, children }: { session: Session; onSignOut: () => void; children: React.ReactNode }) {
  const n = useNotifications();
  const [theme, setTheme] = useState<Theme>(loadTheme);
  useEffect(() => applyTheme(theme), [theme]);
  const nextTheme: Record<Theme, Theme> = { auto: "dark", dark: "light", light: "auto" };
  const err = n.connection === "disconnected" ? n.client.lastError : undefined;
  const home = homeOf(session.role);
  return (
    <div className="app">
      <header className="app-header">
        <Link to={home} className="brand">
          <span aria-hidden="true">★</span> Max Loyalty <small>notify demo</small>
        </Link>
        <nav aria-label="Pages">
          {session.role === "guest" && <Link to="/guest">My card</Link>}
          {session.role === "restaurant" && <Link to="/restaurant">Dashboard</Link>}
          {session.role === "cashier" && <Link to="/till">Till</Link>}
          {session.role === "admin" && <Link to="/admin">Alerts</Link>}
          <Link to="/settings">Settings</Link>
        </nav>
        <div className="app-header__right">
          <span className={`conn conn--${n.connection}`} data-testid="connection-state" data-state={n.connection} role="status">
            <span className="conn__dot" aria-hidden="true" />
            {stateText[n.connection]}
          </span>
          {n.pending > 0 && (
            <span className="pending" data-testid="pending-calls" title="Actions made offline, sent when back online">
              {n.pending} pending
            </span>
          )}
          <NotificationCenter />
          <button
            type="button"
            className="btn btn--ghost"
            data-testid="theme-toggle"
            aria-label={`Theme: ${theme}. Switch to ${nextTheme[theme]}`}
            onClick={() => setTheme(nextTheme[theme])}
          >
            {theme === "dark" ? "☾" : theme === "light" ? "☀" : "◐"}
          </button>
          <span className="who" data-testid="who">
            {session.role} {session.sub}
            {session.restaurantId && (session.role === "restaurant" || session.role === "cashier") ? ` @ ${session.restaurantId}` : ""}
          </span>
          <button type="button" className="btn btn--ghost" data-testid="sign-out" onClick={onSignOut}>
            Sign out
          </button>
        </div>
      </header>
      {err && (
        <div className="banner banner--error" role="alert" data-testid="connection-error" data-code={Code[err.code]}>
          Live updates stopped: {Code[err.code]}: {err.rawMessage}
        </div>
      )}
      {n.connection === "reconnecting" && (
        <div className="banner banner--warning" data-testid="reconnecting-banner">
          Connection lost. Reconnecting… Actions you take now are sent when it is back.
        </div>
      )}
      <main className="app-main">{children}</main>
    </div>
  );
}
