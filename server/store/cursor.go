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
