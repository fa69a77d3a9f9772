package delivery

import (
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/base64"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/google/uuid"
	"github.com/riverqueue/river"

	notifyv1 "github.com/maxloyalty/notify/gen/notify/v1"
	"github.com/maxloyalty/notify/internal/broker"
	"github.com/maxloyalty/notify/internal/channel"
	"github.com/maxloyalty/notify/internal/channel/channeltest"
	"github.com/maxloyalty/notify/internal/hub"
	"github.com/maxloyalty/notify/internal/store"
	"github.com/maxloyalty/notify/internal/testenv"
)

func TestMain(m *testing.M) {
	// River's client, its pgx pool and its SQLite connection are stopped by
	// each test; what is left running is a leak.
	goleak.VerifyTestMain(m)
}

// openSQLite opens a store in the test's directory.
func openSQLite(t *testing.T) store.Store {
	t.Helper()
	s, err := store.OpenSQLite(t.Context(), filepath.Join(t.TempDir(), "notify.db"))
	if err != nil {
		t.Fatalf("OpenSQLite: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// testConfig is a queue configuration with short waits.
func testConfig(t *testing.T) Config {
	return Config{
		ClientID:          "test-" + uuid.NewString()[:8],
		MaxAttempts:       5,
		RetryBase:         50 * time.Millisecond,
		RetryMax:          200 * time.Millisecond,
		FetchPollInterval: 50 * time.Millisecond,
		JobTimeout:        10 * time.Second,
		RescueAfter:       20 * time.Second,
		TestOnly:          true,
	}
}

// startQueue builds and starts a queue, stopped by the test's cleanup
// before the store closes.
func startQueue(t *testing.T, cfg Config, st store.Store) *Queue {
	t.Helper()
	q, err := New(cfg, st)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if err := q.Start(t.Context()); err != nil {
		t.Fatalf("Start: %v", err)
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

type vapidKeys struct{ public, private string }

func newVAPID(t *testing.T) vapidKeys {
	t.Helper()
	k, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return vapidKeys{
		public:  base64.RawURLEncoding.EncodeToString(k.PublicKey().Bytes()),
		private: base64.RawURLEncoding.EncodeToString(k.Bytes()),
	}
}

// webPush returns a push service and a sender for it, with keys.
func webPush(t *testing.T) (*channeltest.PushService, *channel.WebPush, vapidKeys) {
	t.Helper()
	ps := channeltest.NewPushService(t)
	keys := newVAPID(t)
	w, err := channel.NewWebPush(channel.WebPushConfig{
		VAPIDPublicKey: keys.public, VAPIDPrivateKey: channel.Secret(keys.private),
		Subject: "mailto:ops@maxloyalty.example", RootCAs: ps.CertPool(), AllowInsecure: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	return ps, w, keys
}

// webhookSender returns a webhook sender.
func webhookSender(t *testing.T) *channel.Webhook {
	t.Helper()
	w, err := channel.NewWebhook(channel.WebhookConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	return w
}

// registerPush subscribes at ps and registers the subscription for user.
func registerPush(t *testing.T, st store.Store, ps *channeltest.PushService, keys vapidKeys, user string) (*channeltest.PushSubscription, store.Device) {
	t.Helper()
	sub := ps.Subscribe(t, keys.public)
	d, err := st.RegisterDevice(t.Context(), store.Device{UserID: user, Channel: store.ChannelWebPush, Token: sub.Endpoint, P256dh: sub.P256dh, Auth: sub.Auth, Label: "test browser"})
	if err != nil {
		t.Fatal(err)
	}
	return sub, d
}

// pointsAdded is a PointsAdded event for guest, encoded as the broker has
// it (without room).
func pointsAdded(guest string, amount int64) *notifyv1.Event {
	return &notifyv1.Event{
		Id:          uuid.Must(uuid.NewV7()).String(),
		PublishTime: timestamppb.Now(),
		Payload: &notifyv1.Event_PointsAdded{PointsAdded: &notifyv1.PointsAdded{
			GuestId: guest, CardId: "c-" + guest, Amount: amount, NewBalance: 1000 + amount,
			RestaurantId: "r1", RestaurantName: "Chez Max", TransactionId: "t1",
		}},
	}
}

// systemAlert is an alert of level for admins.
func systemAlert(level notifyv1.AlertLevel) *notifyv1.Event {
	return &notifyv1.Event{
		Id:          uuid.Must(uuid.NewV7()).String(),
		PublishTime: timestamppb.Now(),
		Payload: &notifyv1.Event_SystemAlert{SystemAlert: &notifyv1.SystemAlert{
			Level: level, Title: "Database down", Message: "The primary is unreachable.",
		}},
	}
}

// published is an event published in rooms, as the service hands it to
// the store and the queue.
type published struct {
	ev    *notifyv1.Event
	typ   string
	rooms []string
	// owners of the rooms that have an inbox, by room.
	owners map[string]string
	crit   bool
	email  string
}

func publication(ev *notifyv1.Event, typ string, rooms ...string) published {
	p := published{ev: ev, typ: typ, rooms: rooms, owners: map[string]string{}}
	for _, r := range rooms {
		switch {
		case r == "admin":
			p.owners[r] = AdminGroup
		case len(r) > 6 && r[:6] == "guest:":
			p.owners[r] = r[6:]
		case len(r) > 5 && r[:5] == "user:":
			p.owners[r] = r[5:]
		}
	}
	return p
}

// publish writes p's inbox rows and queues its deliveries in one
// transaction, as the service's publish path does.
func publish(t *testing.T, st store.Store, q *Queue, p published) {
	t.Helper()
	if err := publishErr(t.Context(), st, q, p); err != nil {
		t.Fatalf("publish: %v", err)
	}
}

func publishErr(ctx context.Context, st store.Store, q *Queue, p published) error {
	data, err := proto.Marshal(p.ev)
	if err != nil {
		return err
	}
	pub := Publication{EventID: p.ev.Id, Key: p.ev.Id, Type: p.typ, Data: data, Critical: p.crit, Email: p.email, Time: time.Now()}
	var items []store.NewItem
	var owners []Owner
	for i, r := range p.rooms {
		pub.Rooms = append(pub.Rooms, Room{Name: r, Offset: uint64(i + 1), Epoch: "e1"})
		owner, ok := p.owners[r]
		if !ok {
			continue
		}
		evData := hub.EncodeEvent(broker.Message{Room: r, Offset: uint64(i + 1), Epoch: "e1", Data: data})
		items = append(items, store.NewItem{Owner: owner, EventID: p.ev.Id, EventType: p.typ, Event: evData})
		owners = append(owners, Owner{ID: owner, Event: evData})
	}
	return st.InsertWith(ctx, items, func(ctx context.Context, tx *store.Tx, inserted []bool) error {
		pub.Owners = nil
		for i, o := range owners {
			if inserted[i] {
				pub.Owners = append(pub.Owners, o)
			}
		}
		return q.Enqueue(ctx, tx, pub)
	})
}

// settled waits until River holds no job of q's that can still send or
// publish: every delivery, webhook, publish, digest and throttle job is
// completed, cancelled or discarded. A job sends or publishes while it
// runs, before River marks it finished, so once settled the test's
// receivers have got everything they will ever get: a duplicate would
// have been a job of its own, still pending or already counted.
func settled(t *testing.T, q *Queue, within time.Duration) {
	t.Helper()
	te, ok := q.eng.(timingEngine)
	if !ok {
		t.Fatalf("the queue's engine %T cannot list jobs", q.eng)
	}
	params := river.NewJobListParams().Kinds(kindDeliver, kindWebhook, kindPublish, kindDigest, kindThrottle).
		States(pendingStates...).First(1)
	testenv.Eventually(t, within, "every job finished", func() bool {
		res, err := te.list(t.Context(), nil, params)
		if err != nil {
			t.Fatalf("list jobs: %v", err)
		}
		return len(res.Jobs) == 0
	})
}

// states returns the timeline states of an event for a user ("" all).
func states(t *testing.T, st store.Store, eventID, user string) []string {
	t.Helper()
	ss, err := st.Statuses(t.Context(), []string{eventID}, user)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, s := range ss {
		if s.Channel == store.ChannelLive {
			continue
		}
		out = append(out, s.Channel+":"+s.State)
	}
	return out
}

// scaledClock runs factor times faster than the system's clock, from
// start: tests see minutes pass in seconds, and River schedules on it.
type scaledClock struct {
	start  time.Time
	real   time.Time
	factor float64
}

func newScaledClock(factor float64) *scaledClock {
	now := time.Now()
	return &scaledClock{start: now, real: now, factor: factor}
}

func (c *scaledClock) Now() time.Time {
	return c.start.Add(time.Duration(float64(time.Since(c.real)) * c.factor))
}

// fakeStreams answers Streams from a set of (user, room) live streams.
type fakeStreams struct {
	mu   sync.Mutex
	live map[string]bool // user + "\x00" + room
}

func (f *fakeStreams) set(user, room string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.live == nil {
		f.live = map[string]bool{}
	}
	f.live[user+"\x00"+room] = true
}

func (f *fakeStreams) Receivers(room string, _ int32) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for k := range f.live {
		for i := range k {
			if k[i] == 0 && k[i+1:] == room {
				out = append(out, k[:i])
			}
		}
	}
	return out
}
