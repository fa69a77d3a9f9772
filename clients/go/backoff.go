package notify

import (
	"errors"
	"math/rand/v2"
	"time"
)

// Backoff is the reconnection policy of subscriptions: exponential with
// factor 2 and full jitter. The delay before retry n (from 0) is drawn
// uniformly from [0, Ceiling(n)], where Ceiling(n) = min(Max, Min·2ⁿ).
type Backoff struct {
	Min, Max time.Duration
}

func (b Backoff) validate() error {
	if b.Min <= 0 || b.Max < b.Min {
		return errors.New("notify: backoff needs 0 < min <= max")
	}
	return nil
}

// Ceiling returns the longest delay before retry n (counted from 0).
func (b Backoff) Ceiling(n int) time.Duration {
	d := b.Min
	for i := 0; i < n && d < b.Max; i++ {
		if d > b.Max/2 {
			return b.Max
		}
		d *= 2
	}
	return min(d, b.Max)
}

// Delay returns a random delay before retry n (counted from 0), uniform in
// [0, Ceiling(n)].
func (b Backoff) Delay(n int) time.Duration {
	return b.delay(n, rand.Int64N)
}

// delay draws with rnd, which returns a number in [0, n).
func (b Backoff) delay(n int, rnd func(int64) int64) time.Duration {
	c := b.Ceiling(n)
	if c <= 0 {
		return 0
	}
	return time.Duration(rnd(int64(c) + 1))
}
