/**
 * Where the app sends its grpc-web calls. The node says in GET /app.json
 * (its --app-grpc-web-url, such as the native port's, where a browser's
 * stream costs the server less); an empty answer, or none, means the
 * page's own origin.
 */
let grpcWebUrl = "";

/** Reads the node's answer once, before the app renders. Never throws. */
export async function loadAppConfig(fetchFn: typeof fetch = fetch, timeoutMs = 3000): Promise<void> {
  grpcWebUrl = "";
  try {
    const res = await fetchFn("/app.json", { cache: "no-cache", signal: AbortSignal.timeout(timeoutMs) });
    if (!res.ok) return;
    const body = (await res.json()) as { grpcWebUrl?: unknown };
    grpcWebUrl = typeof body.grpcWebUrl === "string" ? body.grpcWebUrl : "";
  } catch {
    // A node without /app.json, or a dev server answering with the page:
    // the page's origin.
  }
}

/** The base URL of the app's grpc-web calls. */
export function grpcWebBaseUrl(): string {
  return grpcWebUrl || location.origin;
}
