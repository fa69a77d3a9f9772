package broker

import (
	"strconv"
	"strings"
	"testing"
)

// formatResult writes res the way the Redis publish script does:
// "eventid\nroom=offset@epoch\n...".
func formatResult(res Result) string {
	var b strings.Builder
	b.WriteString(res.EventID)
	for _, p := range res.Positions {
		b.WriteString("\n" + p.Room + "=" + strconv.FormatUint(p.Offset, 10) + "@" + p.Epoch)
	}
	return b.String()
}

// FuzzParseResult feeds arbitrary publish-script replies to parseResult: it
// must never panic; an error returns no partial result; a parsed result has
// one position per line after the first, and reads back the same once
// written in the script's format.
func FuzzParseResult(f *testing.F) {
	f.Add("")
	f.Add("\n")
	f.Add("0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b")
	f.Add("ev1\nguest:g1=1@a1b2c3d4e5f6")
	f.Add("ev1\nrestaurant:r1:points=18446744073709551615@e1\nguest:g1=3@e2")
	f.Add("ev1\nguest:g1=18446744073709551616@e") // offset overflows uint64
	f.Add("ev1\nguest:g1=-1@e")                   // negative offset
	f.Add("ev1\nguest:g1=+1@e")                   // signed offset
	f.Add("ev1\nguest:g1=1")                      // no epoch
	f.Add("ev1\nguest:g1@1")                      // no '='
	f.Add("ev1\n=@")                              // empty everything
	f.Add("ev1\na=b=1@e@f")                       // extra separators
	f.Add("ev1\nguest:g1=01@e\n")                 // leading zero, trailing newline
	f.Add("ev1\r\nguest:g1=1@e\r")                // CRLF
	f.Add(strings.Repeat("\nx=1@e", 100))         // many lines
	f.Add("ev\xff\nroom\x00=1@\xfe")              // not UTF-8
	f.Fuzz(func(t *testing.T, s string) {
		res, err := parseResult(s)
		if err != nil {
			if res.EventID != "" || res.Positions != nil || res.Duplicate {
				t.Fatalf("parseResult(%q) = %+v with error %v", s, res, err)
			}
			return
		}
		lines := strings.Split(s, "\n")
		if res.EventID != lines[0] {
			t.Fatalf("parseResult(%q): event id %q, want %q", s, res.EventID, lines[0])
		}
		if len(res.Positions) != len(lines)-1 {
			t.Fatalf("parseResult(%q): %d positions for %d lines", s, len(res.Positions), len(lines)-1)
		}
		if res.Duplicate {
			t.Fatalf("parseResult(%q) set Duplicate", s)
		}
		again, err := parseResult(formatResult(res))
		if err != nil {
			t.Fatalf("parseResult(%q) = %+v, whose formatted form does not parse: %v", s, res, err)
		}
		if formatResult(again) != formatResult(res) {
			t.Fatalf("parseResult(%q) = %+v, which reads back as %+v", s, res, again)
		}
	})
}
