package hub

import (
	"hash/maphash"
	"sync"
	"sync/atomic"

	"github.com/maxloyalty/notify/server/broker"
)

const shards = 64

// Hub maps rooms to their subscribers on this node.
type Hub struct {
	seed   maphash.Seed
	shards [shards]shard

	subscribers atomic.Int64
	delivered   atomic.Int64
	slow        atomic.Int64
}

type shard struct {
	mu    sync.RWMutex
	rooms map[string]*members
}

// members is the set of a room's subscribers, kept as a slice for fast
// iteration with an index for removal.
type members struct {
	list []*Subscriber
	idx  map[*Subscriber]int
}

// New returns an empty hub.
func New() *Hub {
	h := &Hub{seed: maphash.MakeSeed()}
	for i := range h.shards {
		h.shards[i].rooms = make(map[string]*members)
	}
	return h
}

func (h *Hub) shard(room string) *shard {
	return &h.shards[maphash.String(h.seed, room)%shards]
}

// Join adds s to rooms. A subscriber joins once, before it reads history,
// so that nothing published after that read can be missed.
func (h *Hub) Join(s *Subscriber, rooms []string) {
	s.mu.Lock()
	s.rooms = append(s.rooms[:0], rooms...)
	s.joined = true
	s.mu.Unlock()
	for _, room := range rooms {
		sh := h.shard(room)
		sh.mu.Lock()
		m := sh.rooms[room]
		if m == nil {
			m = &members{idx: make(map[*Subscriber]int)}
			sh.rooms[room] = m
		}
		if _, ok := m.idx[s]; !ok {
			m.idx[s] = len(m.list)
			m.list = append(m.list, s)
		}
		sh.mu.Unlock()
	}
	h.subscribers.Add(1)
}

// Leave removes s from every room it joined.
func (h *Hub) Leave(s *Subscriber) {
	s.mu.Lock()
	rooms, joined := s.rooms, s.joined
	s.rooms, s.joined = nil, false
	s.mu.Unlock()
	if !joined {
		return
	}
	for _, room := range rooms {
		sh := h.shard(room)
		sh.mu.Lock()
		if m := sh.rooms[room]; m != nil {
			if i, ok := m.idx[s]; ok {
				last := len(m.list) - 1
				m.list[i] = m.list[last]
				m.idx[m.list[i]] = i
				m.list[last] = nil
				m.list = m.list[:last]
				delete(m.idx, s)
			}
			if len(m.list) == 0 {
				delete(sh.rooms, room)
			}
		}
		sh.mu.Unlock()
	}
	h.subscribers.Add(-1)
}

// Deliver encodes msg once and queues it for every subscriber of its room.
// It never blocks on a subscriber. It is the broker's Handler.
func (h *Hub) Deliver(msg broker.Message) {
	sh := h.shard(msg.Room)
	sh.mu.RLock()
	m := sh.rooms[msg.Room]
	if m == nil || len(m.list) == 0 {
		sh.mu.RUnlock()
		return
	}
	f := NewFrame(msg)
	var slow int64
	for _, s := range m.list {
		if s.push(f) {
			slow++
		}
	}
	n := len(m.list)
	sh.mu.RUnlock()
	h.delivered.Add(int64(n))
	if slow > 0 {
		h.slow.Add(slow)
	}
}

// CloseAll closes every subscriber with err (for example ErrShutdown).
func (h *Hub) CloseAll(err error) {
	for i := range h.shards {
		sh := &h.shards[i]
		sh.mu.RLock()
		for _, m := range sh.rooms {
			for _, s := range m.list {
				s.Close(err)
			}
		}
		sh.mu.RUnlock()
	}
}

// Stats is a snapshot of the hub's counters.
type Stats struct {
	// Subscribers currently joined.
	Subscribers int64
	// Rooms with at least one subscriber on this node.
	Rooms int
	// Delivered counts frames queued to subscribers since start.
	Delivered int64
	// SlowConsumers counts subscribers closed for overflowing their queue.
	SlowConsumers int64
}

// Stats returns a snapshot of the hub's counters.
func (h *Hub) Stats() Stats {
	st := Stats{Subscribers: h.subscribers.Load(), Delivered: h.delivered.Load(), SlowConsumers: h.slow.Load()}
	for i := range h.shards {
		sh := &h.shards[i]
		sh.mu.RLock()
		st.Rooms += len(sh.rooms)
		sh.mu.RUnlock()
	}
	return st
}
