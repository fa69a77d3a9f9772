/**
 * Where the app sends its grpc-web calls. The node says in GET /app.json
 * (its --app-grpc-web-url, such as the native port's, where a browser's
 * stream costs the server less); an empty answer, or none, means the
 * page's own origin, as does a base this browser cannot reach.
 */
let grpcWebUrl = "";

/** Reads the node's answer once, before the app renders. Never throws. */
export async function loadAppConfig(fetchFn: typeof fetch = fetch, timeoutMs = 3000): Promise<void> {
  grpcWebUrl = "";
  let url = "";
  try {
    const res = await fetchFn("/app.json", { cache: "no-cache", signal: AbortSignal.timeout(timeoutMs) });
    if (!res.ok) return;
    const body = (await res.json()) as { grpcWebUrl?: unknown };
    url = typeof body.grpcWebUrl === "string" ? body.grpcWebUrl : "";
  } catch {
    // A node without /app.json, or a dev server answering with the page:
    // the page's origin.
    return;
  }
  if (!url) return;
  try {
    // One grpc-web call there first, to the health service (which asks no
    // token), so that a base this page cannot call (a port a firewall
    // closes, a certificate the browser does not trust, an origin the node
    // does not grant) leaves the app on its page's origin instead of
    // retrying forever. Its connection is the one the app's calls reuse.
    const res = await fetchFn(`${url}/grpc.health.v1.Health/Check`, {
      method: "POST",
      headers: { "Content-Type": "application/grpc-web+proto", "X-Grpc-Web": "1" },
      body: new Uint8Array(5), // an empty HealthCheckRequest, framed
      signal: AbortSignal.timeout(timeoutMs),
    });
    await res.arrayBuffer();
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    grpcWebUrl = url;
  } catch (err) {
    console.warn(`notify: the node's grpc-web base ${url} cannot be called from this page (${String(err)}); using this page's origin`);
  }
}

/** The base URL of the app's grpc-web calls. */
export function grpcWebBaseUrl(): string {
  return grpcWebUrl || location.origin;
}
