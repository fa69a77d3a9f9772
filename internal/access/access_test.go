package access

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	notifyv1 "github.com/maxloyalty/notify/gen/notify/v1"
	"github.com/maxloyalty/notify/internal/auth"
	"github.com/maxloyalty/notify/internal/room"
)

// The callers of every table: one per role, the restaurant and cashier
// users both of restaurant r1.
var (
	admin      = auth.Claims{Subject: "a1", Role: notifyv1.Role_ROLE_ADMIN}
	service    = auth.Claims{Subject: "svc", Role: notifyv1.Role_ROLE_SERVICE}
	restaurant = auth.Claims{Subject: "o1", Role: notifyv1.Role_ROLE_RESTAURANT, RestaurantID: "r1"}
	cashier    = auth.Claims{Subject: "c1", Role: notifyv1.Role_ROLE_CASHIER, RestaurantID: "r1"}
	guest      = auth.Claims{Subject: "g1", Role: notifyv1.Role_ROLE_GUEST}

	callers = []auth.Claims{admin, service, restaurant, cashier, guest}
)

// allows reports whether who, a list of role names, names c's role.
func allows(who string, c auth.Claims) bool {
	return slices.Contains(strings.Fields(who), auth.RoleName(c.Role))
}

// parse parses a room name of a table.
func parse(t *testing.T, name string) room.Room {
	t.Helper()
	r, err := room.Parse(name)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestCanSubscribe is the role × room table of subscriptions (README's
// "Rooms and roles"): every room kind, once with the callers' own ids and
// once with others'.
func TestCanSubscribe(t *testing.T) {
	table := []struct {
		room string
		who  string // the roles that may subscribe
	}{
		{"admin", "admin service"},
		{"guest:g1", "admin service guest"},
		{"guest:g2", "admin service"},
		{"user:g1", "admin service guest"},
		{"user:a1", "admin service"},
		{"user:o1", "admin service restaurant"},
		{"user:c1", "admin service cashier"},
		{"user:u9", "admin service"},
		{"restaurant:r1", "admin service restaurant cashier"},
		{"restaurant:r1:points", "admin service restaurant cashier"},
		{"restaurant:r1:transactions", "admin service restaurant cashier"},
		{"restaurant:r2", "admin service"},
		{"restaurant:r2:points", "admin service"},
		{"restaurant:r2:transactions", "admin service"},
		// A guest whose id is a restaurant's, and a staff user whose
		// restaurant id is a guest's, gain nothing by it.
		{"guest:r1", "admin service"},
		{"user:r1", "admin service"},
		{"restaurant:g1", "admin service"},
	}
	for _, tc := range table {
		r := parse(t, tc.room)
		for _, c := range callers {
			err := CanSubscribe(c, r)
			if want := allows(tc.who, c); (err == nil) != want || err != nil && !errors.Is(err, ErrDenied) {
				t.Errorf("CanSubscribe(%s, %s) = %v, want allowed %v", auth.RoleName(c.Role), r, err, want)
			}
		}
	}
}

// TestCanPublish is the role × room × payload table: services publish
// anything anywhere; admins publish system alerts and admin notifications
// into the admin room and nowhere else; no other role publishes (guests
// confirm actions through ConfirmAction, not Publish).
func TestCanPublish(t *testing.T) {
	table := []struct {
		room               string
		alert, note, other string // the roles that may publish each payload
	}{
		{"admin", "admin service", "admin service", "service"},
		{"guest:g1", "service", "service", "service"},
		{"guest:g2", "service", "service", "service"},
		{"user:g1", "service", "service", "service"},
		{"user:a1", "service", "service", "service"},
		{"user:o1", "service", "service", "service"},
		{"user:c1", "service", "service", "service"},
		{"restaurant:r1", "service", "service", "service"},
		{"restaurant:r1:points", "service", "service", "service"},
		{"restaurant:r1:transactions", "service", "service", "service"},
		{"restaurant:r2", "service", "service", "service"},
	}
	payloads := []struct {
		name string
		msg  func() any
		who  func(row int) string
	}{
		{"SystemAlert", func() any { return &notifyv1.SystemAlert{} }, func(i int) string { return table[i].alert }},
		{"AdminNotification", func() any { return &notifyv1.AdminNotification{} }, func(i int) string { return table[i].note }},
		{"PointsAdded", func() any { return &notifyv1.PointsAdded{} }, func(i int) string { return table[i].other }},
		{"ActionConfirmed", func() any { return &notifyv1.ActionConfirmed{} }, func(i int) string { return table[i].other }},
		{"RestaurantTransaction", func() any { return &notifyv1.RestaurantTransaction{} }, func(i int) string { return table[i].other }},
	}
	for i, tc := range table {
		r := parse(t, tc.room)
		for _, p := range payloads {
			for _, c := range callers {
				err := CanPublish(c, r, p.msg())
				if want := allows(p.who(i), c); (err == nil) != want || err != nil && !errors.Is(err, ErrDenied) {
					t.Errorf("CanPublish(%s, %s, %s) = %v, want allowed %v", auth.RoleName(c.Role), r, p.name, err, want)
				}
			}
		}
	}
	// The refusals say what was wrong.
	for _, tc := range []struct {
		c       auth.Claims
		room    string
		payload any
		says    string
	}{
		{admin, "guest:g1", &notifyv1.SystemAlert{}, "admin room only"},
		{admin, "admin", &notifyv1.PointsAdded{}, "only system alerts and admin notifications"},
		{guest, "restaurant:r1", &notifyv1.ActionConfirmed{}, "guest tokens may not publish in restaurant:r1"},
	} {
		if err := CanPublish(tc.c, parse(t, tc.room), tc.payload); err == nil || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("CanPublish(%s, %s, %T) = %v, want a refusal saying %q", auth.RoleName(tc.c.Role), tc.room, tc.payload, err, tc.says)
		}
	}
}

// TestDefaultRooms: the rooms of a stream that names none, per role.
func TestDefaultRooms(t *testing.T) {
	for _, tc := range []struct {
		c    auth.Claims
		want []string // nil: an error
	}{
		{admin, []string{"admin", "user:a1"}},
		{restaurant, []string{"restaurant:r1", "restaurant:r1:points", "restaurant:r1:transactions", "user:o1"}},
		{cashier, []string{"restaurant:r1", "restaurant:r1:points", "restaurant:r1:transactions", "user:c1"}},
		{guest, []string{"guest:g1", "user:g1"}},
		{service, nil},
		{auth.Claims{Subject: "no such id!", Role: notifyv1.Role_ROLE_GUEST}, nil},
		{auth.Claims{Subject: "o2", Role: notifyv1.Role_ROLE_RESTAURANT}, nil}, // no restaurant_id
		{auth.Claims{Subject: "x", Role: notifyv1.Role_ROLE_UNSPECIFIED}, nil},
	} {
		rooms, err := DefaultRooms(tc.c)
		var got []string
		for _, r := range rooms {
			got = append(got, r.String())
		}
		if tc.want == nil {
			if err == nil {
				t.Errorf("DefaultRooms(%s %q) = %v, want an error", auth.RoleName(tc.c.Role), tc.c.Subject, got)
			}
			continue
		}
		if err != nil {
			t.Errorf("DefaultRooms(%s): %v", auth.RoleName(tc.c.Role), err)
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("DefaultRooms(%s) (-want +got):\n%s", auth.RoleName(tc.c.Role), diff)
		}
		// Every default room is one the caller may subscribe to.
		for _, r := range rooms {
			if err := CanSubscribe(tc.c, r); err != nil {
				t.Errorf("%s's default room %s: %v", auth.RoleName(tc.c.Role), r, err)
			}
		}
	}
}

// TestCanViewStats: admins and services only.
func TestCanViewStats(t *testing.T) {
	for _, c := range callers {
		err := CanViewStats(c)
		if want := allows("admin service", c); (err == nil) != want || err != nil && !errors.Is(err, ErrDenied) {
			t.Errorf("CanViewStats(%s) = %v, want allowed %v", auth.RoleName(c.Role), err, want)
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
