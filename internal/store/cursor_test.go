package store

import (
	"encoding/base64"
	"errors"
	"math"
	"testing"
)

func TestCursorRoundTrip(t *testing.T) {
	for _, id := range []int64{1, 9, 10, 12345, 1 << 40, math.MaxInt64} {
		c := encodeCursor(id)
		got, err := decodeCursor(c)
		if err != nil || got != id {
			t.Errorf("decodeCursor(encodeCursor(%d) = %q) = %d, %v", id, c, got, err)
		}
		if len(c) > maxCursorLen {
			t.Errorf("cursor %q longer than %d", c, maxCursorLen)
		}
	}
}

func TestDecodeCursor(t *testing.T) {
	b64 := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
	tests := []struct {
		name   string
		cursor string
		want   int64 // 0: ErrInvalid
	}{
		{"one", b64("1"), 1},
		{"max", b64("9223372036854775807"), math.MaxInt64},
		{"empty", "", 0},
		{"not base64", "!!!", 0},
		{"garbage", b64("garbage"), 0},
		{"negative", b64("-1"), 0},
		{"zero", b64("0"), 0},
		{"leading zero", b64("01"), 0},
		{"plus", b64("+1"), 0},
		{"trailing space", b64("1 "), 0},
		{"overflow", b64("9223372036854775808"), 0},
		{"padding", b64("1") + "==", 0},
		{"standard alphabet", "+/8", 0},
		{"trailing bits", "MR", 0},
		{"newline", b64("12") + "\n", 0},
		{"too long", b64("12345678901234567890"), 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := decodeCursor(tc.cursor)
			if tc.want == 0 {
				if !errors.Is(err, ErrInvalid) {
					t.Fatalf("decodeCursor(%q) = %d, %v; want ErrInvalid", tc.cursor, got, err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("decodeCursor(%q) = %d, %v; want %d", tc.cursor, got, err, tc.want)
			}
		})
	}
}

func TestParseID(t *testing.T) {
	tests := []struct {
		in   string
		want int64 // 0: ErrInvalid
	}{
		{"1", 1},
		{"42", 42},
		{"9223372036854775807", math.MaxInt64},
		{"", 0},
		{"0", 0},
		{"007", 0},
		{"-1", 0},
		{"+1", 0},
		{"1e3", 0},
		{" 1", 0},
		{"１", 0}, // fullwidth digit
		{"9223372036854775808", 0},
		{"99999999999999999999", 0},
	}
	for _, tc := range tests {
		got, err := parseID(tc.in)
		if tc.want == 0 {
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("parseID(%q) = %d, %v; want ErrInvalid", tc.in, got, err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("parseID(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
		if s := formatID(got); s != tc.in {
			t.Errorf("formatID(%d) = %q, want %q", got, s, tc.in)
		}
	}
}

// FuzzCursor checks that the decoder accepts exactly the cursors the
// encoder makes: anything it accepts is a positive id that encodes back to
// the same string, and anything else is an ErrInvalid.
func FuzzCursor(f *testing.F) {
	for _, seed := range []string{
		"", "!!!", "MQ", "MR", "MQ==", "LTE", "MA", "MDE",
		encodeCursor(1), encodeCursor(1234567), encodeCursor(math.MaxInt64),
		base64.RawURLEncoding.EncodeToString([]byte("garbage")),
		base64.RawURLEncoding.EncodeToString([]byte("9223372036854775808")),
		base64.StdEncoding.EncodeToString([]byte{0xfb, 0xff}),
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, err := decodeCursor(s)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("decodeCursor(%q): error %v is not ErrInvalid", s, err)
			}
			return
		}
		if id <= 0 {
			t.Fatalf("decodeCursor(%q) = %d, not positive", s, id)
		}
		if back := encodeCursor(id); back != s {
			t.Fatalf("decodeCursor(%q) = %d, which encodes as %q", s, id, back)
		}
	})
}
