package sched

import (
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// runs records when a tick ran, relative to start.
type runs struct {
	mu    sync.Mutex
	start time.Time
	at    []time.Duration
}

func (r *runs) tick(every time.Duration) func(int64) int64 {
	return func(now int64) int64 {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.at = append(r.at, time.Duration(now-r.start.UnixNano()))
		return now + int64(every)
	}
}

func (r *runs) times() []time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]time.Duration(nil), r.at...)
}

// TestAddAgain: adding an entry that is scheduled moves it to the new due
// time: it runs then, once, not at the old one.
func TestAddAgain(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var q Schedule
		var e Entry
		r := &runs{start: time.Now()}
		q.Add(&e, r.start.Add(time.Second).UnixNano(), r.tick(time.Hour))
		q.Add(&e, r.start.Add(3*time.Second).UnixNano(), r.tick(time.Hour))
		if n := q.Len(); n != 1 {
			t.Fatalf("%d entries scheduled, want 1", n)
		}
		time.Sleep(4 * time.Second)
		synctest.Wait()
		got := r.times()
		if len(got) != 1 || got[0] < 3*time.Second || got[0] > 3*time.Second+Slack {
			t.Fatalf("ran at %v, want once at 3s", got)
		}
		q.Remove(&e)
		if n := q.Len(); n != 0 {
			t.Fatalf("%d entries scheduled after Remove, want 0", n)
		}
	})
}

// TestRemoveForGood: a removed entry is not added again, and one removed
// by its own tick does not run again.
func TestRemoveForGood(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var q Schedule
		var gone, self Entry
		start := time.Now()
		r := &runs{start: start}
		q.Remove(&gone)
		q.Add(&gone, start.Add(time.Second).UnixNano(), r.tick(time.Second))
		var selfRuns int
		q.Add(&self, start.Add(time.Second).UnixNano(), func(now int64) int64 {
			selfRuns++
			q.Remove(&self)
			return now + int64(time.Second)
		})
		time.Sleep(5 * time.Second)
		synctest.Wait()
		if got := r.times(); len(got) != 0 {
			t.Errorf("a removed entry ran at %v", got)
		}
		if selfRuns != 1 {
			t.Errorf("an entry removed by its tick ran %d times, want 1", selfRuns)
		}
		if n := q.Len(); n != 0 {
			t.Errorf("%d entries scheduled, want 0", n)
		}
	})
}
