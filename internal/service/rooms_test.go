package service

import (
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/maxloyalty/notify/internal/room"
)

// TestParseRooms: rooms come back parsed, in order, each once, whether the
// repeats are found by the scan (few names) or the map (many).
func TestParseRooms(t *testing.T) {
	many := make([]string, 0, 40)
	var manyWant []string
	for i := range 20 {
		name := fmt.Sprintf("guest:g%d", i)
		many = append(many, name, name)
		manyWant = append(manyWant, name)
	}
	for _, tc := range []struct {
		name  string
		names []string
		want  []string
	}{
		{"one", []string{"guest:g1"}, []string{"guest:g1"}},
		{"repeats", []string{"admin", "guest:g1", "admin", "guest:g1", "user:u1"}, []string{"admin", "guest:g1", "user:u1"}},
		{"many repeats", many, manyWant},
		{"none", nil, []string{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rooms, err := parseRooms(tc.names)
			if err != nil {
				t.Fatal(err)
			}
			got := make([]string, len(rooms))
			for i, r := range rooms {
				got[i] = r.String()
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("parseRooms(%v) = %v, want %v", tc.names, got, tc.want)
			}
		})
	}
	if _, err := parseRooms([]string{"guest:g1", "nope"}); !errors.Is(err, room.ErrInvalid) {
		t.Errorf("invalid name: %v, want room.ErrInvalid", err)
	}
}
