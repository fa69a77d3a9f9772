package main

import (
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"
)

func TestBucketsCoverValuesInOrder(t *testing.T) {
	prev := -1
	for _, v := range []int64{0, 1, 63, 64, 65, 127, 128, 129, 1000, 1 << 20, 1<<20 + 1, 1 << 40} {
		b := bucketOf(v)
		if b < prev {
			t.Fatalf("bucketOf(%d) = %d, below the previous value's %d", v, b, prev)
		}
		prev = b
		if hi := bucketHigh(b); hi < v && b != histBuckets-1 {
			t.Fatalf("value %d in bucket %d whose high is %d", v, b, hi)
		}
		if b > 0 && bucketHigh(b-1) >= v {
			t.Fatalf("value %d in bucket %d but bucket %d reaches %d", v, b, b-1, bucketHigh(b-1))
		}
	}
	// Every bucket's range starts right after the previous one's.
	for i := 1; i < histBuckets; i++ {
		if lo := bucketHigh(i-1) + 1; bucketOf(lo) != i {
			t.Fatalf("bucketOf(%d) = %d, want %d", lo, bucketOf(lo), i)
		}
	}
}

func TestQuantilesWithinResolution(t *testing.T) {
	var h Histogram
	vals := make([]int64, 0, 100_000)
	r := rand.New(rand.NewPCG(1, 2))
	for range 100_000 {
		// Log-uniform from 1µs to 1s, like latencies.
		v := int64(1e3 * math.Pow(10, r.Float64()*6))
		vals = append(vals, v)
		h.Record(time.Duration(v))
	}
	slices.Sort(vals)
	for _, q := range []float64{0.5, 0.9, 0.99, 0.999, 1} {
		want := vals[int(q*float64(len(vals)))-1]
		got := int64(h.Quantile(q))
		if got < want || float64(got) > float64(want)*(1+1.0/64)+1 {
			t.Errorf("q%v = %d, want %d (+1/64 at most)", q, got, want)
		}
	}
	if h.Max() != time.Duration(vals[len(vals)-1]) {
		t.Errorf("Max = %v, want %v", h.Max(), vals[len(vals)-1])
	}
	if h.Count() != int64(len(vals)) {
		t.Errorf("Count = %d", h.Count())
	}
}

func TestQuantileSmallSets(t *testing.T) {
	var h Histogram
	if h.Quantile(0.99) != 0 || h.Max() != 0 {
		t.Fatal("empty histogram should report 0")
	}
	for _, v := range []time.Duration{10, 20, 30, 40} {
		h.Record(v)
	}
	cases := map[float64]time.Duration{0.25: 10, 0.5: 20, 0.75: 30, 0.99: 40, 1: 40}
	for q, want := range cases {
		if got := h.Quantile(q); got != want {
			t.Errorf("q%v = %v, want %v (exact below 64ns)", q, got, want)
		}
	}
	h.Record(-5) // clamped to 0
	if h.Quantile(0.01) != 0 {
		t.Errorf("negative value not clamped to 0")
	}
	// The top quantile never exceeds the exact maximum.
	var g Histogram
	g.Record(1000001)
	if g.Quantile(1) != 1000001 {
		t.Errorf("q1 = %v, want the exact max", g.Quantile(1))
	}
}

func TestShardedHistogramConcurrentAndMerged(t *testing.T) {
	s := NewShardedHistogram(8)
	var wg sync.WaitGroup
	for w := range 16 {
		wg.Go(func() {
			h := s.Shard(w)
			for i := 1; i <= 1000; i++ {
				h.Record(time.Duration(i) * time.Microsecond)
			}
		})
	}
	wg.Wait()
	m := s.Merged()
	if m.Count() != 16000 || m.Max() != time.Millisecond {
		t.Fatalf("merged count %d max %v", m.Count(), m.Max())
	}
	if p := m.Quantile(0.5); p < 500*time.Microsecond || p > 508*time.Microsecond {
		t.Errorf("merged p50 = %v, want ~500µs", p)
	}
	sum := m.Summary()
	if sum.Count != 16000 || sum.Max != 1 || sum.P99 < 0.99 || sum.P99 > 1 {
		t.Errorf("summary %+v", sum)
	}
}

func TestTrackerAccounting(t *testing.T) {
	type ev struct {
		room, epoch string
		off         uint64
	}
	cases := []struct {
		name           string
		start          uint64
		startEpoch     string
		events         []ev
		top            uint64
		cut            bool
		delivered      int64
		lost, dup      int64
		unknown, epoch int64
		missed         int64
	}{
		{name: "in order", start: 5, startEpoch: "e", events: []ev{{"r", "e", 6}, {"r", "e", 7}, {"r", "e", 8}}, top: 8, delivered: 3},
		{name: "gap", start: 0, startEpoch: "e", events: []ev{{"r", "e", 1}, {"r", "e", 4}, {"r", "e", 5}}, top: 5, delivered: 3, lost: 2},
		{name: "duplicate and replayed", start: 0, startEpoch: "e", events: []ev{{"r", "e", 1}, {"r", "e", 2}, {"r", "e", 2}, {"r", "e", 1}, {"r", "e", 3}}, top: 3, delivered: 3, dup: 2},
		{name: "before the start is a duplicate", start: 10, startEpoch: "e", events: []ev{{"r", "e", 10}, {"r", "e", 11}}, top: 11, delivered: 1, dup: 1},
		{name: "tail missing", start: 0, startEpoch: "e", events: []ev{{"r", "e", 1}}, top: 4, delivered: 1, lost: 3},
		{name: "cut: tail missed, not lost", start: 0, startEpoch: "e", events: []ev{{"r", "e", 1}, {"r", "e", 2}}, top: 9, cut: true, delivered: 2, missed: 7},
		{name: "cut after a gap: the gap is still lost", start: 0, startEpoch: "e", events: []ev{{"r", "e", 2}}, top: 5, cut: true, delivered: 1, lost: 1, missed: 3},
		{name: "new room takes the first epoch", start: 0, startEpoch: "", events: []ev{{"r", "e1", 1}, {"r", "e1", 2}}, top: 2, delivered: 2},
		{name: "epoch change", start: 0, startEpoch: "e1", events: []ev{{"r", "e1", 1}, {"r", "e2", 1}, {"r", "e2", 2}}, top: 2, delivered: 2, unknown: 1, epoch: 1},
		{name: "other room", start: 0, startEpoch: "e", events: []ev{{"x", "e", 1}, {"r", "e", 1}}, top: 1, delivered: 1, unknown: 1},
		{name: "nothing published", start: 3, startEpoch: "e", top: 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tr := NewTracker()
			tr.Start("r", c.startEpoch, c.start)
			for _, e := range c.events {
				tr.Observe(e.room, e.epoch, e.off)
			}
			tr.Cut = c.cut
			tr.Finish("r", c.top)
			tr.Finish("never-started", 10) // ignored
			if tr.Delivered != c.delivered || tr.Lost != c.lost || tr.Duplicated != c.dup ||
				tr.Unknown != c.unknown || tr.EpochChanges != c.epoch || tr.Missed != c.missed {
				t.Errorf("delivered %d lost %d dup %d unknown %d epoch %d missed %d; want %d %d %d %d %d %d",
					tr.Delivered, tr.Lost, tr.Duplicated, tr.Unknown, tr.EpochChanges, tr.Missed,
					c.delivered, c.lost, c.dup, c.unknown, c.epoch, c.missed)
			}
		})
	}
}

func TestTrackerObserveReportsNewEvents(t *testing.T) {
	tr := NewTracker()
	tr.Start("r", "e", 0)
	if !tr.Observe("r", "e", 1) || tr.Observe("r", "e", 1) || !tr.Observe("r", "e", 3) || tr.Observe("q", "e", 1) {
		t.Fatal("Observe should report only new events of known rooms")
	}
	if tr.Last("r") != 3 || tr.Last("q") != 0 {
		t.Errorf("Last = %d, %d", tr.Last("r"), tr.Last("q"))
	}
}

// TestTrackerSeveralRooms: the first room lives in the Tracker, later ones
// in its map; each keeps its own position, and restarting the first one
// does not move it to the map.
func TestTrackerSeveralRooms(t *testing.T) {
	tr := NewTracker()
	tr.Start("a", "e", 0)
	tr.Start("b", "f", 10)
	tr.Start("a", "e", 2) // a resume restarts a room
	for _, e := range []struct {
		room, epoch string
		off         uint64
	}{{"a", "e", 3}, {"b", "f", 11}, {"b", "f", 13}, {"a", "e", 3}, {"c", "e", 1}} {
		tr.Observe(e.room, e.epoch, e.off)
	}
	tr.Finish("a", 4)
	tr.Finish("b", 13)
	if tr.Last("a") != 3 || tr.Last("b") != 13 || len(tr.rooms) != 1 {
		t.Errorf("last a=%d b=%d, %d rooms in the map", tr.Last("a"), tr.Last("b"), len(tr.rooms))
	}
	if tr.Delivered != 3 || tr.Lost != 2 || tr.Duplicated != 1 || tr.Unknown != 1 {
		t.Errorf("delivered %d lost %d dup %d unknown %d, want 3 2 1 1", tr.Delivered, tr.Lost, tr.Duplicated, tr.Unknown)
	}
}
