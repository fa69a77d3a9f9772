package notify

import (
	"testing"
	"time"
)

func TestBackoff(t *testing.T) {
	b := Backoff{Min: 250 * time.Millisecond, Max: 30 * time.Second}
	want := []time.Duration{
		250 * time.Millisecond, 500 * time.Millisecond, time.Second, 2 * time.Second,
		4 * time.Second, 8 * time.Second, 16 * time.Second, 30 * time.Second, 30 * time.Second,
	}
	for n, w := range want {
		if got := b.Ceiling(n); got != w {
			t.Errorf("Ceiling(%d) = %v, want %v", n, got, w)
		}
	}
	// Far beyond the cap: bounded, no overflow.
	for _, n := range []int{40, 63, 64, 1000, 1 << 30} {
		if got := b.Ceiling(n); got != b.Max {
			t.Errorf("Ceiling(%d) = %v, want the max %v", n, got, b.Max)
		}
	}
	huge := Backoff{Min: time.Second, Max: time.Duration(1<<63 - 1)}
	for n := 0; n < 100; n++ {
		if got := huge.Ceiling(n); got < time.Second {
			t.Fatalf("huge.Ceiling(%d) = %v: overflowed", n, got)
		}
	}

	// Full jitter: the extremes of the random draw give 0 and the ceiling.
	lowest := func(int64) int64 { return 0 }
	highest := func(n int64) int64 { return n - 1 }
	for n := range 12 {
		if got := b.delay(n, lowest); got != 0 {
			t.Errorf("lowest delay(%d) = %v, want 0", n, got)
		}
		if got := b.delay(n, highest); got != b.Ceiling(n) {
			t.Errorf("highest delay(%d) = %v, want %v", n, got, b.Ceiling(n))
		}
	}

	// Real draws stay in [0, ceiling], and their mean grows with n until the
	// cap: about ceiling/2.
	const draws = 2000
	prevMean := time.Duration(0)
	for n := range 9 {
		var sum time.Duration
		for range draws {
			d := b.Delay(n)
			if d < 0 || d > b.Ceiling(n) {
				t.Fatalf("Delay(%d) = %v outside [0, %v]", n, d, b.Ceiling(n))
			}
			sum += d
		}
		mean := sum / draws
		c := b.Ceiling(n)
		if mean < c*4/10 || mean > c*6/10 {
			t.Errorf("mean Delay(%d) = %v, want about %v", n, mean, c/2)
		}
		if n < 7 && mean <= prevMean {
			t.Errorf("mean Delay(%d) = %v did not grow from %v", n, mean, prevMean)
		}
		prevMean = mean
	}

	if err := (Backoff{Min: 0, Max: time.Second}).validate(); err == nil {
		t.Error("validate accepted min 0")
	}
	if err := (Backoff{Min: 2 * time.Second, Max: time.Second}).validate(); err == nil {
		t.Error("validate accepted max < min")
	}
}
