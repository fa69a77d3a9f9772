package wire

import "iter"

// streamSet holds a connection's open streams: the first in a field of its
// own, the others in a map made when a second is open at once. A phone's
// or a browser's own connection carries one stream for its whole life,
// and a map would cost it a group of slots beside its header.
type streamSet struct {
	one *stream
	m   map[uint32]*stream
}

func (s *streamSet) get(id uint32) *stream {
	if s.one != nil && s.one.id == id {
		return s.one
	}
	return s.m[id]
}

// put adds st, whose id is not in the set.
func (s *streamSet) put(st *stream) {
	if s.one == nil {
		s.one = st
		return
	}
	if s.m == nil {
		s.m = make(map[uint32]*stream)
	}
	s.m[st.id] = st
}

func (s *streamSet) del(id uint32) {
	if s.one != nil && s.one.id == id {
		s.one = nil
		return
	}
	delete(s.m, id)
}

func (s *streamSet) len() int {
	n := len(s.m)
	if s.one != nil {
		n++
	}
	return n
}

// all yields every stream, in no order.
func (s *streamSet) all() iter.Seq[*stream] {
	return func(yield func(*stream) bool) {
		if s.one != nil && !yield(s.one) {
			return
		}
		for _, st := range s.m {
			if !yield(st) {
				return
			}
		}
	}
}

func (s *streamSet) clear() {
	s.one = nil
	clear(s.m)
}
