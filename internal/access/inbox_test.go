package access

import (
	"errors"
	"strings"
	"testing"

	notifyv1 "github.com/maxloyalty/notify/gen/notify/v1"
	"github.com/maxloyalty/notify/internal/auth"
)

// TestInboxFor is the table of who acts on whose inbox.
func TestInboxFor(t *testing.T) {
	odd := auth.Claims{Subject: "not an id!", Role: notifyv1.Role_ROLE_GUEST}
	oddService := auth.Claims{Subject: "loyalty backend", Role: notifyv1.Role_ROLE_SERVICE}
	for _, tc := range []struct {
		name string
		c    auth.Claims
		user string
		want InboxView // 0: denied
	}{
		{"guest, own", guest, "", OwnInbox},
		{"guest, own by name", guest, "g1", OwnInbox},
		{"guest, another guest", guest, "g2", 0},
		{"restaurant, own", restaurant, "", OwnInbox},
		{"restaurant, a guest", restaurant, "g1", 0},
		{"cashier, own", cashier, "c1", OwnInbox},
		{"cashier, their restaurant's owner", cashier, "o1", 0},
		{"admin, own", admin, "", OwnInbox},
		{"admin, another admin", admin, "a2", AdminGroupInbox},
		{"admin, a guest", admin, "g1", AdminGroupInbox},
		{"service, own", service, "", OwnInbox},
		{"service, a guest", service, "g1", UserInbox},
		{"service, an admin", service, "a1", UserInbox},
		{"subject that is no id, own", odd, "", 0},
		{"service whose subject is no id, a guest", oddService, "g1", UserInbox},
		{"service whose subject is no id, own", oddService, "", 0},
	} {
		got, err := InboxFor(tc.c, tc.user)
		if tc.want == 0 {
			if !errors.Is(err, ErrDenied) {
				t.Errorf("%s: InboxFor = %v, %v; want ErrDenied", tc.name, got, err)
			} else if tc.user != "" && !strings.Contains(err.Error(), "user_id") {
				t.Errorf("%s: refusal %q does not name user_id", tc.name, err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%s: InboxFor = %v, %v; want %v", tc.name, got, err, tc.want)
		}
	}
}

// TestPreferencesUser: a caller's own preferences, or for services any
// user's.
func TestPreferencesUser(t *testing.T) {
	for _, tc := range []struct {
		name string
		c    auth.Claims
		user string
		want string // "": denied
	}{
		{"guest, own", guest, "", "g1"},
		{"guest, own by name", guest, "g1", "g1"},
		{"guest, another", guest, "g2", ""},
		{"admin, another admin", admin, "a2", ""},
		{"cashier, another", cashier, "g1", ""},
		{"service, a guest", service, "g1", "g1"},
		{"subject that is no id", auth.Claims{Subject: "x y", Role: notifyv1.Role_ROLE_GUEST}, "", ""},
	} {
		got, err := PreferencesUser(tc.c, tc.user)
		if tc.want == "" {
			if !errors.Is(err, ErrDenied) {
				t.Errorf("%s: PreferencesUser = %q, %v; want ErrDenied", tc.name, got, err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%s: PreferencesUser = %q, %v; want %q", tc.name, got, err, tc.want)
		}
	}
}
