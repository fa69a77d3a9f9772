package limit_test

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/maxloyalty/notify/internal/limit"
)

// clock is a fake clock for WithClock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)} }

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func TestPublishRate(t *testing.T) {
	type step struct {
		advance time.Duration
		key     string
		n       int
		// retry is the RetryAfter wanted; -1 means the call passes.
		retry time.Duration
	}
	const pass = -1
	tests := []struct {
		name      string
		perSecond float64
		burst     int
		steps     []step
	}{
		{"burst then refill", 2, 3, []step{
			{0, "a", 1, pass},
			{0, "a", 1, pass},
			{0, "a", 1, pass},
			{0, "a", 1, 500 * time.Millisecond},
			{250 * time.Millisecond, "a", 1, 250 * time.Millisecond},
			{250 * time.Millisecond, "a", 1, pass},
			{0, "a", 1, 500 * time.Millisecond},
		}},
		{"keys are independent", 1, 1, []step{
			{0, "a", 1, pass},
			{0, "a", 1, time.Second},
			{0, "b", 1, pass},
			{0, "b", 1, time.Second},
		}},
		{"batches take n", 10, 10, []step{
			{0, "a", 7, pass},
			{0, "a", 4, 100 * time.Millisecond},
			{0, "a", 3, pass},
			{0, "a", 1, 100 * time.Millisecond},
		}},
		{"refill stops at burst", 1, 2, []step{
			{time.Hour, "a", 1, pass},
			{time.Hour, "a", 2, pass},
			{0, "a", 1, time.Second},
		}},
		{"batch above burst passes when full and leaves debt", 1, 5, []step{
			{0, "a", 4, pass},
			{0, "a", 20, 4 * time.Second}, // needs a full bucket, has 1
			{4 * time.Second, "a", 20, pass},
			{0, "a", 1, 16 * time.Second}, // -15 tokens
			{16 * time.Second, "a", 1, pass},
		}},
		{"zero burst is one", 1, 0, []step{
			{0, "a", 1, pass},
			{0, "a", 1, time.Second},
		}},
		{"n <= 0 passes", 1, 1, []step{
			{0, "a", 1, pass},
			{0, "a", 0, pass},
			{0, "a", -3, pass},
			{0, "a", 1, time.Second},
		}},
		{"disabled", 0, 1, []step{
			{0, "a", 1000, pass},
			{0, "a", 1000, pass},
		}},
		{"disabled negative", -1, 0, []step{
			{0, "a", 1, pass},
			{0, "a", 1, pass},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := newClock()
			r := limit.NewPublishRate(tt.perSecond, tt.burst, limit.WithClock(clk.now))
			for i, s := range tt.steps {
				clk.advance(s.advance)
				err := r.Allow(s.key, s.n)
				if s.retry == pass {
					if err != nil {
						t.Fatalf("step %d: Allow(%q, %d) = %v, want nil", i, s.key, s.n, err)
					}
					continue
				}
				var le *limit.Error
				if !errors.As(err, &le) {
					t.Fatalf("step %d: Allow(%q, %d) = %v, want a *limit.Error", i, s.key, s.n, err)
				}
				if le.Reason != limit.ReasonRateLimited || le.RetryAfter != s.retry {
					t.Fatalf("step %d: Allow(%q, %d) = %s, retry after %v; want %s, %v", i, s.key, s.n, le.Reason, le.RetryAfter, limit.ReasonRateLimited, s.retry)
				}
			}
		})
	}
}

func TestPublishRateForgetsFullBuckets(t *testing.T) {
	clk := newClock()
	r := limit.NewPublishRate(1, 2, limit.WithClock(clk.now))
	for i := range 100 {
		if err := r.Allow(fmt.Sprint("idle", i), 1); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.Allow("debtor", 100); err != nil { // 2 - 100 = -98 tokens
		t.Fatal(err)
	}
	if got := r.Len(); got != 101 {
		t.Fatalf("Len = %d, want 101", got)
	}
	clk.advance(30 * time.Second)
	if err := r.Allow("fresh", 1); err != nil {
		t.Fatal(err)
	}
	if got := r.Len(); got != 102 {
		t.Fatalf("Len before the sweep = %d, want 102", got)
	}
	clk.advance(31 * time.Second) // a minute since start: the next Allow sweeps
	if err := r.Allow("fresh", 1); err != nil {
		t.Fatal(err)
	}
	// The idle keys refilled and are gone; "fresh" was just used; the
	// debtor is still paying off its batch and must not be forgiven.
	if got := r.Len(); got != 2 {
		t.Fatalf("Len after the sweep = %d, want 2 (fresh, debtor)", got)
	}
	err := r.Allow("debtor", 1)
	var le *limit.Error
	// -98 + 61 s × 1/s = -37 tokens: 38 s until it holds 1.
	if !errors.As(err, &le) || le.RetryAfter != 38*time.Second {
		t.Fatalf("debtor: Allow = %v, want refused, retry in 38s", err)
	}
}

func TestStreams(t *testing.T) {
	s := limit.NewStreams(2)
	r1, err := s.Acquire("u")
	if err != nil {
		t.Fatal(err)
	}
	r2, err := s.Acquire("u")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Acquire("u"); !errors.Is(err, limit.ErrTooManyStreams) {
		t.Fatalf("third Acquire = %v, want ErrTooManyStreams", err)
	}
	rv, err := s.Acquire("v")
	if err != nil {
		t.Fatalf("other user: %v", err)
	}
	r1()
	r1() // a second release does nothing
	if got := s.Open("u"); got != 1 {
		t.Fatalf("Open(u) = %d after releasing one, want 1", got)
	}
	r3, err := s.Acquire("u")
	if err != nil {
		t.Fatalf("Acquire after release: %v", err)
	}
	if _, err := s.Acquire("u"); err == nil {
		t.Fatal("double release freed two places")
	}
	r2()
	r3()
	rv()
	for _, u := range []string{"u", "v"} {
		if got := s.Open(u); got != 0 {
			t.Errorf("Open(%s) = %d after every release, want 0", u, got)
		}
	}
}

func TestStreamsDisabled(t *testing.T) {
	for _, max := range []int{0, -1} {
		s := limit.NewStreams(max)
		for range 1000 {
			release, err := s.Acquire("u")
			if err != nil {
				t.Fatalf("max %d: %v", max, err)
			}
			defer release()
		}
	}
}

func TestStreamsConcurrent(t *testing.T) {
	const max, workers, rounds = 3, 16, 200
	s := limit.NewStreams(max)
	var open, peak atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for range rounds {
				release, err := s.Acquire("u")
				if err != nil {
					continue
				}
				n := open.Add(1)
				for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
				}
				open.Add(-1)
				release()
			}
		})
	}
	wg.Wait()
	if p := peak.Load(); p > max || p < 1 {
		t.Fatalf("peak concurrent streams %d, want 1..%d", p, max)
	}
	if got := s.Open("u"); got != 0 {
		t.Fatalf("Open = %d at the end, want 0", got)
	}
}

func TestErrors(t *testing.T) {
	rate := limit.NewPublishRate(1, 1)
	_ = rate.Allow("k", 1)
	rateErr := rate.Allow("k", 1)
	_, streamsErr := func() (func(), error) {
		s := limit.NewStreams(1)
		_, _ = s.Acquire("u")
		return s.Acquire("u")
	}()
	tests := []struct {
		name   string
		err    error
		reason string
		is     error
		isNot  error
	}{
		{"rate", rateErr, limit.ReasonRateLimited, limit.ErrRateLimited, limit.ErrTooManyStreams},
		{"rate wrapped", fmt.Errorf("requests[2]: %w", rateErr), limit.ReasonRateLimited, limit.ErrRateLimited, limit.ErrTooManyConnections},
		{"streams", streamsErr, limit.ReasonTooManyStreams, limit.ErrTooManyStreams, limit.ErrRateLimited},
		{"sentinel", limit.ErrTooManyConnections, limit.ReasonTooManyConnections, limit.ErrTooManyConnections, limit.ErrTooManyStreams},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !errors.Is(tt.err, limit.ErrLimited) {
				t.Errorf("%v does not wrap ErrLimited", tt.err)
			}
			if !errors.Is(tt.err, tt.is) {
				t.Errorf("%v is not %v", tt.err, tt.is)
			}
			if errors.Is(tt.err, tt.isNot) {
				t.Errorf("%v is %v", tt.err, tt.isNot)
			}
			if got, ok := limit.Reason(tt.err); !ok || got != tt.reason {
				t.Errorf("Reason = %q, %v; want %q", got, ok, tt.reason)
			}
		})
	}
	if _, ok := limit.Reason(errors.New("other")); ok {
		t.Error("Reason found a reason in an unrelated error")
	}
}
