package hub

import (
	"hash/maphash"
	"sync"
	"sync/atomic"

	"github.com/maxloyalty/notify/internal/broker"
	"github.com/maxloyalty/notify/internal/sched"
)

const shards = 64

// Hub maps rooms to their subscribers on this node.
type Hub struct {
	seed   maphash.Seed
	shards [shards]shard

	subscribers atomic.Int64
	delivered   atomic.Int64
	slow        atomic.Int64

	usersMu sync.Mutex
	users   map[string]int // user id (first key) -> subscribers

	closeMu  sync.Mutex
	closeErr error // set by CloseAll; later joiners are closed at once

	sched sched.Schedule
}

type shard struct {
	mu    sync.RWMutex
	rooms map[string]*members
	// keys maps a user id or group to its subscribers, for per-user
	// control frames such as unread counts.
	keys map[string]*members
}

// members is the set of a room's subscribers, kept as a slice for fast
// iteration, with an index for removal once the set is large. Most rooms
// (a guest's, a user's key) hold one or two subscribers: a map each would
// cost more than the rest of the subscription.
type members struct {
	name string // the set's own copy of the name, shared with frames and joiners
	list []*Subscriber
	idx  map[*Subscriber]int // nil while len(list) <= smallMembers
}

// smallMembers is the largest set searched without an index.
const smallMembers = 16

// find returns s's position in the list, or -1.
func (m *members) find(s *Subscriber) int {
	if m.idx != nil {
		if i, ok := m.idx[s]; ok {
			return i
		}
		return -1
	}
	for i, x := range m.list {
		if x == s {
			return i
		}
	}
	return -1
}

// New returns an empty hub.
func New() *Hub {
	h := &Hub{seed: maphash.MakeSeed(), users: make(map[string]int)}
	for i := range h.shards {
		h.shards[i].rooms = make(map[string]*members)
		h.shards[i].keys = make(map[string]*members)
	}
	return h
}

func (h *Hub) shard(room string) *shard {
	return &h.shards[maphash.String(h.seed, room)%shards]
}

// Join adds s to rooms, and indexes it under keys (its user id and groups)
// for Notify. A subscriber joins once, before it reads history, so that
// nothing published after that read can be missed. Each name in rooms is
// replaced by the hub's own copy.
func (h *Hub) Join(s *Subscriber, rooms, keys []string) {
	h.closeMu.Lock()
	defer h.closeMu.Unlock()
	if h.closeErr != nil {
		s.Close(h.closeErr)
	}
	s.mu.Lock()
	s.rooms = append(s.rooms[:0], rooms...)
	s.keys = append(s.keys[:0], keys...)
	s.joined = true
	s.mu.Unlock()
	for i, room := range rooms {
		sh := h.shard(room)
		sh.mu.Lock()
		// The caller keeps the hub's copy of the name: the frames of the
		// room carry it too, and equal strings sharing their bytes compare
		// at once (the writer's offset filter compares them per delivery).
		rooms[i] = add(sh.rooms, room, s)
		sh.mu.Unlock()
	}
	for _, key := range keys {
		sh := h.shard(key)
		sh.mu.Lock()
		add(sh.keys, key, s)
		sh.mu.Unlock()
	}
	if len(keys) > 0 {
		h.usersMu.Lock()
		h.users[keys[0]]++
		h.usersMu.Unlock()
	}
	h.subscribers.Add(1)
}

// add puts s in the set of name and returns the set's copy of name.
func add(set map[string]*members, name string, s *Subscriber) string {
	m := set[name]
	if m == nil {
		m = &members{name: name}
		set[name] = m
	}
	if m.find(s) >= 0 {
		return m.name
	}
	m.list = append(m.list, s)
	switch {
	case m.idx != nil:
		m.idx[s] = len(m.list) - 1
	case len(m.list) > smallMembers:
		m.idx = make(map[*Subscriber]int, len(m.list))
		for i, x := range m.list {
			m.idx[x] = i
		}
	}
	return m.name
}

func remove(set map[string]*members, name string, s *Subscriber) {
	m := set[name]
	if m == nil {
		return
	}
	if i := m.find(s); i >= 0 {
		last := len(m.list) - 1
		moved := m.list[last]
		m.list[i] = moved
		m.list[last] = nil
		m.list = m.list[:last]
		if m.idx != nil {
			m.idx[moved] = i // when s was last, moved is s: deleted next
			delete(m.idx, s)
		}
	}
	if len(m.list) == 0 {
		delete(set, name)
	}
}

// Leave removes s from every room and key it joined, and unschedules it.
func (h *Hub) Leave(s *Subscriber) {
	h.Unschedule(s)
	s.mu.Lock()
	rooms, keys, joined := s.rooms, s.keys, s.joined
	s.rooms, s.keys, s.joined = nil, nil, false
	s.mu.Unlock()
	if !joined {
		return
	}
	for _, room := range rooms {
		sh := h.shard(room)
		sh.mu.Lock()
		remove(sh.rooms, room, s)
		sh.mu.Unlock()
	}
	for _, key := range keys {
		sh := h.shard(key)
		sh.mu.Lock()
		remove(sh.keys, key, s)
		sh.mu.Unlock()
	}
	if len(keys) > 0 {
		h.usersMu.Lock()
		if h.users[keys[0]]--; h.users[keys[0]] <= 0 {
			delete(h.users, keys[0])
		}
		h.usersMu.Unlock()
	}
	h.subscribers.Add(-1)
}

// Keys returns the key sets (user id first, then groups) of the distinct
// users with a subscriber indexed under key, for example the admins
// connected under "group:admin".
func (h *Hub) Keys(key string) [][]string {
	var out [][]string
	seen := map[string]bool{}
	h.Each(key, func(s *Subscriber) {
		s.mu.Lock()
		if len(s.keys) > 0 && !seen[s.keys[0]] {
			seen[s.keys[0]] = true
			out = append(out, append([]string(nil), s.keys...))
		}
		s.mu.Unlock()
	})
	return out
}

// Each calls fn for every subscriber indexed under key. fn must not call
// back into the hub.
func (h *Hub) Each(key string, fn func(*Subscriber)) {
	sh := h.shard(key)
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	if m := sh.keys[key]; m != nil {
		for _, s := range m.list {
			fn(s)
		}
	}
}

// Notify queues a control frame for every subscriber indexed under key.
func (h *Hub) Notify(key string, f *Frame) {
	sh := h.shard(key)
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	if m := sh.keys[key]; m != nil {
		for _, s := range m.list {
			if queued, _ := s.push(f); queued {
				s.signal()
			}
		}
	}
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
	msg.Room = m.name // frames and subscribers' writers share one string: comparing them is cheap
	f := NewFrame(msg)
	// Queue everywhere first, then wake: woken writers taking their
	// queues would otherwise contend with this loop for the subscribers'
	// locks, and a publisher parked on one waits behind all of them.
	var slow int64
	for _, s := range m.list {
		if _, over := s.push(f); over {
			slow++
		}
	}
	for _, s := range m.list {
		if s.Wants(f) {
			s.signal()
		}
	}
	n := len(m.list)
	sh.mu.RUnlock()
	h.delivered.Add(int64(n))
	if slow > 0 {
		h.slow.Add(slow)
	}
}

// CloseAll closes every subscriber with err (for example ErrShutdown),
// and every subscriber that joins afterwards.
func (h *Hub) CloseAll(err error) {
	h.closeMu.Lock()
	defer h.closeMu.Unlock()
	h.closeErr = err
	h.closeCurrent(err)
}

// CloseCurrent closes every subscriber joined now with err; later joiners
// are not affected (for example after the broker may have lost messages).
func (h *Hub) CloseCurrent(err error) {
	h.closeMu.Lock()
	defer h.closeMu.Unlock()
	h.closeCurrent(err)
}

func (h *Hub) closeCurrent(err error) {
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
	// Users with at least one subscriber.
	Users int
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
	h.usersMu.Lock()
	st.Users = len(h.users)
	h.usersMu.Unlock()
	for i := range h.shards {
		sh := &h.shards[i]
		sh.mu.RLock()
		st.Rooms += len(sh.rooms)
		sh.mu.RUnlock()
	}
	return st
}
