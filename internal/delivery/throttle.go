package delivery

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"
	"google.golang.org/protobuf/proto"

	notifyv1 "github.com/maxloyalty/notify/gen/notify/v1"
	"github.com/maxloyalty/notify/internal/store"
)

// Throttles: at most Limit sends of a type per Period to each of a user's
// targets. The window starts with its first send. A send over the limit is
// held: counted, its points added, and kept as the last held; its job ends
// ("held" in its timeline). The next send let through carries them: it
// becomes a summary of itself and those held (count and points), sent by a
// new job so that a retry of it keeps the summary. If nothing comes by the
// window's end, a throttle job sends the last held one as that summary
// then. Nothing held is dropped.

// StateHeld is the timeline state of a delivery held back by a throttle,
// to be folded into the next send.
const StateHeld = "held"

// throttleArgs ends a throttle window that held sends back: it sends the
// last held as a summary of all of them, unless a send did already.
type throttleArgs struct {
	User    string `json:"user" river:"unique"`
	Type    string `json:"type" river:"unique"`
	Channel string `json:"channel" river:"unique"`
	Target  string `json:"target" river:"unique"`
	// Start is the window's start (Unix microseconds).
	Start int64 `json:"start" river:"unique"`
}

func (throttleArgs) Kind() string { return kindThrottle }

// summary makes a delivery one message standing for several events: a
// digest's summary, or a send that folds those a throttle held back.
type summary struct {
	// Count and Points are the events' number and points summed.
	Count  int64 `json:"count"`
	Points int64 `json:"points"`
	// Since is the first event's time.
	Since time.Time `json:"since"`
	// Key is the digest's key value.
	Key string `json:"key,omitempty"`
	// Digest: a digest's summary; else folded sends of a throttle.
	Digest bool `json:"digest,omitempty"`
	// Counted: a throttle counted this send already.
	Counted bool `json:"counted,omitempty"`
}

func (q *Queue) throttleOf(typ string) *Throttle {
	for i := range q.cfg.Timing.Throttles {
		if q.cfg.Timing.Throttles[i].EventType == typ {
			return &q.cfg.Timing.Throttles[i]
		}
	}
	return nil
}

// throttle applies the type's throttle to a delivery about to be sent.
func (q *Queue) throttle(ctx context.Context, row *rivertype.JobRow, a *deliverArgs, step store.Status) (done bool, err error) {
	th := q.throttleOf(a.Type)
	if th == nil || (a.Summary != nil && a.Summary.Counted) {
		return false, nil
	}
	key := store.ThrottleKey{UserID: a.User, EventType: a.Type, Channel: a.Channel, Target: a.Target}
	now := q.now()
	var (
		held   bool
		folded bool
	)
	err = q.st.InTx(ctx, func(ctx context.Context, tx *store.Tx) error {
		held, folded = false, false
		w, _, err := tx.Throttle(ctx, key)
		if err != nil {
			return err
		}
		if i := slices.IndexFunc(w.Sends, func(s store.ThrottleSend) bool { return s.Job == row.ID }); i >= 0 {
			// This job was let through before (it runs again): as it was.
			folded = w.Sends[i].Folded
			return nil
		}
		if w.Start.IsZero() || !now.Before(w.Start.Add(th.Period)) {
			w.Start, w.Sent, w.Sends = now, 0, nil
		}
		count, points := a.count()
		if w.Sent >= int64(th.Limit) {
			// Over the limit: held, and a job ends the window.
			w.Held += count
			w.HeldPoints += points
			last, err := json.Marshal(a)
			if err != nil {
				return err
			}
			w.LastHeld = string(last)
			held = true
			if err := tx.PutThrottle(ctx, w); err != nil {
				return err
			}
			_, err = q.eng.insert(ctx, tx, []river.InsertManyParams{{
				Args: throttleArgs{User: a.User, Type: a.Type, Channel: a.Channel, Target: a.Target, Start: w.Start.UnixMicro()},
				InsertOpts: &river.InsertOpts{
					Queue: queueSchedule, ScheduledAt: w.Start.Add(th.Period), MaxAttempts: q.cfg.MaxAttempts, Priority: 2,
					UniqueOpts: river.UniqueOpts{ByArgs: true, ByState: allStates},
				},
			}})
			return err
		}
		w.Sent++
		send := store.ThrottleSend{Job: row.ID}
		if w.Held > 0 {
			// The first send after some were held carries them, as a new
			// job whose arguments keep the summary.
			fold := *a
			fold.Key = a.Key + "#fold"
			fold.Summary = &summary{Count: w.Held + count, Points: w.HeldPoints + points, Since: w.Start, Counted: true}
			if a.Summary != nil {
				fold.Summary.Digest, fold.Summary.Key = a.Summary.Digest, a.Summary.Key
			}
			if err := q.insertFold(ctx, tx, fold); err != nil {
				return err
			}
			w.Held, w.HeldPoints, w.LastHeld = 0, 0, ""
			send.Folded, folded = true, true
		}
		w.Sends = append(w.Sends, send)
		return tx.PutThrottle(ctx, w)
	})
	if err != nil {
		return true, q.internal(ctx, row, step, err)
	}
	switch {
	case held:
		step.State, step.Detail = StateHeld, fmt.Sprintf("throttled: at most %d %s per %v; folded into the next send", th.Limit, a.Type, th.Period)
		return true, q.finish(ctx, step, nil)
	case folded:
		// The new job sends it, with those held.
		return true, nil
	}
	return false, nil
}

// insertFold queues a delivery that carries sends held back.
func (q *Queue) insertFold(ctx context.Context, tx *store.Tx, a deliverArgs) error {
	res, err := q.eng.insert(ctx, tx, []river.InsertManyParams{{
		Args: a,
		InsertOpts: &river.InsertOpts{
			Queue: a.Channel, MaxAttempts: q.cfg.MaxAttempts, Priority: 2,
			UniqueOpts: river.UniqueOpts{ByArgs: true, ByState: allStates},
		},
	}})
	if err != nil || len(res) == 0 || res[0].UniqueSkippedAsDuplicate {
		return err
	}
	st := store.Status{
		ID: newStatusID(), EventID: a.EventID, UserID: a.User, Channel: a.Channel, Target: a.Label, State: StateQueued, At: q.now(),
		Detail: "with " + strconv.FormatInt(a.Summary.Count-1, 10) + " held back before",
	}
	if err := tx.AddStatuses(ctx, []store.Status{st}); err != nil {
		return err
	}
	return q.statusHooks(ctx, tx, []store.Status{st})
}

// count is how many events a delivery stands for, and their points.
func (a *deliverArgs) count() (int64, int64) {
	if a.Summary != nil {
		return max(a.Summary.Count, 1), a.Summary.Points
	}
	return 1, pointsOf(a.Event)
}

// throttleWorker ends throttle windows that held sends back.
type throttleWorker struct {
	river.WorkerDefaults[throttleArgs]
	q *Queue
}

func (w *throttleWorker) Work(ctx context.Context, job *river.Job[throttleArgs]) error {
	q, t := w.q, job.Args
	key := store.ThrottleKey{UserID: t.User, EventType: t.Type, Channel: t.Channel, Target: t.Target}
	return q.st.InTx(ctx, func(ctx context.Context, tx *store.Tx) error {
		win, found, err := tx.Throttle(ctx, key)
		if err != nil || !found || win.Start.UnixMicro() != t.Start || win.Held == 0 || win.LastHeld == "" {
			// A send folded them already, or a later window began.
			return err
		}
		var a deliverArgs
		if err := json.Unmarshal([]byte(win.LastHeld), &a); err != nil {
			return fmt.Errorf("delivery: throttle's last held: %w", err)
		}
		since := win.Start
		a.Key += "#flush"
		a.Summary = &summary{Count: win.Held, Points: win.HeldPoints, Since: since, Counted: true, Digest: a.Summary != nil && a.Summary.Digest}
		now := q.now()
		// The send opens the next window.
		win.Start, win.Sent, win.Held, win.HeldPoints, win.LastHeld = now, 1, 0, 0, ""
		win.Sends = []store.ThrottleSend{{Job: job.ID, Folded: true}}
		if err := q.insertFold(ctx, tx, a); err != nil {
			return err
		}
		return tx.PutThrottle(ctx, win)
	})
}

// pointsOf is the points an encoded event moves: PointsAdded,
// PointsRedeemed and PointsExpired amounts; 0 for other types.
func pointsOf(data []byte) int64 {
	ev := &notifyv1.Event{}
	if proto.Unmarshal(data, ev) != nil {
		return 0
	}
	switch p := ev.Payload.(type) {
	case *notifyv1.Event_PointsAdded:
		return p.PointsAdded.GetAmount()
	case *notifyv1.Event_PointsRedeemed:
		return p.PointsRedeemed.GetAmount()
	case *notifyv1.Event_PointsExpired:
		return p.PointsExpired.GetAmount()
	}
	return 0
}
