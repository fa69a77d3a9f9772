package delivery

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"sync/atomic"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"github.com/maxloyalty/notify/internal/store"
)

// Time: scheduled publishes (schedule.go), quiet hours (quiet.go), digests
// (digest.go) and throttles (throttle.go) run on the queue's River client,
// in a queue of their own ("schedule") besides the channels' queues: one
// scheduler whatever the number of nodes, since River hands each due job
// to one node.

// Job kinds of time and their queue.
const (
	kindPublish   = "notify_publish"
	kindDigest    = "notify_digest"
	kindThrottle  = "notify_throttle"
	kindPrune     = "notify_time_prune"
	queueSchedule = "schedule"
)

// Timing configures scheduled publishes, digests and throttles.
type Timing struct {
	// Horizon bounds how far ahead a publish may be scheduled. Default 90
	// days; at most 1 year.
	Horizon time.Duration
	// Digests are the server's digests per event type, which users'
	// preferences override (a rule with a zero window turns one off).
	Digests []store.DigestRule
	// Throttles bound each user's sends of an event type per channel and
	// target.
	Throttles []Throttle
	// Workers is the number of time jobs at once on this node. Default 10.
	Workers int
}

// Throttle is at most Limit sends of EventType per Period to each of a
// user's targets (a device, an address); what is held back is counted and
// folded into the next send, which says how many it stands for.
type Throttle struct {
	// EventType is the store's name of the type ("points_added").
	EventType string
	Limit     int
	Period    time.Duration
}

// PastTolerance is how far in the past a deliver-at time may be: a time
// already passed by at most this much publishes at once (clocks differ).
const PastTolerance = 10 * time.Second

var eventTypeName = regexp.MustCompile(`^[a-z][a-z_]{0,63}$`)

func (t *Timing) defaults() {
	if t.Horizon <= 0 {
		t.Horizon = 90 * 24 * time.Hour
	}
	if t.Workers <= 0 {
		t.Workers = 10
	}
}

func (t *Timing) validate() error {
	var errs []error
	if t.Horizon > 366*24*time.Hour {
		errs = append(errs, fmt.Errorf("delivery: schedule horizon %v: at most 366 days", t.Horizon))
	}
	seen := map[string]bool{}
	for _, d := range t.Digests {
		if !eventTypeName.MatchString(d.EventType) || seen[d.EventType] {
			errs = append(errs, fmt.Errorf("delivery: digest of %q: not an event type, or repeated", d.EventType))
		}
		seen[d.EventType] = true
		if d.Window < store.MinDigestWindow || d.Window > store.MaxDigestWindow {
			errs = append(errs, fmt.Errorf("delivery: digest of %s: window %v is not %v to %v", d.EventType, d.Window, store.MinDigestWindow, store.MaxDigestWindow))
		}
	}
	seen = map[string]bool{}
	for _, th := range t.Throttles {
		if !eventTypeName.MatchString(th.EventType) || seen[th.EventType] {
			errs = append(errs, fmt.Errorf("delivery: throttle of %q: not an event type, or repeated", th.EventType))
		}
		seen[th.EventType] = true
		if th.Limit < 1 || th.Period < time.Second || th.Period > 7*24*time.Hour {
			errs = append(errs, fmt.Errorf("delivery: throttle of %s: want at least 1 per 1s to 7 days, not %d per %v", th.EventType, th.Limit, th.Period))
		}
	}
	return errors.Join(errs...)
}

// addTiming registers the time jobs' queue, workers and insert middleware
// on River's configuration.
func (q *Queue) addTiming(workers *river.Workers, queues map[string]river.QueueConfig, rcfg *river.Config) {
	queues[queueSchedule] = river.QueueConfig{MaxWorkers: q.cfg.Timing.Workers}
	river.AddWorker(workers, &publishWorker{q: q})
	river.AddWorker(workers, &digestWorker{q: q})
	river.AddWorker(workers, &throttleWorker{q: q})
	river.AddWorker(workers, &pruneWorker{q: q})
	rcfg.Middleware = append(rcfg.Middleware, &dueAtTime{})
	// River's leader inserts it: one prune per hour whatever the nodes.
	rcfg.PeriodicJobs = append(rcfg.PeriodicJobs, river.NewPeriodicJob(river.PeriodicInterval(time.Hour),
		func() (river.JobArgs, *river.InsertOpts) { return pruneArgs{}, &river.InsertOpts{Queue: queueSchedule} }, nil))
}

// pruneArgs removes throttle windows that ended long ago and hold nothing.
type pruneArgs struct{}

func (pruneArgs) Kind() string { return kindPrune }

// pruneWorker removes throttle windows older than the longest period.
type pruneWorker struct {
	river.WorkerDefaults[pruneArgs]
	q *Queue
}

func (w *pruneWorker) Work(ctx context.Context, _ *river.Job[pruneArgs]) error {
	cut := w.q.now().Add(-8 * 24 * time.Hour)
	return w.q.st.InTx(ctx, func(ctx context.Context, tx *store.Tx) error {
		_, err := tx.PruneThrottles(ctx, cut)
		return err
	})
}

// dueAtTime inserts the time jobs due later as available, not scheduled:
// River's scheduler makes scheduled jobs available every 5 s on the
// leader, while an available job whose time is ahead is taken by the
// first node that looks for work after that time (FetchPollInterval), as
// River does itself for short snoozes and retries. A scheduled publish
// then goes out within about a second of its time.
type dueAtTime struct{ river.MiddlewareDefaults }

func (*dueAtTime) InsertMany(ctx context.Context, params []*rivertype.JobInsertParams, inner func(context.Context) ([]*rivertype.JobInsertResult, error)) ([]*rivertype.JobInsertResult, error) {
	for _, p := range params {
		if p.State == rivertype.JobStateScheduled && slices.Contains([]string{kindPublish, kindDigest, kindThrottle}, p.Kind) {
			p.State = rivertype.JobStateAvailable
		}
	}
	return inner(ctx)
}

var _ rivertype.JobInsertMiddleware = &dueAtTime{}

// pendingStates are the states of a job not yet finished.
var pendingStates = []rivertype.JobState{
	rivertype.JobStateAvailable, rivertype.JobStatePending, rivertype.JobStateRetryable,
	rivertype.JobStateRunning, rivertype.JobStateScheduled,
}

// timingEngine is what time needs of River's client besides inserting.
type timingEngine interface {
	list(ctx context.Context, tx *store.Tx, params *river.JobListParams) (*river.JobListResult, error)
	// cancelPending cancels a job unless it runs or ran: a job being
	// worked is locked by its worker's node, so that a cancel never races
	// its run.
	cancelPending(ctx context.Context, tx *store.Tx, id int64) (*rivertype.JobRow, error)
}

func (e *riverEngine[TTx, D]) list(ctx context.Context, tx *store.Tx, params *river.JobListParams) (*river.JobListResult, error) {
	if tx == nil {
		return e.client.JobList(ctx, params)
	}
	t, err := e.txOf(tx)
	if err != nil {
		return nil, err
	}
	return e.client.JobListTx(ctx, t, params)
}

// errNotPending is a job that is running or finished.
var errNotPending = errors.New("not pending")

func (e *riverEngine[TTx, D]) cancelPending(ctx context.Context, tx *store.Tx, id int64) (*rivertype.JobRow, error) {
	t, err := e.txOf(tx)
	if err != nil {
		return nil, err
	}
	if p := tx.PGX(); p != nil {
		// Lock the row: a node fetching due jobs skips locked rows, and one
		// that already took it has made it running.
		if _, err := p.Exec(ctx, "SELECT 1 FROM river_job WHERE id = $1 FOR UPDATE", id); err != nil {
			return nil, err
		}
	}
	row, err := e.client.JobGetTx(ctx, t, id)
	if err != nil {
		return nil, err
	}
	switch row.State {
	case rivertype.JobStateAvailable, rivertype.JobStateScheduled, rivertype.JobStateRetryable, rivertype.JobStatePending:
	default:
		return row, errNotPending
	}
	return e.client.JobCancelTx(ctx, t, id)
}

func (q *Queue) timingEngine() timingEngine {
	if q.eng == nil {
		return nil
	}
	te, _ := q.eng.(timingEngine)
	return te
}

// timingState is the queue's state of time.
type timingState struct {
	// publisher publishes scheduled requests (SetPublisher).
	publisher atomic.Pointer[Publisher]
}
