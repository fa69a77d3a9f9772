package service

import (
	"fmt"
	"net/url"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"

	notifyv1 "github.com/maxloyalty/notify/gen/notify/v1"
	"github.com/maxloyalty/notify/internal/room"
	"github.com/maxloyalty/notify/internal/store"
)

// inboxMeta is what an event's inbox rows carry besides the event: from
// the publisher's InboxOptions, else derived from the event.
type inboxMeta struct {
	priority notifyv1.Priority
	category string
	tags     []string
	expires  time.Time // zero: never
	action   []byte    // an encoded NotificationAction; nil: none
}

// Bounds of a publisher's inbox options.
const (
	maxTags        = 10
	maxLabelRunes  = 32
	maxActionLabel = 64
	maxActionURL   = 2048
	// maxExpiry bounds how far ahead a notification may expire.
	maxExpiry = 10 * 366 * 24 * time.Hour
)

// categoryOf is the category of an event type when the publisher gives
// none. Migration 0003 of the store gives the rows it finds the same.
var categoryOf = map[notifyv1.EventType]string{
	notifyv1.EventType_EVENT_TYPE_POINTS_ADDED:              "points",
	notifyv1.EventType_EVENT_TYPE_POINTS_REDEEMED:           "points",
	notifyv1.EventType_EVENT_TYPE_POINTS_EXPIRED:            "points",
	notifyv1.EventType_EVENT_TYPE_CARD_CREATED:              "card",
	notifyv1.EventType_EVENT_TYPE_GUEST_CARD_UPDATED:        "card",
	notifyv1.EventType_EVENT_TYPE_GUEST_REGISTERED:          "guests",
	notifyv1.EventType_EVENT_TYPE_RESTAURANT_GUEST_JOINED:   "guests",
	notifyv1.EventType_EVENT_TYPE_RESTAURANT_STATUS_CHANGED: "restaurant",
	notifyv1.EventType_EVENT_TYPE_RESTAURANT_TRANSACTION:    "transactions",
	notifyv1.EventType_EVENT_TYPE_SYSTEM_ALERT:              "alerts",
	notifyv1.EventType_EVENT_TYPE_ADMIN_NOTIFICATION:        "alerts",
	notifyv1.EventType_EVENT_TYPE_ACTION_CONFIRMED:          "actions",
}

// priorityOf is an event's own priority: an admin notification's, or a
// system alert's level; medium for the rest.
func priorityOf(payload proto.Message) notifyv1.Priority {
	switch p := payload.(type) {
	case *notifyv1.AdminNotification:
		if known(notifyv1.Priority_name, int32(p.Priority)) {
			return p.Priority
		}
	case *notifyv1.SystemAlert:
		switch p.Level {
		case notifyv1.AlertLevel_ALERT_LEVEL_INFO:
			return notifyv1.Priority_PRIORITY_LOW
		case notifyv1.AlertLevel_ALERT_LEVEL_ERROR:
			return notifyv1.Priority_PRIORITY_HIGH
		case notifyv1.AlertLevel_ALERT_LEVEL_CRITICAL:
			return notifyv1.Priority_PRIORITY_CRITICAL
		}
	}
	return notifyv1.Priority_PRIORITY_MEDIUM
}

// known reports whether v is a named value of an enum other than its
// zero (UNSPECIFIED) value.
func known(names map[int32]string, v int32) bool { return v != 0 && names[v] != "" }

// checkLabel checks a category or tag: 1 to 32 characters of [a-z0-9_-],
// starting with a letter or digit.
func checkLabel(s string) error {
	if s == "" || len(s) > maxLabelRunes {
		return fmt.Errorf("%q must be 1 to %d characters", s, maxLabelRunes)
	}
	for i, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
		case (r == '_' || r == '-') && i > 0:
		default:
			return fmt.Errorf("%q may hold only a-z, 0-9, _ and - (not first)", s)
		}
	}
	return nil
}

// inboxMetaOf validates a publish request's inbox options and completes
// them from the event.
func inboxMetaOf(o *notifyv1.InboxOptions, payload proto.Message, typ notifyv1.EventType, now time.Time) (inboxMeta, error) {
	m := inboxMeta{priority: priorityOf(payload), category: categoryOf[typ]}
	if o == nil {
		return m, nil
	}
	if o.Priority != notifyv1.Priority_PRIORITY_UNSPECIFIED {
		if !known(notifyv1.Priority_name, int32(o.Priority)) {
			return m, invalid("inbox.priority: %d is not a known priority", o.Priority)
		}
		m.priority = o.Priority
	}
	if o.Category != "" {
		if err := checkLabel(o.Category); err != nil {
			return m, invalid("inbox.category: %v", err)
		}
		m.category = o.Category
	}
	if len(o.Tags) > maxTags {
		return m, invalid("inbox.tags: %d tags, at most %d", len(o.Tags), maxTags)
	}
	for i, t := range o.Tags {
		if err := checkLabel(t); err != nil {
			return m, invalid("inbox.tags[%d]: %v", i, err)
		}
		if !containsString(m.tags, t) {
			m.tags = append(m.tags, t)
		}
	}
	switch {
	case o.ExpireTime != nil && o.Ttl != nil:
		return m, invalid("inbox: give expire_time or ttl, not both")
	case o.ExpireTime != nil:
		if err := o.ExpireTime.CheckValid(); err != nil {
			return m, invalid("inbox.expire_time: %v", err)
		}
		m.expires = o.ExpireTime.AsTime()
	case o.Ttl != nil:
		if err := o.Ttl.CheckValid(); err != nil {
			return m, invalid("inbox.ttl: %v", err)
		}
		if d := o.Ttl.AsDuration(); d <= 0 || d > maxExpiry {
			return m, invalid("inbox.ttl: %v is not between 0 and %v", d, maxExpiry)
		}
		m.expires = now.Add(o.Ttl.AsDuration())
	}
	if !m.expires.IsZero() && (!m.expires.After(now) || m.expires.Sub(now) > maxExpiry) {
		return m, invalid("inbox.expire_time: %s is not in the next %v", m.expires.UTC().Format(time.RFC3339), maxExpiry)
	}
	if o.Action != nil {
		if err := checkAction(o.Action); err != nil {
			return m, err
		}
		b, err := proto.Marshal(o.Action)
		if err != nil {
			return m, invalid("inbox.action: %v", err)
		}
		m.action = b
	}
	return m, nil
}

func containsString(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// refusedSchemes are URL schemes that run code or read local data where a
// client opens them.
var refusedSchemes = map[string]bool{"javascript": true, "data": true, "vbscript": true, "file": true, "blob": true}

// checkAction validates a notification's action.
func checkAction(a *notifyv1.NotificationAction) error {
	if n := utf8.RuneCountInString(a.Label); n == 0 || n > maxActionLabel || !utf8.ValidString(a.Label) {
		return invalid("inbox.action.label: 1 to %d characters of valid UTF-8 are required", maxActionLabel)
	}
	for _, r := range a.Label {
		if unicode.IsControl(r) {
			return invalid("inbox.action.label: control character %U", r)
		}
	}
	switch t := a.Target.(type) {
	case *notifyv1.NotificationAction_Url:
		return checkActionURL(t.Url)
	case *notifyv1.NotificationAction_Confirm:
		c := t.Confirm
		switch {
		case c == nil:
			return invalid("inbox.action.confirm: required")
		case room.ValidID(c.ActionId) != nil:
			return invalid("inbox.action.confirm.action_id: %v", room.ValidID(c.ActionId))
		case !known(notifyv1.ActionType_name, int32(c.Action)):
			return invalid("inbox.action.confirm.action: a known action type is required")
		case c.Amount < 0:
			return invalid("inbox.action.confirm.amount: must not be negative")
		case room.ValidID(c.RestaurantId) != nil:
			return invalid("inbox.action.confirm.restaurant_id: %v", room.ValidID(c.RestaurantId))
		}
		return nil
	}
	return invalid("inbox.action: a url or a confirm is required")
}

// checkActionURL accepts an absolute http(s) URL with a host, an app path
// ("/cards/1", not "//host"), or a deep link of an app's own scheme.
func checkActionURL(s string) error {
	switch {
	case s == "" || len(s) > maxActionURL:
		return invalid("inbox.action.url: 1 to %d bytes are required", maxActionURL)
	case strings.ContainsFunc(s, func(r rune) bool { return unicode.IsControl(r) || unicode.IsSpace(r) || r == '\\' }):
		return invalid("inbox.action.url: no spaces, control characters or backslashes")
	case strings.HasPrefix(s, "//"):
		return invalid("inbox.action.url: %q has no scheme", s)
	case strings.HasPrefix(s, "/"):
		if _, err := url.Parse(s); err != nil {
			return invalid("inbox.action.url: %v", err)
		}
		return nil
	}
	u, err := url.Parse(s)
	if err != nil {
		return invalid("inbox.action.url: %v", err)
	}
	scheme := strings.ToLower(u.Scheme)
	switch {
	case scheme == "":
		return invalid("inbox.action.url: %q is neither an absolute URL nor a path starting with /", s)
	case refusedSchemes[scheme]:
		return invalid("inbox.action.url: the %s: scheme is refused", scheme)
	case (scheme == "http" || scheme == "https") && u.Host == "":
		return invalid("inbox.action.url: %q has no host", s)
	}
	return nil
}

// storePriority is the store's priority of p: its enum value, 0 to 4.
func storePriority(p notifyv1.Priority) int { return int(p) }

// apply copies m onto a store item.
func (m inboxMeta) apply(it *store.NewItem) {
	it.Priority = storePriority(m.priority)
	it.Category = m.category
	it.Tags = m.tags
	it.ExpiresAt = m.expires
	it.Action = m.action
}

// fingerprintPart is the publish fingerprint's part for inbox options:
// empty when none were given, so that a request without them keeps the
// fingerprint it had before options existed.
func fingerprintPart(o *notifyv1.InboxOptions) (string, error) {
	if o == nil {
		return "", nil
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(o)
	return string(b), err
}
