// A scripted notify server on Connect's in-memory router transport: each
// Subscribe call is a Stream the test feeds message by message.
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { Code, ConnectError, createRouterTransport, type HandlerContext } from "@connectrpc/connect";
import { durationFromMs, timestampDate, timestampFromMs, type Timestamp } from "@bufbuild/protobuf/wkt";
import {
  InboxAction,
  InboxService,
  NotificationSchema,
  NotificationState,
  type InboxCounts,
  type Notification,
} from "../../src/gen/notify/v1/inbox_pb";
import {
  EventSchema,
  NotificationService,
  SubscribeResponseSchema,
  type ConfirmActionRequest,
  type Event,
  type ReturnedNotification,
  type SubscribeRequest,
  type SubscribeResponse,
} from "../../src/gen/notify/v1/notify_pb";
import {
  DeliveryService,
  DeliveryStepSchema,
  type DeliveryStep,
  type RegisterDeviceRequest,
} from "../../src/gen/notify/v1/delivery_pb";
import { PreferencesSchema, type Preferences } from "../../src/gen/notify/v1/inbox_pb";
import { ErrorInfoSchema } from "../../src/lib/errors";

/** One Subscribe call, driven by the test. */
export class Stream {
  readonly req: SubscribeRequest;
  readonly headers: Headers;
  private items: (SubscribeResponse | ConnectError | null)[] = [];
  private waiter?: () => void;
  closedByClient = false;

  constructor(req: SubscribeRequest, headers: Headers) {
    this.req = req;
    this.headers = headers;
  }

  send(msg: MessageInitShape<typeof SubscribeResponseSchema>): this {
    this.push(create(SubscribeResponseSchema, msg));
    return this;
  }

  connected(
    rooms: { room: string; epoch: string; offset: bigint | number; recovered?: boolean; startOffset?: bigint | number }[],
    heartbeatMs = 25_000,
  ): this {
    return this.send({
      control: {
        case: "connected",
        value: {
          userId: "g1",
          serverId: "test",
          heartbeatInterval: durationFromMs(heartbeatMs),
          rooms: rooms.map((r) => ({ ...r, offset: BigInt(r.offset), recovered: r.recovered ?? false, startOffset: BigInt(r.startOffset ?? r.offset) })),
        },
      },
    });
  }

  events(...evs: Event[]): this {
    return this.send({ events: evs });
  }

  unread(count: number): this {
    return this.send({ control: { case: "unread", value: { count: BigInt(count) } } });
  }

  /** An inbox counts message: unread, unseen, and notifications back from snooze. */
  inbox(unread: number, unseen: number, returned: ReturnedNotification[] = []): this {
    return this.send({ control: { case: "unread", value: { count: BigInt(unread), unseen: BigInt(unseen), returned } } });
  }

  disconnected(reconnectDelayMs: number): this {
    return this.send({
      control: { case: "disconnected", value: { reason: 1, reconnectDelay: durationFromMs(reconnectDelayMs) } },
    });
  }

  /** Ends the stream: with an error, or cleanly. */
  end(err?: ConnectError): void {
    this.push(err ?? null);
  }

  private push(x: SubscribeResponse | ConnectError | null): void {
    this.items.push(x);
    this.waiter?.();
  }

  async *run(signal: AbortSignal): AsyncIterable<SubscribeResponse> {
    const aborted = new Promise<void>((resolve) => signal.addEventListener("abort", () => resolve(), { once: true }));
    for (;;) {
      while (this.items.length === 0) {
        if (signal.aborted) {
          this.closedByClient = true;
          return;
        }
        await Promise.race([new Promise<void>((r) => (this.waiter = r)), aborted]);
      }
      const x = this.items.shift()!;
      if (x === null) return;
      if (x instanceof ConnectError) throw x;
      yield x;
    }
  }
}

/** A ConnectError with notify's ErrorInfo detail. */
export function statusError(code: Code, reason: string, message = reason.toLowerCase()): ConnectError {
  return new ConnectError(message, code, undefined, [{ desc: ErrorInfoSchema, value: { reason, domain: "notify" } as never }]);
}

export function pointsAdded(room: string, offset: number, epoch: string, id = `ev-${room}-${epoch}-${offset}`, amount = 10): Event {
  return create(EventSchema, {
    id,
    room,
    offset: BigInt(offset),
    epoch,
    publishTime: timestampFromMs(Date.now()),
    payload: { case: "pointsAdded", value: { guestId: "g1", amount: BigInt(amount), newBalance: BigInt(100 + offset) } },
  });
}

export type UnaryCall = { method: string; req: unknown; auth: string | null };

/** The fake server: streams, unary calls, and an inbox with notifyd's states. */
export class FakeServer {
  streams: Stream[] = [];
  calls: UnaryCall[] = [];
  inbox: Notification[] = [];
  /** Errors to answer the next unary calls with, in order (undefined: answer normally). */
  failNext: (ConnectError | undefined)[] = [];
  /** Answer as a notifyd before inbox states: no counts in lists. */
  legacy = false;
  /** The server's clock, for snoozes. */
  now = () => Date.now();
  /** The caller's preferences (UpdatePreferences replaces them). */
  preferences: Preferences = create(PreferencesSchema, { enabled: true, sound: true });
  /** GetDeliveryConfig's VAPID public key ("" : no web push). */
  vapidPublicKey = "";
  /** Registered devices, by token (a web push endpoint). */
  devices = new Map<string, RegisterDeviceRequest>();
  /** Delivery steps per event id, for GetDeliveryStatus. */
  timelines = new Map<string, DeliveryStep[]>();
  private streamWaiters: (() => void)[] = [];
  private nextId = 1;

  readonly transport = createRouterTransport(({ service }) => {
    service(NotificationService, {
      subscribe: (req: SubscribeRequest, ctx: HandlerContext) => {
        const s = new Stream(req, ctx.requestHeader);
        this.streams.push(s);
        this.streamWaiters.splice(0).forEach((w) => w());
        return s.run(ctx.signal);
      },
      confirmAction: async (req: ConfirmActionRequest, ctx: HandlerContext) => {
        this.unary("confirmAction", req, ctx);
        return { eventId: `confirm-${req.actionId}` };
      },
      publish: async (req, ctx) => {
        this.unary("publish", req, ctx);
        return { eventId: "p1" };
      },
    });
    // Unknown ids are skipped (the client's tests mark ids the inbox never had).
    const update = (ids: string[], f: (n: Notification) => void) => {
      for (const n of this.inbox) if (ids.includes(n.id)) f(n);
    };
    service(InboxService, {
      markRead: async (req, ctx) => {
        this.unary("markRead", req, ctx);
        update(req.ids, (n) => ((n.read = true), (n.seen = true)));
        return { unreadCount: this.unreadCount() };
      },
      markUnread: async (req, ctx) => {
        this.unary("markUnread", req, ctx);
        update(req.ids, (n) => (n.read = false));
        return { unreadCount: this.unreadCount() };
      },
      markSeen: async (req, ctx) => {
        this.unary("markSeen", req, ctx);
        update(req.ids, (n) => (n.seen = true));
        return { counts: this.counts() };
      },
      markUnseen: async (req, ctx) => {
        this.unary("markUnseen", req, ctx);
        update(req.ids, (n) => (n.seen = false));
        return { counts: this.counts() };
      },
      archive: async (req, ctx) => {
        this.unary("archive", req, ctx);
        update(req.ids, (n) => ((n.archived = true), (n.snoozeUntil = undefined)));
        return { counts: this.counts() };
      },
      unarchive: async (req, ctx) => {
        this.unary("unarchive", req, ctx);
        update(req.ids, (n) => (n.archived = false));
        return { counts: this.counts() };
      },
      snooze: async (req, ctx) => {
        this.unary("snooze", req, ctx);
        update(req.ids, (n) => Object.assign(n, { snoozeUntil: req.until, archived: false, seen: false, read: false }));
        return { until: req.until, counts: this.counts() };
      },
      unsnooze: async (req, ctx) => {
        this.unary("unsnooze", req, ctx);
        update(req.ids, (n) => (n.snoozeUntil = undefined));
        return { counts: this.counts() };
      },
      bulkUpdate: async (req, ctx) => {
        this.unary("bulkUpdate", req, ctx);
        const hit = this.inbox.filter((n) => this.inState(n, req.filter?.state ?? NotificationState.UNSPECIFIED));
        const act: Partial<Record<InboxAction, (n: Notification) => void>> = {
          [InboxAction.SEEN]: (n) => (n.seen = true),
          [InboxAction.READ]: (n) => ((n.read = true), (n.seen = true)),
          [InboxAction.ARCHIVE]: (n) => ((n.archived = true), (n.snoozeUntil = undefined)),
          [InboxAction.DELETE]: (n) => (this.inbox = this.inbox.filter((x) => x !== n)),
        };
        hit.forEach((n) => act[req.action]!(n));
        return { changed: BigInt(hit.length), counts: this.counts() };
      },
      getCounts: async (req, ctx) => {
        this.unary("getCounts", req, ctx);
        return { counts: this.counts() };
      },
      markAllRead: async (req, ctx) => {
        this.unary("markAllRead", req, ctx);
        const inbox = this.inbox.filter((n) => this.inState(n, NotificationState.INBOX));
        const marked = inbox.filter((n) => !n.read).length;
        inbox.forEach((n) => ((n.read = true), (n.seen = true)));
        return { marked: BigInt(marked), unreadCount: this.unreadCount() };
      },
      deleteNotification: async (req, ctx) => {
        this.unary("deleteNotification", req, ctx);
        this.inbox = this.inbox.filter((n) => n.id !== req.id);
        return { unreadCount: this.unreadCount() };
      },
      listNotifications: async (req, ctx) => {
        this.unary("listNotifications", req, ctx);
        const sorted = [...this.inbox].filter((n) => this.inState(n, req.state)).sort((a, b) => Number(b.id) - Number(a.id));
        const start = req.pageToken ? Number(req.pageToken) : 0;
        const size = req.pageSize || 50;
        const page = sorted.slice(start, start + size);
        const next = start + size < sorted.length ? String(start + size) : "";
        return { notifications: page, nextPageToken: next, unreadCount: this.unreadCount(), counts: this.legacy ? undefined : this.counts() };
      },
      getPreferences: async (req, ctx) => {
        this.unary("getPreferences", req, ctx);
        return { preferences: this.preferences };
      },
      updatePreferences: async (req, ctx) => {
        this.unary("updatePreferences", req, ctx);
        this.preferences = create(PreferencesSchema, req.preferences);
        return { preferences: this.preferences };
      },
    });
    service(DeliveryService, {
      getDeliveryConfig: async (req, ctx) => {
        this.unary("getDeliveryConfig", req, ctx);
        return { vapidPublicKey: this.vapidPublicKey };
      },
      registerDevice: async (req, ctx) => {
        this.unary("registerDevice", req, ctx);
        const token = req.device.case === "webPush" ? req.device.value.endpoint : String(req.device.value);
        this.devices.set(token, req);
        return { device: { id: `d${this.devices.size}`, label: req.label } };
      },
      removeDevice: async (req, ctx) => {
        this.unary("removeDevice", req, ctx);
        if (!this.devices.delete(req.token)) throw new ConnectError("no such device", Code.NotFound);
        return {};
      },
      getDeliveryStatus: async (req, ctx) => {
        this.unary("getDeliveryStatus", req, ctx);
        return {
          timelines: req.eventIds.filter((id) => this.timelines.has(id)).map((id) => ({ eventId: id, steps: this.timelines.get(id)! })),
        };
      },
    });
  });

  /** Whether n is in a state, at the server's now. */
  inState(n: Notification, st: NotificationState): boolean {
    const snoozed = !!n.snoozeUntil && timestampDate(n.snoozeUntil).getTime() > this.now();
    const inbox = !n.archived && !snoozed;
    switch (st) {
      case NotificationState.UNREAD:
        return inbox && !n.read;
      case NotificationState.UNSEEN:
        return inbox && !n.seen;
      case NotificationState.READ:
        return inbox && n.read;
      case NotificationState.ARCHIVED:
        return n.archived;
      case NotificationState.SNOOZED:
        return snoozed && !n.archived;
      case NotificationState.ALL:
        return true;
    }
    return inbox;
  }

  counts(): InboxCounts {
    const inbox = this.inbox.filter((n) => this.inState(n, NotificationState.INBOX));
    return {
      $typeName: "notify.v1.InboxCounts",
      unseen: BigInt(inbox.filter((n) => !n.seen).length),
      unread: BigInt(inbox.filter((n) => !n.read).length),
      archived: BigInt(this.inbox.filter((n) => this.inState(n, NotificationState.ARCHIVED)).length),
      snoozed: BigInt(this.inbox.filter((n) => this.inState(n, NotificationState.SNOOZED)).length),
      inbox: BigInt(inbox.length),
    };
  }

  private unary(method: string, req: unknown, ctx: HandlerContext): void {
    this.calls.push({ method, req, auth: ctx.requestHeader.get("authorization") });
    const err = this.failNext.shift();
    if (err) throw err;
  }

  unreadCount(): bigint {
    return this.counts().unread;
  }

  /** Adds an inbox row for ev (ids count up, like notifyd's). */
  addToInbox(ev: Event): Notification {
    const n = create(NotificationSchema, {
      id: String(this.nextId++),
      event: ev,
      read: false,
      createTime: ev.publishTime,
      eventType: 1,
    });
    this.inbox.push(n);
    return n;
  }

  /** Resolves when the n-th Subscribe call (1-based) has arrived. */
  async waitStreams(n: number): Promise<Stream> {
    while (this.streams.length < n) await new Promise<void>((r) => this.streamWaiters.push(r));
    return this.streams[n - 1];
  }

  /** Appends a delivery step to an event's timeline. */
  addStep(eventId: string, step: { channel: number; state: number; target?: string; detail?: string; attempt?: number; time?: Timestamp }): void {
    const list = this.timelines.get(eventId) ?? [];
    list.push(create(DeliveryStepSchema, { ...step, eventId, id: `s${list.length + 1}` }));
    this.timelines.set(eventId, list);
  }

  methods(): string[] {
    return this.calls.map((c) => c.method);
  }
}

/** Lets pending promise callbacks run (the router transport is all promises). */
export async function settle(rounds = 20): Promise<void> {
  for (let i = 0; i < rounds; i++) await Promise.resolve();
  await new Promise<void>((r) => setImmediate(r));
}
