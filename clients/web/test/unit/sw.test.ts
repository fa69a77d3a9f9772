import { describe, expect, test } from "vitest";
import { clickUrl, notificationFor, pageFor, parsePush, pickWindow } from "../../src/sw/payload";

// What notifyd's web push sender encrypts (internal/channel.WebPushPayload).
const points = {
  eventId: "ev1",
  type: "EVENT_TYPE_POINTS_ADDED",
  title: "+100 points",
  body: "Chez Max added 100 points. Your balance is 600.",
  topic: "points-card-g1",
  data: { id: "ev1", room: "user:g1", publishTime: "2026-12-06T10:00:00Z", pointsAdded: { amount: 100 } },
};

describe("service worker payload", () => {
  test("notifyd's JSON becomes a notification with its text, tag and time", () => {
    const p = parsePush(JSON.stringify(points));
    expect(p).toEqual(points);
    const n = notificationFor(p);
    expect(n.title).toBe("+100 points");
    expect(n.options).toMatchObject({
      body: "Chez Max added 100 points. Your balance is 600.",
      tag: "points-card-g1",
      renotify: true,
      dir: "auto",
      timestamp: Date.parse("2026-12-06T10:00:00Z"),
      data: { eventId: "ev1", type: "EVENT_TYPE_POINTS_ADDED", url: "/guest" },
    });
    expect(n.options.requireInteraction).toBeUndefined();
  });

  test("a critical alert stays; without topic the event id is the tag", () => {
    const n = notificationFor(parsePush(JSON.stringify({ eventId: "a1", type: "EVENT_TYPE_SYSTEM_ALERT", title: "DB down", body: "", critical: true })));
    expect(n.options).toMatchObject({ tag: "a1", renotify: false, requireInteraction: true, data: { url: "/admin" } });
  });

  test("text, junk and oversized fields still show something bounded", () => {
    expect(parsePush("hello")).toEqual({ eventId: "", type: "", title: "Max Loyalty", body: "hello" });
    expect(parsePush(null).title).toBe("Max Loyalty");
    expect(parsePush("{not json").body).toBe("{not json");
    expect(parsePush("[1,2]").body).toBe("[1,2]");
    const p = parsePush(JSON.stringify({ title: 42, body: "x".repeat(1000) + "\n", eventId: {}, critical: "yes" }));
    expect(p.title).toBe("Max Loyalty");
    expect(Array.from(p.body).length).toBe(400);
    expect(p.body.endsWith("…")).toBe(true);
    expect(p.eventId).toBe("");
    expect(p.critical).toBeUndefined();
    expect(notificationFor(p).options.tag).toBeUndefined();
    expect(parsePush(JSON.stringify({ title: "a\r\nb" })).title).toBe("a b");
  });

  test("pages per type, and clicks open only the app's own paths", () => {
    expect(pageFor("EVENT_TYPE_POINTS_EXPIRED")).toBe("/guest");
    expect(pageFor("EVENT_TYPE_RESTAURANT_TRANSACTION")).toBe("/restaurant");
    expect(pageFor("EVENT_TYPE_ADMIN_NOTIFICATION")).toBe("/admin");
    expect(pageFor("EVENT_TYPE_NEW_THING")).toBe("/");
    expect(clickUrl({ url: "/guest" })).toBe("/guest");
    for (const bad of ["https://evil.example/", "//evil.example/", "/\\evil.example", "javascript:alert(1)", 7, undefined]) {
      expect(clickUrl({ url: bad })).toBe("/");
    }
    expect(clickUrl(null)).toBe("/");
  });

  test("a click focuses the window on the page, else a focused or visible one, of this origin only", () => {
    const o = "http://app.example";
    const w = (url: string, focused = false, visibilityState = "hidden") => ({ url, focused, visibilityState });
    const other = w("http://other.example/guest", true, "visible");
    const settings = w(`${o}/settings`, false, "visible");
    const guest = w(`${o}/guest`);
    expect(pickWindow([other, settings, guest], "/guest", o)).toBe(guest);
    expect(pickWindow([other, settings], "/guest", o)).toBe(settings);
    expect(pickWindow([other], "/guest", o)).toBeUndefined();
    expect(pickWindow([w(`${o}/a`), w(`${o}/b`, true)], "/x", o)?.url).toBe(`${o}/b`);
  });
});
