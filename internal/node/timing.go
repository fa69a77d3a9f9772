package node

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/maxloyalty/notify/internal/delivery"
	"github.com/maxloyalty/notify/internal/store"
)

// TimingConfig configures scheduled publishes, digests and throttles
// (docs/SCHEDULING.md), which run on the delivery queue.
type TimingConfig struct {
	// ScheduleHorizon bounds how far ahead a publish may be scheduled.
	// Default 90 days (2160h); at most 366 days.
	ScheduleHorizon time.Duration
	// Digests are the server's digests, each type=window or
	// type=window:key ("points_added=1h", "points_redeemed=24h:restaurant_id"):
	// push and email send one summary of the type's events per window
	// (per value of the key field), unless a user's preferences say
	// otherwise. Default: none.
	Digests []string
	// Throttles bound each user's sends of a type per target, each
	// type=limit/period ("system_alert=1/1h"); what is held back is folded
	// into the next send. Default: none.
	Throttles []string
}

func (t *TimingConfig) bindFlags(b *binder) {
	b.dur(&t.ScheduleHorizon, "schedule-horizon", 90*24*time.Hour, "how far ahead a publish may be scheduled (deliver_at, delay)")
	b.list(&t.Digests, "digest", "server digests, comma-separated type=window[:key] (e.g. points_added=1h; default: none)")
	b.list(&t.Throttles, "throttle", "per-user throttles, comma-separated type=limit/period (e.g. system_alert=1/1h; default: none)")
}

func (t TimingConfig) defaults() TimingConfig {
	setDur(&t.ScheduleHorizon, 90*24*time.Hour)
	return t
}

func (t TimingConfig) validate() []error {
	tm, err := t.delivery()
	if err != nil {
		return []error{err}
	}
	if h := tm.Horizon; h > 366*24*time.Hour {
		return []error{fmt.Errorf("schedule-horizon: %v is more than 366 days", h)}
	}
	return nil
}

// delivery is the queue's Timing.
func (t TimingConfig) delivery() (delivery.Timing, error) {
	out := delivery.Timing{Horizon: t.ScheduleHorizon}
	for _, d := range t.Digests {
		typ, rest, ok := strings.Cut(d, "=")
		window, key, _ := strings.Cut(rest, ":")
		w, err := time.ParseDuration(window)
		if !ok || err != nil || typ == "" {
			return out, fmt.Errorf("digest: %q: want type=window or type=window:key, e.g. points_added=1h", d)
		}
		if w < store.MinDigestWindow || w > store.MaxDigestWindow {
			return out, fmt.Errorf("digest: %q: the window must be %v to %v", d, store.MinDigestWindow, store.MaxDigestWindow)
		}
		out.Digests = append(out.Digests, store.DigestRule{EventType: typ, Window: w, Key: key})
	}
	for _, th := range t.Throttles {
		typ, rest, ok := strings.Cut(th, "=")
		limit, period, ok2 := strings.Cut(rest, "/")
		n, err := strconv.Atoi(limit)
		p, perr := time.ParseDuration(period)
		if !ok || !ok2 || err != nil || perr != nil || typ == "" || n < 1 {
			return out, fmt.Errorf("throttle: %q: want type=limit/period, e.g. system_alert=1/1h", th)
		}
		out.Throttles = append(out.Throttles, delivery.Throttle{EventType: typ, Limit: n, Period: p})
	}
	return out, nil
}
