package store

import (
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
)

// BenchmarkInsertConcurrent measures Insert calls of one row each from
// -cpu × 32 goroutines on SQLite, as the publish path makes them.
func BenchmarkInsertConcurrent(b *testing.B) {
	s, err := OpenSQLite(b.Context(), filepath.Join(b.TempDir(), "inbox.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	var n atomic.Int64
	ev := make([]byte, 200)
	b.SetParallelism(32)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := n.Add(1)
			it := NewItem{Owner: "u" + strconv.FormatInt(i%10000, 10), EventID: "e" + strconv.FormatInt(i, 10), EventType: "points_added", Event: ev}
			if err := s.Insert(b.Context(), []NewItem{it}); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	if sh := s.c.gc.shared.Load(); sh > 0 {
		b.ReportMetric(float64(s.c.gc.committed.Load())/float64(sh), "calls/tx")
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "inserts/s")
}
