package delivery

import (
	"slices"
	"time"

	"github.com/maxloyalty/notify/internal/store"
)

// Publication is a published event as the queue plans its deliveries.
type Publication struct {
	// EventID is the event's id.
	EventID string
	// Key is the event's inbox row key (store.NewItem.EventID): the same
	// for a publish and its retries, so that they queue one delivery.
	Key string
	// Type is the store's name of the event type ("points_added").
	Type string
	// Data is the encoded notify.v1.Event without room, offset and epoch,
	// as the broker has it.
	Data []byte
	// Rooms are the rooms it was published in, with its positions.
	Rooms []Room
	// Owners are the inbox owners (a user id, or "group:admin") whose rows
	// of this event are new, with the encoded event as their room has it.
	Owners []Owner
	// Critical sends at once on every channel the recipient has not
	// turned off for the type (a CRITICAL SystemAlert).
	Critical bool
	// Email is the address the publisher gave for the event's recipient
	// (of a personal room); "" takes the recipient's profile.
	Email string
	// Locale is the publisher's locale for the recipient; "" takes the
	// profile's.
	Locale string
	// Time is when the event was published.
	Time time.Time
	// TraceParent is the W3C traceparent of the publish's span
	// (tracing.TraceParent), "" when it was not traced: each delivery's
	// span links to it.
	TraceParent string
}

// Room is one room of a publication.
type Room struct {
	Name   string `json:"room"`
	Offset uint64 `json:"offset,string"`
	Epoch  string `json:"epoch"`
}

// Owner is an inbox owner of a publication.
type Owner struct {
	// ID is a user id, or AdminGroup.
	ID string
	// Event is the encoded notify.v1.Event as the owner's room has it.
	Event []byte
}

// AdminGroup owns the admin room's notifications; its recipients are the
// users whose profile says admin.
const AdminGroup = "group:admin"

// recipient is one user a publication's owner stands for, with what the
// planner knows of them.
type recipient struct {
	user    string
	owner   Owner
	devices []store.Device
	profile store.Profile
	rules   []store.DeliveryRule
	// emailOn: the user turned email on in their preferences.
	emailOn bool
	// publisher's address and locale, for the recipient of a personal room.
	email, locale string
}

// delivery is one planned send.
type delivery struct {
	user    string
	owner   Owner
	channel string
	// target is the device id, or the email address.
	target string
	// label names the target in timelines: the device's label and id, or
	// the masked address.
	label string
	// delay > 0 sends then, only if the user has not seen it.
	delay  time.Duration
	locale string
}

// plan decides a recipient's deliveries of a publication of type typ over
// the configured channels: each channel the policy turns on, to each of
// the recipient's targets on it, at once or after the unseen delay.
func plan(p Policy, configured []string, typ string, critical bool, r recipient) []delivery {
	var rule *store.DeliveryRule
	for i := range r.rules {
		if r.rules[i].EventType == typ {
			rule = &r.rules[i]
			break
		}
	}
	delay := time.Duration(0)
	if slices.Contains(p.DelayedTypes, typ) {
		delay = p.UnseenDelay
	}
	if rule != nil && rule.UnseenDelay != nil {
		delay = *rule.UnseenDelay
	}
	if critical {
		delay = 0
	}
	locale := r.locale
	if locale == "" {
		locale = r.profile.Locale
	}
	var out []delivery
	for _, ch := range UserChannels {
		if !slices.Contains(configured, ch) || !channelOn(p, ch, typ, critical, r, rule) {
			continue
		}
		d := delivery{user: r.user, owner: r.owner, channel: ch, delay: delay, locale: locale}
		if ch == store.ChannelEmail {
			addr := r.email
			if addr == "" {
				addr = r.profile.Email
			}
			if addr == "" {
				continue
			}
			d.target, d.label = addr, maskEmail(addr)
			out = append(out, d)
			continue
		}
		for _, dev := range r.devices {
			if dev.Channel != ch || dev.UserID != r.user {
				continue
			}
			d.target, d.label = dev.ID, deviceLabel(dev)
			out = append(out, d)
		}
	}
	return out
}

// channelOn applies a recipient's rule for the type, then the defaults:
// push channels on unless the policy turns the type off, email for the
// policy's email types and for users who turned email on; everything for
// critical events, except what the user's rule turns off.
func channelOn(p Policy, ch, typ string, critical bool, r recipient, rule *store.DeliveryRule) bool {
	if rule != nil {
		if slices.Contains(rule.Off, ch) {
			return false
		}
		if slices.Contains(rule.On, ch) {
			return true
		}
	}
	if critical {
		return true
	}
	if ch == store.ChannelEmail {
		return r.emailOn || slices.Contains(p.EmailTypes, typ)
	}
	return !slices.Contains(p.PushOff, typ)
}

// maskEmail hides most of an address's local part: "g***@example.com".
func maskEmail(addr string) string {
	at := -1
	for i := len(addr) - 1; i >= 0; i-- {
		if addr[i] == '@' {
			at = i
			break
		}
	}
	if at <= 0 {
		return "***"
	}
	return addr[:1] + "***" + addr[at:]
}

// deviceLabel names a device in timelines: its label, and its id.
func deviceLabel(d store.Device) string {
	if d.Label == "" {
		return d.ID
	}
	return d.Label + " (" + d.ID + ")"
}
