package main

import (
	"math"
	"math/bits"
	"sync/atomic"
	"time"
)

// Histogram records durations (nanoseconds) in log-linear buckets: exact
// below 64 ns, then 64 buckets per power of two, so any reported value is
// within 1/64 (1.6%) of the true one. Record is safe for concurrent use
// (atomic counters); the maximum is kept exactly.
type Histogram struct {
	counts [histBuckets]atomic.Int64
	total  atomic.Int64
	max    atomic.Int64
}

const (
	histSubBits = 6
	histSub     = 1 << histSubBits
	// histOctaves covers values up to 2^(histSubBits+histOctaves) ns (~36 min);
	// larger values land in the last bucket (Max stays exact).
	histOctaves = 36
	histBuckets = (histOctaves + 1) * histSub
)

func bucketOf(v int64) int {
	if v < histSub {
		if v < 0 {
			return 0
		}
		return int(v)
	}
	o := bits.Len64(uint64(v)) - histSubBits // >= 1
	if o > histOctaves {
		return histBuckets - 1
	}
	return o*histSub + int(v>>(o-1)) - histSub
}

// bucketHigh is the largest value that falls in bucket i.
func bucketHigh(i int) int64 {
	o, m := i/histSub, i%histSub
	if o == 0 {
		return int64(m)
	}
	return (int64(m+histSub+1) << (o - 1)) - 1
}

// Record adds one value.
func (h *Histogram) Record(d time.Duration) {
	v := int64(d)
	if v < 0 {
		v = 0
	}
	h.counts[bucketOf(v)].Add(1)
	h.total.Add(1)
	for {
		m := h.max.Load()
		if v <= m || h.max.CompareAndSwap(m, v) {
			return
		}
	}
}

// Merge adds o's counts to h.
func (h *Histogram) Merge(o *Histogram) {
	for i := range o.counts {
		if n := o.counts[i].Load(); n != 0 {
			h.counts[i].Add(n)
		}
	}
	h.total.Add(o.total.Load())
	for {
		m, om := h.max.Load(), o.max.Load()
		if om <= m || h.max.CompareAndSwap(m, om) {
			return
		}
	}
}

// Count is the number of recorded values.
func (h *Histogram) Count() int64 { return h.total.Load() }

// Max is the largest recorded value.
func (h *Histogram) Max() time.Duration { return time.Duration(h.max.Load()) }

// Quantile returns the value at quantile q (0..1]: the upper bound of the
// bucket holding the ceil(q*count)-th smallest value, never above Max.
// It is 0 for an empty histogram.
func (h *Histogram) Quantile(q float64) time.Duration {
	n := h.total.Load()
	if n == 0 {
		return 0
	}
	rank := int64(math.Ceil(q * float64(n)))
	rank = max(1, min(rank, n))
	var seen int64
	for i := range h.counts {
		seen += h.counts[i].Load()
		if seen >= rank {
			return min(time.Duration(bucketHigh(i)), h.Max())
		}
	}
	return h.Max()
}

// Latency is a histogram's summary, in milliseconds, for reports.
type Latency struct {
	Count int64   `json:"count"`
	P50   float64 `json:"p50_ms"`
	P90   float64 `json:"p90_ms"`
	P99   float64 `json:"p99_ms"`
	Max   float64 `json:"max_ms"`
}

// Summary returns the report form of h.
func (h *Histogram) Summary() Latency {
	ms := func(d time.Duration) float64 { return math.Round(float64(d)/1e3) / 1e3 }
	return Latency{
		Count: h.Count(),
		P50:   ms(h.Quantile(0.50)),
		P90:   ms(h.Quantile(0.90)),
		P99:   ms(h.Quantile(0.99)),
		Max:   ms(h.Max()),
	}
}

// ShardedHistogram spreads concurrent recorders over a few histograms so
// that thousands of subscriber goroutines do not all hit the same counters.
type ShardedHistogram struct{ shards []Histogram }

// NewShardedHistogram returns n shards (at least one).
func NewShardedHistogram(n int) *ShardedHistogram {
	return &ShardedHistogram{shards: make([]Histogram, max(1, n))}
}

// Shard returns the histogram for recorder i.
func (s *ShardedHistogram) Shard(i int) *Histogram { return &s.shards[i%len(s.shards)] }

// Merged returns one histogram holding every shard's values.
func (s *ShardedHistogram) Merged() *Histogram {
	var h Histogram
	for i := range s.shards {
		h.Merge(&s.shards[i])
	}
	return &h
}

// Tracker follows one subscriber's position in each of its rooms and
// accounts for lost and duplicated events. It is used by one goroutine
// while the subscriber runs; read its counters after that goroutine ends.
//
// A room starts at the offset its Connected message states (the room's top
// when the stream opened: the stream is live from there). Each event must
// then be exactly the next offset: a lower or equal offset is a duplicate,
// a jump past the next one counts the skipped offsets as lost. At the end,
// Finish compares each room's last offset with the last one the publisher
// was told about, and counts the difference as lost, unless the subscriber
// was cut for slowness, in which case it is counted apart (Missed).
//
// The zero Tracker is ready. Its first room is kept in the Tracker itself,
// others in a map: a benchmark subscriber has one room, and with thousands
// of them the map's memory, touched on every event, costs more than the
// rest of the accounting.
type Tracker struct {
	one     roomTrack // the first room started
	oneName string
	rooms   map[string]*roomTrack // the others

	// Delivered counts events received in order (not duplicates).
	Delivered int64
	// Lost counts offsets never received (gaps, and the tail at Finish).
	Lost int64
	// Duplicated counts events received again (offset at or below the last).
	Duplicated int64
	// Unknown counts events of rooms the stream did not open, or of an epoch
	// other than the stream's; they are not otherwise accounted for.
	Unknown int64
	// EpochChanges counts events whose room epoch differed from the one
	// Connected gave: the room's history was lost in the middle of the run.
	EpochChanges int64
	// Cut is set when the server ended the stream as a slow consumer.
	Cut bool
	// Missed counts the events a cut subscriber did not get (not Lost).
	Missed int64
}

type roomTrack struct {
	epoch string
	last  uint64
}

// NewTracker returns an empty tracker.
func NewTracker() *Tracker { return &Tracker{} }

// Start sets a room's epoch and the offset the stream starts after.
func (t *Tracker) Start(room, epoch string, top uint64) {
	if t.oneName == "" || t.oneName == room {
		t.oneName, t.one = room, roomTrack{epoch: epoch, last: top}
		return
	}
	if t.rooms == nil {
		t.rooms = map[string]*roomTrack{}
	}
	t.rooms[room] = &roomTrack{epoch: epoch, last: top}
}

func (t *Tracker) room(name string) *roomTrack {
	if name == t.oneName && name != "" {
		return &t.one
	}
	return t.rooms[name]
}

// Last returns the last offset seen in room (or started from).
func (t *Tracker) Last(room string) uint64 {
	if r := t.room(room); r != nil {
		return r.last
	}
	return 0
}

// Observe accounts for one event and reports whether it is new (neither a
// duplicate nor of an unknown room), i.e. whether its latency counts.
func (t *Tracker) Observe(room, epoch string, offset uint64) bool {
	r := t.room(room)
	if r == nil {
		t.Unknown++
		return false
	}
	if epoch != r.epoch {
		if r.epoch == "" {
			// The room had no epoch yet when the stream opened (nothing was
			// ever published in it): its first event sets it.
			r.epoch = epoch
		} else {
			t.EpochChanges++
			t.Unknown++
			r.epoch, r.last = epoch, offset
			return false
		}
	}
	switch {
	case offset <= r.last:
		t.Duplicated++
		return false
	case offset > r.last+1:
		t.Lost += int64(offset - r.last - 1)
	}
	r.last = offset
	t.Delivered++
	return true
}

// Finish counts what the subscriber is missing of room up to top, the last
// offset published there.
func (t *Tracker) Finish(room string, top uint64) {
	r := t.room(room)
	if r == nil || top <= r.last {
		return
	}
	if t.Cut {
		t.Missed += int64(top - r.last)
	} else {
		t.Lost += int64(top - r.last)
	}
}
