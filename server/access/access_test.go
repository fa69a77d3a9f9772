package access

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	notifyv1 "github.com/maxloyalty/notify/gen/notify/v1"
	"github.com/maxloyalty/notify/server/auth"
	"github.com/maxloyalty/notify/server/room"
)

var (
	admin      = auth.Claims{Subject: "a1", Role: notifyv1.Role_ROLE_ADMIN}
	service    = auth.Claims{Subject: "svc", Role: notifyv1.Role_ROLE_SERVICE}
	restaurant = auth.Claims{Subject: "o1", Role: notifyv1.Role_ROLE_RESTAURANT, RestaurantID: "r1"}
	cashier    = auth.Claims{Subject: "c1", Role: notifyv1.Role_ROLE_CASHIER, RestaurantID: "r1"}
	guest      = auth.Claims{Subject: "g1", Role: notifyv1.Role_ROLE_GUEST}
)

// every room kind, once for the caller's own ids and once for others'.
var rooms = []room.Room{
	room.Admin,
	room.Guest("g1"), room.Guest("g2"),
	room.User("g1"), room.User("a1"), room.User("o1"), room.User("u9"),
	room.Restaurant("r1"), room.Restaurant("r2"),
	room.RestaurantPoints("r1"), room.RestaurantPoints("r2"),
	room.RestaurantTransactions("r1"), room.RestaurantTransactions("r2"),
}

// TestCanPublish is the role × room × payload table: services publish
// anything anywhere; admins publish system alerts and admin notifications
// into the admin room and nowhere else; no other role publishes.
func TestCanPublish(t *testing.T) {
	alert, note, points := &notifyv1.SystemAlert{}, &notifyv1.AdminNotification{}, &notifyv1.PointsAdded{}
	allowed := func(c auth.Claims, r room.Room, payload any) bool {
		switch c.Role {
		case notifyv1.Role_ROLE_SERVICE:
			return true
		case notifyv1.Role_ROLE_ADMIN:
			return payload != any(points) && r.Kind() == room.KindAdmin
		}
		return false
	}
	for _, c := range []auth.Claims{admin, service, restaurant, cashier, guest} {
		for _, r := range rooms {
			for _, payload := range []any{alert, note, points} {
				err := CanPublish(c, r, payload)
				want := allowed(c, r, payload)
				if (err == nil) != want || err != nil && !errors.Is(err, ErrDenied) {
					t.Errorf("CanPublish(%s, %s, %T) = %v, want allowed %v", auth.RoleName(c.Role), r, payload, err, want)
				}
			}
		}
	}
	// The refusal says where admins may publish.
	if err := CanPublish(admin, room.Guest("g1"), alert); err == nil || !strings.Contains(err.Error(), "admin room only") {
		t.Errorf("an admin's alert into guest:g1: %v, want a refusal naming the admin room", err)
	}
}

// TestCanSubscribe is the role × room table of subscriptions.
func TestCanSubscribe(t *testing.T) {
	allowed := map[string][]string{
		"admin":      {"*"},
		"service":    {"*"},
		"restaurant": {"user:o1", "restaurant:r1", "restaurant:r1:points", "restaurant:r1:transactions"},
		"cashier":    {"restaurant:r1", "restaurant:r1:points", "restaurant:r1:transactions"},
		"guest":      {"guest:g1", "user:g1"},
	}
	for _, c := range []auth.Claims{admin, service, restaurant, cashier, guest} {
		for _, r := range rooms {
			list := allowed[auth.RoleName(c.Role)]
			want := list[0] == "*" || slices.Contains(list, r.String())
			if err := CanSubscribe(c, r); (err == nil) != want {
				t.Errorf("CanSubscribe(%s, %s) = %v, want allowed %v", auth.RoleName(c.Role), r, err, want)
			}
		}
	}
}

// TestCanConfirmAt: only guests confirm, and only at a restaurant they
// have had an event from (known); an unknown one (r999) is refused with a
// message naming the guest and the restaurant.
func TestCanConfirmAt(t *testing.T) {
	for _, tc := range []struct {
		c     auth.Claims
		rid   string
		known bool
		want  bool
	}{
		{guest, "r1", true, true},
		{guest, "r999", false, false},
		{admin, "r1", true, false},
		{service, "r1", true, false},
		{restaurant, "r1", true, false},
		{cashier, "r1", true, false},
	} {
		name := fmt.Sprintf("%s at %s (known %v)", auth.RoleName(tc.c.Role), tc.rid, tc.known)
		err := CanConfirmAt(tc.c, tc.rid, tc.known)
		if (err == nil) != tc.want || err != nil && !errors.Is(err, ErrDenied) {
			t.Errorf("%s: %v, want allowed %v", name, err, tc.want)
		}
		if (CanConfirm(tc.c) == nil) != (tc.c.Role == notifyv1.Role_ROLE_GUEST) {
			t.Errorf("CanConfirm(%s) = %v", auth.RoleName(tc.c.Role), CanConfirm(tc.c))
		}
	}
	err := CanConfirmAt(guest, "r999", false)
	if err == nil || !strings.Contains(err.Error(), `"g1"`) || !strings.Contains(err.Error(), `"r999"`) {
		t.Errorf("unknown restaurant: %v, want a refusal naming g1 and r999", err)
	}
}
