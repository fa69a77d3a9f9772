package broker

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"time"
)

// Errors returned by brokers.
var (
	// ErrUnavailable means the broker cannot be reached; nothing was published.
	ErrUnavailable = errors.New("broker unavailable")
	// ErrClosed means the broker was closed.
	ErrClosed = errors.New("broker closed")
	// ErrKeyReused means the publication's idempotency key was used within
	// the key window for a publication with a different fingerprint: a
	// different request, not a retry. Nothing was published.
	ErrKeyReused = errors.New("idempotency key reused for a different request")
)

// Message is one event in one room: the encoded event without its room,
// offset and epoch, which travel beside it.
type Message struct {
	Room   string
	Offset uint64
	Epoch  string
	// Data is the encoded notify.v1.Event with room, offset and epoch unset.
	// It is shared and must not be modified.
	Data []byte
	// Time is when the broker accepted the message.
	Time time.Time
}

// Position is a place in a room's history.
type Position struct {
	Offset uint64
	Epoch  string
}

// Publication is what a publisher hands to the broker.
type Publication struct {
	// EventID is the server-assigned id of the event.
	EventID string
	// Rooms to publish in; each gets its own offset.
	Rooms []string
	// Data is the encoded event without room, offset and epoch.
	Data []byte
	// IdempotencyKey, when set, makes a repeat within the key window return
	// the first result instead of publishing again.
	IdempotencyKey string
	// Fingerprint identifies the request behind the publication (a hash of
	// its canonical form), kept with the idempotency key: a repeat of the
	// key whose fingerprint differs fails with ErrKeyReused. Empty: not
	// compared (a repeat is a duplicate whatever its request).
	Fingerprint string
}

// Result says where a publication landed.
type Result struct {
	EventID string
	// Positions, one per room, in the order of Publication.Rooms.
	Positions []RoomPosition
	// Duplicate is true when the idempotency key was seen before.
	Duplicate bool
}

// RoomPosition is a room and a position in it.
type RoomPosition struct {
	Room string
	Position
}

// History is a window of a room's history.
type History struct {
	// Messages after the requested offset, oldest first. When the requested
	// epoch is not the room's, Messages is what the room's current epoch
	// still holds, from its oldest retained message.
	Messages []Message
	// Top is the room's latest position (offset 0 if nothing was published).
	Top Position
	// Complete is true when Messages holds every message after the requested
	// offset in the requested epoch: nothing fell out of the window and the
	// epoch is unchanged.
	Complete bool
}

// Limits bounds one room's history.
type Limits struct {
	// Size is the most messages kept; 0 keeps none.
	Size int
	// TTL is how long a message is kept; 0 keeps none.
	TTL time.Duration
}

// Handler receives every message published, once per room, in offset order
// within each room. It must not block.
type Handler func(Message)

func newEpoch() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// sameRequest reports whether two fingerprints of one idempotency key are
// of the same request; an empty one (a publisher that gives none, or a
// record kept before fingerprints were) matches any.
func sameRequest(a, b string) bool { return a == "" || b == "" || a == b }
