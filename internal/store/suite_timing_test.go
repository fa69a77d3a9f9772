package store

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func timingCases() []suiteCase {
	return []suiteCase{
		{"TimingPreferences", testTimingPreferences},
		{"DigestJoinAndTake", testDigestJoinAndTake},
		{"DigestJoinConcurrent", testDigestJoinConcurrent},
		{"ThrottleWindow", testThrottleWindow},
	}
}

func testTimingPreferences(t *testing.T, s Store) {
	ctx := t.Context()
	if got, err := s.Preferences(ctx, "u1"); err != nil || got.Quiet != nil || got.TimeZone != "" || got.Digests == nil {
		t.Fatalf("defaults = %+v, %v", got, err)
	}
	in := Preferences{
		Enabled: true, TimeZone: "Europe/Paris", Quiet: &QuietHours{Start: 22 * 60, End: 7 * 60},
		Digests: []DigestRule{{EventType: "points_added", Window: time.Hour, Key: "restaurant_id"}, {EventType: "points_redeemed"}},
		Muted:   []string{"card_created"},
	}
	if err := s.SetPreferences(ctx, "u1", in); err != nil {
		t.Fatal(err)
	}
	got, err := s.Preferences(ctx, "u1")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(in, got); diff != "" {
		t.Errorf("preferences (-set +read):\n%s", diff)
	}
	var tx map[string]Preferences
	if err := s.InTx(ctx, func(ctx context.Context, t *Tx) error {
		var err error
		tx, err = t.PreferencesOf(ctx, []string{"u1", "u2"})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]Preferences{"u1": {Enabled: true, TimeZone: in.TimeZone, Quiet: in.Quiet, Digests: in.Digests}}, tx); diff != "" {
		t.Errorf("PreferencesOf (-want +got):\n%s", diff)
	}
	// Replacing without them clears them.
	if err := s.SetPreferences(ctx, "u1", Preferences{Enabled: true}); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Preferences(ctx, "u1"); got.Quiet != nil || got.TimeZone != "" || len(got.Digests) != 0 {
		t.Errorf("after replace: %+v", got)
	}
	for name, p := range map[string]Preferences{
		"unknown zone":     {TimeZone: "Mars/Olympus"},
		"Local zone":       {TimeZone: "Local"},
		"quiet out of day": {Quiet: &QuietHours{Start: 0, End: 24 * 60}},
		"negative quiet":   {Quiet: &QuietHours{Start: -5, End: 60}},
		"short window":     {Digests: []DigestRule{{EventType: "points_added", Window: time.Second}}},
		"long window":      {Digests: []DigestRule{{EventType: "points_added", Window: 8 * 24 * time.Hour}}},
		"repeated type":    {Digests: []DigestRule{{EventType: "a", Window: time.Hour}, {EventType: "a", Window: time.Hour}}},
		"bad key":          {Digests: []DigestRule{{EventType: "a", Window: time.Hour, Key: "Restaurant-Id"}}},
	} {
		wantErr(t, name, s.SetPreferences(ctx, "u1", p), ErrInvalid)
	}
}

func join(user, key, id string, at time.Time, points int64) DigestJoin {
	return DigestJoin{UserID: user, Owner: user, EventType: "points_added", Key: key, At: at, Window: time.Hour,
		EventID: id, Event: []byte("event " + id), Points: points, Locale: "fr"}
}

func testDigestJoinAndTake(t *testing.T, s Store) {
	ctx := t.Context()
	at := baseTime()
	var first Digest
	err := s.InTx(ctx, func(ctx context.Context, tx *Tx) error {
		d, created, err := tx.JoinDigest(ctx, join("g1", "", "e1", at, 100))
		if err != nil || !created {
			return errors.Join(err, errors.New("first join did not create"))
		}
		first = d
		for i, id := range []string{"e2", "e3", "e3"} { // e3 twice: a retried publish
			d, created, err = tx.JoinDigest(ctx, join("g1", "", id, at.Add(time.Duration(i+1)*time.Minute), 150))
			if err != nil || created || d.ID != first.ID {
				return errors.Join(err, errors.New("later join opened another window"))
			}
		}
		// Another key is another window.
		if _, created, err := tx.JoinDigest(ctx, join("g1", "r2", "e4", at, 1)); err != nil || !created {
			return errors.Join(err, errors.New("another key joined the first window"))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !first.ClosesAt.Equal(at.Add(time.Hour)) || !first.OpenedAt.Equal(at) {
		t.Errorf("window %v to %v, want an hour from %v", first.OpenedAt, first.ClosesAt, at)
	}
	var open []Digest
	var taken Digest
	err = s.InTx(ctx, func(ctx context.Context, tx *Tx) error {
		var err error
		if open, err = tx.OpenDigests(ctx, "g1"); err != nil {
			return err
		}
		d, found, err := tx.TakeDigest(ctx, first.ID)
		if err != nil || !found {
			return errors.Join(err, errors.New("not found"))
		}
		taken = d
		if _, found, err := tx.TakeDigest(ctx, first.ID); err != nil || found {
			return errors.Join(err, errors.New("taken twice"))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(open) != 2 {
		t.Errorf("%d open digests, want 2", len(open))
	}
	want := Digest{ID: first.ID, UserID: "g1", Owner: "g1", EventType: "points_added", OpenedAt: at, ClosesAt: at.Add(time.Hour),
		Count: 3, Points: 400, EventIDs: []string{"e1", "e2", "e3"}, LastEvent: []byte("event e3"), Locale: "fr"}
	if diff := cmp.Diff(want, taken); diff != "" {
		t.Errorf("taken (-want +got):\n%s", diff)
	}
	// A join after the take opens a new window.
	err = s.InTx(ctx, func(ctx context.Context, tx *Tx) error {
		d, created, err := tx.JoinDigest(ctx, join("g1", "", "e5", at.Add(2*time.Hour), 1))
		if err != nil || !created || d.ID == first.ID {
			return errors.Join(err, errors.New("no new window after the take"))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// testDigestJoinConcurrent: joins from several writers at once all count
// in one window.
func testDigestJoinConcurrent(t *testing.T, s Store) {
	ctx := t.Context()
	const n = 20
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- s.InTx(ctx, func(ctx context.Context, tx *Tx) error {
				_, _, err := tx.JoinDigest(ctx, join("g1", "", "e"+string(rune('a'+i)), baseTime(), 10))
				return err
			})
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	err := s.InTx(ctx, func(ctx context.Context, tx *Tx) error {
		ds, err := tx.OpenDigests(ctx, "g1")
		if err != nil {
			return err
		}
		if len(ds) != 1 || ds[0].Count != n || ds[0].Points != 10*n {
			t.Errorf("digests = %+v, want one of %d events", ds, n)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func testThrottleWindow(t *testing.T, s Store) {
	ctx := t.Context()
	k := ThrottleKey{UserID: "g1", EventType: "points_added", Channel: "webpush", Target: "d1"}
	w := ThrottleWindow{ThrottleKey: k, Start: baseTime(), Sent: 2, Held: 3, HeldPoints: 30, LastHeld: `{"x":1}`,
		Sends: []ThrottleSend{{Job: 1}, {Job: 2, Folded: true}}}
	var got ThrottleWindow
	err := s.InTx(ctx, func(ctx context.Context, tx *Tx) error {
		if _, found, err := tx.Throttle(ctx, k); err != nil || found {
			return errors.Join(err, errors.New("found before put"))
		}
		if err := tx.PutThrottle(ctx, w); err != nil {
			return err
		}
		w.Sent = 3
		if err := tx.PutThrottle(ctx, w); err != nil {
			return err
		}
		var found bool
		var err error
		got, found, err = tx.Throttle(ctx, k)
		if err != nil || !found {
			return errors.Join(err, errors.New("not found after put"))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(w, got); diff != "" {
		t.Errorf("throttle (-put +got):\n%s", diff)
	}
	err = s.InTx(ctx, func(ctx context.Context, tx *Tx) error {
		if n, err := tx.PruneThrottles(ctx, baseTime().Add(time.Hour)); err != nil || n != 0 {
			return errors.Join(err, errors.New("pruned a window that holds sends"))
		}
		w.Held = 0
		if err := tx.PutThrottle(ctx, w); err != nil {
			return err
		}
		if n, err := tx.PruneThrottles(ctx, baseTime().Add(time.Hour)); err != nil || n != 1 {
			return errors.Join(err, errors.New("did not prune an old empty window"))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
