package service_test

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	notifyv1 "github.com/maxloyalty/notify/gen/notify/v1"
	"github.com/maxloyalty/notify/internal/auth"
	"github.com/maxloyalty/notify/internal/broker"
	"github.com/maxloyalty/notify/internal/hub"
	"github.com/maxloyalty/notify/internal/service"
	"github.com/maxloyalty/notify/internal/store"
)

// publishFixture is a service on the memory broker and a SQLite inbox,
// with hooks at the two steps of a publish and a record of what the broker
// handed to the hub (what subscribers receive live).
type publishFixture struct {
	svc   *service.Service
	store *store.SQLite

	mu          sync.Mutex
	delivered   map[string]bool // event ids handed to the hub
	afterBroker func()          // runs after each broker publish
	beforeStore func()          // runs before each inbox insert
	insertCtx   []error         // ctx.Err() of each Insert's context when it began
}

// hookBroker runs the fixture's hook after each publish.
type hookBroker struct {
	*broker.Memory
	f *publishFixture
}

func (b hookBroker) Publish(ctx context.Context, p broker.Publication) (broker.Result, error) {
	res, err := b.Memory.Publish(ctx, p)
	b.f.mu.Lock()
	hook := b.f.afterBroker
	b.f.mu.Unlock()
	if hook != nil {
		hook()
	}
	return res, err
}

// hookInbox runs the fixture's hook before each insert.
type hookInbox struct {
	*store.SQLite
	f *publishFixture
}

func (in hookInbox) Insert(ctx context.Context, items []store.NewItem) error {
	in.f.mu.Lock()
	hook := in.f.beforeStore
	in.f.mu.Unlock()
	if hook != nil {
		hook()
	}
	in.f.mu.Lock()
	in.f.insertCtx = append(in.f.insertCtx, ctx.Err())
	in.f.mu.Unlock()
	return in.SQLite.Insert(ctx, items)
}

func newPublishFixture(t *testing.T, opts ...func(*service.Config)) *publishFixture {
	t.Helper()
	st, err := store.OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "inbox.db"))
	if err != nil {
		t.Fatal(err)
	}
	f := &publishFixture{store: st, delivered: map[string]bool{}}
	h := hub.New()
	mem := broker.NewMemory(broker.MemoryConfig{}, func(m broker.Message) {
		var ev notifyv1.Event
		if err := proto.Unmarshal(m.Data, &ev); err == nil {
			f.mu.Lock()
			f.delivered[ev.Id] = true
			f.mu.Unlock()
		}
		h.Deliver(m)
	})
	var cfg service.Config
	for _, o := range opts {
		o(&cfg)
	}
	f.svc = service.New(cfg, hookBroker{mem, f}, h, hookInbox{st, f}, slog.New(slog.DiscardHandler))
	t.Cleanup(func() {
		mem.Close()
		st.Close()
	})
	return f
}

func (f *publishFixture) setHooks(afterBroker, beforeStore func()) {
	f.mu.Lock()
	f.afterBroker, f.beforeStore = afterBroker, beforeStore
	f.mu.Unlock()
}

// stored returns the event ids in guest gid's inbox.
func (f *publishFixture) stored(t *testing.T, gid string) map[string]bool {
	t.Helper()
	items, _, err := f.store.List(context.Background(), store.Viewer{UserID: gid}, store.ListQuery{Limit: store.MaxPageSize})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, it := range items {
		var ev notifyv1.Event
		if err := proto.Unmarshal(it.Event, &ev); err != nil {
			t.Fatal(err)
		}
		out[ev.Id] = true
	}
	return out
}

func (f *publishFixture) deliveredIDs() map[string]bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make(map[string]bool, len(f.delivered))
	for id := range f.delivered {
		out[id] = true
	}
	return out
}

var publisher = auth.Claims{Subject: "svc1", Role: notifyv1.Role_ROLE_SERVICE}

func pointsFor(gid string, amount int64) *notifyv1.PublishRequest {
	return &notifyv1.PublishRequest{Payload: &notifyv1.PublishRequest_PointsAdded{PointsAdded: &notifyv1.PointsAdded{
		GuestId: gid, CardId: "c-" + gid, Amount: amount, NewBalance: amount, RestaurantId: "r1",
	}}}
}

// TestPublishOutlivesItsCaller: a caller that gives up (cancels, or its
// deadline passes) at any point of the publish path leaves the event
// either not published at all or both delivered and stored; and every
// publish answered OK is stored. Publish and PublishBatch alike.
func TestPublishOutlivesItsCaller(t *testing.T) {
	type point struct {
		name string
		// give arranges for ctx to end: it returns the context the call
		// uses and the hooks to install (nil: none).
		give func(ctx context.Context) (context.Context, func(), func())
	}
	cancelAt := func(where string) func(ctx context.Context) (context.Context, func(), func()) {
		return func(ctx context.Context) (context.Context, func(), func()) {
			ctx, cancel := context.WithCancel(ctx)
			switch where {
			case "before":
				cancel()
				return ctx, nil, nil
			case "broker":
				return ctx, cancel, nil
			default:
				return ctx, nil, cancel
			}
		}
	}
	deadlineAt := func(where string) func(ctx context.Context) (context.Context, func(), func()) {
		return func(ctx context.Context) (context.Context, func(), func()) {
			ctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
			_ = cancel // ends with the deadline
			wait := func() { <-ctx.Done() }
			switch where {
			case "before":
				wait()
				return ctx, nil, nil
			case "broker":
				return ctx, wait, nil
			default:
				return ctx, nil, wait
			}
		}
	}
	// During the inbox write: the caller gives up while its rows wait for
	// (or are in) a group commit.
	during := func(ctx context.Context) (context.Context, func(), func()) {
		ctx, cancel := context.WithCancel(ctx)
		return ctx, nil, func() { time.AfterFunc(100*time.Microsecond, cancel) }
	}
	points := []point{
		{"cancelled before the broker step", cancelAt("before")},
		{"cancelled between broker and inbox", cancelAt("broker")},
		{"cancelled as the inbox write begins", cancelAt("store")},
		{"cancelled during the group commit", during},
		{"deadline before the broker step", deadlineAt("before")},
		{"deadline between broker and inbox", deadlineAt("broker")},
		{"deadline as the inbox write begins", deadlineAt("store")},
	}
	for _, batch := range []bool{false, true} {
		for _, pt := range points {
			name := pt.name
			if batch {
				name = "batch/" + name
			}
			t.Run(name, func(t *testing.T) {
				f := newPublishFixture(t)
				ctx, afterBroker, beforeStore := pt.give(auth.NewContext(context.Background(), publisher))
				f.setHooks(afterBroker, beforeStore)
				var ok []string
				var err error
				if batch {
					var resp *notifyv1.PublishBatchResponse
					resp, err = f.svc.PublishBatch(ctx, &notifyv1.PublishBatchRequest{Requests: []*notifyv1.PublishRequest{pointsFor("g1", 1), pointsFor("g1", 2)}})
					for _, r := range resp.GetResults() {
						ok = append(ok, r.EventId)
					}
				} else {
					var resp *notifyv1.PublishResponse
					resp, err = f.svc.Publish(ctx, pointsFor("g1", 1))
					if err == nil {
						ok = append(ok, resp.EventId)
					}
				}
				if c := status.Code(err); c != codes.OK && c != codes.Canceled && c != codes.DeadlineExceeded {
					t.Fatalf("publish: %v, want OK or the caller's own end (never a lost inbox write)", err)
				}
				delivered, stored := f.deliveredIDs(), f.stored(t, "g1")
				for id := range delivered {
					if !stored[id] {
						t.Errorf("event %s was delivered live but is not in the inbox (publish answered %v)", id, err)
					}
				}
				for _, id := range ok {
					if !stored[id] {
						t.Errorf("event %s was answered OK but is not in the inbox", id)
					}
				}
				f.mu.Lock()
				for i, e := range f.insertCtx {
					if e != nil {
						t.Errorf("insert %d ran on a context already ended (%v): it is tied to the caller", i, e)
					}
				}
				f.mu.Unlock()
			})
		}
	}
}

// TestPublishStressCallerEnds publishes many events with deadlines of a
// few microseconds to a few milliseconds: whatever each call answers,
// every event handed to subscribers is in the inbox, and so is every event
// answered OK.
func TestPublishStressCallerEnds(t *testing.T) {
	f := newPublishFixture(t)
	const calls = 300
	var (
		mu sync.Mutex
		ok []string
		wg sync.WaitGroup
	)
	sem := make(chan struct{}, 16)
	for i := range calls {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			d := time.Duration(i%40) * 50 * time.Microsecond
			ctx, cancel := context.WithTimeout(auth.NewContext(context.Background(), publisher), d)
			defer cancel()
			resp, err := f.svc.Publish(ctx, pointsFor(fmt.Sprintf("g%d", i%5), int64(i+1)))
			if err == nil {
				mu.Lock()
				ok = append(ok, resp.EventId)
				mu.Unlock()
				return
			}
			if c := status.Code(err); c != codes.Canceled && c != codes.DeadlineExceeded {
				t.Errorf("publish %d: %v, want OK or DEADLINE_EXCEEDED", i, err)
			}
		}()
	}
	wg.Wait()
	stored := map[string]bool{}
	for g := range 5 {
		for id := range f.stored(t, fmt.Sprintf("g%d", g)) {
			stored[id] = true
		}
	}
	delivered := f.deliveredIDs()
	lost := 0
	for id := range delivered {
		if !stored[id] {
			lost++
		}
	}
	for _, id := range ok {
		if !stored[id] {
			t.Errorf("event %s answered OK is not stored", id)
		}
	}
	if lost > 0 {
		t.Errorf("%d of %d events delivered live are not in the inbox", lost, len(delivered))
	}
	t.Logf("%d calls: %d delivered, %d answered OK", calls, len(delivered), len(ok))
}
