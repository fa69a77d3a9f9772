package delivery

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"

	notifyv1 "github.com/maxloyalty/notify/gen/notify/v1"
	"github.com/maxloyalty/notify/internal/store"
	"github.com/maxloyalty/notify/internal/testenv"
)

// recordingPublisher publishes by recording: each idempotency key once
// (the broker's rule), counting every call.
type recordingPublisher struct {
	mu     sync.Mutex
	calls  int
	events map[string]string // idempotency key → event id
	order  []string
	refuse bool
}

func (p *recordingPublisher) PublishScheduled(_ context.Context, claims, request []byte) (string, error) {
	req := &notifyv1.PublishRequest{}
	if err := proto.Unmarshal(request, req); err != nil {
		return "", err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls++
	if p.refuse {
		return "", fmt.Errorf("%w: guest g1 may not be published to", ErrRefused)
	}
	if p.events == nil {
		p.events = map[string]string{}
	}
	if id, ok := p.events[req.IdempotencyKey]; ok {
		return id, nil
	}
	id := uuid.NewString()
	p.events[req.IdempotencyKey] = id
	p.order = append(p.order, req.IdempotencyKey)
	return id, nil
}

func (p *recordingPublisher) published() (calls int, keys []string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.calls, append([]string(nil), p.order...)
}

// reminder is a points-expiry reminder for guest, published at at.
func reminder(guest, key string, at time.Time) Schedule {
	req := &notifyv1.PublishRequest{
		IdempotencyKey: key,
		Payload: &notifyv1.PublishRequest_PointsExpired{PointsExpired: &notifyv1.PointsExpired{
			GuestId: guest, Amount: 200, NewBalance: 0, ExpiryDate: at.Format(time.DateOnly), CardId: "c-" + guest,
		}},
	}
	return Schedule{
		Publisher: "service:loyalty", Claims: []byte(`{"sub":"loyalty","role":"service"}`), Request: req,
		CancelKey: "expiry-" + guest, Fingerprint: "fp-" + key, EventType: notifyv1.EventType_EVENT_TYPE_POINTS_EXPIRED, At: at,
	}
}

func startScheduler(t *testing.T, st store.Store, pub Publisher) *Queue {
	t.Helper()
	q, err := New(testConfig(t), st)
	if err != nil {
		t.Fatal(err)
	}
	q.SetPublisher(pub)
	if err := q.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := q.Stop(ctx); err != nil {
			t.Errorf("Stop: %v", err)
		}
	})
	return q
}

func listAll(t *testing.T, q *Queue, done bool) []*notifyv1.ScheduledPublish {
	t.Helper()
	var out []*notifyv1.ScheduledPublish
	token := ""
	for range 100 {
		page, next, err := q.ListScheduled(t.Context(), "", done, 2, token)
		if err != nil {
			t.Fatalf("ListScheduled: %v", err)
		}
		out = append(out, page...)
		if next == "" {
			return out
		}
		token = next
	}
	t.Fatal("ListScheduled never ended")
	return nil
}

// TestScheduledPublishOnceAtItsTime: a scheduled publish is listed as
// pending, published once at its time (not before), then listed as
// published with its event's id.
func TestScheduledPublishOnceAtItsTime(t *testing.T) {
	st := openSQLite(t)
	pub := &recordingPublisher{}
	q := startScheduler(t, st, pub)
	at := time.Now().Add(1500 * time.Millisecond)
	res, err := q.Schedule(t.Context(), []Schedule{reminder("g1", "k1", at)})
	if err != nil {
		t.Fatal(err)
	}
	sp := res[0].Scheduled
	if res[0].Duplicate || sp.State != notifyv1.ScheduledState_SCHEDULED_STATE_PENDING || sp.DeliverTime.AsTime().Sub(at).Abs() > time.Millisecond ||
		sp.CancelKey != "expiry-g1" || sp.IdempotencyKey != "k1" || sp.Request.GetPointsExpired().GetGuestId() != "g1" {
		t.Fatalf("scheduled = %v", sp)
	}
	if got := listAll(t, q, false); len(got) != 1 || got[0].Id != sp.Id {
		t.Fatalf("pending = %v", got)
	}
	testenv.Eventually(t, 10*time.Second, "the publish", func() bool { n, _ := pub.published(); return n > 0 })
	if early := at.Sub(time.Now()); early > 0 {
		t.Errorf("published %v before its time", early)
	}
	testenv.Eventually(t, 5*time.Second, "listed as published", func() bool {
		all := listAll(t, q, true)
		return len(all) == 1 && all[0].State == notifyv1.ScheduledState_SCHEDULED_STATE_PUBLISHED && all[0].EventId != ""
	})
	settled(t, q, 10*time.Second)
	if n, keys := pub.published(); n != 1 || len(keys) != 1 {
		t.Errorf("%d publishes (%v), want 1", n, keys)
	}
	if got := listAll(t, q, false); len(got) != 0 {
		t.Errorf("still pending: %v", got)
	}
}

// TestScheduleKeys: the same request under a pending cancel key is a
// duplicate; another request under it is a conflict; once cancelled, the
// key is free again. Without a cancel key, the idempotency key is unique.
func TestScheduleKeys(t *testing.T) {
	st := openSQLite(t)
	q := startScheduler(t, st, &recordingPublisher{})
	at := time.Now().Add(time.Hour)
	first, err := q.Schedule(t.Context(), []Schedule{reminder("g1", "k1", at)})
	if err != nil {
		t.Fatal(err)
	}
	again, err := q.Schedule(t.Context(), []Schedule{reminder("g1", "k1", at)})
	if err != nil || !again[0].Duplicate || again[0].Scheduled.Id != first[0].Scheduled.Id {
		t.Fatalf("same request again = %+v, %v; want the first, duplicate", again, err)
	}
	other := reminder("g1", "k2", at)
	_, err = q.Schedule(t.Context(), []Schedule{reminder("g2", "k9", at), other})
	var ie *IndexError
	if !errors.Is(err, ErrScheduleConflict) || !errors.As(err, &ie) || ie.Index != 1 {
		t.Fatalf("another request under the key: %v, want a conflict at index 1", err)
	}
	// All or nothing: g2's reminder was not kept.
	if got := listAll(t, q, false); len(got) != 1 {
		t.Fatalf("pending after the refused batch: %d, want 1", len(got))
	}
	if _, err := q.CancelScheduled(t.Context(), "service:loyalty", "expiry-g1", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := q.Schedule(t.Context(), []Schedule{other}); err != nil {
		t.Fatalf("the key after its cancel: %v", err)
	}
	// No cancel key: unique by idempotency key, in every state.
	noKey := reminder("g3", "k3", at)
	noKey.CancelKey = ""
	a, err := q.Schedule(t.Context(), []Schedule{noKey})
	if err != nil {
		t.Fatal(err)
	}
	b, err := q.Schedule(t.Context(), []Schedule{noKey})
	if err != nil || !b[0].Duplicate || b[0].Scheduled.Id != a[0].Scheduled.Id {
		t.Fatalf("idempotency key again = %+v, %v", b, err)
	}
}

// TestCancelledNeverFires: a cancelled publish is never published, and is
// listed as cancelled; cancelling it again, or an unknown key, or another
// publisher's key, says so.
func TestCancelledNeverFires(t *testing.T) {
	for _, db := range []string{"sqlite", "postgres"} {
		t.Run(db, func(t *testing.T) {
			if db == "postgres" {
				testCancelledNeverFires(t, openPostgres(t, testenv.PostgresSchema(t)))
				return
			}
			testCancelledNeverFires(t, openSQLite(t))
		})
	}
}

func testCancelledNeverFires(t *testing.T, st store.Store) {
	pub := &recordingPublisher{}
	q := startScheduler(t, st, pub)
	at := time.Now().Add(time.Second)
	if _, err := q.Schedule(t.Context(), []Schedule{reminder("g1", "k1", at), reminder("g2", "k2", at)}); err != nil {
		t.Fatal(err)
	}
	if _, err := q.CancelScheduled(t.Context(), "service:other", "expiry-g1", ""); !errors.Is(err, ErrScheduledNotFound) {
		t.Fatalf("another publisher's key: %v, want not found", err)
	}
	sp, err := q.CancelScheduled(t.Context(), "service:loyalty", "expiry-g1", "")
	if err != nil || sp.State != notifyv1.ScheduledState_SCHEDULED_STATE_CANCELLED {
		t.Fatalf("cancel = %v, %v", sp, err)
	}
	if _, err := q.CancelScheduled(t.Context(), "service:loyalty", "expiry-g1", ""); !errors.Is(err, ErrScheduledNotFound) {
		t.Fatalf("cancel again by key: %v, want not found (no pending one)", err)
	}
	if _, err := q.CancelScheduled(t.Context(), "service:loyalty", "", sp.Id); !errors.Is(err, ErrScheduledDone) {
		t.Fatalf("cancel again by id: %v, want no longer pending", err)
	}
	testenv.Eventually(t, 10*time.Second, "g2's reminder", func() bool { _, keys := pub.published(); return len(keys) == 1 })
	settled(t, q, 10*time.Second)
	if _, keys := pub.published(); len(keys) != 1 || keys[0] != "k2" {
		t.Fatalf("published %v, want only k2", keys)
	}
	if _, err := q.CancelScheduled(t.Context(), "service:loyalty", "expiry-g2", ""); !errors.Is(err, ErrScheduledNotFound) {
		t.Fatalf("cancel a published one by key: %v", err)
	}
	states := map[string]notifyv1.ScheduledState{}
	for _, sp := range listAll(t, q, true) {
		states[sp.CancelKey] = sp.State
	}
	if states["expiry-g1"] != notifyv1.ScheduledState_SCHEDULED_STATE_CANCELLED || states["expiry-g2"] != notifyv1.ScheduledState_SCHEDULED_STATE_PUBLISHED {
		t.Errorf("states = %v", states)
	}
}

// TestScheduledRefusedAtItsTime: a publish refused at its time is not
// retried and is listed as failed, with the reason.
func TestScheduledRefusedAtItsTime(t *testing.T) {
	st := openSQLite(t)
	pub := &recordingPublisher{refuse: true}
	q := startScheduler(t, st, pub)
	if _, err := q.Schedule(t.Context(), []Schedule{reminder("g1", "k1", time.Now().Add(200*time.Millisecond))}); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, "listed as failed", func() bool {
		all := listAll(t, q, true)
		return len(all) == 1 && all[0].State == notifyv1.ScheduledState_SCHEDULED_STATE_FAILED && all[0].Detail != ""
	})
	if n, _ := pub.published(); n != 1 {
		t.Errorf("%d attempts, want 1", n)
	}
}

func openPostgres(t *testing.T, dsn string) store.Store {
	t.Helper()
	s, err := store.OpenPostgres(t.Context(), dsn)
	if err != nil {
		t.Fatalf("OpenPostgres: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestTwoNodesPublishOnce: two nodes (two River clients, each on its own
// pool) on one PostgreSQL database; every scheduled publish runs on one of
// them, once.
func TestTwoNodesPublishOnce(t *testing.T) {
	dsn := testenv.PostgresSchema(t)
	st1, st2 := openPostgres(t, dsn), openPostgres(t, dsn)
	pub := &recordingPublisher{}
	q1 := startScheduler(t, st1, pub)
	startScheduler(t, st2, pub)
	const n = 40
	var ss []Schedule
	at := time.Now().Add(time.Second)
	for i := range n {
		s := reminder(fmt.Sprintf("g%d", i), fmt.Sprintf("k%d", i), at.Add(time.Duration(i)*20*time.Millisecond))
		ss = append(ss, s)
	}
	if _, err := q1.Schedule(t.Context(), ss); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 20*time.Second, "every publish", func() bool { _, keys := pub.published(); return len(keys) == n })
	// Both nodes' jobs are in the one database.
	settled(t, q1, 10*time.Second)
	if calls, keys := pub.published(); calls != n || len(keys) != n {
		t.Errorf("%d calls for %d publishes, want %d each once", calls, len(keys), n)
	}
}
