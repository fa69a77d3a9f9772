package room

import (
	"errors"
	"strings"
	"testing"

	notifyv1 "github.com/maxloyalty/notify/gen/notify/v1"
)

func TestParse(t *testing.T) {
	long := strings.Repeat("a", MaxIDLen)
	tests := []struct {
		in   string
		kind Kind
		id   string
		ok   bool
	}{
		{"admin", KindAdmin, "", true},
		{"restaurant:r1", KindRestaurant, "r1", true},
		{"restaurant:r1:points", KindRestaurantPoints, "r1", true},
		{"restaurant:r1:transactions", KindRestaurantTransactions, "r1", true},
		{"guest:6f1c-9a_b", KindGuest, "6f1c-9a_b", true},
		{"user:u1", KindUser, "u1", true},
		{"guest:" + long, KindGuest, long, true},
		{"guest:" + long + "a", 0, "", false},
		{"restaurant:" + long + ":transactions", KindRestaurantTransactions, long, true},
		{"", 0, "", false},
		{"admin:x", 0, "", false},
		{"Admin", 0, "", false},
		{"guest:", 0, "", false},
		{"guest:a:b", 0, "", false},
		{"guest:a b", 0, "", false},
		{"guest:é", 0, "", false},
		{"restaurant:r1:foo", 0, "", false},
		{"restaurant::points", 0, "", false},
		{"restaurant:r1:points:x", 0, "", false},
		{"room:1", 0, "", false},
		{"bogus", 0, "", false},
		{strings.Repeat("x", 10000), 0, "", false},
	}
	for _, tt := range tests {
		r, err := Parse(tt.in)
		if (err == nil) != tt.ok {
			t.Errorf("Parse(%.40q) error = %v, want ok=%v", tt.in, err, tt.ok)
			continue
		}
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("Parse(%.40q) error %v does not wrap ErrInvalid", tt.in, err)
			}
			continue
		}
		if r.Kind() != tt.kind || r.ID() != tt.id || r.String() != tt.in {
			t.Errorf("Parse(%q) = {%v %q %q}, want {%v %q %q}", tt.in, r.Kind(), r.ID(), r.String(), tt.kind, tt.id, tt.in)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"admin", "guest:g1", "restaurant:r1:points", "restaurant:r1:transactions", "user:", "guest:a:b", "\x00", "restaurant:" + strings.Repeat("9", 70)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := Parse(s)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v does not wrap ErrInvalid", err)
			}
			return
		}
		// A parsed room is canonical and round-trips.
		if r.String() != s {
			t.Fatalf("Parse(%q).String() = %q", s, r.String())
		}
		again, err := Parse(r.String())
		if err != nil || again != r {
			t.Fatalf("round trip of %q: %v, %v", s, again, err)
		}
		if r.Kind() != KindAdmin && ValidID(r.ID()) != nil {
			t.Fatalf("Parse(%q) accepted id %q", s, r.ID())
		}
	})
}

func TestRoute(t *testing.T) {
	tests := []struct {
		name    string
		payload any
		want    []string
		wantErr string
	}{
		{"points added", &notifyv1.PointsAdded{GuestId: "g1", RestaurantId: "r1"}, []string{"restaurant:r1:points", "guest:g1"}, ""},
		{"points redeemed", &notifyv1.PointsRedeemed{GuestId: "g1", RestaurantId: "r1"}, []string{"restaurant:r1:points", "guest:g1"}, ""},
		{"points expired", &notifyv1.PointsExpired{GuestId: "g1"}, []string{"guest:g1"}, ""},
		{"points expired with restaurant", &notifyv1.PointsExpired{GuestId: "g1", RestaurantId: "r1"}, []string{"guest:g1", "restaurant:r1:points"}, ""},
		{"card created", &notifyv1.CardCreated{GuestId: "g1", RestaurantId: "r1"}, []string{"guest:g1", "restaurant:r1"}, ""},
		{"guest registered", &notifyv1.GuestRegistered{GuestId: "g1", RestaurantId: "r1"}, []string{"guest:g1", "restaurant:r1"}, ""},
		{"card updated", &notifyv1.GuestCardUpdated{GuestId: "g1"}, []string{"guest:g1"}, ""},
		{"card updated with restaurant", &notifyv1.GuestCardUpdated{GuestId: "g1", RestaurantId: "r1"}, []string{"guest:g1", "restaurant:r1"}, ""},
		{"guest joined", &notifyv1.RestaurantGuestJoined{RestaurantId: "r1"}, []string{"restaurant:r1"}, ""},
		{"status changed", &notifyv1.RestaurantStatusChanged{RestaurantId: "r1"}, []string{"restaurant:r1"}, ""},
		{"transaction", &notifyv1.RestaurantTransaction{RestaurantId: "r1"}, []string{"restaurant:r1:transactions"}, ""},
		{"action confirmed", &notifyv1.ActionConfirmed{RestaurantId: "r1"}, []string{"restaurant:r1"}, ""},
		{"system alert", &notifyv1.SystemAlert{}, []string{"admin"}, ""},
		{"admin notification", &notifyv1.AdminNotification{}, []string{"admin"}, ""},
		{"missing guest id", &notifyv1.PointsAdded{RestaurantId: "r1"}, nil, "guest_id: empty id"},
		{"bad restaurant id", &notifyv1.RestaurantTransaction{RestaurantId: "r 1"}, nil, "restaurant_id: id has character"},
		{"unknown payload", "x", nil, "no route"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rooms, err := Route(tt.payload)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.Is(err, ErrInvalid) {
					t.Fatalf("Route() error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, r := range rooms {
				got = append(got, r.String())
			}
			if strings.Join(got, " ") != strings.Join(tt.want, " ") {
				t.Fatalf("Route() = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestValidIDQuotesWholeCharacters: the character outside an id's
// alphabet is quoted whole ('ü', not the first byte of its encoding as
// 'Ã'); a byte that is not UTF-8 is quoted as a byte.
func TestValidIDQuotesWholeCharacters(t *testing.T) {
	for _, tc := range []struct{ id, want string }{
		{"gü", `id has character 'ü' outside`},
		{"g€1", `id has character '€' outside`},
		{"g😀", `id has character '😀' outside`},
		{"g\u202e1", `id has character '\u202e' outside`},
		{"g\xff", `id has byte "\xff", not UTF-8, outside`},
		{"g 1", `id has character ' ' outside`},
	} {
		err := ValidID(tc.id)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ValidID(%q) = %v, want %s", tc.id, err, tc.want)
		}
		if _, err := Parse("guest:" + tc.id); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Parse(guest:%q) = %v, want %s", tc.id, err, tc.want)
		}
	}
}
