package access

import (
	"errors"
	"testing"

	notifyv1 "github.com/maxloyalty/notify/gen/notify/v1"
	"github.com/maxloyalty/notify/internal/auth"
)

func TestDeliveryUser(t *testing.T) {
	guest := auth.Claims{Subject: "g1", Role: notifyv1.Role_ROLE_GUEST}
	admin := auth.Claims{Subject: "a1", Role: notifyv1.Role_ROLE_ADMIN}
	service := auth.Claims{Subject: "backend", Role: notifyv1.Role_ROLE_SERVICE}
	odd := auth.Claims{Subject: "not valid!", Role: notifyv1.Role_ROLE_GUEST}
	for _, tc := range []struct {
		name   string
		c      auth.Claims
		userID string
		want   string // "" denied
	}{
		{"guest, own", guest, "", "g1"},
		{"guest, own by name", guest, "g1", "g1"},
		{"guest, another", guest, "g2", ""},
		{"admin, own", admin, "", "a1"},
		{"admin, another", admin, "g1", ""},
		{"service, a user", service, "g1", "g1"},
		{"service, itself", service, "", "backend"},
		{"subject not an id", odd, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := DeliveryUser(tc.c, tc.userID)
			if tc.want == "" {
				if !errors.Is(err, ErrDenied) {
					t.Fatalf("DeliveryUser = %q, %v; want ErrDenied", got, err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("DeliveryUser = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

func TestDeliveryReader(t *testing.T) {
	guest := auth.Claims{Subject: "g1", Role: notifyv1.Role_ROLE_GUEST}
	cashier := auth.Claims{Subject: "c1", Role: notifyv1.Role_ROLE_CASHIER, RestaurantID: "r1"}
	admin := auth.Claims{Subject: "a1", Role: notifyv1.Role_ROLE_ADMIN}
	service := auth.Claims{Subject: "backend", Role: notifyv1.Role_ROLE_SERVICE}
	for _, tc := range []struct {
		name   string
		c      auth.Claims
		userID string
		all    bool
		want   string
		denied bool
	}{
		{"guest, own", guest, "", false, "g1", false},
		{"guest, another", guest, "g2", false, "", true},
		{"guest, all", guest, "", true, "", true},
		{"cashier, another", cashier, "g1", false, "", true},
		{"admin, own", admin, "", false, "a1", false},
		{"admin, a guest", admin, "g1", false, "g1", false},
		{"admin, all", admin, "", true, "", false},
		{"service, a guest", service, "g1", false, "g1", false},
		{"service, all", service, "", true, "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := DeliveryReader(tc.c, tc.userID, tc.all)
			if tc.denied {
				if !errors.Is(err, ErrDenied) {
					t.Fatalf("DeliveryReader = %q, %v; want ErrDenied", got, err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("DeliveryReader = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}
