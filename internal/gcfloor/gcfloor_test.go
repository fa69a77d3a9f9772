package gcfloor_test

import (
	"runtime"
	"runtime/debug"
	"testing"
	"time"

	"github.com/maxloyalty/notify/internal/gcfloor"
	"github.com/maxloyalty/notify/internal/testenv"
)

func TestPercent(t *testing.T) {
	for _, c := range []struct {
		floor int64
		kept  uint64
		want  int
	}{
		{64 << 20, 2 << 20, 1500}, // a goal of 4 MB × 16
		{64 << 20, 0, 1500},
		{64 << 20, 8 << 20, 700},  // 8 MB kept, 56 MB of growth
		{64 << 20, 30 << 20, 113}, // 30 + 34 MB
		{64 << 20, 32 << 20, 100}, // Go's goal, twice 32 MB, is the floor
		{64 << 20, 40 << 20, 100}, // and above it: not 40 MB + 64 MB
		{64 << 20, 64 << 20, 100},
		{64 << 20, 1 << 30, 100},
		{1 << 40, 1, 10_000},
	} {
		if got := gcfloor.Percent(c.floor, c.kept); got != c.want {
			t.Errorf("Percent(%d, %d) = %d, want %d", c.floor, c.kept, got, c.want)
		}
	}
}

var sink []byte

// churn allocates n bytes in 4 KB pieces, keeping almost none, and
// returns how many collections ran meanwhile.
func churn(n int) uint32 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for i := 0; i < n/4096; i++ {
		sink = make([]byte, 4096)
	}
	runtime.ReadMemStats(&after)
	return after.NumGC - before.NumGC
}

// TestFloorSpacesCollections: 256 MB of garbage over a small live heap
// costs dozens of collections at Go's default and a handful with a 64 MB
// floor; stopping restores the default.
func TestFloorSpacesCollections(t *testing.T) {
	t.Setenv("GOGC", "") // an empty GOGC is unset for the floor too
	if old := debug.SetGCPercent(100); old != 100 {
		defer debug.SetGCPercent(old)
	}
	runtime.GC()
	without := churn(256 << 20)

	stop := gcfloor.Start(64 << 20)
	// The floor's cleanup, which sets the percent, runs after a cycle on
	// the runtime's cleanup goroutine.
	testenv.Eventually(t, 5*time.Second, "a GC percent above 100 with a floor over a small heap", func() bool {
		runtime.GC()
		return percent() > 100
	})
	with := churn(256 << 20)
	if with > 8 || with*4 > without {
		t.Errorf("%d collections with the floor, %d without", with, without)
	}
	// A second floor in the same process does nothing.
	gcfloor.Start(1 << 30)()
	if p := percent(); p <= 100 {
		t.Errorf("a second Start's stop reset the first: percent %d", p)
	}
	stop()
	if p := percent(); p != 100 {
		t.Errorf("GC percent %d after stop, want 100", p)
	}
}

func TestGOGCTurnsItOff(t *testing.T) {
	t.Setenv("GOGC", "100")
	stop := gcfloor.Start(64 << 20)
	defer stop()
	runtime.GC() // a floor's first cleanup would be queued now
	// A cleanup queued by a later cycle has run: a floor's, queued
	// before it, has had its turn.
	ran := make(chan struct{})
	runtime.AddCleanup(new([32]byte), func(ran chan struct{}) { close(ran) }, ran)
	runtime.GC()
	select {
	case <-ran:
	case <-time.After(10 * time.Second):
		t.Fatal("no cleanup ran after a collection")
	}
	if p := percent(); p != 100 {
		t.Errorf("GC percent %d with GOGC set", p)
	}
}

func percent() int {
	p := debug.SetGCPercent(100)
	debug.SetGCPercent(p)
	return p
}
