package delivery

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	notifyv1 "github.com/maxloyalty/notify/gen/notify/v1"
	"github.com/maxloyalty/notify/internal/store"
)

// Scheduled publishes. A publish request with a later time is validated by
// the service, then stored as a River job of its own (Schedule), inserted
// in one transaction per call; at its time one node's worker hands it to
// the Publisher, the service's normal publish path, with the idempotency
// key it was given (or one chosen when it was accepted), so that a job run
// again after a node died midway publishes nothing twice. The job is unique
// by its publisher and cancel key among pending jobs, else by its publisher
// and idempotency key in every state River keeps jobs in.

// Publisher publishes a scheduled request at its time: the service's
// publish path, as the publisher whose claims it carries.
type Publisher interface {
	// PublishScheduled publishes request (an encoded notify.v1.PublishRequest)
	// with claims (as the service encoded them when it accepted the
	// request) and returns the event's id. An error wrapping ErrRefused is
	// not retried.
	PublishScheduled(ctx context.Context, claims, request []byte) (eventID string, err error)
}

// ErrRefused marks a scheduled publish refused at its time: its request is
// no longer valid, or its publisher may no longer publish it. It is not
// retried.
var ErrRefused = errors.New("scheduled publish refused")

// Errors of Schedule and CancelScheduled, for the service's status mapping.
var (
	// ErrScheduleConflict is a cancel or idempotency key already pending
	// with another request.
	ErrScheduleConflict = errors.New("a scheduled publish with this key is pending with another request")
	// ErrScheduledNotFound is no scheduled publish of the publisher by
	// that key or id.
	ErrScheduledNotFound = errors.New("no such scheduled publish")
	// ErrScheduledDone is a scheduled publish already published, being
	// published, cancelled or failed.
	ErrScheduledDone = errors.New("the scheduled publish is no longer pending")
	// ErrNoScheduler is a node without a queue to keep scheduled work in.
	ErrNoScheduler = errors.New("scheduling needs the inbox's database")
)

// Schedule is one publish request to store until its time.
type Schedule struct {
	// Publisher is "role:subject", whose cancel and idempotency keys these
	// are.
	Publisher string
	// Claims are the publisher's, encoded by the service.
	Claims []byte
	// Request is the PublishRequest as it will be published: without its
	// time and cancel key, with its idempotency key.
	Request *notifyv1.PublishRequest
	// CancelKey is the publisher's; may be "".
	CancelKey string
	// Fingerprint identifies the request: the same request scheduled again
	// under a pending key is a duplicate, another is a conflict.
	Fingerprint string
	// EventType is the request's.
	EventType notifyv1.EventType
	// At is when to publish it.
	At time.Time
}

// publishArgs is a scheduled publish.
type publishArgs struct {
	// Unique is the publisher and the cancel key ("c"), else the
	// idempotency key ("i").
	Unique         string `json:"unique" river:"unique"`
	Publisher      string `json:"publisher"`
	CancelKey      string `json:"cancel_key,omitempty"`
	IdempotencyKey string `json:"idempotency_key"`
	Claims         []byte `json:"claims"`
	Request        []byte `json:"request"`
	Fingerprint    string `json:"fingerprint"`
	EventType      int32  `json:"event_type"`
}

func (publishArgs) Kind() string { return kindPublish }

// publishOutput is a published job's recorded output.
type publishOutput struct {
	EventID string `json:"event_id"`
}

// SetPublisher sets what publishes scheduled requests at their time; call
// it before Start. A nil queue does nothing.
func (q *Queue) SetPublisher(p Publisher) {
	if q != nil {
		q.timing.publisher.Store(&p)
	}
}

// Scheduling reports whether the queue keeps scheduled publishes; a nil
// queue does not.
func (q *Queue) Scheduling() bool { return q != nil && q.timingEngine() != nil }

// Horizon is how far ahead a publish may be scheduled.
func (q *Queue) Horizon() time.Duration { return q.cfg.Timing.Horizon }

// Schedule stores publish requests until their time, all or none, and
// returns them as listed, Duplicate set on those that were already pending
// under the same key with the same request.
func (q *Queue) Schedule(ctx context.Context, ss []Schedule) ([]ScheduledResult, error) {
	if !q.Scheduling() {
		return nil, ErrNoScheduler
	}
	params := make([]river.InsertManyParams, len(ss))
	for i, s := range ss {
		req, err := proto.Marshal(s.Request)
		if err != nil {
			return nil, err
		}
		a := publishArgs{
			Publisher: s.Publisher, CancelKey: s.CancelKey, IdempotencyKey: s.Request.GetIdempotencyKey(),
			Claims: s.Claims, Request: req, Fingerprint: s.Fingerprint, EventType: int32(s.EventType),
		}
		opts := &river.InsertOpts{Queue: queueSchedule, ScheduledAt: s.At, MaxAttempts: q.cfg.MaxAttempts, Priority: 2}
		// The publisher's length first, so that no two publishers' keys
		// read alike.
		scope := strconv.Itoa(len(s.Publisher)) + ":" + s.Publisher
		if s.CancelKey != "" {
			a.Unique = scope + ":c:" + s.CancelKey
			opts.UniqueOpts = river.UniqueOpts{ByArgs: true, ByState: pendingStates}
		} else {
			a.Unique = scope + ":i:" + a.IdempotencyKey
			opts.UniqueOpts = river.UniqueOpts{ByArgs: true, ByState: allStates}
		}
		params[i] = river.InsertManyParams{Args: a, InsertOpts: opts}
	}
	var (
		out      []ScheduledResult
		conflict error // the caller's error, which rolls the insert back
	)
	err := q.st.InTx(ctx, func(ctx context.Context, tx *store.Tx) error {
		out, conflict = out[:0], nil
		res, err := q.eng.insert(ctx, tx, params)
		if err != nil {
			return err
		}
		for i, r := range res {
			sp, err := scheduledOf(r.Job)
			if err != nil {
				return err
			}
			if r.UniqueSkippedAsDuplicate {
				var prev publishArgs
				if err := json.Unmarshal(r.Job.EncodedArgs, &prev); err != nil {
					return err
				}
				if prev.Fingerprint != ss[i].Fingerprint {
					conflict = &IndexError{Index: i, Err: fmt.Errorf("%w (scheduled for %s)", ErrScheduleConflict, sp.GetDeliverTime().AsTime().UTC().Format(time.RFC3339))}
					return errRollback
				}
			}
			out = append(out, ScheduledResult{Scheduled: sp, Duplicate: r.UniqueSkippedAsDuplicate})
		}
		return nil
	})
	if conflict != nil {
		return nil, conflict
	}
	if err != nil {
		return nil, err
	}
	return out, nil
}

// errRollback ends a transaction whose caller's error is kept aside, so
// that the store's wrapping does not reach the caller.
var errRollback = errors.New("rolled back")

// ScheduledResult is one stored request.
type ScheduledResult struct {
	Scheduled *notifyv1.ScheduledPublish
	// Duplicate: the same request was already pending under its key.
	Duplicate bool
}

// IndexError is an error about the request at Index of a call.
type IndexError struct {
	Index int
	Err   error
}

func (e *IndexError) Error() string {
	return "requests[" + strconv.Itoa(e.Index) + "]: " + e.Err.Error()
}
func (e *IndexError) Unwrap() error { return e.Err }

// scheduledOf describes a publish job.
func scheduledOf(row *rivertype.JobRow) (*notifyv1.ScheduledPublish, error) {
	var a publishArgs
	if err := json.Unmarshal(row.EncodedArgs, &a); err != nil {
		return nil, fmt.Errorf("delivery: scheduled publish %d: %w", row.ID, err)
	}
	req := &notifyv1.PublishRequest{}
	if err := proto.Unmarshal(a.Request, req); err != nil {
		return nil, fmt.Errorf("delivery: scheduled publish %d: %w", row.ID, err)
	}
	sp := &notifyv1.ScheduledPublish{
		Id: strconv.FormatInt(row.ID, 10), CancelKey: a.CancelKey, IdempotencyKey: a.IdempotencyKey,
		DeliverTime: timestamppb.New(row.ScheduledAt), CreateTime: timestamppb.New(row.CreatedAt),
		Publisher: a.Publisher, EventType: notifyv1.EventType(a.EventType), Request: req,
	}
	last := ""
	if n := len(row.Errors); n > 0 {
		last = row.Errors[n-1].Error
	}
	switch row.State {
	case rivertype.JobStateAvailable, rivertype.JobStateScheduled, rivertype.JobStatePending:
		sp.State = notifyv1.ScheduledState_SCHEDULED_STATE_PENDING
	case rivertype.JobStateRunning, rivertype.JobStateRetryable:
		sp.State, sp.Detail = notifyv1.ScheduledState_SCHEDULED_STATE_RUNNING, last
	case rivertype.JobStateCompleted:
		sp.State = notifyv1.ScheduledState_SCHEDULED_STATE_PUBLISHED
		var o publishOutput
		if out := row.Output(); len(out) > 0 && json.Unmarshal(out, &o) == nil {
			sp.EventId = o.EventID
		}
	case rivertype.JobStateCancelled:
		sp.State = notifyv1.ScheduledState_SCHEDULED_STATE_CANCELLED
		if strings.Contains(last, ErrRefused.Error()) {
			sp.State, sp.Detail = notifyv1.ScheduledState_SCHEDULED_STATE_FAILED, last
		}
	case rivertype.JobStateDiscarded:
		sp.State, sp.Detail = notifyv1.ScheduledState_SCHEDULED_STATE_FAILED, last
	}
	return sp, nil
}

// publishWorker publishes scheduled requests at their time.
type publishWorker struct {
	river.WorkerDefaults[publishArgs]
	q *Queue
}

func (w *publishWorker) Work(ctx context.Context, job *river.Job[publishArgs]) error {
	p := w.q.timing.publisher.Load()
	if p == nil || *p == nil {
		return errors.New("no publisher on this node yet")
	}
	id, err := (*p).PublishScheduled(ctx, job.Args.Claims, job.Args.Request)
	if errors.Is(err, ErrRefused) {
		w.q.log.Warn("delivery: scheduled publish refused at its time", "job", job.ID, "publisher", job.Args.Publisher, "err", err)
		return river.JobCancel(err)
	}
	if err != nil {
		return err
	}
	if err := river.RecordOutput(ctx, publishOutput{EventID: id}); err != nil {
		w.q.log.Warn("delivery: scheduled publish's event id not recorded", "job", job.ID, "err", err)
	}
	return nil
}

// CancelScheduled cancels the pending scheduled publish of publisher by
// cancel key (or job id, when id is not "").
func (q *Queue) CancelScheduled(ctx context.Context, publisher, cancelKey, id string) (*notifyv1.ScheduledPublish, error) {
	te := q.timingEngine()
	if te == nil {
		return nil, ErrNoScheduler
	}
	var (
		out    *notifyv1.ScheduledPublish
		refuse error // the caller's error, kept out of the store's wrapping
	)
	err := q.st.InTx(ctx, func(ctx context.Context, tx *store.Tx) error {
		refuse = nil
		params := river.NewJobListParams().Kinds(kindPublish).First(1).
			Where("args ->> 'publisher' = @publisher", river.NamedArgs{"publisher": publisher})
		if id != "" {
			n, err := strconv.ParseInt(id, 10, 64)
			if err != nil {
				refuse = ErrScheduledNotFound
				return errRollback
			}
			params = params.IDs(n)
		} else {
			params = params.States(pendingStates...).Where("args ->> 'cancel_key' = @key", river.NamedArgs{"key": cancelKey})
		}
		res, err := te.list(ctx, tx, params)
		if err != nil {
			return err
		}
		if len(res.Jobs) == 0 {
			refuse = ErrScheduledNotFound
			return errRollback
		}
		row, err := te.cancelPending(ctx, tx, res.Jobs[0].ID)
		if errors.Is(err, errNotPending) {
			sp, serr := scheduledOf(row)
			if serr != nil {
				return serr
			}
			refuse = fmt.Errorf("%w: it is %s", ErrScheduledDone, strings.ToLower(strings.TrimPrefix(sp.State.String(), "SCHEDULED_STATE_")))
			return errRollback
		}
		if err != nil {
			return err
		}
		out, err = scheduledOf(row)
		return err
	})
	if refuse != nil {
		return nil, refuse
	}
	return out, err
}

// ListScheduled lists scheduled publishes, soonest first: of publisher
// ("" for all), pending ones or, with done, all those River keeps.
// pageToken continues a previous listing; the next page's token is "" at
// the end.
func (q *Queue) ListScheduled(ctx context.Context, publisher string, done bool, pageSize int, pageToken string) ([]*notifyv1.ScheduledPublish, string, error) {
	te := q.timingEngine()
	if te == nil {
		return nil, "", ErrNoScheduler
	}
	params := river.NewJobListParams().Kinds(kindPublish).First(pageSize).OrderBy(river.JobListOrderByScheduledAt, river.SortOrderAsc)
	if publisher != "" {
		params = params.Where("args ->> 'publisher' = @publisher", river.NamedArgs{"publisher": publisher})
	}
	if done {
		params = params.States(append(pendingStates, rivertype.JobStateCompleted, rivertype.JobStateCancelled, rivertype.JobStateDiscarded)...)
	} else {
		params = params.States(pendingStates...)
	}
	if pageToken != "" {
		var c river.JobListCursor
		if err := c.UnmarshalText([]byte(pageToken)); err != nil {
			return nil, "", fmt.Errorf("%w: page_token: %v", ErrBadPageToken, err)
		}
		params = params.After(&c)
	}
	res, err := te.list(ctx, nil, params)
	if err != nil {
		return nil, "", err
	}
	out := make([]*notifyv1.ScheduledPublish, 0, len(res.Jobs))
	for _, row := range res.Jobs {
		sp, err := scheduledOf(row)
		if err != nil {
			return nil, "", err
		}
		out = append(out, sp)
	}
	next := ""
	if len(res.Jobs) == pageSize && res.LastCursor != nil {
		b, err := res.LastCursor.MarshalText()
		if err != nil {
			return nil, "", err
		}
		next = string(b)
	}
	return out, next, nil
}

// ErrBadPageToken is a page token this server did not write.
var ErrBadPageToken = errors.New("bad page token")
