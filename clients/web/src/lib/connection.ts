// The connection of a NotifyClient, apart from its per-service calls
// (client.ts): one Subscribe stream kept up over grpc-web (reconnection with
// backoff, resume from the last positions, duplicates dropped, gaps and the
// inbox counts reported), its listeners, the token, and the queue of calls
// made while offline.
import type { MessageInitShape } from "@bufbuild/protobuf";
import { durationMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient, type Client, type Transport } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import {
  NotificationService,
  type Connected,
  type Disconnected,
  type Event,
  type ReturnedNotification,
  type RoomState,
  type SubscribeRequestSchema,
} from "../gen/notify/v1/notify_pb";
import { Backoff } from "./backoff";
import { isPermanent, isTokenExpired, isTransient } from "./errors";
import type { EventCase, PayloadOf } from "./events";
import { Emitter } from "./observable";

/** Where a client stands in a room: the last event's offset and the room's epoch. */
export interface Position {
  offset: bigint;
  epoch: string;
}

/**
 * The connection's state: "connecting" before the first stream is up,
 * "connected" while a stream is up, "reconnecting" between streams, and
 * "disconnected" before connect(), after disconnect() or a permanent error
 * (see lastError).
 */
export type ConnectionState = "connecting" | "connected" | "reconnecting" | "disconnected";

/**
 * Returns a token. refresh is true when the last one was refused as expired:
 * a cached token must not be returned again.
 */
export type TokenSource = (opts: { refresh: boolean }) => Promise<string>;

/** Where log lines go; console fits. */
export interface Logger {
  debug(...args: unknown[]): void;
  info(...args: unknown[]): void;
  warn(...args: unknown[]): void;
}

export interface NotifyClientOptions {
  /** notifyd's HTTP port (grpc-web), e.g. "http://127.0.0.1:8080". Default: the page's origin. */
  baseUrl?: string;
  /** A transport to use instead of grpc-web to baseUrl (tests). */
  transport?: Transport;
  /** Reconnection backoff bounds, in ms. Default 250 and 30000. */
  backoff?: { baseMs?: number; maxMs?: number };
  /** How long a stream must have been up for its end to reset the backoff. Default 500ms. */
  healthyAfterMs?: number;
  /** The random source of the jitter, in [0, 1). Default Math.random. */
  random?: () => number;
  /** Most calls kept while offline; more are refused. Default 500. */
  maxQueue?: number;
  /**
   * A stream that carried nothing, not even a heartbeat, for this many
   * heartbeat intervals is taken for dead and reconnected. Default 2; 0 never.
   */
  deadAfterHeartbeats?: number;
  /** Where to log. Default: nowhere. */
  logger?: Logger;
  /** The token source, so that calls work before connect(); connect() may replace it. */
  getToken?: TokenSource;
}

export interface ConnectOptions {
  /** A fixed token. A stream that expires with it stops. */
  token?: string;
  /** Asked before every stream and call; wins over token. */
  getToken?: TokenSource;
  /** Rooms to join. Empty: the token's role's default rooms. */
  rooms?: string[];
  /** Positions to resume from, per room (e.g. saved from positions()). */
  positions?: Record<string, Position> | Map<string, Position>;
}

/**
 * The inbox's live counts, as the stream carries them: after Connected and
 * whenever they change. Both are of the inbox (neither archived nor
 * snoozed); returned lists the notifications back from snooze since the
 * last message.
 */
export interface InboxLive {
  unread: number;
  unseen: number;
  returned: ReturnedNotification[];
}

/** How one stream ended. */
export interface StreamEnd {
  error: ConnectError;
  connected: boolean;
  livedMs: number;
  disconnected?: Disconnected;
  /** What the client does next: "stop", or the wait before reconnecting, in ms. */
  next: "stop" | number;
}

type QueuedCall = {
  name: string;
  send: (headers: Record<string, string>) => Promise<unknown>;
  resolve: (v: unknown) => void;
  reject: (e: unknown) => void;
  failures: number;
};

const noLog: Logger = { debug() {}, info() {}, warn() {} };

/**
 * NotifyConnection is what NotifyClient (client.ts) is built on: the
 * Subscribe stream and its state, the events' listeners, the token, and
 * the calls' queue. NotifyClient adds a method per call of the services.
 */
export class NotifyConnection {
  /** NotificationService over the client's transport (pass authHeaders() yourself). */
  readonly notifications: Client<typeof NotificationService>;
  /** The transport of the stream and of every call. */
  protected readonly transport: Transport;
  readonly backoff: Backoff;

  /** Counters, for tests and a status panel. */
  readonly stats = { streams: 0, connects: 0, duplicatesDropped: 0, gaps: 0, eventsDelivered: 0 };

  private readonly random: () => number;
  private readonly healthyAfterMs: number;
  private readonly maxQueue: number;
  private readonly deadAfter: number;
  private readonly log: Logger;

  private _state: ConnectionState = "disconnected";
  private _lastError?: ConnectError;
  private _connected?: Connected;
  private _unread?: number;
  private _unseen?: number;

  private readonly stateChanged = new Emitter<[ConnectionState, ConnectionState]>();
  private readonly byCase = new Map<EventCase, Emitter<[never, Event]>>();
  private readonly anyEvent = new Emitter<[Event]>();
  private readonly gap = new Emitter<[string, RoomState]>();
  private readonly unreadChanged = new Emitter<[number]>();
  private readonly inboxChanged = new Emitter<[InboxLive]>();
  private readonly connectedEv = new Emitter<[Connected]>();
  private readonly errorEv = new Emitter<[ConnectError]>();
  private readonly streamEnded = new Emitter<[StreamEnd]>();
  private readonly queueChanged = new Emitter<[number]>();

  private tokenSource?: TokenSource;
  private staticToken = false;
  private requested: string[] = [];
  private pos = new Map<string, Position>();
  private rooms?: Set<string>;
  private gen = 0;
  private abort?: AbortController;
  private wake?: () => void;
  private queue: QueuedCall[] = [];
  private flushing = false;
  private flushTimer?: ReturnType<typeof setTimeout>;
  private onlineListener?: () => void;

  constructor(opts: NotifyClientOptions = {}) {
    this.transport =
      opts.transport ??
      createGrpcWebTransport({
        baseUrl: opts.baseUrl ?? (typeof location !== "undefined" ? location.origin : "http://127.0.0.1:8080"),
      });
    this.notifications = createClient(NotificationService, this.transport);
    this.backoff = new Backoff(opts.backoff?.baseMs ?? 250, opts.backoff?.maxMs ?? 30_000);
    this.random = opts.random ?? Math.random;
    this.healthyAfterMs = opts.healthyAfterMs ?? 500;
    this.maxQueue = opts.maxQueue ?? 500;
    this.deadAfter = opts.deadAfterHeartbeats ?? 2;
    this.log = opts.logger ?? noLog;
    this.tokenSource = opts.getToken;
  }

  // ---- connection -------------------------------------------------------

  /**
   * Starts (or restarts, with new options) the subscription. It returns at
   * once; watch state or onConnected. Positions given here, or kept from an
   * earlier connection of this client, are sent to resume.
   */
  connect(opts: ConnectOptions): void {
    if (opts.getToken) {
      this.tokenSource = opts.getToken;
      this.staticToken = false;
    } else if (opts.token !== undefined) {
      const t = opts.token;
      this.tokenSource = async () => t;
      this.staticToken = true;
    } else if (!this.tokenSource) {
      throw new TypeError("NotifyClient.connect: token or getToken is required");
    }
    if (opts.rooms !== undefined) this.setRoomsOnly(opts.rooms);
    if (opts.positions) {
      const entries = opts.positions instanceof Map ? opts.positions.entries() : Object.entries(opts.positions);
      for (const [room, p] of entries) this.pos.set(room, { offset: BigInt(p.offset), epoch: p.epoch });
    }
    this.start();
  }

  /** Changes the stream's rooms (empty: the role's defaults) and reconnects. */
  subscribe(rooms: string[]): void {
    this.setRoomsOnly(rooms);
    if (this.tokenSource) this.start();
  }

  /** Stops the subscription. Queued calls are rejected with Canceled. */
  disconnect(): void {
    this.stop(undefined);
    this.rejectQueue(new ConnectError("client disconnected", Code.Canceled));
  }

  /** Skips the current reconnection wait (e.g. when the network is back). */
  reconnectNow(): void {
    this.wake?.();
  }

  /** The connection's state. */
  get state(): ConnectionState {
    return this._state;
  }

  /** Why the client stopped by itself (a permanent error), if it did. */
  get lastError(): ConnectError | undefined {
    return this._lastError;
  }

  /** The latest stream's Connected message. */
  get connected(): Connected | undefined {
    return this._connected;
  }

  /** The inbox unread count the server sent last, if any. */
  get unread(): number | undefined {
    return this._unread;
  }

  /** The inbox unseen count (the badge) the server sent last, if any. */
  get unseen(): number | undefined {
    return this._unseen;
  }

  /** The rooms of the current stream, once connected (else the rooms asked for). */
  get streamRooms(): string[] {
    return this.rooms ? [...this.rooms] : [...this.requested];
  }

  /** A copy of the last position delivered in each room. */
  positions(): Map<string, Position> {
    return new Map([...this.pos].map(([r, p]) => [r, { ...p }]));
  }

  // ---- listeners --------------------------------------------------------

  /** Calls l with every state change; returns the function that stops it. */
  onState(l: (state: ConnectionState, prev: ConnectionState) => void): () => void {
    return this.stateChanged.add(l);
  }

  /** Calls handler with each event of a kind: on("pointsAdded", (ev, env) => ...). */
  on<K extends EventCase>(kind: K, handler: (ev: PayloadOf<K>, env: Event) => void): () => void {
    let em = this.byCase.get(kind);
    if (!em) {
      em = new Emitter<[never, Event]>();
      this.byCase.set(kind, em);
    }
    return em.add(handler as (ev: never, env: Event) => void);
  }

  /** Calls handler with every event, known payload or not, after the typed handlers. */
  onEvent(handler: (env: Event) => void): () => void {
    return this.anyEvent.add(handler);
  }

  /**
   * Calls handler for every room that came back recovered=false although a
   * position was sent: the events in between are lost to the stream; reload
   * the room's state (the inbox).
   */
  onGap(handler: (room: string, state: RoomState) => void): () => void {
    return this.gap.add(handler);
  }

  /** Calls handler with the inbox unread count whenever the server sends it. */
  onUnread(handler: (count: number) => void): () => void {
    return this.unreadChanged.add(handler);
  }

  /**
   * Calls handler with every inbox counts message: unread and unseen counts,
   * and the notifications back from snooze. Runs after onUnread's handlers.
   */
  onInbox(handler: (live: InboxLive) => void): () => void {
    return this.inboxChanged.add(handler);
  }

  /** Calls handler with every stream's Connected message. */
  onConnected(handler: (c: Connected) => void): () => void {
    return this.connectedEv.add(handler);
  }

  /** Calls handler with the permanent error that stopped the client. */
  onError(handler: (err: ConnectError) => void): () => void {
    return this.errorEv.add(handler);
  }

  /** Calls handler when a stream ends, with what happens next. */
  onStreamEnd(handler: (end: StreamEnd) => void): () => void {
    return this.streamEnded.add(handler);
  }

  /** Calls handler with the number of queued calls whenever it changes. */
  onQueue(handler: (pending: number) => void): () => void {
    return this.queueChanged.add(handler);
  }

  /** Calls not yet sent (made while offline, or waiting to be retried). */
  get pendingCalls(): number {
    return this.queue.length;
  }

  // ---- the token and the queue of calls ---------------------------------

  /** The authorization header with a current token. */
  async authHeaders(refresh = false): Promise<Record<string, string>> {
    if (!this.tokenSource) throw new ConnectError("no token: call connect() first", Code.Unauthenticated);
    return { authorization: `Bearer ${await this.tokenSource({ refresh })}` };
  }

  /** Runs a call with the token, once more with a fresh one if it had expired. */
  protected async unary<T>(send: (headers: Record<string, string>) => Promise<T>): Promise<T> {
    try {
      return await send(await this.authHeaders());
    } catch (err) {
      if (isTokenExpired(err) && !this.staticToken) return send(await this.authHeaders(true));
      throw ConnectError.from(err);
    }
  }

  protected enqueue<T>(name: string, send: (headers: Record<string, string>) => Promise<T>): Promise<T> {
    if (this.queue.length >= this.maxQueue) {
      return Promise.reject(new ConnectError(`offline queue full (${this.maxQueue} calls)`, Code.ResourceExhausted));
    }
    return new Promise<T>((resolve, reject) => {
      this.queue.push({ name, send, resolve: resolve as (v: unknown) => void, reject, failures: 0 });
      this.queueChanged.emit(this.queue.length);
      void this.flush();
    });
  }

  /** Sends queued calls in order while connected. */
  private async flush(): Promise<void> {
    if (this.flushing) return;
    this.flushing = true;
    try {
      while (this.queue.length > 0 && this._state === "connected") {
        const call = this.queue[0];
        try {
          const res = await this.unary(call.send);
          this.queue.shift();
          this.queueChanged.emit(this.queue.length);
          call.resolve(res);
        } catch (err) {
          const e = ConnectError.from(err);
          if (this.queue[0] !== call) continue; // rejected meanwhile (disconnect)
          if (isTransient(e)) {
            // Kept at the head: retried after a backoff, or on reconnection.
            const wait = this.backoff.delay(call.failures++, this.random);
            this.log.info("notify: call failed, will retry", call.name, e.message, wait);
            clearTimeout(this.flushTimer);
            this.flushTimer = setTimeout(() => void this.flush(), wait);
            return;
          }
          this.queue.shift();
          this.queueChanged.emit(this.queue.length);
          call.reject(e);
        }
      }
    } finally {
      this.flushing = false;
    }
  }

  private rejectQueue(err: ConnectError): void {
    const q = this.queue;
    this.queue = [];
    clearTimeout(this.flushTimer);
    if (q.length) this.queueChanged.emit(0);
    for (const c of q) c.reject(err);
  }

  // ---- the stream loop --------------------------------------------------

  private setRoomsOnly(rooms: string[]): void {
    this.requested = [...new Set(rooms)];
    if (this.requested.length > 0) {
      this.rooms = new Set(this.requested);
      for (const r of [...this.pos.keys()]) if (!this.rooms.has(r)) this.pos.delete(r);
    } else {
      this.rooms = undefined;
    }
  }

  private setState(s: ConnectionState): void {
    const prev = this._state;
    if (prev === s) return;
    this._state = s;
    this.stateChanged.emit(s, prev);
    if (s === "connected") void this.flush();
  }

  private start(): void {
    this.stop(undefined, false);
    const gen = ++this.gen;
    this._lastError = undefined;
    if (typeof window !== "undefined" && typeof window.addEventListener === "function" && !this.onlineListener) {
      this.onlineListener = () => this.reconnectNow();
      window.addEventListener("online", this.onlineListener);
    }
    void this.run(gen);
  }

  private stop(err: ConnectError | undefined, toDisconnected = true): void {
    this.gen++;
    this.abort?.abort();
    this.abort = undefined;
    this.wake?.();
    if (this.onlineListener && typeof window !== "undefined") {
      window.removeEventListener("online", this.onlineListener);
      this.onlineListener = undefined;
    }
    if (err) this._lastError = err;
    if (toDisconnected) this.setState("disconnected");
  }

  private async run(gen: number): Promise<void> {
    let attempt = 0;
    let refresh = false;
    let expiredInARow = 0;
    this.setState(this.stats.connects === 0 ? "connecting" : "reconnecting");
    while (gen === this.gen) {
      const end = await this.stream(gen, refresh);
      if (gen !== this.gen) return;
      refresh = false;
      const healthy = end.connected && end.livedMs >= this.healthyAfterMs;
      if (healthy) attempt = 0;
      const expired = isTokenExpired(end.error);
      expiredInARow = expired ? expiredInARow + 1 : 0;

      let next: "stop" | number;
      if (isPermanent(end.error) || (expired && this.staticToken)) {
        next = "stop";
      } else if (expired && (healthy || expiredInARow === 1)) {
        // A fresh token, at once. (Expiring again right away means the token
        // source hands out stale tokens: the backoff below slows that down.)
        refresh = true;
        next = 0;
      } else {
        const delay = end.disconnected?.reconnectDelay ? durationMs(end.disconnected.reconnectDelay) : 0;
        if (delay > 0) {
          next = delay;
        } else {
          next = this.backoff.delay(attempt, this.random);
          attempt++;
        }
        refresh = expired;
      }
      end.next = next;
      this.streamEnded.emit(end);
      if (next === "stop") {
        this.log.warn("notify: subscription stopped", end.error.message);
        this.stop(end.error);
        this.rejectQueue(new ConnectError(`subscription stopped: ${end.error.rawMessage}`, Code.FailedPrecondition));
        this.errorEv.emit(end.error);
        return;
      }
      this.log.info("notify: stream ended, reconnecting", end.error.message, "in", next, "ms");
      this.setState("reconnecting");
      await this.sleep(next);
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      if (ms <= 0) {
        resolve();
        return;
      }
      const t = setTimeout(() => done(), ms);
      const done = () => {
        clearTimeout(t);
        if (this.wake === done) this.wake = undefined;
        resolve();
      };
      this.wake = done;
    });
  }

  /** Runs one stream until it ends. */
  private async stream(gen: number, refresh: boolean): Promise<StreamEnd> {
    const end: StreamEnd = { error: new ConnectError("stream ended", Code.Unavailable), connected: false, livedMs: 0, next: 0 };
    let headers: Record<string, string>;
    try {
      headers = await this.authHeaders(refresh);
    } catch (err) {
      end.error = new ConnectError(`token source: ${ConnectError.from(err).rawMessage}`, Code.Unavailable);
      return end;
    }
    if (gen !== this.gen) return end;
    const { req, sent } = this.request();
    const ac = new AbortController();
    this.abort = ac;
    this.stats.streams++;
    let since = 0;
    let dead = false;
    let watchdog: ReturnType<typeof setTimeout> | undefined;
    let deadAfterMs = 0;
    const arm = () => {
      if (deadAfterMs <= 0) return;
      clearTimeout(watchdog);
      watchdog = setTimeout(() => {
        dead = true;
        ac.abort();
      }, deadAfterMs);
    };
    try {
      for await (const msg of this.notifications.subscribe(req, { headers, signal: ac.signal })) {
        if (gen !== this.gen) break;
        const c = msg.control;
        if (c.case === "connected") {
          since = Date.now();
          end.connected = true;
          const hb = c.value.heartbeatInterval ? durationMs(c.value.heartbeatInterval) : 0;
          deadAfterMs = hb > 0 && this.deadAfter > 0 ? hb * this.deadAfter + 1000 : 0;
          this.onConnectedMsg(c.value, sent);
        }
        arm();
        for (const ev of msg.events) this.deliver(ev);
        if (c.case === "unread") {
          this._unread = Number(c.value.count);
          this._unseen = Number(c.value.unseen);
          this.unreadChanged.emit(this._unread);
          this.inboxChanged.emit({ unread: this._unread, unseen: this._unseen, returned: c.value.returned });
        } else if (c.case === "disconnected") {
          end.disconnected = c.value;
        }
      }
      end.error = new ConnectError("stream ended by the server", Code.Unavailable);
    } catch (err) {
      end.error = dead ? new ConnectError("stream silent for too long", Code.Unavailable) : ConnectError.from(err);
    } finally {
      clearTimeout(watchdog);
      if (this.abort === ac) this.abort = undefined;
      if (end.connected) end.livedMs = Date.now() - since;
    }
    return end;
  }

  /** The SubscribeRequest, with the positions of the stream's rooms. */
  private request(): { req: MessageInitShape<typeof SubscribeRequestSchema>; sent: Set<string> } {
    const positions = [...this.pos]
      .filter(([room]) => !this.rooms || this.rooms.has(room))
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([room, p]) => ({ room, offset: p.offset, epoch: p.epoch }));
    return { req: { rooms: this.requested, positions }, sent: new Set(positions.map((p) => p.room)) };
  }

  private onConnectedMsg(c: Connected, sent: Set<string>): void {
    const gaps: RoomState[] = [];
    const rooms = new Set<string>();
    for (const st of c.rooms) {
      rooms.add(st.room);
      // The stream delivers the room's events after start_offset: the top
      // without a position, ours when recovered, else the top or 0 (a new
      // epoch replayed from its first event, e.g. after a restart).
      if (!sent.has(st.room)) {
        this.pos.set(st.room, { offset: st.startOffset, epoch: st.epoch });
      } else if (!st.recovered) {
        this.pos.set(st.room, { offset: st.startOffset, epoch: st.epoch });
        gaps.push(st);
      }
      // Recovered: the server replays from our position, which stands.
    }
    for (const r of [...this.pos.keys()]) if (!rooms.has(r)) this.pos.delete(r);
    this.rooms = rooms;
    this._connected = c;
    this.stats.connects++;
    this.stats.gaps += gaps.length;
    this.setState("connected");
    this.connectedEv.emit(c);
    for (const st of gaps) {
      this.log.warn("notify: room not recovered", st.room);
      this.gap.emit(st.room, st);
    }
  }

  /** Hands ev to the handlers unless it is at or before the room's position in the same epoch. */
  private deliver(ev: Event): void {
    const p = this.pos.get(ev.room);
    if (p && p.epoch === ev.epoch && ev.offset <= p.offset) {
      this.stats.duplicatesDropped++;
      this.log.debug("notify: duplicate dropped", ev.room, ev.offset);
      return;
    }
    this.pos.set(ev.room, { offset: ev.offset, epoch: ev.epoch });
    this.stats.eventsDelivered++;
    const k = ev.payload.case;
    if (k) this.byCase.get(k)?.emit(ev.payload.value as never, ev);
    this.anyEvent.emit(ev);
  }
}
