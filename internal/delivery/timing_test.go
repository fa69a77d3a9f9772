package delivery

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	notifyv1 "github.com/maxloyalty/notify/gen/notify/v1"
	"github.com/maxloyalty/notify/internal/channel"
	"github.com/maxloyalty/notify/internal/channel/channeltest"
	"github.com/maxloyalty/notify/internal/store"
	"github.com/maxloyalty/notify/internal/testenv"
)

// clockAt runs factor times faster than the wall's clock, from start.
func clockAt(start time.Time, factor float64) *scaledClock {
	return &scaledClock{start: start, real: time.Now(), factor: factor}
}

// timingConfig is testConfig on clock, with River's rescue far away on it.
func timingConfig(t *testing.T, clock Clock) Config {
	cfg := testConfig(t)
	cfg.Clock = clock
	cfg.Policy = atOnce
	cfg.RescueAfter, cfg.JobTimeout = 1000*time.Hour, time.Minute
	return cfg
}

// pushes decrypts the push messages received so far.
func pushes(t *testing.T, ps *channeltest.PushService) []channel.WebPushPayload {
	t.Helper()
	var out []channel.WebPushPayload
	for _, m := range ps.Received() {
		var p channel.WebPushPayload
		if err := json.Unmarshal(m.Plaintext, &p); err != nil {
			t.Fatalf("payload %q: %v", m.Plaintext, err)
		}
		out = append(out, p)
	}
	return out
}

// summaryOf reads a summary push's count and points.
func summaryOf(t *testing.T, p channel.WebPushPayload) (count, points string) {
	t.Helper()
	var d struct {
		Summary struct {
			Count  string `json:"count"`
			Points string `json:"points"`
		} `json:"summary"`
	}
	if err := json.Unmarshal(p.Data, &d); err != nil {
		t.Fatalf("summary data %s: %v", p.Data, err)
	}
	return d.Summary.Count, d.Summary.Points
}

func setPrefs(t *testing.T, st store.Store, user string, p store.Preferences) {
	t.Helper()
	p.Enabled = true
	if err := st.SetPreferences(t.Context(), user, p); err != nil {
		t.Fatal(err)
	}
}

// TestQuietHoursHoldPush: a push due during the guest's quiet hours
// (22:00 to 07:00 in Tokyo) goes when they end there, 07:00 JST, not
// before; a CRITICAL alert to an admin with the same quiet hours goes at
// once.
func TestQuietHoursHoldPush(t *testing.T) {
	tokyo := mustZone(t, "Asia/Tokyo")
	start := time.Date(2026, 6, 10, 6, 50, 0, 0, tokyo)
	clock := clockAt(start, 60) // the last 10 minutes of the night in 10 s
	st := openSQLite(t)
	ps, wp, keys := webPush(t)
	cfg := timingConfig(t, clock)
	cfg.Senders = []channel.Sender{wp}
	q := startQueue(t, cfg, st)
	quiet := store.Preferences{TimeZone: "Asia/Tokyo", Quiet: &store.QuietHours{Start: hm(22, 0), End: hm(7, 0)}}
	setPrefs(t, st, "g1", quiet)
	setPrefs(t, st, "a1", quiet)
	registerPush(t, st, ps, keys, "g1")
	yes := true
	if _, err := st.UpdateProfile(t.Context(), store.ProfileUpdate{UserID: "a1", Admin: &yes}); err != nil {
		t.Fatal(err)
	}
	registerPush(t, st, ps, keys, "a1")

	ev := pointsAdded("g1", 100)
	publish(t, st, q, publication(ev, "points_added", "guest:g1"))
	alert := systemAlert(notifyv1.AlertLevel_ALERT_LEVEL_CRITICAL)
	p := publication(alert, "system_alert", "admin")
	p.crit = true
	publish(t, st, q, p)

	testenv.Eventually(t, 5*time.Second, "the critical alert", func() bool { return len(ps.Received()) == 1 })
	if got := pushes(t, ps)[0]; got.EventID != alert.Id {
		t.Fatalf("first push %+v, want the alert", got)
	}
	end := time.Date(2026, 6, 10, 7, 0, 0, 0, tokyo)
	testenv.Eventually(t, 5*time.Second, "the alert's sent step", func() bool { return slices.Contains(states(t, st, alert.Id, "a1"), "webpush:sent") })
	if as, _ := st.Statuses(t.Context(), []string{alert.Id}, "a1"); !as[len(as)-1].At.Before(end) {
		t.Fatalf("the alert went at %v, after the quiet hours", as[len(as)-1].At.In(tokyo))
	}
	testenv.Eventually(t, 5*time.Second, "held by quiet hours", func() bool {
		return slices.Equal(states(t, st, ev.Id, "g1"), []string{"webpush:queued", "webpush:scheduled"})
	})
	testenv.Eventually(t, 20*time.Second, "the points push", func() bool { return len(ps.Received()) == 2 })
	testenv.Eventually(t, 5*time.Second, "its sent step", func() bool { return len(states(t, st, ev.Id, "g1")) == 3 })
	ss, err := st.Statuses(t.Context(), []string{ev.Id}, "g1")
	if err != nil {
		t.Fatal(err)
	}
	if len(ss) != 3 || ss[2].State != StateSent {
		t.Fatalf("timeline %+v", ss)
	}
	if !strings.Contains(ss[1].Detail, "07:00 Asia/Tokyo") {
		t.Errorf("held step says %q", ss[1].Detail)
	}
	if sent := ss[2].At; sent.Before(end) {
		t.Errorf("sent at %v, before the quiet hours ended (%v)", sent.In(tokyo), end)
	}
}

// TestDigestOneSummary: three PointsAdded in a guest's hour-long digest
// window enter the inbox one by one, and make one email and one push when
// the window closes, with the count and the points summed.
func TestDigestOneSummary(t *testing.T) {
	clock := clockAt(time.Now(), 600) // an hour in 6 s
	st := openSQLite(t)
	ps, wp, keys := webPush(t)
	srv := channeltest.NewSMTPServer(t, channeltest.SMTPOptions{})
	em, err := channel.NewEmail(channel.EmailConfig{Host: srv.Host(), Port: srv.Port(), Security: channel.EmailPlain, From: "Max Loyalty <noreply@maxloyalty.example>"})
	if err != nil {
		t.Fatal(err)
	}
	cfg := timingConfig(t, clock)
	cfg.Senders = []channel.Sender{wp, em}
	q := startQueue(t, cfg, st)
	setPrefs(t, st, "g1", store.Preferences{Email: true, Digests: []store.DigestRule{{EventType: "points_added", Window: time.Hour}}})
	addr := "guest@example.com"
	if _, err := st.UpdateProfile(t.Context(), store.ProfileUpdate{UserID: "g1", Email: &addr}); err != nil {
		t.Fatal(err)
	}
	registerPush(t, st, ps, keys, "g1")

	var evs []*notifyv1.Event
	for _, n := range []int64{100, 150, 200} {
		ev := pointsAdded("g1", n)
		evs = append(evs, ev)
		publish(t, st, q, publication(ev, "points_added", "restaurant:r1:points", "guest:g1"))
	}
	items, _, err := st.List(t.Context(), store.Viewer{UserID: "g1"}, store.ListQuery{Limit: 10})
	if err != nil || len(items) != 3 {
		t.Fatalf("inbox: %d items, %v; want the three", len(items), err)
	}
	for _, ev := range evs {
		if got := states(t, st, ev.Id, "g1"); !slices.Equal(got, []string{"email:scheduled", "webpush:scheduled"}) &&
			!slices.Equal(got, []string{"webpush:scheduled", "email:scheduled"}) {
			t.Fatalf("timeline of %s: %v", ev.Id, got)
		}
	}
	ds, err := q.OpenDigests(t.Context(), "g1")
	if err != nil || len(ds) != 1 || ds[0].Count != 3 || ds[0].Points != 450 {
		t.Fatalf("open digests = %v, %v", ds, err)
	}
	if n := len(ps.Received()) + len(srv.Received()); n != 0 {
		t.Fatalf("%d messages before the window closed", n)
	}
	testenv.Eventually(t, 30*time.Second, "one email and one push", func() bool { return len(srv.Received()) == 1 && len(ps.Received()) == 1 })
	settled(t, q, 10*time.Second)
	if len(srv.Received()) != 1 || len(ps.Received()) != 1 {
		t.Fatalf("%d emails and %d pushes, want one of each", len(srv.Received()), len(ps.Received()))
	}
	mail, err := channeltest.ParseMail(srv.Received()[0].Data)
	if err != nil {
		t.Fatal(err)
	}
	if subj := mail.Header.Get("Subject"); !strings.Contains(subj, "3 visits, +450 points") {
		t.Errorf("subject %q", subj)
	}
	if !strings.Contains(mail.Text, "You earned 450 points in 3 visits") || !strings.Contains(mail.HTML, "450 points") {
		t.Errorf("email text %q", mail.Text)
	}
	push := pushes(t, ps)[0]
	if count, points := summaryOf(t, push); count != "3" || points != "450" || !strings.Contains(push.Body, "450") {
		t.Errorf("push %+v", push)
	}
	if ds, _ := q.OpenDigests(t.Context(), "g1"); len(ds) != 0 {
		t.Errorf("still open: %v", ds)
	}
}

// TestDigestReleasedEarly: a released digest is sent at once, and a later
// event opens a new window.
func TestDigestReleasedEarly(t *testing.T) {
	st := openSQLite(t)
	ps, wp, keys := webPush(t)
	cfg := testConfig(t)
	cfg.Policy = atOnce
	cfg.Senders = []channel.Sender{wp}
	cfg.Timing.Digests = []store.DigestRule{{EventType: "points_redeemed", Window: 24 * time.Hour, Key: "restaurant_id"}}
	q := startQueue(t, cfg, st)
	registerPush(t, st, ps, keys, "g1")
	redeemed := func(restaurant string, n int64) *notifyv1.Event {
		ev := pointsAdded("g1", n)
		ev.Payload = &notifyv1.Event_PointsRedeemed{PointsRedeemed: &notifyv1.PointsRedeemed{
			GuestId: "g1", CardId: "c1", Amount: n, NewBalance: 500, RestaurantId: restaurant,
		}}
		return ev
	}
	for _, e := range []struct {
		r string
		n int64
	}{{"r1", 10}, {"r1", 20}, {"r2", 5}} {
		publish(t, st, q, publication(redeemed(e.r, e.n), "points_redeemed", "guest:g1"))
	}
	ds, err := q.OpenDigests(t.Context(), "g1")
	if err != nil || len(ds) != 2 {
		t.Fatalf("open digests %v, %v; want one per restaurant", ds, err)
	}
	got, err := q.ReleaseDigests(t.Context(), "g1", "points_redeemed", "r1")
	if err != nil || len(got) != 1 || got[0].Key != "r1" || got[0].Count != 2 || got[0].Points != 30 {
		t.Fatalf("released %v, %v", got, err)
	}
	testenv.Eventually(t, 10*time.Second, "the released summary", func() bool { return len(ps.Received()) == 1 })
	if count, points := summaryOf(t, pushes(t, ps)[0]); count != "2" || points != "30" {
		t.Errorf("summary %s events, %s points", count, points)
	}
	if ds, _ := q.OpenDigests(t.Context(), "g1"); len(ds) != 1 || ds[0].Key != "r2" {
		t.Errorf("open after release: %v", ds)
	}
	publish(t, st, q, publication(redeemed("r1", 7), "points_redeemed", "guest:g1"))
	if ds, _ := q.OpenDigests(t.Context(), "g1"); len(ds) != 2 {
		t.Errorf("a later event did not open a new window: %v", ds)
	}
	// A critical event is never digested; other types are not either.
	publish(t, st, q, publication(pointsAdded("g1", 1), "points_added", "guest:g1"))
	testenv.Eventually(t, 10*time.Second, "the points_added push", func() bool { return len(ps.Received()) == 2 })
}

// TestThrottleFoldsHeldSends: at most one points push per ten minutes (of
// the queue's clock): of three at once, the first goes, the other two are
// held and go as one at the end of the window, counting both and their
// points.
func TestThrottleFoldsHeldSends(t *testing.T) {
	clock := clockAt(time.Now(), 60) // ten minutes in 10 s
	st := openSQLite(t)
	ps, wp, keys := webPush(t)
	cfg := timingConfig(t, clock)
	cfg.Senders = []channel.Sender{wp}
	cfg.Timing.Throttles = []Throttle{{EventType: "points_added", Limit: 1, Period: 10 * time.Minute}}
	q := startQueue(t, cfg, st)
	registerPush(t, st, ps, keys, "g1")
	var evs []*notifyv1.Event
	for i, n := range []int64{100, 150, 200} {
		ev := pointsAdded("g1", n)
		evs = append(evs, ev)
		publish(t, st, q, publication(ev, "points_added", "guest:g1"))
		if i == 0 {
			testenv.Eventually(t, 5*time.Second, "the first push", func() bool { return len(ps.Received()) == 1 })
		}
	}
	for _, ev := range evs[1:] {
		testenv.Eventually(t, 5*time.Second, "held", func() bool { return slices.Contains(states(t, st, ev.Id, "g1"), "webpush:held") })
	}
	if n := len(ps.Received()); n != 1 {
		t.Fatalf("%d pushes within the window, want 1", n)
	}
	testenv.Eventually(t, 40*time.Second, "the folded push", func() bool { return len(ps.Received()) == 2 })
	settled(t, q, 10*time.Second)
	got := pushes(t, ps)
	if len(got) != 2 {
		t.Fatalf("%d pushes, want 2", len(got))
	}
	// The held sends become due together at the window's end: whichever
	// runs first carries the summary.
	carrier := got[1].EventID
	if got[0].EventID != evs[0].Id || (carrier != evs[1].Id && carrier != evs[2].Id) {
		t.Errorf("pushes of %s and %s, want the first and a held one", got[0].EventID, carrier)
	}
	if count, points := summaryOf(t, got[1]); count != "2" || points != "350" {
		t.Errorf("folded push counts %s events and %s points, want 2 and 350", count, points)
	}
	if !strings.Contains(got[1].Body, "350") {
		t.Errorf("folded push body %q", got[1].Body)
	}
	want := []string{"webpush:queued", "webpush:held", "webpush:queued", "webpush:sent"}
	testenv.Eventually(t, 5*time.Second, "the carrier's timeline", func() bool { return slices.Equal(states(t, st, carrier, "g1"), want) })
}

// TestThrottleNeverDrops: whichever carries them (the next event's send
// or the end of the window), every event held back is counted in exactly
// one push, with its points.
func TestThrottleNeverDrops(t *testing.T) {
	clock := clockAt(time.Now(), 60) // a minute in 1 s
	st := openSQLite(t)
	ps, wp, keys := webPush(t)
	cfg := timingConfig(t, clock)
	cfg.Senders = []channel.Sender{wp}
	cfg.Timing.Throttles = []Throttle{{EventType: "points_added", Limit: 2, Period: time.Minute}}
	q := startQueue(t, cfg, st)
	registerPush(t, st, ps, keys, "g1")
	var total int64
	for i := range 9 {
		n := int64(10 * (i + 1))
		total += n
		publish(t, st, q, publication(pointsAdded("g1", n), "points_added", "guest:g1"))
		// pacing: one event every 15 s of the queue's clock spreads them
		// over several throttle windows, so that some held events are
		// carried by a later event's send and some by a window's end.
		time.Sleep(250 * time.Millisecond)
	}
	sum := func() (events, points int64) {
		for _, p := range pushes(t, ps) {
			if len(p.Data) > 0 && strings.Contains(string(p.Data), `"summary"`) {
				c, pt := summaryOf(t, p)
				events += atoi(t, c)
				points += atoi(t, pt)
				continue
			}
			events++
			points += atoi(t, strings.Fields(p.Body)[2]) // "You earned N points..."
		}
		return events, points
	}
	testenv.Eventually(t, 20*time.Second, "every event in a push", func() bool { e, _ := sum(); return e == 9 })
	settled(t, q, 10*time.Second)
	if e, p := sum(); e != 9 || p != total {
		t.Errorf("pushes stand for %d events and %d points, want 9 and %d", e, p, total)
	}
}

func atoi(t *testing.T, s string) int64 {
	t.Helper()
	var n int64
	for _, c := range strings.ReplaceAll(s, ",", "") {
		if c < '0' || c > '9' {
			t.Fatalf("not a number: %q", s)
		}
		n = n*10 + int64(c-'0')
	}
	return n
}
