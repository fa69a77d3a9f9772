package grpchdr

import (
	"math"
	"testing"
	"time"
)

func TestParseTimeout(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"1S", time.Second, true},
		{"250m", 250 * time.Millisecond, true},
		{"99999999H", math.MaxInt64, true},
		{"3u", 3 * time.Microsecond, true},
		{"7n", 7, true},
		{"2M", 2 * time.Minute, true},
		{"S", 0, false},
		{"123456789S", 0, false},
		{"-1S", 0, false},
		{"10x", 0, false},
		{"1.5S", 0, false},
	} {
		got, err := ParseTimeout(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseTimeout(%q) = %v, %v; want %v, ok %v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

func TestBin(t *testing.T) {
	in := []byte{0, 1, 0xfe, 0xff, 'x'}
	for _, enc := range []string{EncodeBin(in), "AAH+/3g="} {
		got, err := DecodeBin(enc)
		if err != nil || string(got) != string(in) {
			t.Errorf("DecodeBin(%q) = %v, %v; want %v", enc, got, err, in)
		}
	}
	if _, err := DecodeBin("!!"); err == nil {
		t.Error("DecodeBin accepted a value that is not base64")
	}
}

func TestEncodeMessage(t *testing.T) {
	for in, want := range map[string]string{
		"plain text":   "plain text",
		"50% off":      "50%25 off",
		"ünï\n":        "%C3%BCn%C3%AF%0A",
		"":             "",
		"tab\there~ok": "tab%09here~ok",
	} {
		if got := EncodeMessage(in); got != want {
			t.Errorf("EncodeMessage(%q) = %q, want %q", in, got, want)
		}
	}
}
