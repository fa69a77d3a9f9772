package validate

import (
	"errors"
	"google.golang.org/protobuf/reflect/protoregistry"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/types/known/timestamppb"

	notifyv1 "github.com/maxloyalty/notify/gen/notify/v1"
)

var now = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

func TestEvent(t *testing.T) {
	long := strings.Repeat("x", 65)
	tests := []struct {
		name    string
		payload any
		want    string // "" = valid; else the start of the field path and message
	}{
		{"points added", &notifyv1.PointsAdded{GuestId: "g1", RestaurantId: "r1", Amount: 10, NewBalance: 10}, ""},
		{"points added zero amount", &notifyv1.PointsAdded{GuestId: "g1", RestaurantId: "r1"}, "x.amount: must be positive"},
		{"points added negative balance", &notifyv1.PointsAdded{GuestId: "g1", RestaurantId: "r1", Amount: 1, NewBalance: -1}, "x.new_balance: must not be negative"},
		{"points added missing guest", &notifyv1.PointsAdded{RestaurantId: "r1", Amount: 1}, "x.guest_id: empty id"},
		{"points added long id", &notifyv1.PointsAdded{GuestId: long, RestaurantId: "r1", Amount: 1}, "x.guest_id: id longer than 64"},
		{"points added bad card id", &notifyv1.PointsAdded{GuestId: "g1", CardId: "c 1", RestaurantId: "r1", Amount: 1}, "x.card_id: id has character"},
		{"points added long description", &notifyv1.PointsAdded{GuestId: "g1", RestaurantId: "r1", Amount: 1, Description: strings.Repeat("d", MaxText+1)}, "x.description: longer than 2000"},
		{"points added future", &notifyv1.PointsAdded{GuestId: "g1", RestaurantId: "r1", Amount: 1, OccurredAt: timestamppb.New(now.Add(48 * time.Hour))}, "x.occurred_at: more than a day in the future"},
		{"points added ancient", &notifyv1.PointsAdded{GuestId: "g1", RestaurantId: "r1", Amount: 1, OccurredAt: timestamppb.New(time.Unix(0, 0))}, "x.occurred_at: before 2000"},
		{"points added invalid ts", &notifyv1.PointsAdded{GuestId: "g1", RestaurantId: "r1", Amount: 1, OccurredAt: &timestamppb.Timestamp{Nanos: -1}}, "x.occurred_at: invalid timestamp"},
		{"points redeemed", &notifyv1.PointsRedeemed{GuestId: "g1", RestaurantId: "r1", Amount: 5, RewardName: "Coffee"}, ""},
		{"points redeemed negative", &notifyv1.PointsRedeemed{GuestId: "g1", RestaurantId: "r1", Amount: -5}, "x.amount: must be positive"},
		{"points expired", &notifyv1.PointsExpired{GuestId: "g1", Amount: 50, ExpiryDate: "2026-02-19"}, ""},
		{"points expired bad date", &notifyv1.PointsExpired{GuestId: "g1", Amount: 50, ExpiryDate: "19/02/2026"}, "x.expiry_date: want a date"},
		{"points expired impossible date", &notifyv1.PointsExpired{GuestId: "g1", Amount: 50, ExpiryDate: "2026-02-30"}, "x.expiry_date"},
		{"card created", &notifyv1.CardCreated{GuestId: "g1", CardId: "c1", RestaurantId: "r1"}, ""},
		{"card created missing card", &notifyv1.CardCreated{GuestId: "g1", RestaurantId: "r1"}, "x.card_id"},
		{"card created negative points", &notifyv1.CardCreated{GuestId: "g1", CardId: "c1", RestaurantId: "r1", InitialPoints: -1}, "x.initial_points"},
		{"card updated", &notifyv1.GuestCardUpdated{GuestId: "g1", CardId: "c1", Tier: notifyv1.Tier_TIER_GOLD}, ""},
		{"card updated nothing", &notifyv1.GuestCardUpdated{GuestId: "g1", CardId: "c1"}, "x.status: status or tier must change"},
		{"card updated unknown status", &notifyv1.GuestCardUpdated{GuestId: "g1", CardId: "c1", Status: 42}, "x.status: unknown value 42"},
		{"guest registered", &notifyv1.GuestRegistered{GuestId: "g1", RestaurantId: "r1", Email: "john@example.com"}, ""},
		{"guest registered bad email", &notifyv1.GuestRegistered{GuestId: "g1", RestaurantId: "r1", Email: "john"}, "x.email: not an e-mail"},
		{"guest joined", &notifyv1.RestaurantGuestJoined{RestaurantId: "r1", GuestId: "g1"}, ""},
		{"status changed", &notifyv1.RestaurantStatusChanged{RestaurantId: "r1", Status: notifyv1.RestaurantStatus_RESTAURANT_STATUS_MAINTENANCE, EstimatedRestore: timestamppb.New(now.Add(72 * time.Hour))}, ""},
		{"status changed unset", &notifyv1.RestaurantStatusChanged{RestaurantId: "r1"}, "x.status: required"},
		{"transaction", &notifyv1.RestaurantTransaction{RestaurantId: "r1", TransactionId: "t1", Type: notifyv1.TransactionType_TRANSACTION_TYPE_PURCHASE, Amount: 150, TotalToday: 5000}, ""},
		{"transaction no type", &notifyv1.RestaurantTransaction{RestaurantId: "r1", TransactionId: "t1", Amount: 150}, "x.type: required"},
		{"transaction negative total", &notifyv1.RestaurantTransaction{RestaurantId: "r1", TransactionId: "t1", Type: 1, Amount: 1, TotalToday: -1}, "x.total_today"},
		{"system alert", &notifyv1.SystemAlert{Level: notifyv1.AlertLevel_ALERT_LEVEL_CRITICAL, Title: "Disk"}, ""},
		{"system alert no title", &notifyv1.SystemAlert{Level: notifyv1.AlertLevel_ALERT_LEVEL_CRITICAL, Title: "  "}, "x.title: required"},
		{"system alert no level", &notifyv1.SystemAlert{Title: "Disk"}, "x.level: required"},
		{"admin notification", &notifyv1.AdminNotification{Type: notifyv1.AdminNotificationType_ADMIN_NOTIFICATION_TYPE_FRAUD_DETECTED, Priority: notifyv1.Priority_PRIORITY_HIGH, Title: "Fraud"}, ""},
		{"admin notification no priority", &notifyv1.AdminNotification{Type: 1, Title: "Fraud"}, "x.priority: required"},
		{"action confirmed", &notifyv1.ActionConfirmed{ActionId: "a1", Action: notifyv1.ActionType_ACTION_TYPE_POINTS_REDEEM, GuestId: "g1", RestaurantId: "r1", Amount: 500}, ""},
		{"action confirmed negative", &notifyv1.ActionConfirmed{ActionId: "a1", Action: 1, GuestId: "g1", RestaurantId: "r1", Amount: -1}, "x.amount"},
		{"not an event", &notifyv1.Event{}, "x: not an event"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Event(tt.payload, "x", now)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Event() = %v, want valid", err)
				}
				return
			}
			if err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "invalid argument: "+tt.want) {
				t.Fatalf("Event() = %v, want %q", err, tt.want)
			}
		})
	}
}

// TestQuotesWholeCharacters: a value quoted in an error is cut between
// characters, never inside one, and a character outside an id's alphabet
// is quoted whole.
func TestQuotesWholeCharacters(t *testing.T) {
	for _, tc := range []struct {
		name, want string
		payload    any
	}{
		{"date", `want a date as YYYY-MM-DD, got "` + strings.Repeat("ü", 16) + `..."`,
			&notifyv1.PointsExpired{GuestId: "g1", Amount: 1, ExpiryDate: strings.Repeat("ü", 40)}},
		{"date cut at an odd byte", `got "x` + strings.Repeat("ü", 15) + `..."`,
			&notifyv1.PointsExpired{GuestId: "g1", Amount: 1, ExpiryDate: "x" + strings.Repeat("ü", 40)}},
		{"id", `x.guest_id: id has character 'ü' outside`,
			&notifyv1.PointsAdded{GuestId: "gü", RestaurantId: "r1", Amount: 1}},
	} {
		err := Event(tc.payload, "x", now)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !utf8.ValidString(err.Error()) {
			t.Errorf("%s: %v, want valid UTF-8 containing %s", tc.name, err, tc.want)
		}
	}
}

// TestEveryEventHasRules: each message of PublishRequest's payload oneof
// has rules in Event, so that a message added to the contract cannot skip
// validation.
func TestEveryEventHasRules(t *testing.T) {
	oneof := (&notifyv1.PublishRequest{}).ProtoReflect().Descriptor().Oneofs().ByName("payload")
	if oneof == nil || oneof.Fields().Len() == 0 {
		t.Fatal("PublishRequest has no payload oneof")
	}
	for i := range oneof.Fields().Len() {
		f := oneof.Fields().Get(i)
		typ, err := protoregistry.GlobalTypes.FindMessageByName(f.Message().FullName())
		if err != nil {
			t.Fatal(err)
		}
		if err := Event(typ.New().Interface(), string(f.Name()), now); err != nil && strings.Contains(err.Error(), "not an event of the contract") {
			t.Errorf("%s has no rules: %v", f.Message().FullName(), err)
		}
	}
}
