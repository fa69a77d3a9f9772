import { create } from "@bufbuild/protobuf";
import { describe, expect, test } from "vitest";
import { EventSchema } from "../../src/gen/notify/v1/notify_pb";
import { describeEvent, isolate } from "../../src/lib/events";

const FSI = "\u2068";
const PDI = "\u2069";

describe("describeEvent", () => {
  test("isolates the event's text inside its sentences", () => {
    const v = describeEvent(
      create(EventSchema, {
        id: "e1",
        payload: {
          case: "pointsAdded",
          value: { guestId: "g1", amount: 10n, newBalance: 600n, restaurantName: "Chez \u202EMax", description: "Lunch" },
        },
      }),
    );
    expect(v.message).toBe(`At ${FSI}Chez \u202EMax${PDI}. ${FSI}Lunch${PDI}. New balance: 600.`);
    // The override cannot reach "New balance": its isolate ends before.
    const tail = v.message.slice(v.message.lastIndexOf(PDI));
    expect(tail).toBe(`${PDI}. New balance: 600.`);
  });

  test("a whole field as the text needs no marks (the element isolates it)", () => {
    const v = describeEvent(create(EventSchema, { payload: { case: "systemAlert", value: { title: "Disk", message: "Full" } } }));
    expect([v.title, v.message]).toEqual(["Disk", "Full"]);
    const a = describeEvent(create(EventSchema, { payload: { case: "adminNotification", value: { title: "Fraud", message: "Check", actionRequired: true } } }));
    expect(a.message).toBe(`${FSI}Check${PDI} (action required)`);
  });

  test("isolate leaves empty text empty", () => {
    expect(isolate("")).toBe("");
    expect(isolate("x")).toBe(`${FSI}x${PDI}`);
  });
});
