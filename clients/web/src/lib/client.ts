// NotifyClient: a method per call of notify's services (the inbox, actions
// and publishing, delivery, schedules) over the connection of connection.ts,
// which keeps the stream up and holds the token and the queue of calls.
import type { MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { createClient, type Client } from "@connectrpc/connect";
import {
  InboxService,
  type ArchiveResponse,
  type BulkUpdateRequestSchema,
  type BulkUpdateResponse,
  type DeleteNotificationResponse,
  type GetCountsResponse,
  type GetPreferencesResponse,
  type ListNotificationsRequestSchema,
  type ListNotificationsResponse,
  type MarkAllReadResponse,
  type MarkReadResponse,
  type MarkSeenResponse,
  type MarkUnreadResponse,
  type MarkUnseenResponse,
  type PreferencesSchema,
  type SnoozeResponse,
  type UnarchiveResponse,
  type UnsnoozeResponse,
  type UpdatePreferencesResponse,
} from "../gen/notify/v1/inbox_pb";
import type {
  ConfirmActionRequestSchema,
  ConfirmActionResponse,
  PublishRequestSchema,
  PublishResponse,
} from "../gen/notify/v1/notify_pb";
import {
  DeliveryService,
  type GetDeliveryConfigResponse,
  type GetDeliveryStatusResponse,
  type ListDevicesResponse,
  type RegisterDeviceRequestSchema,
  type RegisterDeviceResponse,
  type RemoveDeviceRequestSchema,
  type RemoveDeviceResponse,
} from "../gen/notify/v1/delivery_pb";
import {
  ScheduleService,
  type CancelScheduledRequestSchema,
  type CancelScheduledResponse,
  type ListDigestsResponse,
  type ListScheduledRequestSchema,
  type ListScheduledResponse,
  type ReleaseDigestRequestSchema,
  type ReleaseDigestResponse,
} from "../gen/notify/v1/schedule_pb";
import { NotifyConnection, type NotifyClientOptions } from "./connection";

export type { ConnectOptions, ConnectionState, InboxLive, Logger, NotifyClientOptions, Position, StreamEnd, TokenSource } from "./connection";

/**
 * NotifyClient keeps one Subscribe stream up over grpc-web: it reconnects
 * with exponential backoff and full jitter (or the server's
 * reconnect_delay), resumes each room from the last position it delivered,
 * drops duplicates, reports rooms that could not be resumed (onGap), tracks
 * the inbox unread count, and queues inbox writes and confirmations made
 * while offline, sending them in order once connected again.
 *
 * The stream, the token and the queue are NotifyConnection's
 * (connection.ts); this class adds a method per call of the services.
 */
export class NotifyClient extends NotifyConnection {
  /** InboxService over the client's transport (pass authHeaders() yourself). */
  readonly inbox: Client<typeof InboxService>;
  /** DeliveryService (devices, web push, delivery timelines) over the client's transport. */
  readonly delivery: Client<typeof DeliveryService>;
  /** ScheduleService (scheduled publishes, digests) over the client's transport. */
  readonly schedule: Client<typeof ScheduleService>;

  constructor(opts: NotifyClientOptions = {}) {
    super(opts);
    this.inbox = createClient(InboxService, this.transport);
    this.delivery = createClient(DeliveryService, this.transport);
    this.schedule = createClient(ScheduleService, this.transport);
  }

  // ---- calls ------------------------------------------------------------

  /** Marks inbox notifications read. Queued while offline. */
  markRead(ids: string[]): Promise<MarkReadResponse> {
    return this.enqueue("markRead", (headers) => this.inbox.markRead({ ids }, { headers }));
  }

  /** Marks every inbox notification read. Queued while offline. */
  markAllRead(): Promise<MarkAllReadResponse> {
    return this.enqueue("markAllRead", (headers) => this.inbox.markAllRead({}, { headers }));
  }

  /** Marks inbox notifications unread. Queued while offline. */
  markUnread(ids: string[]): Promise<MarkUnreadResponse> {
    return this.enqueue("markUnread", (headers) => this.inbox.markUnread({ ids }, { headers }));
  }

  /** Marks inbox notifications seen (shown to the user). Queued while offline. */
  markSeen(ids: string[]): Promise<MarkSeenResponse> {
    return this.enqueue("markSeen", (headers) => this.inbox.markSeen({ ids }, { headers }));
  }

  /** Marks inbox notifications unseen. Queued while offline. */
  markUnseen(ids: string[]): Promise<MarkUnseenResponse> {
    return this.enqueue("markUnseen", (headers) => this.inbox.markUnseen({ ids }, { headers }));
  }

  /** Archives inbox notifications. Queued while offline. */
  archive(ids: string[]): Promise<ArchiveResponse> {
    return this.enqueue("archive", (headers) => this.inbox.archive({ ids }, { headers }));
  }

  /** Moves archived notifications back to the inbox. Queued while offline. */
  unarchive(ids: string[]): Promise<UnarchiveResponse> {
    return this.enqueue("unarchive", (headers) => this.inbox.unarchive({ ids }, { headers }));
  }

  /**
   * Snoozes inbox notifications until a time (1 s to 366 days ahead); they
   * come back unseen and unread, announced on the stream (onInbox). Queued
   * while offline: a time already past when it is sent is refused.
   */
  snooze(ids: string[], until: Date): Promise<SnoozeResponse> {
    return this.enqueue("snooze", (headers) => this.inbox.snooze({ ids, until: timestampFromDate(until) }, { headers }));
  }

  /** Brings snoozed notifications back now. Queued while offline. */
  unsnooze(ids: string[]): Promise<UnsnoozeResponse> {
    return this.enqueue("unsnooze", (headers) => this.inbox.unsnooze({ ids }, { headers }));
  }

  /** Applies one action to every notification matching a filter (all seen, archive all read, ...). Queued while offline. */
  bulkUpdate(req: MessageInitShape<typeof BulkUpdateRequestSchema>): Promise<BulkUpdateResponse> {
    return this.enqueue("bulkUpdate", (headers) => this.inbox.bulkUpdate(req, { headers }));
  }

  /** The inbox's counts per state. Not queued. */
  getCounts(): Promise<GetCountsResponse> {
    return this.unary((headers) => this.inbox.getCounts({}, { headers }));
  }

  /** Deletes one inbox notification. Queued while offline. */
  deleteNotification(id: string): Promise<DeleteNotificationResponse> {
    return this.enqueue("deleteNotification", (headers) => this.inbox.deleteNotification({ id }, { headers }));
  }

  /** Confirms an action (a guest's redemption). Queued while offline; safe to repeat (keyed by actionId). */
  confirmAction(req: MessageInitShape<typeof ConfirmActionRequestSchema>): Promise<ConfirmActionResponse> {
    return this.enqueue("confirmAction", (headers) => this.notifications.confirmAction(req, { headers }));
  }

  /** Lists inbox notifications, newest first. Not queued: fails while offline. */
  listNotifications(req: MessageInitShape<typeof ListNotificationsRequestSchema> = {}): Promise<ListNotificationsResponse> {
    return this.unary((headers) => this.inbox.listNotifications(req, { headers }));
  }

  /** The caller's notification preferences. */
  getPreferences(): Promise<GetPreferencesResponse> {
    return this.unary((headers) => this.inbox.getPreferences({}, { headers }));
  }

  /** Replaces the caller's notification preferences. */
  updatePreferences(preferences: MessageInitShape<typeof PreferencesSchema>): Promise<UpdatePreferencesResponse> {
    return this.unary((headers) => this.inbox.updatePreferences({ preferences }, { headers }));
  }

  /** Publishes an event (service tokens; admins for alerts). */
  publish(req: MessageInitShape<typeof PublishRequestSchema>): Promise<PublishResponse> {
    return this.unary((headers) => this.notifications.publish(req, { headers }));
  }

  // ---- delivery and schedules (not queued: they fail while offline) -------

  /** The server's delivery settings: its channels and the VAPID public key for web push. */
  getDeliveryConfig(): Promise<GetDeliveryConfigResponse> {
    return this.unary((headers) => this.delivery.getDeliveryConfig({}, { headers }));
  }

  /** Registers a web push subscription or device token for the caller (or, for services, a user). */
  registerDevice(req: MessageInitShape<typeof RegisterDeviceRequestSchema>): Promise<RegisterDeviceResponse> {
    return this.unary((headers) => this.delivery.registerDevice(req, { headers }));
  }

  /** Removes a device by id or token (a web push endpoint). */
  removeDevice(req: MessageInitShape<typeof RemoveDeviceRequestSchema>): Promise<RemoveDeviceResponse> {
    return this.unary((headers) => this.delivery.removeDevice(req, { headers }));
  }

  /** The caller's devices. */
  listDevices(): Promise<ListDevicesResponse> {
    return this.unary((headers) => this.delivery.listDevices({}, { headers }));
  }

  /** The delivery timelines of events (1 to 100 Event ids): where each was also sent. */
  getDeliveryStatus(eventIds: string[]): Promise<GetDeliveryStatusResponse> {
    return this.unary((headers) => this.delivery.getDeliveryStatus({ eventIds }, { headers }));
  }

  /** Cancels a scheduled publish by its cancel key or id (services; admins any publisher's). */
  cancelScheduled(req: MessageInitShape<typeof CancelScheduledRequestSchema>): Promise<CancelScheduledResponse> {
    return this.unary((headers) => this.schedule.cancelScheduled(req, { headers }));
  }

  /** Lists scheduled publishes, soonest first. */
  listScheduled(req: MessageInitShape<typeof ListScheduledRequestSchema> = {}): Promise<ListScheduledResponse> {
    return this.unary((headers) => this.schedule.listScheduled(req, { headers }));
  }

  /** The caller's open digests. */
  listDigests(): Promise<ListDigestsResponse> {
    return this.unary((headers) => this.schedule.listDigests({}, { headers }));
  }

  /** Sends the caller's open digests now (all, or one type's). */
  releaseDigest(req: MessageInitShape<typeof ReleaseDigestRequestSchema> = {}): Promise<ReleaseDigestResponse> {
    return this.unary((headers) => this.schedule.releaseDigest(req, { headers }));
  }
}
