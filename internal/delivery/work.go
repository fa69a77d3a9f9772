package delivery

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"
	"google.golang.org/protobuf/proto"

	notifyv1 "github.com/maxloyalty/notify/gen/notify/v1"
	"github.com/maxloyalty/notify/internal/channel"
	"github.com/maxloyalty/notify/internal/store"
)

// recordTimeout bounds recording an attempt's outcome, which runs even when
// the attempt's context ended, so that an outcome is not lost to a timeout.
const recordTimeout = 10 * time.Second

// deliverWorker sends deliverArgs jobs.
type deliverWorker struct {
	river.WorkerDefaults[deliverArgs]
	q *Queue
}

func (w *deliverWorker) Work(ctx context.Context, job *river.Job[deliverArgs]) (err error) {
	ctx, end := w.q.span(ctx, "delivery "+job.Args.Channel, job.Args.TraceParent, job.Attempt, job.Args.EventID, job.Args.Channel)
	defer func() { end(err) }()
	return w.q.deliver(ctx, job)
}

// NextRetry is the time Work announced in the "retrying" step, with the
// provider's Retry-After when it gave one.
func (w *deliverWorker) NextRetry(job *river.Job[deliverArgs]) time.Time {
	return w.q.nextRetry(job.ID, len(job.Errors)+1)
}

// webhookWorker sends webhookArgs jobs.
type webhookWorker struct {
	river.WorkerDefaults[webhookArgs]
	q *Queue
}

func (w *webhookWorker) Work(ctx context.Context, job *river.Job[webhookArgs]) (err error) {
	ctx, end := w.q.span(ctx, "delivery webhook", job.Args.TraceParent, job.Attempt, job.Args.EventID, store.ChannelWebhook)
	defer func() { end(err) }()
	return w.q.sendWebhook(ctx, job)
}

func (w *webhookWorker) NextRetry(job *river.Job[webhookArgs]) time.Time {
	return w.q.nextRetry(job.ID, len(job.Errors)+1)
}

// retryPolicy is the client's policy, for jobs that failed outside Work's
// classification (a rescued job, an error reading the store).
type retryPolicy struct{ q *Queue }

func (p retryPolicy) NextRetry(job *rivertype.JobRow) time.Time {
	return p.q.nextRetry(job.ID, len(job.Errors)+1)
}

func (q *Queue) nextRetry(jobID int64, failures int) time.Time {
	if t, ok := q.next.LoadAndDelete(jobID); ok {
		return t.(time.Time)
	}
	return q.now().Add(q.backoff(failures))
}

// nextAt decides when a failed job runs again: the backoff, or the
// provider's Retry-After when longer. NextRetry returns it.
func (q *Queue) nextAt(jobID int64, failures int, retryAfter time.Duration) time.Time {
	d := max(q.backoff(failures), retryAfter)
	t := q.now().Add(d)
	q.next.Store(jobID, t)
	return t
}

// backoff is RetryBase × 2^(failures-1), at most RetryMax, with ±20%
// jitter so that jobs that failed together do not come back together.
func (q *Queue) backoff(failures int) time.Duration {
	d := q.cfg.RetryBase
	for i := 1; i < failures && d < q.cfg.RetryMax; i++ {
		d *= 2
	}
	d = min(d, q.cfg.RetryMax)
	return time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
}

// deliver runs one attempt of a user delivery.
func (q *Queue) deliver(ctx context.Context, job *river.Job[deliverArgs]) error {
	a := job.Args
	step := store.Status{EventID: a.EventID, UserID: a.User, Channel: a.Channel, Target: a.Label, Attempt: job.Attempt}
	sender := q.senders[a.Channel]
	if sender == nil {
		return q.cancel(ctx, step, "the "+a.Channel+" channel is not configured")
	}
	if a.UnlessSeen {
		reason, err := q.seen(ctx, a)
		if err != nil {
			return q.internal(ctx, job.JobRow, step, err)
		}
		if reason != "" {
			return q.cancel(ctx, step, reason)
		}
	}
	var to channel.Target
	if a.Channel == store.ChannelEmail {
		to = channel.EmailTarget{Address: a.Target}
	} else {
		d, err := q.st.Device(ctx, a.Target)
		switch {
		case errors.Is(err, store.ErrNotFound) || (err == nil && d.UserID != a.User):
			return q.cancel(ctx, step, "the device was removed")
		case err != nil:
			return q.internal(ctx, job.JobRow, step, err)
		}
		to = deviceTarget(d)
	}
	if done, err := q.hold(ctx, job.JobRow, &a, step); done {
		return err
	}
	m, err := q.message(a)
	if err != nil {
		step.State, step.Detail = StateFailed, err.Error()
		q.metrics.failed.WithLabelValues(a.Channel).Inc()
		if rerr := q.finish(ctx, step, nil); rerr != nil {
			return rerr
		}
		return river.JobCancel(err)
	}
	if err := q.wait(ctx, a.Channel); err != nil {
		return err
	}
	res := sender.Send(ctx, to, m)
	if res.Outcome != channel.Accepted && ctx.Err() != nil {
		// Stopping, or out of time: River runs it again (a stop does not
		// count the attempt). The provider may have taken it: at least
		// once, with the same ids (docs/CHANNELS.md).
		return ctx.Err()
	}
	switch res.Outcome {
	case channel.Accepted:
		step.State, step.ProviderID = StateSent, res.ProviderID
		if err := q.finish(ctx, step, func(ctx context.Context, tx *store.Tx) error {
			return q.eng.completeDeliver(ctx, tx, job)
		}); err != nil {
			q.log.Error("delivery: sent, but its timeline and completion were not recorded; it may be sent again",
				"event_id", a.EventID, "channel", a.Channel, "err", err)
			return err
		}
		q.metrics.sent.WithLabelValues(a.Channel).Inc()
		return nil
	case channel.Gone:
		step.State, step.Detail = StateFailed, outcomeDetail(res)+"; the device was removed"
		if err := q.finish(ctx, step, func(ctx context.Context, tx *store.Tx) error {
			return tx.RemoveDevice(ctx, a.Target)
		}); err != nil {
			return err
		}
		q.metrics.failed.WithLabelValues(a.Channel).Inc()
		q.metrics.removed.WithLabelValues(a.Channel).Inc()
		q.log.Info("delivery: device gone, removed", "channel", a.Channel, "user", a.User, "device", a.Target, "result", res)
		return river.JobCancel(fmt.Errorf("device gone: %s", outcomeDetail(res)))
	case channel.Permanent:
		step.State, step.Detail = StateFailed, outcomeDetail(res)
		if err := q.finish(ctx, step, nil); err != nil {
			return err
		}
		q.metrics.failed.WithLabelValues(a.Channel).Inc()
		q.log.Warn("delivery: refused", "channel", a.Channel, "user", a.User, "result", res)
		return river.JobCancel(errors.New(outcomeDetail(res)))
	}
	return q.retry(ctx, job.JobRow, step, res)
}

// retry records a retryable failure: "retrying" with the next attempt's
// time, or "failed" when it was the last attempt (River then discards the
// job: dead).
func (q *Queue) retry(ctx context.Context, row *rivertype.JobRow, step store.Status, res channel.Result) error {
	d := outcomeDetail(res)
	if row.Attempt >= row.MaxAttempts {
		step.State, step.Detail = StateFailed, "gave up after "+strconv.Itoa(row.Attempt)+" attempts: "+d
		if err := q.finish(ctx, step, nil); err != nil {
			q.log.Error("delivery: dead job's timeline not recorded", "event_id", step.EventID, "err", err)
		}
		q.metrics.dead.WithLabelValues(step.Channel).Inc()
		q.log.Warn("delivery: dead after its last attempt", "channel", step.Channel, "event_id", step.EventID, "result", res)
		return errors.New(d)
	}
	next := q.nextAt(row.ID, len(row.Errors)+1, res.RetryAfter)
	step.State, step.Detail = StateRetrying, d+"; next attempt at "+next.UTC().Format(time.RFC3339)
	if err := q.finish(ctx, step, nil); err != nil {
		q.next.Delete(row.ID)
		return err
	}
	q.metrics.retried.WithLabelValues(step.Channel).Inc()
	return errors.New(d)
}

// internal handles an error of the queue's own (the store unreachable):
// River retries; the last attempt is recorded as failed.
func (q *Queue) internal(ctx context.Context, row *rivertype.JobRow, step store.Status, err error) error {
	if ctx.Err() == nil && row.Attempt >= row.MaxAttempts {
		step.State, step.Detail = StateFailed, "gave up after "+strconv.Itoa(row.Attempt)+" attempts: internal error"
		_ = q.finish(ctx, step, nil)
		q.metrics.dead.WithLabelValues(step.Channel).Inc()
	}
	return err
}

// cancel records a delivery cancelled without sending, and cancels its job.
func (q *Queue) cancel(ctx context.Context, step store.Status, reason string) error {
	step.State, step.Detail = StateCancelled, reason
	if err := q.finish(ctx, step, nil); err != nil {
		return err
	}
	q.metrics.cancelled.WithLabelValues(step.Channel).Inc()
	return river.JobCancel(fmt.Errorf("%w: %s", errCancelled, reason))
}

// finish records step, its status webhooks and whatever extra does (the
// job's completion, a device's removal) in one transaction. It runs to its
// end even if the attempt's context ended.
func (q *Queue) finish(ctx context.Context, step store.Status, extra func(ctx context.Context, tx *store.Tx) error) error {
	step.ID = newStatusID()
	if step.At.IsZero() {
		step.At = q.now()
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), recordTimeout)
	defer cancel()
	return q.st.InTx(ctx, func(ctx context.Context, tx *store.Tx) error {
		if extra != nil {
			if err := extra(ctx, tx); err != nil {
				return err
			}
		}
		if err := tx.AddStatuses(ctx, []store.Status{step}); err != nil {
			return err
		}
		return q.statusHooks(ctx, tx, []store.Status{step})
	})
}

// seen says why a delayed delivery is no longer needed: the user saw,
// read, archived, snoozed or deleted the notification, or it was delivered
// to one of their live streams; "" when it is still needed.
func (q *Queue) seen(ctx context.Context, a deliverArgs) (string, error) {
	if q.live.pending(a.EventID, a.User) {
		return "seen: delivered on a live stream", nil
	}
	live, err := q.st.LiveDelivered(ctx, a.EventID, a.User)
	if err != nil {
		return "", err
	}
	if live {
		return "seen: delivered on a live stream", nil
	}
	st, err := q.st.ItemState(ctx, a.Owner, a.Key, a.User)
	if err != nil {
		return "", err
	}
	switch {
	case !st.Found:
		return "the notification is no longer in the inbox", nil
	case st.Read:
		return "seen: read in the inbox", nil
	case st.Seen:
		return "seen in the inbox", nil
	case st.Archived:
		return "seen: archived", nil
	case st.Snoozed:
		return "seen: snoozed", nil
	case st.Deleted:
		return "seen: deleted", nil
	}
	return "", nil
}

// wait applies the channel's rate on this node.
func (q *Queue) wait(ctx context.Context, ch string) error {
	if l := q.limits[ch]; l != nil {
		return l.Wait(ctx)
	}
	return nil
}

// message renders a delivery in the recipient's locale.
func (q *Queue) message(a deliverArgs) (*channel.Message, error) {
	if a.Summary != nil {
		return q.summaryMessage(a)
	}
	js, err := eventJSON(a.Event)
	if err != nil {
		return nil, err
	}
	typ := contractType(a.Type)
	content, err := channel.Render(typ, a.Locale, js)
	if err != nil {
		return nil, fmt.Errorf("delivery: render: %w", err)
	}
	m := &channel.Message{
		EventID: a.EventID, Type: typ, Content: content, Data: js, Locale: a.Locale,
		Topic: topicOf(a.Event), Critical: a.Critical,
	}
	return m, nil
}

// topicOf collapses a card's points messages: a newer balance replaces an
// older one not yet shown.
func topicOf(data []byte) string {
	ev := &notifyv1.Event{}
	if proto.Unmarshal(data, ev) != nil {
		return ""
	}
	var card, restaurant string
	switch p := ev.Payload.(type) {
	case *notifyv1.Event_PointsAdded:
		card, restaurant = p.PointsAdded.GetCardId(), p.PointsAdded.GetRestaurantId()
	case *notifyv1.Event_PointsRedeemed:
		card, restaurant = p.PointsRedeemed.GetCardId(), p.PointsRedeemed.GetRestaurantId()
	case *notifyv1.Event_PointsExpired:
		card, restaurant = p.PointsExpired.GetCardId(), p.PointsExpired.GetRestaurantId()
	default:
		return ""
	}
	switch {
	case card != "":
		return "points-" + card
	case restaurant != "":
		return "points-r-" + restaurant
	}
	return "points"
}

func deviceTarget(d store.Device) channel.Target {
	switch d.Channel {
	case store.ChannelWebPush:
		return channel.WebPushTarget{Endpoint: d.Token, P256dh: d.P256dh, Auth: d.Auth}
	case store.ChannelFCM:
		return channel.FCMTarget{Token: d.Token}
	}
	return channel.APNsTarget{DeviceToken: d.Token}
}

// outcomeDetail is a result in a few words for timelines: the provider's
// status and answer, else the error (which never holds a secret or a
// target's URL).
func outcomeDetail(r channel.Result) string {
	switch {
	case r.Status != 0 && r.Reason != "":
		return r.Outcome.String() + ": " + strconv.Itoa(r.Status) + " " + r.Reason
	case r.Status != 0:
		return r.Outcome.String() + ": " + strconv.Itoa(r.Status)
	case r.Err != nil:
		return r.Outcome.String() + ": " + r.Err.Error()
	}
	return r.Outcome.String()
}

// sendWebhook runs one attempt of a webhook delivery.
func (q *Queue) sendWebhook(ctx context.Context, job *river.Job[webhookArgs]) error {
	a := job.Args
	step := store.Status{EventID: a.EventID, Channel: store.ChannelWebhook, Target: a.Webhook, Attempt: job.Attempt}
	w, ok := q.hooks[a.Webhook]
	if !ok || q.cfg.Webhook == nil {
		if a.Status {
			return river.JobCancel(fmt.Errorf("%w: webhook %q is not configured", errCancelled, a.Webhook))
		}
		return q.cancel(ctx, step, "the webhook is not configured")
	}
	if err := q.wait(ctx, store.ChannelWebhook); err != nil {
		return err
	}
	res := q.cfg.Webhook.Send(ctx, channel.WebhookTarget{URL: w.URL, Secret: w.Secret}, &channel.Message{EventID: a.ID, Type: a.Type, Data: a.Data})
	if res.Outcome != channel.Accepted && ctx.Err() != nil {
		return ctx.Err()
	}
	if a.Status {
		// A status change's delivery has no timeline of its own.
		switch res.Outcome {
		case channel.Accepted:
			q.metrics.sent.WithLabelValues(store.ChannelWebhook).Inc()
			return nil
		case channel.Retryable:
			if job.Attempt >= job.MaxAttempts {
				q.metrics.dead.WithLabelValues(store.ChannelWebhook).Inc()
			} else {
				q.nextAt(job.ID, len(job.Errors)+1, res.RetryAfter)
				q.metrics.retried.WithLabelValues(store.ChannelWebhook).Inc()
			}
			return errors.New(outcomeDetail(res))
		}
		q.metrics.failed.WithLabelValues(store.ChannelWebhook).Inc()
		return river.JobCancel(errors.New(outcomeDetail(res)))
	}
	switch res.Outcome {
	case channel.Accepted:
		step.State, step.ProviderID = StateDelivered, res.ProviderID
		if err := q.finish(ctx, step, func(ctx context.Context, tx *store.Tx) error {
			return q.eng.completeWebhook(ctx, tx, job)
		}); err != nil {
			return err
		}
		q.metrics.sent.WithLabelValues(store.ChannelWebhook).Inc()
		return nil
	case channel.Retryable:
		return q.retry(ctx, job.JobRow, step, res)
	}
	step.State, step.Detail = StateFailed, outcomeDetail(res)
	if err := q.finish(ctx, step, nil); err != nil {
		return err
	}
	q.metrics.failed.WithLabelValues(store.ChannelWebhook).Inc()
	return river.JobCancel(errors.New(outcomeDetail(res)))
}
