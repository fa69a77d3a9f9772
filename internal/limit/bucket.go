package limit

import (
	"math"
	"time"
)

// bucket is a token bucket: it fills at rate tokens per second up to burst.
// A take of more than burst tokens passes when the bucket is full and
// leaves it in debt, so a large batch is never refused forever while the
// average rate still holds.
type bucket struct {
	tokens float64
	last   time.Time
}

func newBucket(now time.Time, burst float64) bucket {
	return bucket{tokens: burst, last: now}
}

// level returns the tokens the bucket holds at now.
func (b *bucket) level(now time.Time, rate, burst float64) float64 {
	if el := now.Sub(b.last); el > 0 {
		return math.Min(burst, b.tokens+el.Seconds()*rate)
	}
	return b.tokens
}

// take takes n tokens if the bucket holds min(n, burst) at now; otherwise
// it takes nothing and says how long until it would hold them.
func (b *bucket) take(now time.Time, rate, burst, n float64) (ok bool, wait time.Duration) {
	tokens := b.level(now, rate, burst)
	if now.After(b.last) {
		b.tokens, b.last = tokens, now
	}
	need := math.Min(n, burst)
	if tokens >= need {
		b.tokens -= n
		return true, 0
	}
	return false, time.Duration(math.Ceil((need - tokens) / rate * float64(time.Second)))
}

// rateParams normalises a rate and burst: a burst below 1 is 1.
func rateParams(perSecond float64, burst int) (float64, float64) {
	return perSecond, math.Max(1, float64(burst))
}
