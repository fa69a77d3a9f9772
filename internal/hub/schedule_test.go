package hub

import (
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/maxloyalty/notify/internal/sched"
)

// ticks records the times a subscriber's tick ran, and answers with the
// next due time given by next.
type ticks struct {
	mu   sync.Mutex
	at   []time.Duration // since start
	next func(n int, now int64) int64
}

func (tk *ticks) fn(start time.Time) func(int64) int64 {
	return func(now int64) int64 {
		tk.mu.Lock()
		defer tk.mu.Unlock()
		tk.at = append(tk.at, time.Duration(now-start.UnixNano()))
		return tk.next(len(tk.at), now)
	}
}

func (tk *ticks) times() []time.Duration {
	tk.mu.Lock()
	defer tk.mu.Unlock()
	return append([]time.Duration(nil), tk.at...)
}

// TestScheduleRunsWhenDue: a tick runs at its due time, never before, and
// again at the time it returns; subscribers due together run together.
func TestScheduleRunsWhenDue(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := New()
		start := time.Now()
		every := func(d time.Duration) *ticks {
			return &ticks{next: func(_ int, now int64) int64 { return now + int64(d) }}
		}
		a, b := every(time.Second), every(3*time.Second)
		sa, sb := NewSubscriber(1<<10), NewSubscriber(1<<10)
		h.Schedule(sa, start.Add(time.Second).UnixNano(), a.fn(start))
		h.Schedule(sb, start.Add(2*time.Second).UnixNano(), b.fn(start))

		time.Sleep(7*time.Second + time.Millisecond)
		synctest.Wait()
		h.Unschedule(sa)
		h.Unschedule(sb)

		wantA := []time.Duration{1, 2, 3, 4, 5, 6, 7}
		wantB := []time.Duration{2, 5}
		for _, c := range []struct {
			name string
			got  []time.Duration
			want []time.Duration
		}{{"a", a.times(), wantA}, {"b", b.times(), wantB}} {
			if len(c.got) != len(c.want) {
				t.Fatalf("%s ran at %v, want at %v seconds", c.name, c.got, c.want)
			}
			for i, at := range c.got {
				due := c.want[i] * time.Second
				if at < due || at > due+sched.Slack {
					t.Errorf("%s: tick %d ran at %v, want at %v (within %v after)", c.name, i, at, due, sched.Slack)
				}
			}
		}
	})
}

// TestScheduleUnschedule: an unscheduled subscriber's tick does not run
// again, whether it was waiting or running; Leave unschedules, and a
// subscriber unscheduled for good cannot be scheduled again.
func TestScheduleUnschedule(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := New()
		start := time.Now()
		second := func(_ int, now int64) int64 { return now + int64(time.Second) }

		waiting := &ticks{next: second}
		sw := NewSubscriber(1 << 10)
		h.Schedule(sw, start.Add(time.Second).UnixNano(), waiting.fn(start))

		// This one unschedules itself while its tick runs: that tick is its
		// last, whatever it returns.
		running := &ticks{}
		sr := NewSubscriber(1 << 10)
		running.next = func(n int, now int64) int64 {
			if n == 2 {
				h.Unschedule(sr)
			}
			return now + int64(time.Second)
		}
		h.Schedule(sr, start.Add(time.Second).UnixNano(), running.fn(start))

		left := &ticks{next: second}
		sl := NewSubscriber(1 << 10)
		h.Join(sl, []string{"room"}, []string{"user"})
		h.Schedule(sl, start.Add(time.Second).UnixNano(), left.fn(start))

		time.Sleep(1500 * time.Millisecond)
		synctest.Wait()
		h.Unschedule(sw)
		h.Leave(sl)
		h.Schedule(sw, start.Add(2*time.Second).UnixNano(), waiting.fn(start))
		time.Sleep(5 * time.Second)
		synctest.Wait()

		if got := waiting.times(); len(got) != 1 {
			t.Errorf("unscheduled subscriber ran at %v, want once, before Unschedule", got)
		}
		if got := left.times(); len(got) != 1 {
			t.Errorf("subscriber that left ran at %v, want once, before Leave", got)
		}
		if got := running.times(); len(got) != 2 {
			t.Errorf("subscriber unscheduled in its tick ran at %v, want twice", got)
		}
		if n := h.sched.Len(); n != 0 {
			t.Errorf("%d subscribers still scheduled, want none", n)
		}
	})
}

// TestScheduleMany: subscribers scheduled at scattered times each run once
// per due time, in any order of scheduling and unscheduling.
func TestScheduleMany(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := New()
		start := time.Now()
		const n = 500
		subs := make([]*Subscriber, n)
		tks := make([]*ticks, n)
		for i := range n {
			// Due once, at a time of its own within 5 s; then never again
			// within the test.
			tks[i] = &ticks{next: func(_ int, now int64) int64 { return now + int64(time.Hour) }}
			subs[i] = NewSubscriber(1 << 10)
			due := start.Add(time.Duration(i*7919%5000) * time.Millisecond)
			h.Schedule(subs[i], due.UnixNano(), tks[i].fn(start))
		}
		// A third leave before they are due.
		for i := 0; i < n; i += 3 {
			h.Unschedule(subs[i])
		}
		time.Sleep(6 * time.Second)
		synctest.Wait()
		for i, tk := range tks {
			got := tk.times()
			due := time.Duration(i*7919%5000) * time.Millisecond
			switch {
			case i%3 == 0 && due > 0 && len(got) != 0:
				t.Errorf("subscriber %d (unscheduled) ran at %v", i, got)
			case i%3 != 0 && len(got) != 1:
				t.Errorf("subscriber %d due at %v ran at %v, want once", i, due, got)
			case i%3 != 0 && (got[0] < due || got[0] > due+sched.Slack):
				t.Errorf("subscriber %d due at %v ran at %v", i, due, got[0])
			}
		}
		for _, s := range subs {
			h.Unschedule(s)
		}
	})
}
