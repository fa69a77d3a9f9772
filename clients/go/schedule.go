package notify

import (
	"context"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	notifyv1 "github.com/maxloyalty/notify/gen/notify/v1"
)

// DeliverAt schedules the publish for t instead of now: the server stores
// it and publishes it once at that time (docs/SCHEDULING.md). A time
// already passed publishes at once.
func DeliverAt(t time.Time) PublishOption {
	return func(r *notifyv1.PublishRequest) { r.DeliverAt, r.Delay = timestamppb.New(t), nil }
}

// Delay schedules the publish d after the server accepts it.
func Delay(d time.Duration) PublishOption {
	return func(r *notifyv1.PublishRequest) { r.Delay, r.DeliverAt = durationpb.New(d), nil }
}

// CancelKey names a scheduled publish so that CancelScheduled can cancel
// it before its time: 1 to 128 characters of [A-Za-z0-9_.:-], unique
// among the publisher's pending ones.
func CancelKey(key string) PublishOption {
	return func(r *notifyv1.PublishRequest) { r.CancelKey = key }
}

// Schedules returns the ScheduleService client: scheduled publishes
// (cancel, list) and digests (list, release).
func (c *Client) Schedules() notifyv1.ScheduleServiceClient {
	return notifyv1.NewScheduleServiceClient(c.conn)
}

// CancelScheduled cancels the caller's pending scheduled publish named
// cancelKey. One already published is FailedPrecondition; an unknown key
// NotFound.
func (c *Client) CancelScheduled(ctx context.Context, cancelKey string) (*notifyv1.ScheduledPublish, error) {
	resp, err := c.Schedules().CancelScheduled(ctx, &notifyv1.CancelScheduledRequest{CancelKey: cancelKey})
	if err != nil {
		return nil, err
	}
	return resp.Scheduled, nil
}
