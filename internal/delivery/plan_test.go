package delivery

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/maxloyalty/notify/internal/store"
)

func TestPlan(t *testing.T) {
	devices := []store.Device{
		{ID: "w1", UserID: "g1", Channel: store.ChannelWebPush, Label: "Firefox"},
		{ID: "w2", UserID: "g1", Channel: store.ChannelWebPush},
		{ID: "f1", UserID: "g1", Channel: store.ChannelFCM},
		{ID: "x1", UserID: "other", Channel: store.ChannelAPNs},
	}
	all := []string{store.ChannelWebPush, store.ChannelFCM, store.ChannelAPNs, store.ChannelEmail}
	minute, zero := time.Minute, time.Duration(0)
	p := Policy{UnseenDelay: 30 * time.Second, DelayedTypes: DefaultDelayedTypes}
	type want struct {
		channel, target string
		delay           time.Duration
	}
	for _, tc := range []struct {
		name       string
		policy     Policy
		configured []string
		typ        string
		critical   bool
		r          recipient
		want       []want
	}{
		{
			name: "points events wait for the unseen delay, on every push device", policy: p, configured: all, typ: "points_added",
			r:    recipient{user: "g1", devices: devices, profile: store.Profile{Email: "g1@example.com"}},
			want: []want{{"webpush", "w1", 30 * time.Second}, {"webpush", "w2", 30 * time.Second}, {"fcm", "f1", 30 * time.Second}},
		},
		{
			name: "other types go at once; email only when the user turned it on", policy: p, configured: all, typ: "card_created",
			r:    recipient{user: "g1", devices: devices[2:3], profile: store.Profile{Email: "g1@example.com"}, emailOn: true},
			want: []want{{"fcm", "f1", 0}, {"email", "g1@example.com", 0}},
		},
		{
			name: "the publisher's address wins over the profile's", policy: p, configured: []string{"email"}, typ: "card_created",
			r:    recipient{user: "g1", profile: store.Profile{Email: "old@example.com"}, emailOn: true, email: "new@example.com"},
			want: []want{{"email", "new@example.com", 0}},
		},
		{
			name: "unconfigured channels are skipped", policy: p, configured: []string{"apns"}, typ: "card_created",
			r: recipient{user: "g1", devices: devices},
		},
		{
			name: "a rule turns channels on and off and sets the delay", policy: p, configured: all, typ: "points_added",
			r: recipient{user: "g1", devices: devices, profile: store.Profile{Email: "g1@example.com"}, rules: []store.DeliveryRule{
				{EventType: "points_added", On: []string{"email"}, Off: []string{"webpush"}, UnseenDelay: &minute},
			}},
			want: []want{{"fcm", "f1", time.Minute}, {"email", "g1@example.com", time.Minute}},
		},
		{
			name: "a zero delay in a rule sends at once", policy: p, configured: all, typ: "points_added",
			r: recipient{user: "g1", devices: devices[2:3], rules: []store.DeliveryRule{
				{EventType: "points_added", UnseenDelay: &zero},
			}},
			want: []want{{"fcm", "f1", 0}},
		},
		{
			name: "critical alerts go at once on every channel, email included", policy: p, configured: all, typ: "system_alert", critical: true,
			r:    recipient{user: "a1", devices: []store.Device{{ID: "a-w", UserID: "a1", Channel: "webpush"}}, profile: store.Profile{Email: "a1@example.com"}},
			want: []want{{"webpush", "a-w", 0}, {"email", "a1@example.com", 0}},
		},
		{
			name: "a critical alert respects a channel the user turned off", policy: p, configured: all, typ: "system_alert", critical: true,
			r: recipient{user: "a1", devices: []store.Device{{ID: "a-w", UserID: "a1", Channel: "webpush"}}, profile: store.Profile{Email: "a1@example.com"},
				rules: []store.DeliveryRule{{EventType: "system_alert", Off: []string{"email"}, UnseenDelay: &minute}}},
			want: []want{{"webpush", "a-w", 0}},
		},
		{
			name: "the policy's email types and push-off types", policy: Policy{EmailTypes: []string{"card_created"}, PushOff: []string{"card_created"}},
			configured: all, typ: "card_created",
			r:    recipient{user: "g1", devices: devices, profile: store.Profile{Email: "g1@example.com"}},
			want: []want{{"email", "g1@example.com", 0}},
		},
		{
			name: "no address, no email", policy: p, configured: all, typ: "system_alert", critical: true,
			r: recipient{user: "a1"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []want
			for _, d := range plan(tc.policy, tc.configured, tc.typ, tc.critical, tc.r) {
				got = append(got, want{d.channel, d.target, d.delay})
			}
			if d := cmp.Diff(tc.want, got, cmp.AllowUnexported(want{})); d != "" {
				t.Errorf("plan (-want +got):\n%s", d)
			}
		})
	}
}

func TestMaskEmail(t *testing.T) {
	for in, want := range map[string]string{
		"guest@example.com": "g***@example.com",
		"a@b":               "a***@b",
		"nope":              "***",
		"@x":                "***",
	} {
		if got := maskEmail(in); got != want {
			t.Errorf("maskEmail(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestBackoff(t *testing.T) {
	q := &Queue{cfg: Config{RetryBase: time.Second, RetryMax: 30 * time.Second}}
	for _, tc := range []struct {
		failures int
		base     time.Duration
	}{{1, time.Second}, {2, 2 * time.Second}, {3, 4 * time.Second}, {5, 16 * time.Second}, {6, 30 * time.Second}, {40, 30 * time.Second}} {
		for range 20 {
			d := q.backoff(tc.failures)
			if lo, hi := tc.base*8/10, tc.base*12/10; d < lo || d > hi {
				t.Fatalf("backoff(%d) = %v, want within %v..%v", tc.failures, d, lo, hi)
			}
		}
	}
}

func TestScanEvent(t *testing.T) {
	ev := pointsAdded("g1", 10)
	data := mustMarshal(t, ev)
	id, typ := scanEvent(data)
	if id != ev.Id || typ != 1 {
		t.Errorf("scanEvent = %q, %d; want %q, 1", id, typ, ev.Id)
	}
	if id, typ := scanEvent([]byte{0xff}); id != "" || typ != 0 {
		t.Errorf("scanEvent of garbage = %q, %d", id, typ)
	}
}
