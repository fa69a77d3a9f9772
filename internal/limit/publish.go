package limit

import (
	"fmt"
	"sync"
	"time"
)

// sweepEvery is how often, at most, PublishRate forgets full buckets.
const sweepEvery = time.Minute

// PublishRate limits the events each publisher (key) publishes per second,
// with a token bucket per key.
type PublishRate struct {
	rate, burst float64
	now         func() time.Time

	mu        sync.Mutex
	buckets   map[string]bucket
	nextSweep time.Time
}

// NewPublishRate allows each key perSecond events per second on average and
// burst at once (a burst below 1 is 1). perSecond <= 0 disables the limit.
// Options: WithClock.
func NewPublishRate(perSecond float64, burst int, opts ...Option) *PublishRate {
	o := buildOptions(opts)
	r := &PublishRate{now: o.now, buckets: make(map[string]bucket)}
	r.rate, r.burst = rateParams(perSecond, burst)
	r.nextSweep = r.now().Add(sweepEvery)
	return r
}

// Allow takes n events (a batch) from key's budget, or refuses all of them
// with an *Error (ReasonRateLimited) saying when to retry. A batch larger
// than the burst passes when key's budget is full, and delays the key's
// next events accordingly. n <= 0 always passes.
func (r *PublishRate) Allow(key string, n int) error {
	if r.rate <= 0 || n <= 0 {
		return nil
	}
	now := r.now()
	r.mu.Lock()
	defer r.mu.Unlock()
	if !now.Before(r.nextSweep) {
		r.sweep(now)
	}
	b, ok := r.buckets[key]
	if !ok {
		b = newBucket(now, r.burst)
	}
	ok, wait := b.take(now, r.rate, r.burst, float64(n))
	r.buckets[key] = b
	if !ok {
		return &Error{
			Reason:     ReasonRateLimited,
			RetryAfter: wait,
			msg:        fmt.Sprintf("publish rate limited to %g events/s (burst %g): retry in %s", r.rate, r.burst, wait),
		}
	}
	return nil
}

// sweep forgets the keys whose bucket is full again. Called with mu held.
func (r *PublishRate) sweep(now time.Time) {
	for k, b := range r.buckets {
		if b.level(now, r.rate, r.burst) >= r.burst {
			delete(r.buckets, k)
		}
	}
	r.nextSweep = now.Add(sweepEvery)
}

// Len returns the number of keys tracked, for a gauge.
func (r *PublishRate) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.buckets)
}
