package broker

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"
)

// clock is a settable time source.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// recorder collects what the broker hands to its handler.
type recorder struct {
	mu   sync.Mutex
	msgs []Message
	more chan struct{} // closed by the next message; nil until awaited
}

func (r *recorder) handle(m Message) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.msgs = append(r.msgs, m)
	if r.more != nil {
		close(r.more)
		r.more = nil
	}
}

// await waits until cond holds of the messages handled so far, looking
// again on each new one, and fails t when it does not within d.
func (r *recorder) await(t *testing.T, d time.Duration, what string, cond func([]Message) bool) {
	t.Helper()
	timeout := time.NewTimer(d)
	defer timeout.Stop()
	for {
		r.mu.Lock()
		if cond(r.msgs) {
			r.mu.Unlock()
			return
		}
		if r.more == nil {
			r.more = make(chan struct{})
		}
		more := r.more
		r.mu.Unlock()
		select {
		case <-more:
		case <-timeout.C:
			t.Fatalf("after %v: %s", d, what)
		}
	}
}

// last reports whether the last message handled carries data.
func last(data string) func([]Message) bool {
	return func(ms []Message) bool { return len(ms) > 0 && string(ms[len(ms)-1].Data) == data }
}

// count reports whether n messages were handled.
func count(n int) func([]Message) bool {
	return func(ms []Message) bool { return len(ms) == n }
}

func newTestMemory(t *testing.T, l Limits) (*Memory, *recorder, *clock) {
	t.Helper()
	c := &clock{now: time.Unix(1_800_000_000, 0)}
	rec := &recorder{}
	m := NewMemory(MemoryConfig{Limits: func(string) Limits { return l }, IdempotencyWindow: time.Minute, Now: c.Now}, rec.handle)
	t.Cleanup(func() { m.Close() })
	return m, rec, c
}

func publish(t *testing.T, m *Memory, key string, rooms ...string) Result {
	t.Helper()
	res, err := m.Publish(context.Background(), Publication{EventID: fmt.Sprint(time.Now().UnixNano()), Rooms: rooms, Data: []byte("x"), IdempotencyKey: key})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func offsets(ms []Message) []uint64 {
	var out []uint64
	for _, m := range ms {
		out = append(out, m.Offset)
	}
	return out
}

func TestMemoryOffsetsPerRoom(t *testing.T) {
	m, rec, _ := newTestMemory(t, Limits{Size: 10, TTL: time.Hour})
	publish(t, m, "", "a", "b")
	publish(t, m, "", "a")
	res := publish(t, m, "", "b", "a")
	if res.Positions[0].Room != "b" || res.Positions[0].Offset != 2 || res.Positions[1].Offset != 3 {
		t.Fatalf("positions = %+v, want b@2 a@3", res.Positions)
	}
	if len(rec.msgs) != 5 {
		t.Fatalf("handler saw %d messages, want 5", len(rec.msgs))
	}
	if res.Positions[0].Epoch == res.Positions[1].Epoch || res.Positions[0].Epoch == "" {
		t.Fatalf("rooms share epoch %q: each room has its own", res.Positions[0].Epoch)
	}
}

func TestMemoryHistory(t *testing.T) {
	m, _, c := newTestMemory(t, Limits{Size: 3, TTL: time.Minute})
	ctx := context.Background()
	var epoch string
	for range 5 {
		epoch = publish(t, m, "", "r").Positions[0].Epoch
	}
	tests := []struct {
		name     string
		since    Position
		want     []uint64
		complete bool
	}{
		{"within window", Position{Offset: 3, Epoch: epoch}, []uint64{4, 5}, true},
		{"at the edge", Position{Offset: 2, Epoch: epoch}, []uint64{3, 4, 5}, true},
		{"older than window", Position{Offset: 1, Epoch: epoch}, []uint64{3, 4, 5}, false},
		{"up to date", Position{Offset: 5, Epoch: epoch}, nil, true},
		{"ahead of the room", Position{Offset: 9, Epoch: epoch}, nil, false},
		{"other epoch", Position{Offset: 3, Epoch: "zzz"}, []uint64{3, 4, 5}, false},
		{"from the start", Position{}, []uint64{3, 4, 5}, false},
	}
	for _, tt := range tests {
		h, err := m.History(ctx, "r", tt.since)
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(offsets(h.Messages)) != fmt.Sprint(tt.want) || h.Complete != tt.complete || h.Top != (Position{5, epoch}) {
			t.Errorf("%s: History = %v complete=%v top=%v, want %v complete=%v", tt.name, offsets(h.Messages), h.Complete, h.Top, tt.want, tt.complete)
		}
	}

	c.Add(2 * time.Minute) // everything expires
	h, err := m.History(ctx, "r", Position{Offset: 4, Epoch: epoch})
	if err != nil {
		t.Fatal(err)
	}
	if len(h.Messages) != 0 || h.Complete {
		t.Fatalf("after TTL: %v complete=%v, want nothing and incomplete", offsets(h.Messages), h.Complete)
	}
	h, _ = m.History(ctx, "r", Position{Offset: 5, Epoch: epoch})
	if !h.Complete {
		t.Fatal("a client already at the top is complete even when history expired")
	}
}

func TestMemoryFromStartWhenWindowHoldsAll(t *testing.T) {
	m, _, _ := newTestMemory(t, Limits{Size: 10, TTL: time.Hour})
	publish(t, m, "", "r")
	publish(t, m, "", "r")
	h, err := m.History(context.Background(), "r", Position{})
	if err != nil {
		t.Fatal(err)
	}
	if !h.Complete || fmt.Sprint(offsets(h.Messages)) != "[1 2]" {
		t.Fatalf("History(0) = %v complete=%v", offsets(h.Messages), h.Complete)
	}
}

func TestMemoryIdempotency(t *testing.T) {
	m, rec, c := newTestMemory(t, Limits{Size: 10, TTL: time.Hour})
	first := publish(t, m, "k1", "r")
	again := publish(t, m, "k1", "r")
	if !again.Duplicate || again.EventID != first.EventID || again.Positions[0] != first.Positions[0] {
		t.Fatalf("repeat = %+v, want first result %+v marked duplicate", again, first)
	}
	if len(rec.msgs) != 1 {
		t.Fatalf("handler saw %d messages, want 1", len(rec.msgs))
	}
	c.Add(2 * time.Minute) // past the window
	late := publish(t, m, "k1", "r")
	if late.Duplicate || late.Positions[0].Offset != 2 {
		t.Fatalf("after window: %+v, want a new publish at offset 2", late)
	}
}

// TestMemoryIdempotencyConcurrent: concurrent publishes repeating a few keys
// (spread over the key shards) publish each key once; every repeat gets the
// first publish's positions, marked duplicate.
func TestMemoryIdempotencyConcurrent(t *testing.T) {
	m, rec, _ := newTestMemory(t, Limits{Size: 1000, TTL: time.Hour})
	const keys, repeats = 40, 8
	results := make([][]Result, keys)
	for k := range results {
		results[k] = make([]Result, repeats)
	}
	var wg sync.WaitGroup
	for k := range keys {
		for r := range repeats {
			wg.Go(func() {
				res, err := m.Publish(context.Background(), Publication{EventID: fmt.Sprintf("e%d-%d", k, r),
					Rooms: []string{"r"}, Data: []byte("x"), IdempotencyKey: fmt.Sprintf("key-%d", k)})
				if err != nil {
					t.Error(err)
				}
				results[k][r] = res
			})
		}
	}
	wg.Wait()
	if len(rec.msgs) != keys {
		t.Fatalf("handler saw %d messages, want one per key (%d)", len(rec.msgs), keys)
	}
	seen := make(map[uint64]bool)
	for k, rs := range results {
		firsts := 0
		for _, r := range rs {
			if !r.Duplicate {
				firsts++
			}
			if r.Positions[0] != rs[0].Positions[0] || r.EventID != rs[0].EventID {
				t.Errorf("key %d: results %+v and %+v differ", k, r, rs[0])
			}
		}
		if firsts != 1 {
			t.Errorf("key %d: %d results not marked duplicate, want 1", k, firsts)
		}
		if off := rs[0].Positions[0].Offset; seen[off] {
			t.Errorf("offset %d given to two keys", off)
		} else {
			seen[off] = true
		}
	}
}

func TestMemoryConcurrentPublishKeepsRoomOrder(t *testing.T) {
	m, rec, _ := newTestMemory(t, Limits{Size: 1000, TTL: time.Hour})
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 100 {
				publish(t, m, "", "r")
			}
		})
	}
	wg.Wait()
	for i, msg := range rec.msgs {
		if msg.Offset != uint64(i+1) {
			t.Fatalf("handler saw offset %d at position %d: order broken", msg.Offset, i)
		}
	}
}

func TestMemoryClosed(t *testing.T) {
	m, _, _ := newTestMemory(t, Limits{Size: 1, TTL: time.Hour})
	m.Close()
	if _, err := m.Publish(context.Background(), Publication{Rooms: []string{"r"}}); err != ErrClosed {
		t.Fatalf("Publish after Close = %v, want ErrClosed", err)
	}
}
