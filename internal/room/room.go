package room

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// MaxIDLen is the longest id a room name may carry.
const MaxIDLen = 64

// ErrInvalid is wrapped by every error Parse returns.
var ErrInvalid = errors.New("invalid room")

// Kind is the family a room belongs to.
type Kind uint8

// The kinds of room.
const (
	KindRestaurant             Kind = iota + 1 // restaurant:{id}
	KindRestaurantPoints                       // restaurant:{id}:points
	KindRestaurantTransactions                 // restaurant:{id}:transactions
	KindGuest                                  // guest:{id}
	KindUser                                   // user:{id}
	KindAdmin                                  // admin
)

var kindNames = [...]string{
	KindRestaurant:             "restaurant",
	KindRestaurantPoints:       "restaurant_points",
	KindRestaurantTransactions: "restaurant_transactions",
	KindGuest:                  "guest",
	KindUser:                   "user",
	KindAdmin:                  "admin",
}

// String names the kind, for metrics and configuration.
func (k Kind) String() string {
	if int(k) < len(kindNames) && kindNames[k] != "" {
		return kindNames[k]
	}
	return "unknown"
}

// KindByName returns the kind String names.
func KindByName(name string) (Kind, bool) {
	for k, n := range kindNames {
		if n != "" && n == name {
			return Kind(k), true
		}
	}
	return 0, false
}

// Room is a parsed, valid room name.
type Room struct {
	kind Kind
	id   string
	name string
}

// Kind returns the room's kind.
func (r Room) Kind() Kind { return r.kind }

// ID returns the restaurant, guest or user id of the room; empty for admin.
func (r Room) ID() string { return r.id }

// String returns the canonical room name.
func (r Room) String() string { return r.name }

// IsZero reports whether r is the zero Room.
func (r Room) IsZero() bool { return r.kind == 0 }

// Admin is the administrators' room.
var Admin = Room{kind: KindAdmin, name: "admin"}

// Restaurant returns restaurant:{id}. The id must be valid (see ValidID).
func Restaurant(id string) Room { return mk(KindRestaurant, id, "restaurant:"+id) }

// RestaurantPoints returns restaurant:{id}:points.
func RestaurantPoints(id string) Room {
	return mk(KindRestaurantPoints, id, "restaurant:"+id+":points")
}

// RestaurantTransactions returns restaurant:{id}:transactions.
func RestaurantTransactions(id string) Room {
	return mk(KindRestaurantTransactions, id, "restaurant:"+id+":transactions")
}

// Guest returns guest:{id}.
func Guest(id string) Room { return mk(KindGuest, id, "guest:"+id) }

// User returns user:{id}.
func User(id string) Room { return mk(KindUser, id, "user:"+id) }

func mk(k Kind, id, name string) Room { return Room{kind: k, id: id, name: name} }

// Parse checks a room name against the grammar:
//
//	admin
//	restaurant:{id}
//	restaurant:{id}:points
//	restaurant:{id}:transactions
//	guest:{id}
//	user:{id}
//
// where {id} is 1 to MaxIDLen characters of [A-Za-z0-9_-].
func Parse(s string) (Room, error) {
	if s == "admin" {
		return Admin, nil
	}
	if len(s) > MaxIDLen+len("restaurant::transactions") {
		return Room{}, fmt.Errorf("%w: name longer than %d characters", ErrInvalid, MaxIDLen+len("restaurant::transactions"))
	}
	prefix, rest, ok := strings.Cut(s, ":")
	if !ok {
		return Room{}, fmt.Errorf("%w: %q is not one of admin, restaurant:{id}, restaurant:{id}:points, restaurant:{id}:transactions, guest:{id}, user:{id}", ErrInvalid, s)
	}
	var r Room
	switch prefix {
	case "guest":
		r = Guest(rest)
	case "user":
		r = User(rest)
	case "restaurant":
		id, sub, hasSub := strings.Cut(rest, ":")
		switch {
		case !hasSub:
			r = Restaurant(id)
		case sub == "points":
			r = RestaurantPoints(id)
		case sub == "transactions":
			r = RestaurantTransactions(id)
		default:
			return Room{}, fmt.Errorf("%w: unknown restaurant room %q (want points or transactions)", ErrInvalid, sub)
		}
	default:
		return Room{}, fmt.Errorf("%w: unknown room prefix %q", ErrInvalid, prefix)
	}
	if err := ValidID(r.id); err != nil {
		return Room{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return r, nil
}

// ValidID checks an id used in a room name.
func ValidID(id string) error {
	if id == "" {
		return errors.New("empty id")
	}
	if len(id) > MaxIDLen {
		return fmt.Errorf("id longer than %d characters", MaxIDLen)
	}
	for i, c := range id {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			// The whole character, quoted ('ü'); a byte that is not
			// UTF-8 as itself ("\xff").
			if c == utf8.RuneError {
				if _, size := utf8.DecodeRuneInString(id[i:]); size == 1 {
					return fmt.Errorf("id has byte %q, not UTF-8, outside [A-Za-z0-9_-]", id[i:i+1])
				}
			}
			return fmt.Errorf("id has character %q outside [A-Za-z0-9_-]", c)
		}
	}
	return nil
}
