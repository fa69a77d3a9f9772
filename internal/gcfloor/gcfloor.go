// Package gcfloor keeps the garbage collector from running every few
// megabytes while the live heap is small.
//
// The collector starts a cycle when the heap has grown by GOGC percent of
// what it kept (the live heap, goroutine stacks and globals), and never
// below 4 MB. A node publishing at full speed keeps a live heap of a
// megabyte or two and allocates a few kilobytes per call, so it collects
// many times a second, and collecting and allocating from freshly swept
// memory take much of its CPU (docs/PERFORMANCE.md has the figures). A
// floor is the least heap goal: after each cycle the GC percent is raised
// so that the next cycle starts when the heap reaches the floor, and left
// at its default once the kept bytes reach half the floor, where Go's own
// goal (twice what was kept) is above it, as on a node holding many
// streams. The cost is at most the floor in memory, in all: a node whose
// streams keep 40 MB is not let grow to 40 MB plus the floor. GOMEMLIMIT
// still bounds the heap; a GOGC in the environment turns the floor off.
package gcfloor

import (
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
)

// DefaultFloor is notifyd's floor (node.Config.GCFloor), which the load
// generator uses for itself too.
const DefaultFloor = 64 << 20

// basePercent is the GC percent without a floor: Go's default.
const basePercent = 100

// maxPercent bounds the percent a huge floor could ask for.
const maxPercent = 10_000

// minHeap is the runtime's least heap goal at the default percent.
const minHeap = 4 << 20

var (
	mu      sync.Mutex
	current *tuner // the running floor; one per process
)

type tuner struct {
	floor   int64
	stopped bool // under mu
	percent int
	samples []metrics.Sample
}

// Start keeps the heap goal at floor bytes or more until stop is called.
// It does nothing when floor <= 0, when GOGC is set in the environment, or
// while another floor runs (the GC settings belong to the process).
func Start(floor int64) (stop func()) {
	if floor <= 0 || os.Getenv("GOGC") != "" {
		return func() {}
	}
	mu.Lock()
	defer mu.Unlock()
	if current != nil {
		return func() {}
	}
	t := &tuner{floor: floor, percent: basePercent, samples: []metrics.Sample{
		{Name: "/gc/heap/live:bytes"},
		{Name: "/gc/scan/stack:bytes"},
		{Name: "/gc/scan/globals:bytes"},
	}}
	current = t
	t.adjust()
	t.arm()
	return func() {
		mu.Lock()
		defer mu.Unlock()
		if !t.stopped {
			t.stopped = true
			current = nil
			debug.SetGCPercent(basePercent)
		}
	}
}

// sentinel is allocated for each cycle: its cleanup runs once a
// collection has found it unreachable.
type sentinel struct{ _ [32]byte }

func (t *tuner) arm() {
	runtime.AddCleanup(new(sentinel), func(t *tuner) {
		mu.Lock()
		defer mu.Unlock()
		if t.stopped {
			return
		}
		t.adjust()
		t.arm()
	}, t)
}

// adjust sets the GC percent for the heap the last collection kept.
func (t *tuner) adjust() {
	metrics.Read(t.samples)
	var kept uint64
	for _, s := range t.samples {
		if s.Value.Kind() != metrics.KindUint64 {
			return // not this Go's metrics: leave the default
		}
		kept += s.Value.Uint64()
	}
	if t.samples[0].Value.Uint64() == 0 {
		return // no collection yet: nothing is known of the heap
	}
	p := Percent(t.floor, kept)
	// Small changes are left alone: each setting recomputes the pacer.
	if d := p - t.percent; d > t.percent/8 || -d > t.percent/8 {
		t.percent = p
		debug.SetGCPercent(p)
	}
}

// Percent is the GC percent whose goal for a heap that kept kept bytes is
// about floor bytes: Go's default once kept reaches half the floor. The
// runtime's 4 MB least goal grows with the percent too (4 MB × percent /
// 100), so a heap that kept less than 4 MB is counted as 4 MB.
func Percent(floor int64, kept uint64) int {
	k := max(kept, minHeap)
	if uint64(floor) <= 2*k {
		return basePercent
	}
	p := (uint64(floor) - k) * 100 / k
	if p > maxPercent {
		return maxPercent
	}
	return int(max(p, basePercent))
}
