import { afterEach, beforeEach, describe, expect, test, vi } from "vitest";
import { grpcWebBaseUrl, loadAppConfig } from "../../src/app/config";

// The app asks the node where its grpc-web calls go (GET /app.json), and
// falls back to its page's origin on an empty answer or none, or when it
// cannot reach the URL the node names.
describe("loadAppConfig", () => {
  beforeEach(() => vi.stubGlobal("location", { origin: "https://app.example.com" }));
  afterEach(() => vi.unstubAllGlobals());

  const answer = (status: number, body: string) =>
    vi.fn(async (..._args: Parameters<typeof fetch>) => new Response(body, { status, headers: { "Content-Type": "application/json" } }));

  test("the node's URL, once the browser reaches it", async () => {
    const f = answer(200, `{"grpcWebUrl":"https://notify.example.com:9090"}`);
    await loadAppConfig(f);
    expect(f).toHaveBeenCalledWith("/app.json", expect.objectContaining({ cache: "no-cache" }));
    expect(f).toHaveBeenCalledWith("https://notify.example.com:9090/grpc.health.v1.Health/Check", expect.objectContaining({ method: "POST" }));
    expect(grpcWebBaseUrl()).toBe("https://notify.example.com:9090");
  });

  test("the page's origin, said on the console, when the node's URL cannot be reached", async () => {
    const warn = vi.spyOn(console, "warn").mockImplementation(() => {});
    const f = vi.fn(async (input: Parameters<typeof fetch>[0]) => {
      if (input === "/app.json") return new Response(`{"grpcWebUrl":"https://notify.example.com:9090"}`, { status: 200 });
      throw new TypeError("Failed to fetch");
    });
    await loadAppConfig(f as unknown as typeof fetch);
    expect(grpcWebBaseUrl()).toBe("https://app.example.com");
    expect(warn).toHaveBeenCalledWith(expect.stringContaining("https://notify.example.com:9090 cannot be called from this page"));
    // An answer that is not grpc-web's (a proxy's error page) is no better.
    const g = vi.fn(async (input: Parameters<typeof fetch>[0]) =>
      input === "/app.json" ? new Response(`{"grpcWebUrl":"https://notify.example.com:9090"}`) : new Response("bad gateway", { status: 502 }),
    );
    await loadAppConfig(g as unknown as typeof fetch);
    expect(grpcWebBaseUrl()).toBe("https://app.example.com");
    warn.mockRestore();
  });

  test("the page's origin when the node says none, answers badly or not at all", async () => {
    for (const f of [
      answer(200, `{"grpcWebUrl":""}`),
      answer(404, "404 page not found"),
      answer(200, "<!doctype html>"),
      answer(200, `{"grpcWebUrl":42}`),
      vi.fn(async () => {
        throw new TypeError("Failed to fetch");
      }),
    ]) {
      await loadAppConfig(answer(200, `{"grpcWebUrl":"https://notify.example.com:9090"}`));
      await loadAppConfig(f as unknown as typeof fetch);
      expect(grpcWebBaseUrl()).toBe("https://app.example.com");
    }
  });
});
