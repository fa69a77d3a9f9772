package wire

import (
	"slices"
	"testing"
)

// TestStreamSet: the set keeps its first stream apart and the others in a
// map, and answers the same whichever holds a stream.
func TestStreamSet(t *testing.T) {
	var s streamSet
	ids := func() []uint32 {
		var out []uint32
		for st := range s.all() {
			out = append(out, st.id)
		}
		slices.Sort(out)
		return out
	}
	for _, id := range []uint32{1, 3, 5} {
		s.put(&stream{id: id})
	}
	if got := ids(); !slices.Equal(got, []uint32{1, 3, 5}) || s.len() != 3 {
		t.Fatalf("after three puts: %v, len %d", got, s.len())
	}
	s.del(1) // the one apart
	if s.get(1) != nil || s.get(3) == nil || s.len() != 2 {
		t.Fatalf("after deleting the first: get(1) %v, get(3) %v, len %d", s.get(1), s.get(3), s.len())
	}
	s.put(&stream{id: 7}) // takes the free field
	s.del(3)              // from the map
	if got := ids(); !slices.Equal(got, []uint32{5, 7}) || s.get(3) != nil || s.get(7) == nil {
		t.Fatalf("after refilling and deleting from the map: %v", got)
	}
	for st := range s.all() {
		_ = st
		break // stopping early is allowed
	}
	s.clear()
	if s.len() != 0 || len(ids()) != 0 || s.get(5) != nil {
		t.Fatalf("after clear: len %d", s.len())
	}
}
