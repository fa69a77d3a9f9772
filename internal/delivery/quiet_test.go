package delivery

import (
	"testing"
	"testing/synctest"
	"time"

	"github.com/maxloyalty/notify/internal/store"
)

func mustZone(t *testing.T, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

func hm(h, m int) int { return h*60 + m }

// TestQuietEnd covers quiet hours within a day, across midnight, and
// across both daylight-saving changes of Europe/Paris (2026-03-29 02:00
// CET becomes 03:00 CEST; 2026-10-25 03:00 CEST becomes 02:00 CET) and one
// of America/New_York.
func TestQuietEnd(t *testing.T) {
	paris := mustZone(t, "Europe/Paris")
	ny := mustZone(t, "America/New_York")
	utc := func(s string) time.Time {
		v, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	night := store.QuietHours{Start: hm(22, 0), End: hm(7, 0)}
	for _, tc := range []struct {
		name string
		at   string
		loc  *time.Location
		q    store.QuietHours
		want string // "" when not quiet
	}{
		{"before the night", "2026-06-10T19:59:00Z", paris, night, ""},                   // 21:59 CEST
		{"at the start", "2026-06-10T20:00:00Z", paris, night, "2026-06-11T05:00:00Z"},   // 22:00 CEST
		{"after midnight", "2026-06-11T02:30:00Z", paris, night, "2026-06-11T05:00:00Z"}, // 04:30 CEST
		{"at the end", "2026-06-11T05:00:00Z", paris, night, ""},                         // 07:00 CEST
		{"winter offset", "2026-01-10T23:00:00Z", paris, night, "2026-01-11T06:00:00Z"},  // 00:00 CET
		{"in UTC", "2026-01-10T23:00:00Z", time.UTC, night, "2026-01-11T07:00:00Z"},      //
		{"day hours", "2026-06-10T10:00:00Z", paris, store.QuietHours{Start: hm(12, 0), End: hm(14, 0)}, "2026-06-10T12:00:00Z"},
		{"day hours, outside", "2026-06-10T13:00:00Z", paris, store.QuietHours{Start: hm(12, 0), End: hm(14, 0)}, ""},
		{"none when equal", "2026-06-10T20:00:00Z", paris, store.QuietHours{Start: hm(22, 0), End: hm(22, 0)}, ""},
		// The night of the spring change is an hour shorter: 07:00 CEST is
		// 05:00 UTC, where the evening before began at 21:00 UTC (22:00 CET).
		{"spring night", "2026-03-28T21:30:00Z", paris, night, "2026-03-29T05:00:00Z"},
		{"spring night, evening start", "2026-03-28T21:00:00Z", paris, night, "2026-03-29T05:00:00Z"},
		{"spring night, before", "2026-03-28T20:59:00Z", paris, night, ""},
		// The night of the autumn change is an hour longer: 07:00 CET is
		// 06:00 UTC, where the evening began at 20:00 UTC (22:00 CEST).
		{"autumn night", "2026-10-24T20:00:00Z", paris, night, "2026-10-25T06:00:00Z"},
		{"autumn night, last hour", "2026-10-25T05:30:00Z", paris, night, "2026-10-25T06:00:00Z"},
		// An end the spring change skips (02:30 does not exist that day) is
		// the change itself, 03:00 CEST.
		{"end skipped", "2026-03-29T00:10:00Z", paris, store.QuietHours{Start: hm(1, 0), End: hm(2, 30)}, "2026-03-29T01:00:00Z"},
		// A start the change skips begins at the change.
		{"start skipped, before", "2026-03-29T00:59:00Z", paris, store.QuietHours{Start: hm(2, 30), End: hm(5, 0)}, ""},
		{"start skipped, after", "2026-03-29T01:00:00Z", paris, store.QuietHours{Start: hm(2, 30), End: hm(5, 0)}, "2026-03-29T03:00:00Z"},
		// An end that occurs twice (02:30 in autumn) is its first occurrence,
		// 02:30 CEST (00:30 UTC).
		{"end twice", "2026-10-25T00:00:00Z", paris, store.QuietHours{Start: hm(1, 0), End: hm(2, 30)}, "2026-10-25T00:30:00Z"},
		{"end twice, after the first", "2026-10-25T00:45:00Z", paris, store.QuietHours{Start: hm(1, 0), End: hm(2, 30)}, ""},
		// New York springs forward on 2026-03-08 at 02:00 EST.
		{"new york spring", "2026-03-08T04:00:00Z", ny, night, "2026-03-08T11:00:00Z"}, // 23:00 EST → 07:00 EDT
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := QuietEnd(utc(tc.at), tc.loc, tc.q)
			switch {
			case tc.want == "" && !got.IsZero():
				t.Errorf("QuietEnd(%s) = %v, want not quiet", tc.at, got.UTC())
			case tc.want != "" && !got.Equal(utc(tc.want)):
				t.Errorf("QuietEnd(%s) = %v, want %s", tc.at, got.UTC(), tc.want)
			}
		})
	}
}

// TestQuietHoldsAcrossSpringChange walks a night of quiet hours minute by
// minute on a controlled clock, across the spring change: every instant
// from 22:00 CET to 07:00 CEST is held until 07:00 CEST, a night of 8 hours.
func TestQuietHoldsAcrossSpringChange(t *testing.T) {
	paris := mustZone(t, "Europe/Paris")
	q := store.QuietHours{Start: hm(22, 0), End: hm(7, 0)}
	synctest.Test(t, func(t *testing.T) {
		// The bubble's clock starts at 2000-01-01 UTC: wait until the
		// evening before the change, then step through the night.
		time.Sleep(time.Date(2026, 3, 28, 20, 0, 0, 0, time.UTC).Sub(time.Now()))
		want := time.Date(2026, 3, 29, 7, 0, 0, 0, paris)
		var quiet time.Duration
		for range 12 * 60 {
			now := time.Now()
			end := QuietEnd(now, paris, q)
			local := now.In(paris)
			inHours := local.Hour() >= 22 || local.Hour() < 7
			if inHours != !end.IsZero() {
				t.Fatalf("at %v: quiet end %v", local, end)
			}
			if !end.IsZero() {
				if !end.Equal(want) {
					t.Fatalf("at %v: quiet until %v, want %v", local, end, want)
				}
				quiet += time.Minute
			}
			time.Sleep(time.Minute)
		}
		if quiet != 8*time.Hour {
			t.Errorf("the night was quiet for %v, want 8h (the spring change takes an hour)", quiet)
		}
	})
}
