package validate

import (
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/timestamppb"

	notifyv1 "github.com/maxloyalty/notify/gen/notify/v1"
	"github.com/maxloyalty/notify/server/room"
)

// ErrInvalid is wrapped by every validation error.
var ErrInvalid = errors.New("invalid argument")

// Bounds of string fields, in bytes.
const (
	MaxName    = 200       // names and titles
	MaxText    = 2000      // descriptions, messages, reasons
	MaxEmail   = 254       // e-mail addresses
	MaxQRCode  = 64 << 10  // a QR code data URL
	earliestTS = 946684800 // 2000-01-01T00:00:00Z: no event of this platform is older
	maxFuture  = 24 * time.Hour
)

// Event checks a payload of the contract (one of the twelve event
// messages); prefix is the path of the payload field, e.g. "points_added".
func Event(payload any, prefix string, now time.Time) error {
	c := &checker{prefix: prefix, now: now}
	switch p := payload.(type) {
	case *notifyv1.PointsAdded:
		c.id("guest_id", p.GuestId, true)
		c.id("card_id", p.CardId, false)
		c.id("restaurant_id", p.RestaurantId, true)
		c.id("transaction_id", p.TransactionId, false)
		c.positive("amount", p.Amount)
		c.nonNegative("new_balance", p.NewBalance)
		c.text("restaurant_name", p.RestaurantName, MaxName)
		c.text("description", p.Description, MaxText)
		c.time("occurred_at", p.OccurredAt)
	case *notifyv1.PointsRedeemed:
		c.id("guest_id", p.GuestId, true)
		c.id("card_id", p.CardId, false)
		c.id("restaurant_id", p.RestaurantId, true)
		c.id("transaction_id", p.TransactionId, false)
		c.positive("amount", p.Amount)
		c.nonNegative("new_balance", p.NewBalance)
		c.text("reward_name", p.RewardName, MaxName)
		c.time("occurred_at", p.OccurredAt)
	case *notifyv1.PointsExpired:
		c.id("guest_id", p.GuestId, true)
		c.id("card_id", p.CardId, false)
		c.id("restaurant_id", p.RestaurantId, false)
		c.positive("amount", p.Amount)
		c.nonNegative("new_balance", p.NewBalance)
		c.date("expiry_date", p.ExpiryDate)
		c.text("reason", p.Reason, MaxText)
		c.time("occurred_at", p.OccurredAt)
	case *notifyv1.CardCreated:
		c.id("guest_id", p.GuestId, true)
		c.id("card_id", p.CardId, true)
		c.id("restaurant_id", p.RestaurantId, true)
		c.text("restaurant_name", p.RestaurantName, MaxName)
		c.text("qr_code", p.QrCode, MaxQRCode)
		c.nonNegative("initial_points", p.InitialPoints)
		c.time("occurred_at", p.OccurredAt)
	case *notifyv1.GuestCardUpdated:
		c.id("guest_id", p.GuestId, true)
		c.id("card_id", p.CardId, true)
		c.id("restaurant_id", p.RestaurantId, false)
		c.enum("status", p.Status, false)
		c.enum("tier", p.Tier, false)
		if p.Status == 0 && p.Tier == 0 {
			c.fail("status", "status or tier must change")
		}
		c.time("occurred_at", p.OccurredAt)
	case *notifyv1.GuestRegistered:
		c.id("guest_id", p.GuestId, true)
		c.id("restaurant_id", p.RestaurantId, true)
		c.text("guest_name", p.GuestName, MaxName)
		c.email("email", p.Email)
		c.time("occurred_at", p.OccurredAt)
	case *notifyv1.RestaurantGuestJoined:
		c.id("restaurant_id", p.RestaurantId, true)
		c.id("guest_id", p.GuestId, true)
		c.id("card_id", p.CardId, false)
		c.text("guest_name", p.GuestName, MaxName)
		c.time("occurred_at", p.OccurredAt)
	case *notifyv1.RestaurantStatusChanged:
		c.id("restaurant_id", p.RestaurantId, true)
		c.enum("status", p.Status, true)
		c.text("reason", p.Reason, MaxText)
		c.time("estimated_restore", p.EstimatedRestore, allowFuture)
		c.time("occurred_at", p.OccurredAt)
	case *notifyv1.RestaurantTransaction:
		c.id("restaurant_id", p.RestaurantId, true)
		c.id("transaction_id", p.TransactionId, true)
		c.id("guest_id", p.GuestId, false)
		c.text("guest_name", p.GuestName, MaxName)
		c.enum("type", p.Type, true)
		c.positive("amount", p.Amount)
		c.nonNegative("total_today", p.TotalToday)
		c.time("occurred_at", p.OccurredAt)
	case *notifyv1.SystemAlert:
		c.enum("level", p.Level, true)
		c.enum("source", p.Source, false)
		c.required("title", p.Title)
		c.text("title", p.Title, MaxName)
		c.text("message", p.Message, MaxText)
		c.time("occurred_at", p.OccurredAt)
	case *notifyv1.AdminNotification:
		c.id("notification_id", p.NotificationId, false)
		c.enum("type", p.Type, true)
		c.enum("priority", p.Priority, true)
		c.required("title", p.Title)
		c.text("title", p.Title, MaxName)
		c.text("message", p.Message, MaxText)
		c.time("occurred_at", p.OccurredAt)
	case *notifyv1.ActionConfirmed:
		c.id("action_id", p.ActionId, true)
		c.enum("action", p.Action, true)
		c.nonNegative("amount", p.Amount)
		c.id("guest_id", p.GuestId, true)
		c.id("restaurant_id", p.RestaurantId, true)
		c.time("occurred_at", p.OccurredAt)
	default:
		return fmt.Errorf("%w: %s: not an event of the contract", ErrInvalid, prefix)
	}
	return c.err
}

// checker keeps the first failure, with its field path.
type checker struct {
	prefix string
	now    time.Time
	err    error
}

func (c *checker) fail(field, format string, args ...any) {
	if c.err == nil {
		c.err = fmt.Errorf("%w: %s.%s: %s", ErrInvalid, c.prefix, field, fmt.Sprintf(format, args...))
	}
}

func (c *checker) id(field, v string, required bool) {
	if v == "" && !required {
		return
	}
	if err := room.ValidID(v); err != nil {
		c.fail(field, "%v", err)
	}
}

func (c *checker) required(field, v string) {
	if strings.TrimSpace(v) == "" {
		c.fail(field, "required")
	}
}

func (c *checker) text(field, v string, max int) {
	if len(v) > max {
		c.fail(field, "longer than %d bytes", max)
	}
}

func (c *checker) positive(field string, v int64) {
	if v <= 0 {
		c.fail(field, "must be positive, got %d", v)
	}
}

func (c *checker) nonNegative(field string, v int64) {
	if v < 0 {
		c.fail(field, "must not be negative, got %d", v)
	}
}

func (c *checker) email(field, v string) {
	if v == "" {
		return
	}
	local, domain, ok := strings.Cut(v, "@")
	if !ok || local == "" || domain == "" || len(v) > MaxEmail || strings.ContainsAny(v, " \t\r\n<>") {
		c.fail(field, "not an e-mail address")
	}
}

func (c *checker) date(field, v string) {
	if v == "" {
		return
	}
	if _, err := time.Parse(time.DateOnly, v); err != nil {
		c.fail(field, "want a date as YYYY-MM-DD, got %q", truncate(v))
	}
}

// enum checks an enum value is known, and set when required.
func (c *checker) enum(field string, v protoreflect.Enum, required bool) {
	n := v.Number()
	if n == 0 {
		if required {
			c.fail(field, "required (not UNSPECIFIED)")
		}
		return
	}
	if v.Descriptor().Values().ByNumber(n) == nil {
		c.fail(field, "unknown value %d", n)
	}
}

type timeRule int

const allowFuture timeRule = 1

// time checks a timestamp, when set, is valid and sane: not before 2000 and,
// unless allowFuture, not more than a day ahead of the server's clock.
func (c *checker) time(field string, ts *timestamppb.Timestamp, rules ...timeRule) {
	if ts == nil {
		return
	}
	if err := ts.CheckValid(); err != nil {
		c.fail(field, "invalid timestamp")
		return
	}
	if ts.Seconds < earliestTS {
		c.fail(field, "before 2000-01-01")
		return
	}
	if len(rules) == 0 && ts.AsTime().After(c.now.Add(maxFuture)) {
		c.fail(field, "more than a day in the future")
	}
}

// truncate shortens a value quoted in an error to its first 32 bytes, cut
// before a character that would not fit whole.
func truncate(s string) string {
	if len(s) <= 32 {
		return s
	}
	n := 32
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "..."
}
