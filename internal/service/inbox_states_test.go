package service

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	notifyv1 "github.com/maxloyalty/notify/gen/notify/v1"
	"github.com/maxloyalty/notify/internal/access"
	"github.com/maxloyalty/notify/internal/auth"
	"github.com/maxloyalty/notify/internal/hub"
	"github.com/maxloyalty/notify/internal/store"
)

// TestCountsFrameFields keeps countsFrame's field numbers in step with the
// contract.
func TestCountsFrameFields(t *testing.T) {
	resp := (&notifyv1.SubscribeResponse{}).ProtoReflect().Descriptor()
	uc := (&notifyv1.UnreadCount{}).ProtoReflect().Descriptor()
	for _, f := range []struct {
		got  int
		want int32
		name string
	}{
		{unreadField, int32(resp.Fields().ByName("unread").Number()), "SubscribeResponse.unread"},
		{countField, int32(uc.Fields().ByName("count").Number()), "UnreadCount.count"},
		{unseenField, int32(uc.Fields().ByName("unseen").Number()), "UnreadCount.unseen"},
		{returnedField, int32(uc.Fields().ByName("returned").Number()), "UnreadCount.returned"},
	} {
		if int32(f.got) != f.want {
			t.Errorf("%s is field %d in the contract, %d here", f.name, f.want, f.got)
		}
	}
}

// TestCountsFramesMerge decodes count frames as a stream's writer sends
// them, several concatenated into one message: the last counts win, zero
// included, and returned notifications add up.
func TestCountsFramesMerge(t *testing.T) {
	back := func(id string) *notifyv1.ReturnedNotification {
		return &notifyv1.ReturnedNotification{Id: id, Event: &notifyv1.Event{Id: "ev-" + id}, SnoozeUntil: timestamppb.New(time.Unix(1700000000, 0))}
	}
	frames := []*hub.Frame{
		countsFrame(store.Counts{Unread: 7, Unseen: 5}, []*notifyv1.ReturnedNotification{back("1")}),
		countsFrame(store.Counts{Unread: 3, Unseen: 0}, nil),
		countsFrame(store.Counts{Unread: 0, Unseen: 2}, []*notifyv1.ReturnedNotification{back("2"), back("3")}),
	}
	for n := 1; n <= len(frames); n++ {
		var b []byte
		for _, f := range frames[:n] {
			b = append(b, f.Bytes...)
		}
		var m notifyv1.SubscribeResponse
		if err := proto.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		u := m.GetUnread()
		last := frames[n-1]
		var want notifyv1.SubscribeResponse
		if err := proto.Unmarshal(last.Bytes, &want); err != nil {
			t.Fatal(err)
		}
		if u.GetCount() != want.GetUnread().Count || u.GetUnseen() != want.GetUnread().Unseen {
			t.Errorf("%d frames: counts %d/%d, want the last frame's %d/%d", n, u.GetCount(), u.GetUnseen(), want.GetUnread().Count, want.GetUnread().Unseen)
		}
		var ids []string
		for _, r := range u.GetReturned() {
			ids = append(ids, r.Id)
		}
		if wantIDs := []string{"1", "2", "3"}[:map[int]int{1: 1, 2: 1, 3: 3}[n]]; !slices.Equal(ids, wantIDs) {
			t.Errorf("%d frames: returned %v, want %v", n, ids, wantIDs)
		}
	}
	// A burst is capped per frame.
	many := make([]*notifyv1.ReturnedNotification, maxReturnedPerFrame+10)
	for i := range many {
		many[i] = back("x")
	}
	var m notifyv1.SubscribeResponse
	if err := proto.Unmarshal(countsFrame(store.Counts{}, many).Bytes, &m); err != nil || len(m.GetUnread().GetReturned()) != maxReturnedPerFrame {
		t.Errorf("a frame of %d returned: %d kept, %v", len(many), len(m.GetUnread().GetReturned()), err)
	}
}

func TestInboxMetaOf(t *testing.T) {
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	alert := func(l notifyv1.AlertLevel) proto.Message { return &notifyv1.SystemAlert{Level: l} }
	points := &notifyv1.PointsAdded{}
	tests := []struct {
		name     string
		opts     *notifyv1.InboxOptions
		payload  proto.Message
		typ      notifyv1.EventType
		priority notifyv1.Priority
		category string
		expires  time.Time
		err      string // a substring of the InvalidArgument; "" for none
	}{
		{"defaults", nil, points, notifyv1.EventType_EVENT_TYPE_POINTS_ADDED, notifyv1.Priority_PRIORITY_MEDIUM, "points", time.Time{}, ""},
		{"info alert", nil, alert(notifyv1.AlertLevel_ALERT_LEVEL_INFO), notifyv1.EventType_EVENT_TYPE_SYSTEM_ALERT, notifyv1.Priority_PRIORITY_LOW, "alerts", time.Time{}, ""},
		{"warning alert", nil, alert(notifyv1.AlertLevel_ALERT_LEVEL_WARNING), notifyv1.EventType_EVENT_TYPE_SYSTEM_ALERT, notifyv1.Priority_PRIORITY_MEDIUM, "alerts", time.Time{}, ""},
		{"error alert", nil, alert(notifyv1.AlertLevel_ALERT_LEVEL_ERROR), notifyv1.EventType_EVENT_TYPE_SYSTEM_ALERT, notifyv1.Priority_PRIORITY_HIGH, "alerts", time.Time{}, ""},
		{"critical alert", nil, alert(notifyv1.AlertLevel_ALERT_LEVEL_CRITICAL), notifyv1.EventType_EVENT_TYPE_SYSTEM_ALERT, notifyv1.Priority_PRIORITY_CRITICAL, "alerts", time.Time{}, ""},
		{"admin notification", nil, &notifyv1.AdminNotification{Priority: notifyv1.Priority_PRIORITY_HIGH}, notifyv1.EventType_EVENT_TYPE_ADMIN_NOTIFICATION, notifyv1.Priority_PRIORITY_HIGH, "alerts", time.Time{}, ""},
		{"publisher's", &notifyv1.InboxOptions{Priority: notifyv1.Priority_PRIORITY_CRITICAL, Category: "promo-2026", Ttl: durationpb.New(time.Hour)},
			alert(notifyv1.AlertLevel_ALERT_LEVEL_INFO), notifyv1.EventType_EVENT_TYPE_SYSTEM_ALERT, notifyv1.Priority_PRIORITY_CRITICAL, "promo-2026", now.Add(time.Hour), ""},
		{"expire time", &notifyv1.InboxOptions{ExpireTime: timestamppb.New(now.Add(time.Minute))}, points, notifyv1.EventType_EVENT_TYPE_POINTS_ADDED,
			notifyv1.Priority_PRIORITY_MEDIUM, "points", now.Add(time.Minute), ""},
		{"unknown priority", &notifyv1.InboxOptions{Priority: 9}, points, 1, 0, "", time.Time{}, "inbox.priority"},
		{"bad category", &notifyv1.InboxOptions{Category: "Points!"}, points, 1, 0, "", time.Time{}, "inbox.category"},
		{"category starting with -", &notifyv1.InboxOptions{Category: "-x"}, points, 1, 0, "", time.Time{}, "inbox.category"},
		{"long category", &notifyv1.InboxOptions{Category: strings.Repeat("a", 33)}, points, 1, 0, "", time.Time{}, "inbox.category"},
		{"bad tag", &notifyv1.InboxOptions{Tags: []string{"ok", "not ok"}}, points, 1, 0, "", time.Time{}, "inbox.tags[1]"},
		{"too many tags", &notifyv1.InboxOptions{Tags: make([]string, 11)}, points, 1, 0, "", time.Time{}, "inbox.tags"},
		{"expiry in the past", &notifyv1.InboxOptions{ExpireTime: timestamppb.New(now.Add(-time.Second))}, points, 1, 0, "", time.Time{}, "inbox.expire_time"},
		{"both expiries", &notifyv1.InboxOptions{ExpireTime: timestamppb.New(now.Add(time.Hour)), Ttl: durationpb.New(time.Hour)}, points, 1, 0, "", time.Time{}, "not both"},
		{"negative ttl", &notifyv1.InboxOptions{Ttl: durationpb.New(-time.Hour)}, points, 1, 0, "", time.Time{}, "inbox.ttl"},
		{"invalid ttl", &notifyv1.InboxOptions{Ttl: &durationpb.Duration{Seconds: 1, Nanos: -1}}, points, 1, 0, "", time.Time{}, "inbox.ttl"},
	}
	for _, tc := range tests {
		m, err := inboxMetaOf(tc.opts, tc.payload, tc.typ, now)
		if tc.err != "" {
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: error %v, want InvalidArgument about %s", tc.name, err, tc.err)
			}
			continue
		}
		if err != nil || m.priority != tc.priority || m.category != tc.category || !m.expires.Equal(tc.expires) {
			t.Errorf("%s: %+v, %v; want priority %v, category %q, expiry %v", tc.name, m, err, tc.priority, tc.category, tc.expires)
		}
	}
	// Every event type has a category.
	for v := range notifyv1.EventType_name {
		if v != 0 && categoryOf[notifyv1.EventType(v)] == "" {
			t.Errorf("%v has no category", notifyv1.EventType(v))
		}
	}
}

func TestCheckAction(t *testing.T) {
	link := func(u string) *notifyv1.NotificationAction {
		return &notifyv1.NotificationAction{Label: "Open", Target: &notifyv1.NotificationAction_Url{Url: u}}
	}
	confirm := func(c *notifyv1.ConfirmActionRequest) *notifyv1.NotificationAction {
		return &notifyv1.NotificationAction{Label: "Confirm", Target: &notifyv1.NotificationAction_Confirm{Confirm: c}}
	}
	good := &notifyv1.ConfirmActionRequest{ActionId: "a1", Action: notifyv1.ActionType_ACTION_TYPE_POINTS_REDEEM, Amount: 50, RestaurantId: "r1"}
	tests := []struct {
		name string
		a    *notifyv1.NotificationAction
		err  string
	}{
		{"https", link("https://example.com/cards/1?x=1#y"), ""},
		{"app path", link("/cards/1"), ""},
		{"deep link", link("maxloyalty://cards/1"), ""},
		{"confirm", confirm(good), ""},
		{"javascript", link("javascript:alert(1)"), "scheme is refused"},
		{"JavaScript upper case", link("JavaScript:alert(1)"), "scheme is refused"},
		{"data", link("data:text/html,<script>"), "scheme is refused"},
		{"protocol relative", link("//evil.example/x"), "no scheme"},
		{"relative without slash", link("cards/1"), "neither"},
		{"https without host", link("https:///x"), "no host"},
		{"space", link("https://example.com/a b"), "no spaces"},
		{"newline", link("/a\nb"), "no spaces"},
		{"backslash", link("/\\evil.example"), "backslashes"},
		{"empty url", link(""), "inbox.action.url"},
		{"long url", link("/" + strings.Repeat("a", maxActionURL)), "inbox.action.url"},
		{"no label", &notifyv1.NotificationAction{Target: &notifyv1.NotificationAction_Url{Url: "/x"}}, "inbox.action.label"},
		{"control in label", &notifyv1.NotificationAction{Label: "a\u0007", Target: &notifyv1.NotificationAction_Url{Url: "/x"}}, "inbox.action.label"},
		{"no target", &notifyv1.NotificationAction{Label: "x"}, "a url or a confirm"},
		{"confirm without action id", confirm(&notifyv1.ConfirmActionRequest{Action: 1, RestaurantId: "r1"}), "confirm.action_id"},
		{"confirm of unknown action", confirm(&notifyv1.ConfirmActionRequest{ActionId: "a", Action: 7, RestaurantId: "r1"}), "confirm.action"},
		{"confirm of a negative amount", confirm(&notifyv1.ConfirmActionRequest{ActionId: "a", Action: 1, Amount: -1, RestaurantId: "r1"}), "confirm.amount"},
		{"confirm without restaurant", confirm(&notifyv1.ConfirmActionRequest{ActionId: "a", Action: 1}), "confirm.restaurant_id"},
		{"empty confirm", confirm(nil), "confirm"},
	}
	for _, tc := range tests {
		err := checkAction(tc.a)
		if tc.err == "" {
			if err != nil {
				t.Errorf("%s: %v", tc.name, err)
			}
			continue
		}
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%s: error %v, want InvalidArgument about %q", tc.name, err, tc.err)
		}
	}
}

func TestPublishFingerprintWithInboxOptions(t *testing.T) {
	s := New(Config{}, nil, hub.New(), nil, slog.New(slog.DiscardHandler))
	c := auth.Claims{Subject: "backend", Role: notifyv1.Role_ROLE_SERVICE}
	req := func(o *notifyv1.InboxOptions) *notifyv1.PublishRequest {
		return &notifyv1.PublishRequest{IdempotencyKey: "k", Inbox: o, Payload: &notifyv1.PublishRequest_PointsAdded{PointsAdded: &notifyv1.PointsAdded{
			GuestId: "g1", CardId: "c1", Amount: 5, NewBalance: 5, RestaurantId: "r1", TransactionId: "t1",
		}}}
	}
	fp := func(o *notifyv1.InboxOptions) string {
		p, err := s.prepare(c, req(o))
		if err != nil {
			t.Fatal(err)
		}
		return p.pub.Fingerprint
	}
	plain, withOpts, other := fp(nil), fp(&notifyv1.InboxOptions{Category: "promo"}), fp(&notifyv1.InboxOptions{Category: "promo2"})
	// Without options, the fingerprint is the one a request had before
	// options existed (idempotency keys stay valid across the upgrade).
	p, err := s.prepare(c, req(nil))
	if err != nil {
		t.Fatal(err)
	}
	before, err := publishFingerprint("points_added", req(nil).GetPointsAdded(), p.pub.Rooms)
	if err != nil || plain != before {
		t.Errorf("fingerprint without options %q, want %q (%v)", plain, before, err)
	}
	if plain == withOpts || withOpts == other {
		t.Errorf("fingerprints %q, %q, %q: inbox options are part of the request", plain, withOpts, other)
	}
	if fp(nil) != plain || fp(&notifyv1.InboxOptions{Category: "promo"}) != withOpts {
		t.Error("fingerprints are not stable")
	}
}

func TestSnoozeEnd(t *testing.T) {
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	s := &Service{now: func() time.Time { return now }}
	tests := []struct {
		name  string
		until *timestamppb.Timestamp
		d     *durationpb.Duration
		want  time.Time
		err   string
	}{
		{"until", timestamppb.New(now.Add(time.Hour)), nil, now.Add(time.Hour), ""},
		{"to the microsecond", timestamppb.New(now.Add(time.Hour + 1500*time.Nanosecond)), nil, now.Add(time.Hour + time.Microsecond), ""},
		{"duration", nil, durationpb.New(2 * time.Second), now.Add(2 * time.Second), ""},
		{"a second", nil, durationpb.New(time.Second), now.Add(time.Second), ""},
		{"a year", nil, durationpb.New(maxSnooze), now.Add(maxSnooze), ""},
		{"neither", nil, nil, time.Time{}, "until: required"},
		{"both", timestamppb.New(now.Add(time.Hour)), durationpb.New(time.Hour), time.Time{}, "not both"},
		{"past", timestamppb.New(now.Add(-time.Hour)), nil, time.Time{}, "until: "},
		{"too soon", nil, durationpb.New(999 * time.Millisecond), time.Time{}, "between 1s"},
		{"too far", nil, durationpb.New(maxSnooze + time.Second), time.Time{}, "between 1s"},
		{"invalid time", &timestamppb.Timestamp{Seconds: 1 << 62}, nil, time.Time{}, "until: "},
		{"invalid duration", nil, &durationpb.Duration{Seconds: 1, Nanos: -5}, time.Time{}, "duration: "},
	}
	for _, tc := range tests {
		got, err := s.snoozeEnd(tc.until, tc.d, "until", "duration")
		if tc.err != "" {
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: error %v, want InvalidArgument about %q", tc.name, err, tc.err)
			}
			continue
		}
		if err != nil || !got.Equal(tc.want) {
			t.Errorf("%s: %v, %v; want %v", tc.name, got, err, tc.want)
		}
	}
}

// TestTarget is the table of who acts on whose inbox.
func TestTarget(t *testing.T) {
	x := &InboxService{}
	as := func(role notifyv1.Role, sub string) context.Context {
		return auth.NewContext(context.Background(), auth.Claims{Subject: sub, Role: role})
	}
	guest, admin, svc, staff := notifyv1.Role_ROLE_GUEST, notifyv1.Role_ROLE_ADMIN, notifyv1.Role_ROLE_SERVICE, notifyv1.Role_ROLE_RESTAURANT
	tests := []struct {
		name string
		ctx  context.Context
		user string
		want store.Viewer
		err  error
	}{
		{"guest, own", as(guest, "g1"), "", store.Viewer{UserID: "g1"}, nil},
		{"guest, own by name", as(guest, "g1"), "g1", store.Viewer{UserID: "g1"}, nil},
		{"guest, another", as(guest, "g1"), "g2", store.Viewer{}, access.ErrDenied},
		{"staff, another", as(staff, "s1"), "g2", store.Viewer{}, access.ErrDenied},
		{"admin, own", as(admin, "a1"), "", store.Viewer{UserID: "a1", Groups: []string{adminGroup}}, nil},
		{"admin, another admin", as(admin, "a1"), "a2", store.Viewer{UserID: "a2", Groups: []string{adminGroup}, GroupsOnly: true}, nil},
		{"service, a user", as(svc, "backend"), "g2", store.Viewer{UserID: "g2"}, nil},
		{"service, bad user id", as(svc, "backend"), "group:admin", store.Viewer{}, ErrInvalid},
		{"guest, bad user id", as(guest, "g1"), "x y", store.Viewer{}, ErrInvalid},
		{"subject without inbox", as(guest, "bad subject"), "", store.Viewer{}, access.ErrDenied},
		{"no claims", context.Background(), "", store.Viewer{}, auth.ErrMissingToken},
	}
	for _, tc := range tests {
		got, err := x.target(tc.ctx, tc.user)
		if tc.err != nil {
			if !errors.Is(err, tc.err) {
				t.Errorf("%s: error %v, want %v", tc.name, err, tc.err)
			}
			if tc.user != "" && tc.err != auth.ErrMissingToken && !strings.Contains(err.Error(), "user_id") {
				t.Errorf("%s: error %q does not name user_id", tc.name, err)
			}
			continue
		}
		if err != nil || got.UserID != tc.want.UserID || !slices.Equal(got.Groups, tc.want.Groups) || got.GroupsOnly != tc.want.GroupsOnly {
			t.Errorf("%s: %+v, %v; want %+v", tc.name, got, err, tc.want)
		}
	}
	// Preferences of another user: services only.
	if u, err := x.preferencesOf(as(svc, "backend"), "g2"); err != nil || u != "g2" {
		t.Errorf("service, another's preferences: %q, %v", u, err)
	}
	if _, err := x.preferencesOf(as(admin, "a1"), "a2"); !errors.Is(err, access.ErrDenied) {
		t.Errorf("admin, another's preferences: %v", err)
	}
}

func TestToFilter(t *testing.T) {
	f, err := toFilter(notifyv1.NotificationState_NOTIFICATION_STATE_ARCHIVED,
		[]notifyv1.EventType{notifyv1.EventType_EVENT_TYPE_CARD_CREATED}, []string{"card"}, []notifyv1.Priority{notifyv1.Priority_PRIORITY_HIGH}, "")
	if err != nil || f.State != store.StateArchived || !slices.Equal(f.Types, []string{"card_created"}) ||
		!slices.Equal(f.Categories, []string{"card"}) || !slices.Equal(f.Priorities, []int{3}) {
		t.Errorf("toFilter = %+v, %v", f, err)
	}
	for state, want := range map[notifyv1.NotificationState]store.State{0: store.StateInbox, 1: store.StateInbox, 7: store.StateAll} {
		if f, err := toFilter(state, nil, nil, nil, ""); err != nil || f.State != want {
			t.Errorf("state %v: %+v, %v", state, f, err)
		}
	}
	if len(states) != len(notifyv1.NotificationState_name) {
		t.Errorf("%d states mapped, the contract has %d", len(states), len(notifyv1.NotificationState_name))
	}
	if len(actions) != len(notifyv1.InboxAction_name)-1 {
		t.Errorf("%d actions mapped, the contract has %d besides UNSPECIFIED", len(actions), len(notifyv1.InboxAction_name)-1)
	}
	bad := []struct {
		name  string
		state notifyv1.NotificationState
		types []notifyv1.EventType
		cats  []string
		prios []notifyv1.Priority
		field string
	}{
		{"state", 99, nil, nil, nil, "filter.state"},
		{"type", 0, []notifyv1.EventType{0}, nil, nil, "filter.event_types"},
		{"category", 0, nil, []string{"ok", "Not OK"}, nil, "filter.categories[1]"},
		{"too many categories", 0, nil, make([]string, maxFilterValues+1), nil, "filter.categories"},
		{"priority", 0, nil, nil, []notifyv1.Priority{0}, "filter.priorities"},
	}
	for _, tc := range bad {
		_, err := toFilter(tc.state, tc.types, tc.cats, tc.prios, "filter.")
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("%s: error %v, want InvalidArgument naming %s", tc.name, err, tc.field)
		}
	}
}

// fakeWakeInbox is the part of an inbox the waker reads, with snooze ends
// and expiries given by the test, in a synctest bubble's time.
type fakeWakeInbox struct {
	Inbox // nil: only the methods below are called

	mu      sync.Mutex
	ends    []store.Returned
	expires map[string]time.Time // owner → expiry
	counts  map[string]store.Counts
	queries int
}

func (f *fakeWakeInbox) NextWake(_ context.Context, after time.Time) (time.Time, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.queries++
	var next time.Time
	for _, e := range f.ends {
		if e.Until.After(after) && (next.IsZero() || e.Until.Before(next)) {
			next = e.Until
		}
	}
	for _, t := range f.expires {
		if t.After(after) && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}
	return next, !next.IsZero(), nil
}

func (f *fakeWakeInbox) SnoozesEnded(_ context.Context, after store.SnoozeMark, until time.Time, limit int) ([]store.Returned, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []store.Returned
	for _, e := range f.ends {
		if e.Until.After(after.At) && !e.Until.After(until) && len(out) < limit {
			out = append(out, e)
		}
	}
	return out, nil
}

func (f *fakeWakeInbox) ExpiredOwners(_ context.Context, after, until time.Time) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for o, t := range f.expires {
		if t.After(after) && !t.After(until) {
			out = append(out, o)
		}
	}
	return out, nil
}

func (f *fakeWakeInbox) UnreadCounts(_ context.Context, users []string) (map[string]store.Counts, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string]store.Counts{}
	for _, u := range users {
		out[u] = f.counts[u]
	}
	return out, nil
}

func (f *fakeWakeInbox) add(user, id string, until time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ev, _ := proto.Marshal(&notifyv1.Event{Id: "ev-" + id})
	f.ends = append(f.ends, store.Returned{User: user, ID: id, Until: until, Event: ev})
}

// TestWakerAnnouncesOnTime runs the waker in a bubble of fake time: a
// snooze ending in 2 s comes back to its user's stream at that very time,
// with the user's counts, whether the waker learns of it by a kick (this
// node's change) or by looking again (another node's).
func TestWakerAnnouncesOnTime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := hub.New()
		in := &fakeWakeInbox{counts: map[string]store.Counts{"u1": {Unseen: 1, Unread: 4}, "u2": {Unseen: 9}}, expires: map[string]time.Time{}}
		u := newUnreadNotifier(in, h, slog.New(slog.DiscardHandler))
		w := newWaker(in, u, slog.New(slog.DiscardHandler), time.Minute, time.Now)
		sub := hub.NewSubscriber(1 << 20)
		h.Join(sub, []string{"guest:u1"}, []string{"u1"})
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go u.run(ctx)
		go w.run(ctx)

		take := func() []*notifyv1.UnreadCount {
			frames, _ := sub.Take(nil)
			var out []*notifyv1.UnreadCount
			for _, f := range frames {
				var m notifyv1.SubscribeResponse
				if err := proto.Unmarshal(f.Bytes, &m); err != nil {
					t.Fatal(err)
				}
				out = append(out, m.GetUnread())
			}
			return out
		}
		start := time.Now()
		synctest.Wait()
		// This node's snooze: a kick re-arms the timer for its end.
		in.add("u1", "1", start.Add(2*time.Second))
		in.add("u2", "2", start.Add(2*time.Second)) // not connected here: not announced
		w.changed()
		synctest.Wait()
		time.Sleep(2*time.Second - time.Nanosecond)
		synctest.Wait()
		if got := take(); len(got) != 0 {
			t.Fatalf("announced before the end: %v", got)
		}
		time.Sleep(time.Nanosecond)
		synctest.Wait()
		got := take()
		if len(got) != 1 || got[0].Count != 4 || got[0].Unseen != 1 || len(got[0].Returned) != 1 ||
			got[0].Returned[0].Id != "1" || got[0].Returned[0].Event.GetId() != "ev-1" ||
			!got[0].Returned[0].SnoozeUntil.AsTime().Equal(start.Add(2*time.Second)) {
			t.Fatalf("at the end: %v, want u1's counts with notification 1 back", got)
		}

		// Another node's snooze, no kick: found when the waker looks again
		// (resync), then announced at its end.
		in.add("u1", "3", start.Add(90*time.Second))
		time.Sleep(87 * time.Second) // 1 s before its end
		synctest.Wait()
		if got := take(); len(got) != 0 {
			t.Fatalf("announced early: %v", got)
		}
		time.Sleep(time.Second)
		synctest.Wait()
		if got := take(); len(got) != 1 || len(got[0].Returned) != 1 || got[0].Returned[0].Id != "3" {
			t.Fatalf("another node's snooze: %v", got)
		}
		// An expiry: counts only.
		in.mu.Lock()
		in.expires["u1"] = time.Now().Add(5 * time.Second)
		in.mu.Unlock()
		w.changed()
		time.Sleep(5 * time.Second)
		synctest.Wait()
		if got := take(); len(got) != 1 || len(got[0].Returned) != 0 || got[0].Count != 4 {
			t.Fatalf("after an expiry: %v, want counts alone", got)
		}
		// Idle, the waker looks once a resync period, not more.
		in.mu.Lock()
		before := in.queries
		in.mu.Unlock()
		time.Sleep(10 * time.Minute)
		synctest.Wait()
		in.mu.Lock()
		after := in.queries
		in.mu.Unlock()
		if n := after - before; n < 9 || n > 11 {
			t.Errorf("%d wake-up queries in 10 idle minutes with a 1-minute resync", n)
		}
		cancel()
	})
}
