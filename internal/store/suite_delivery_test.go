package store

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func deliveryCases() []suiteCase {
	return []suiteCase{
		{"InsertWithReportsNewRows", testInsertWithReportsNewRows},
		{"InsertWithRollsBack", testInsertWithRollsBack},
		{"InsertWithNoItems", testInsertWithNoItems},
		{"InsertWithConcurrent", testInsertWithConcurrent},
		{"Devices", testDevices},
		{"DeviceLimit", testDeviceLimit},
		{"ProfilesAndAdmins", testProfilesAndAdmins},
		{"DeliveryPolicy", testDeliveryPolicy},
		{"Statuses", testStatuses},
		{"ItemState", testItemState},
		{"RiverTables", testRiverTables},
	}
}

func testInsertWithReportsNewRows(t *testing.T, s Store) {
	ctx := t.Context()
	mustInsert(t, s, items("u1", "e", "points_added", 1)...)
	var got []bool
	err := s.InsertWith(ctx, append(items("u1", "e", "points_added", 1), items("u2", "e", "points_added", 1)...),
		func(ctx context.Context, tx *Tx, inserted []bool) error {
			got = slices.Clone(inserted)
			if (tx.SQL() == nil) == (tx.PGX() == nil) {
				t.Errorf("Tx: SQL %v, PGX %v: want exactly one", tx.SQL() != nil, tx.PGX() != nil)
			}
			return nil
		})
	if err != nil {
		t.Fatalf("InsertWith: %v", err)
	}
	if want := []bool{false, true}; !slices.Equal(got, want) {
		t.Errorf("inserted = %v, want %v", got, want)
	}
}

func testInsertWithRollsBack(t *testing.T, s Store) {
	ctx := t.Context()
	boom := errors.New("boom")
	err := s.InsertWith(ctx, items("u1", "e", "points_added", 2), func(ctx context.Context, tx *Tx, _ []bool) error {
		if err := tx.AddStatuses(ctx, []Status{{EventID: "e0", UserID: "u1", Channel: ChannelEmail, State: "queued"}}); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("InsertWith = %v, want boom", err)
	}
	if got := listAll(t, s, user("u1")); len(got) != 0 {
		t.Errorf("rows after a failed hook: %v", eventIDs(got))
	}
	st, err := s.Statuses(ctx, []string{"e0"}, "")
	if err != nil || len(st) != 0 {
		t.Errorf("Statuses after a failed hook = %v, %v; want none", st, err)
	}
}

func testInsertWithNoItems(t *testing.T, s Store) {
	ctx := t.Context()
	err := s.InsertWith(ctx, nil, func(ctx context.Context, tx *Tx, inserted []bool) error {
		if len(inserted) != 0 {
			t.Errorf("inserted = %v", inserted)
		}
		return tx.AddStatuses(ctx, []Status{{EventID: "room-event", Channel: ChannelWebhook, Target: "ops", State: "queued"}})
	})
	if err != nil {
		t.Fatalf("InsertWith: %v", err)
	}
	st, err := s.Statuses(ctx, []string{"room-event"}, "")
	if err != nil || len(st) != 1 {
		t.Fatalf("Statuses = %v, %v; want one", st, err)
	}
}

// testInsertWithConcurrent has hooks of concurrent calls share group
// commits, one failing: the others commit, with their statuses.
func testInsertWithConcurrent(t *testing.T, s Store) {
	ctx := t.Context()
	const n = 16
	errs := make(chan error, n)
	for i := range n {
		go func() {
			owner := "c" + strconv.Itoa(i)
			errs <- s.InsertWith(ctx, items(owner, "e", "points_added", 1), func(ctx context.Context, tx *Tx, _ []bool) error {
				if err := tx.AddStatuses(ctx, []Status{{EventID: owner, UserID: owner, Channel: ChannelEmail, State: "queued"}}); err != nil {
					return err
				}
				if i == 3 {
					return errors.New("hook 3 fails")
				}
				return nil
			})
		}()
	}
	failed := 0
	for range n {
		if err := <-errs; err != nil {
			failed++
		}
	}
	if failed != 1 {
		t.Errorf("%d calls failed, want 1", failed)
	}
	for i := range n {
		owner := "c" + strconv.Itoa(i)
		st, err := s.Statuses(ctx, []string{owner}, owner)
		if err != nil {
			t.Fatal(err)
		}
		rows := listAll(t, s, user(owner))
		want := 1
		if i == 3 {
			want = 0
		}
		if len(st) != want || len(rows) != want {
			t.Errorf("%s: %d statuses and %d rows, want %d of each", owner, len(st), len(rows), want)
		}
	}
}

func testDevices(t *testing.T, s Store) {
	ctx := t.Context()
	d1, err := s.RegisterDevice(ctx, Device{UserID: "u1", Channel: ChannelWebPush, Token: "https://push.example/1", P256dh: "k", Auth: "a", Label: "Firefox"})
	if err != nil {
		t.Fatalf("RegisterDevice: %v", err)
	}
	if d1.ID == "" || d1.CreatedAt.IsZero() {
		t.Fatalf("RegisterDevice = %+v: no id or time", d1)
	}
	d2, err := s.RegisterDevice(ctx, Device{UserID: "u1", Channel: ChannelFCM, Token: "fcm-token"})
	if err != nil {
		t.Fatal(err)
	}
	// The same subscription again, with new keys: same id, updated.
	again, err := s.RegisterDevice(ctx, Device{UserID: "u1", Channel: ChannelWebPush, Token: "https://push.example/1", P256dh: "k2", Auth: "a2"})
	if err != nil {
		t.Fatal(err)
	}
	if again.ID != d1.ID || again.P256dh != "k2" {
		t.Errorf("re-registered = %+v, want id %s and new keys", again, d1.ID)
	}
	got, err := s.Devices(ctx, "u1")
	if err != nil {
		t.Fatal(err)
	}
	if ids := []string{got[0].ID, got[1].ID}; len(got) != 2 || !slices.Contains(ids, d1.ID) || !slices.Contains(ids, d2.ID) {
		t.Errorf("Devices = %+v", got)
	}
	// The token moves to another user who registers it.
	moved, err := s.RegisterDevice(ctx, Device{UserID: "u2", Channel: ChannelFCM, Token: "fcm-token"})
	if err != nil {
		t.Fatal(err)
	}
	if moved.ID != d2.ID || moved.UserID != "u2" {
		t.Errorf("moved = %+v", moved)
	}
	if got, _ := s.Devices(ctx, "u1"); len(got) != 1 {
		t.Errorf("u1 devices after the move: %+v", got)
	}
	if err := s.RemoveDevice(ctx, "u1", d2.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("RemoveDevice of another user's device = %v, want ErrNotFound", err)
	}
	if err := s.RemoveDevice(ctx, "u2", d2.ID); err != nil {
		t.Errorf("RemoveDevice: %v", err)
	}
	if _, err := s.Device(ctx, d2.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("Device after removal = %v, want ErrNotFound", err)
	}
	// Removal inside a transaction, as a provider's "gone" does it.
	if err := s.InTx(ctx, func(ctx context.Context, tx *Tx) error { return tx.RemoveDevice(ctx, d1.ID) }); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Devices(ctx, "u1"); len(got) != 0 {
		t.Errorf("devices after removal in a transaction: %+v", got)
	}
	for _, bad := range []Device{
		{UserID: "", Channel: ChannelFCM, Token: "t"},
		{UserID: "u", Channel: "sms", Token: "t"},
		{UserID: "u", Channel: ChannelFCM, Token: ""},
	} {
		if _, err := s.RegisterDevice(ctx, bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("RegisterDevice(%+v) = %v, want ErrInvalid", bad, err)
		}
	}
}

func testDeviceLimit(t *testing.T, s Store) {
	ctx := t.Context()
	for i := range MaxDevicesPerUser {
		if _, err := s.RegisterDevice(ctx, Device{UserID: "u1", Channel: ChannelAPNs, Token: "tok" + strconv.Itoa(i)}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.RegisterDevice(ctx, Device{UserID: "u1", Channel: ChannelAPNs, Token: "one-more"}); !errors.Is(err, ErrInvalid) {
		t.Errorf("device over the limit = %v, want ErrInvalid", err)
	}
	// Registering one already there again is not a new one.
	if _, err := s.RegisterDevice(ctx, Device{UserID: "u1", Channel: ChannelAPNs, Token: "tok0"}); err != nil {
		t.Errorf("re-registering at the limit: %v", err)
	}
}

func testProfilesAndAdmins(t *testing.T, s Store) {
	ctx := t.Context()
	p, err := s.Profile(ctx, "a1")
	if err != nil || (p != Profile{UserID: "a1"}) {
		t.Fatalf("Profile of nobody = %+v, %v", p, err)
	}
	email, locale, yes := "a1@example.com", "fr-FR", true
	if _, err := s.UpdateProfile(ctx, ProfileUpdate{UserID: "a1", Email: &email, Admin: &yes}); err != nil {
		t.Fatal(err)
	}
	got, err := s.UpdateProfile(ctx, ProfileUpdate{UserID: "a1", Locale: &locale})
	if err != nil {
		t.Fatal(err)
	}
	want := Profile{UserID: "a1", Email: email, Locale: locale, Admin: true}
	if got != want {
		t.Errorf("UpdateProfile = %+v, want %+v", got, want)
	}
	if p, _ := s.Profile(ctx, "a1"); p != want {
		t.Errorf("Profile = %+v, want %+v", p, want)
	}
	if _, err := s.UpdateProfile(ctx, ProfileUpdate{UserID: "g1", Email: &email}); err != nil {
		t.Fatal(err)
	}
	var admins []string
	var profiles map[string]Profile
	err = s.InTx(ctx, func(ctx context.Context, tx *Tx) error {
		var err error
		if admins, err = tx.Admins(ctx); err != nil {
			return err
		}
		profiles, err = tx.Profiles(ctx, []string{"a1", "g1", "nobody"})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(admins, []string{"a1"}) {
		t.Errorf("Admins = %v", admins)
	}
	if len(profiles) != 2 || profiles["g1"].Email != email {
		t.Errorf("Profiles = %+v", profiles)
	}
	long := string(make([]byte, MaxEmailLen+1))
	if _, err := s.UpdateProfile(ctx, ProfileUpdate{UserID: "a1", Email: &long}); !errors.Is(err, ErrInvalid) {
		t.Errorf("long email = %v, want ErrInvalid", err)
	}
}

func testDeliveryPolicy(t *testing.T, s Store) {
	ctx := t.Context()
	if _, ok, err := s.DeliveryPolicy(ctx, "u1"); ok || err != nil {
		t.Fatalf("DeliveryPolicy of nobody: ok %v, %v", ok, err)
	}
	delay, zero := 90*time.Second, time.Duration(0)
	rules := []DeliveryRule{
		{EventType: "points_added", On: []string{ChannelEmail}, UnseenDelay: &delay},
		{EventType: "system_alert", Off: []string{ChannelWebPush}, UnseenDelay: &zero},
	}
	if err := s.SetDeliveryPolicy(ctx, "u1", rules); err != nil {
		t.Fatal(err)
	}
	got, ok, err := s.DeliveryPolicy(ctx, "u1")
	if err != nil || !ok {
		t.Fatalf("DeliveryPolicy: ok %v, %v", ok, err)
	}
	if d := cmp.Diff(rules, got); d != "" {
		t.Errorf("DeliveryPolicy (-want +got):\n%s", d)
	}
	if err := s.SetDeliveryPolicy(ctx, "u1", nil); err != nil {
		t.Fatal(err)
	}
	if got, ok, _ := s.DeliveryPolicy(ctx, "u1"); !ok || len(got) != 0 {
		t.Errorf("emptied policy = %v, ok %v; want set and empty", got, ok)
	}
	for _, bad := range [][]DeliveryRule{
		{{EventType: ""}},
		{{EventType: "a"}, {EventType: "a"}},
		{{EventType: "a", On: []string{"sms"}}},
		{{EventType: "a", UnseenDelay: new(time.Duration(-1))}},
	} {
		if err := s.SetDeliveryPolicy(ctx, "u1", bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("SetDeliveryPolicy(%+v) = %v, want ErrInvalid", bad, err)
		}
	}
}

func testStatuses(t *testing.T, s Store) {
	ctx := t.Context()
	t0 := baseTime()
	st := []Status{
		{EventID: "e1", UserID: "u1", Channel: ChannelWebPush, Target: "d1", State: "queued", At: t0},
		{EventID: "e1", UserID: "u1", Channel: ChannelWebPush, Target: "d1", State: "sent", At: t0.Add(time.Second), Attempt: 1, ProviderID: "p1"},
		{EventID: "e1", UserID: "u2", Channel: ChannelEmail, Target: "u***@example.com", State: "failed", At: t0.Add(2 * time.Second), Attempt: 1, Detail: "550 no such user"},
		{EventID: "e2", UserID: "u1", Channel: ChannelLive, State: "delivered", At: t0},
		// A second live delivery of the same event to the same user is
		// recorded once.
		{EventID: "e2", UserID: "u1", Channel: ChannelLive, State: "delivered", At: t0.Add(time.Second)},
	}
	if err := s.AddStatuses(ctx, st); err != nil {
		t.Fatal(err)
	}
	got, err := s.Statuses(ctx, []string{"e1", "e2"}, "u1")
	if err != nil {
		t.Fatal(err)
	}
	want := []Status{st[0], st[1], st[3]}
	if d := cmp.Diff(want, got, cmpopts.IgnoreFields(Status{}, "ID")); d != "" {
		t.Errorf("Statuses of u1 (-want +got):\n%s", d)
	}
	all, err := s.Statuses(ctx, []string{"e1"}, "")
	if err != nil || len(all) != 3 {
		t.Errorf("Statuses of everyone = %d rows, %v; want 3", len(all), err)
	}
	for _, u := range []struct {
		user string
		want bool
	}{{"u1", true}, {"u2", false}} {
		if got, err := s.LiveDelivered(ctx, "e2", u.user); err != nil || got != u.want {
			t.Errorf("LiveDelivered(e2, %s) = %v, %v; want %v", u.user, got, err, u.want)
		}
	}
	if _, err := s.Statuses(ctx, nil, ""); !errors.Is(err, ErrInvalid) {
		t.Errorf("Statuses of no event = %v, want ErrInvalid", err)
	}
	// Pruning by age takes the timelines too.
	if _, err := s.Prune(ctx, 0, time.Hour, t0.Add(2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if all, _ := s.Statuses(ctx, []string{"e1", "e2"}, ""); len(all) != 0 {
		t.Errorf("statuses after pruning: %d", len(all))
	}
}

func testItemState(t *testing.T, s Store) {
	ctx := t.Context()
	mustInsert(t, s, items("g1", "e", "points_added", 2)...)
	mustInsert(t, s, items("group:admin", "a", "system_alert", 1)...)
	st, err := s.ItemState(ctx, "g1", "e0", "g1")
	if err != nil || !st.Found || st.Handled() {
		t.Fatalf("fresh item state = %+v, %v; want found, not handled", st, err)
	}
	rows := listAll(t, s, user("g1"))
	if err := s.Update(ctx, user("g1"), []string{rows[1].ID}, Change{Action: ActionSeen}); err != nil { // e0: oldest last
		t.Fatal(err)
	}
	if st, _ := s.ItemState(ctx, "g1", "e0", "g1"); !st.Seen || !st.Handled() {
		t.Errorf("after seen: %+v", st)
	}
	if st, _ := s.ItemState(ctx, "g1", "e1", "g1"); st.Handled() {
		t.Errorf("the other item: %+v", st)
	}
	if st, _ := s.ItemState(ctx, "g1", "missing", "g1"); st.Found || !st.Handled() {
		t.Errorf("missing item: %+v", st)
	}
	// A shared row: each admin's own state.
	if st, _ := s.ItemState(ctx, "group:admin", "a0", "ad1"); !st.Found || st.Handled() {
		t.Errorf("shared item, fresh: %+v", st)
	}
	arows := listAll(t, s, user("ad1", "group:admin"))
	if err := s.Update(ctx, user("ad1", "group:admin"), []string{arows[0].ID}, Change{Action: ActionRead}); err != nil {
		t.Fatal(err)
	}
	if st, _ := s.ItemState(ctx, "group:admin", "a0", "ad1"); !st.Read {
		t.Errorf("shared item read by ad1: %+v", st)
	}
	if st, _ := s.ItemState(ctx, "group:admin", "a0", "ad2"); st.Handled() {
		t.Errorf("shared item for ad2: %+v", st)
	}
}

// testRiverTables checks that River's migrations ran: its job table is
// there and empty, and the queue statistics read it.
func testRiverTables(t *testing.T, s Store) {
	stats, err := s.QueueStats(t.Context())
	if err != nil {
		t.Fatalf("QueueStats: %v", err)
	}
	if len(stats) != 0 {
		t.Errorf("QueueStats of an empty queue = %+v", stats)
	}
}
