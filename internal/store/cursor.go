package store

import (
	"encoding/base64"
	"fmt"
	"strconv"
)

// maxCursorLen bounds the encoded cursor: base64url of at most 19 digits.
const maxCursorLen = 26

// encodeCursor returns the opaque cursor for a page ending at item id.
func encodeCursor(id int64) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(id, 10)))
}

// decodeCursor returns the item id a cursor made by encodeCursor carries.
// Anything encodeCursor cannot have made is an ErrInvalid.
func decodeCursor(s string) (int64, error) {
	if s == "" {
		return 0, fmt.Errorf("%w: cursor: empty", ErrInvalid)
	}
	if len(s) > maxCursorLen {
		return 0, fmt.Errorf("%w: cursor: too long (%d bytes)", ErrInvalid, len(s))
	}
	raw, err := base64.RawURLEncoding.Strict().DecodeString(s)
	if err != nil {
		return 0, fmt.Errorf("%w: cursor: not base64url: %w", ErrInvalid, err)
	}
	id, err := parseID(string(raw))
	if err != nil {
		return 0, fmt.Errorf("%w: cursor: does not hold an item id", ErrInvalid)
	}
	// The decoder skips newlines; only the encoder's exact form is valid.
	if encodeCursor(id) != s {
		return 0, fmt.Errorf("%w: cursor: not in canonical form", ErrInvalid)
	}
	return id, nil
}

// formatID returns the external form of an item id.
func formatID(id int64) string { return strconv.FormatInt(id, 10) }

// parseID parses the external form of an item id: a positive decimal int64
// written canonically (no sign, no leading zeros).
func parseID(s string) (int64, error) {
	if s == "" || len(s) > 19 || s[0] == '0' {
		return 0, fmt.Errorf("%w: id %q is malformed", ErrInvalid, s)
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, fmt.Errorf("%w: id %q is malformed", ErrInvalid, s)
		}
	}
	id, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: id %q is out of range", ErrInvalid, s)
	}
	return id, nil
}

// maxPriorityCursorLen bounds an encoded priority cursor: base64url of
// "p", a priority digit, "." and at most 19 digits.
const maxPriorityCursorLen = 30

// cursor is where a page ended: an item id and, in priority order, its
// priority.
type cursor struct {
	priority int
	id       int64
}

// encodePriorityCursor returns the opaque cursor of a page in priority
// order ending at the item with this priority and id. Its text differs
// from a newest-first cursor's, so that one is never taken for the other.
func encodePriorityCursor(priority int, id int64) string {
	return base64.RawURLEncoding.EncodeToString([]byte("p" + strconv.Itoa(priority) + "." + formatID(id)))
}

// decodePriorityCursor returns the place a cursor made by
// encodePriorityCursor carries. Anything else is an ErrInvalid.
func decodePriorityCursor(s string) (cursor, error) {
	if len(s) > maxPriorityCursorLen {
		return cursor{}, fmt.Errorf("%w: cursor: too long (%d bytes)", ErrInvalid, len(s))
	}
	raw, err := base64.RawURLEncoding.Strict().DecodeString(s)
	if err != nil {
		return cursor{}, fmt.Errorf("%w: cursor: not base64url: %w", ErrInvalid, err)
	}
	if len(raw) < 4 || raw[0] != 'p' || raw[1] < '0' || raw[1] > '0'+MaxPriority || raw[2] != '.' {
		return cursor{}, fmt.Errorf("%w: cursor: not from a list in priority order", ErrInvalid)
	}
	id, err := parseID(string(raw[3:]))
	if err != nil {
		return cursor{}, fmt.Errorf("%w: cursor: does not hold an item id", ErrInvalid)
	}
	c := cursor{priority: int(raw[1] - '0'), id: id}
	if encodePriorityCursor(c.priority, c.id) != s {
		return cursor{}, fmt.Errorf("%w: cursor: not in canonical form", ErrInvalid)
	}
	return c, nil
}
