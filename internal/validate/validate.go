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
	"github.com/maxloyalty/notify/internal/room"
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
// Each event's rules are a method of checker, in events.go.
func Event(payload any, prefix string, now time.Time) error {
	c := &checker{prefix: prefix, now: now}
	switch p := payload.(type) {
	case *notifyv1.PointsAdded:
		c.pointsAdded(p)
	case *notifyv1.PointsRedeemed:
		c.pointsRedeemed(p)
	case *notifyv1.PointsExpired:
		c.pointsExpired(p)
	case *notifyv1.CardCreated:
		c.cardCreated(p)
	case *notifyv1.GuestCardUpdated:
		c.guestCardUpdated(p)
	case *notifyv1.GuestRegistered:
		c.guestRegistered(p)
	case *notifyv1.RestaurantGuestJoined:
		c.restaurantGuestJoined(p)
	case *notifyv1.RestaurantStatusChanged:
		c.restaurantStatusChanged(p)
	case *notifyv1.RestaurantTransaction:
		c.restaurantTransaction(p)
	case *notifyv1.SystemAlert:
		c.systemAlert(p)
	case *notifyv1.AdminNotification:
		c.adminNotification(p)
	case *notifyv1.ActionConfirmed:
		c.actionConfirmed(p)
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
