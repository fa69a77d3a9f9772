import type { MessageInitShape } from "@bufbuild/protobuf";
import { timestampNow } from "@bufbuild/protobuf/wkt";
import type { PublishRequestSchema, PublishResponse } from "../gen/notify/v1/notify_pb";
import type { NotifyClient } from "../lib/client";
import { mintToken } from "./session";

let serviceToken: Promise<string> | undefined;

/**
 * Publishes as the demo's loyalty backend: a service token from the dev
 * endpoint. In production events come from the backend, never a browser.
 */
export async function publishAsService(client: NotifyClient, req: MessageInitShape<typeof PublishRequestSchema>): Promise<PublishResponse> {
  serviceToken ??= mintToken({ role: "service", sub: "demo-backend" });
  try {
    return await client.notifications.publish(req, { headers: { authorization: `Bearer ${await serviceToken}` } });
  } catch (err) {
    serviceToken = undefined;
    throw err;
  }
}

export function randomId(prefix: string): string {
  const b = new Uint8Array(6);
  crypto.getRandomValues(b);
  return prefix + Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

export const now = timestampNow;
