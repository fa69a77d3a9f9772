package broker

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

// publisher is what the fingerprint tests need of a broker.
type publisher interface {
	Publish(ctx context.Context, p Publication) (Result, error)
}

// checkFingerprints runs the idempotency rules shared by both brokers: a
// key repeated with the same fingerprint (or without one on either side)
// is a duplicate returning the first result; with a different fingerprint
// it fails with ErrKeyReused and publishes nothing. rec records what the
// broker hands to its handler.
func checkFingerprints(t *testing.T, b publisher, rec *recorder) {
	ctx := context.Background()
	pub := func(id, key, fp string) (Result, error) {
		return b.Publish(ctx, Publication{EventID: id, Rooms: []string{"r"}, Data: []byte(id), IdempotencyKey: key, Fingerprint: fp})
	}
	first, err := pub("e1", "k", "fp-a")
	if err != nil || first.Duplicate {
		t.Fatalf("first publish: %+v, %v", first, err)
	}
	steps := []struct {
		name    string
		id, fp  string
		reused  bool // want ErrKeyReused
		firstID string
	}{
		{"same request", "e2", "fp-a", false, "e1"},
		{"different request", "e3", "fp-b", true, ""},
		{"repeat without fingerprint", "e4", "", false, "e1"},
	}
	for _, s := range steps {
		res, err := pub(s.id, "k", s.fp)
		switch {
		case s.reused && !errors.Is(err, ErrKeyReused):
			t.Errorf("%s: %+v, %v; want ErrKeyReused", s.name, res, err)
		case s.reused && !strings.Contains(err.Error(), "e1"):
			t.Errorf("%s: %v does not name the first event", s.name, err)
		case !s.reused && (err != nil || !res.Duplicate || res.EventID != s.firstID || res.Positions[0] != first.Positions[0]):
			t.Errorf("%s: %+v, %v; want the first result %+v marked duplicate", s.name, res, err, first)
		}
	}
	// A key first used without a fingerprint matches any request.
	if _, err := pub("e5", "k2", ""); err != nil {
		t.Fatal(err)
	}
	if res, err := pub("e6", "k2", "fp-c"); err != nil || !res.Duplicate || res.EventID != "e5" {
		t.Errorf("key first used without a fingerprint: %+v, %v; want a duplicate of e5", res, err)
	}
	// A last publish without a key is delivered after anything the ones
	// above delivered (a room's messages reach the handler in order): once
	// it is in, what was delivered is final.
	if _, err := pub("last", "", ""); err != nil {
		t.Fatal(err)
	}
	rec.await(t, 5*time.Second, "the last publish", last("last"))
	if got, want := rec.data(), []string{"e1", "e5", "last"}; !slices.Equal(got, want) {
		t.Errorf("delivered %q, want %q (one per publish that was not a duplicate or refused)", got, want)
	}
}

// data returns the Data of the messages recorded so far.
func (r *recorder) data() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]string, len(r.msgs))
	for i, m := range r.msgs {
		out[i] = string(m.Data)
	}
	return out
}

func TestMemoryFingerprint(t *testing.T) {
	m, rec, c := newTestMemory(t, Limits{Size: 10, TTL: time.Hour})
	checkFingerprints(t, m, rec)
	// Past the window the key is forgotten: another request publishes.
	c.Add(2 * time.Minute)
	res, err := m.Publish(context.Background(), Publication{EventID: "e9", Rooms: []string{"r"}, Data: []byte("x"), IdempotencyKey: "k", Fingerprint: "fp-z"})
	if err != nil || res.Duplicate {
		t.Fatalf("after the window: %+v, %v; want a new publish", res, err)
	}
}

func TestRedisFingerprint(t *testing.T) {
	rec := &recorder{}
	r := newTestRedis(t, redisURL(t), Limits{Size: 10, TTL: time.Hour}, rec.handle, nil)
	ctx := context.Background()
	if err := r.Listen(ctx, "r"); err != nil {
		t.Fatal(err)
	}
	checkFingerprints(t, r, rec)

	// A record kept by a version without fingerprints ("result" alone)
	// matches any request.
	old := "e7\nr=99@oldepoch"
	if err := r.client.Set(ctx, r.cfg.Prefix+":idem:k3", old, time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	res, err := r.Publish(ctx, Publication{EventID: "e8", Rooms: []string{"r"}, Data: []byte("x"), IdempotencyKey: "k3", Fingerprint: "fp-d"})
	if err != nil || !res.Duplicate || res.EventID != "e7" || res.Positions[0].Offset != 99 {
		t.Errorf("old record: %+v, %v; want a duplicate of e7 at 99", res, err)
	}
	if _, err := r.Publish(ctx, Publication{EventID: "e9", Rooms: []string{"r"}, IdempotencyKey: "k4", Fingerprint: "a|b"}); err == nil {
		t.Error("a fingerprint with '|' was accepted")
	}
}
