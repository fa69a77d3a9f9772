package broker

import (
	"context"
	"fmt"
	"hash/maphash"
	"sync"
	"time"
)

const memoryShards = 64

// MemoryConfig configures a Memory broker.
type MemoryConfig struct {
	// Limits returns the history bounds of a room. Nil: 100 messages, 5 minutes.
	Limits func(room string) Limits
	// IdempotencyWindow is how long idempotency keys are remembered. Zero: 2 minutes.
	IdempotencyWindow time.Duration
	// Now is the clock. Nil: time.Now.
	Now func() time.Time
}

// Memory is the in-memory broker of a single node. Every room's epoch is
// chosen when the room is first used, so history never survives a restart
// and clients learn so from the changed epoch.
type Memory struct {
	cfg     MemoryConfig
	handler Handler
	seed    maphash.Seed
	shards  [memoryShards]memShard

	// Idempotency records, sharded by key so that publishes with different
	// keys do not wait for each other.
	keys [memoryShards]keyShard

	stop chan struct{}
	done chan struct{}
}

type memShard struct {
	mu    sync.Mutex
	rooms map[string]*memRoom
}

type memRoom struct {
	epoch  string
	offset uint64
	limits Limits // looked up once, when the room is created
	// ring of retained messages, oldest at head.
	buf   []Message
	head  int
	count int
}

type keyShard struct {
	mu      sync.Mutex
	entries map[string]keyEntry
}

type keyEntry struct {
	res         Result
	fingerprint string
	expires     time.Time
}

// NewMemory returns a running Memory broker that calls h for every message.
func NewMemory(cfg MemoryConfig, h Handler) *Memory {
	if cfg.Limits == nil {
		cfg.Limits = func(string) Limits { return Limits{Size: 100, TTL: 5 * time.Minute} }
	}
	if cfg.IdempotencyWindow == 0 {
		cfg.IdempotencyWindow = 2 * time.Minute
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	m := &Memory{
		cfg:     cfg,
		handler: h,
		seed:    maphash.MakeSeed(),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	for i := range m.shards {
		m.shards[i].rooms = make(map[string]*memRoom)
		m.keys[i].entries = make(map[string]keyEntry)
	}
	go m.sweep()
	return m
}

func (m *Memory) shard(room string) *memShard {
	return &m.shards[maphash.String(m.seed, room)%memoryShards]
}

// Publish assigns the publication an offset in each of its rooms, appends it
// to their histories and hands it to the handler.
func (m *Memory) Publish(ctx context.Context, p Publication) (Result, error) {
	if err := ctx.Err(); err != nil {
		return Result{}, err
	}
	select {
	case <-m.stop:
		return Result{}, ErrClosed
	default:
	}
	now := m.cfg.Now()
	var ks *keyShard
	if p.IdempotencyKey != "" {
		// Holding the key's shard lock across the publish makes a
		// concurrent repeat of the same key wait for the first and see its
		// result.
		ks = &m.keys[maphash.String(m.seed, p.IdempotencyKey)%memoryShards]
		ks.mu.Lock()
		defer ks.mu.Unlock()
		if e, ok := ks.entries[p.IdempotencyKey]; ok && now.Before(e.expires) {
			if !sameRequest(e.fingerprint, p.Fingerprint) {
				return Result{}, fmt.Errorf("%w: first used for event %s", ErrKeyReused, e.res.EventID)
			}
			r := e.res
			r.Duplicate = true
			return r, nil
		}
	}
	res := Result{EventID: p.EventID, Positions: make([]RoomPosition, len(p.Rooms))}
	for i, room := range p.Rooms {
		res.Positions[i] = m.publishOne(room, p.Data, now)
	}
	if ks != nil {
		ks.entries[p.IdempotencyKey] = keyEntry{res: res, fingerprint: p.Fingerprint, expires: now.Add(m.cfg.IdempotencyWindow)}
	}
	return res, nil
}

func (m *Memory) publishOne(room string, data []byte, now time.Time) RoomPosition {
	s := m.shard(room)
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.rooms[room]
	if r == nil {
		r = &memRoom{epoch: newEpoch(), limits: m.cfg.Limits(room)}
		s.rooms[room] = r
	}
	r.offset++
	msg := Message{Room: room, Offset: r.offset, Epoch: r.epoch, Data: data, Time: now}
	r.append(msg, r.limits, now)
	m.handler(msg)
	return RoomPosition{Room: room, Position: Position{Offset: r.offset, Epoch: r.epoch}}
}

func (r *memRoom) append(msg Message, l Limits, now time.Time) {
	if l.Size <= 0 || l.TTL <= 0 {
		r.buf, r.head, r.count = nil, 0, 0
		return
	}
	if len(r.buf) != l.Size {
		r.resize(l.Size)
	}
	r.expire(now, l.TTL)
	tail := (r.head + r.count) % len(r.buf)
	r.buf[tail] = msg
	if r.count < len(r.buf) {
		r.count++
	} else {
		r.head = (r.head + 1) % len(r.buf)
	}
}

// resize keeps the newest messages that fit in size.
func (r *memRoom) resize(size int) {
	keep := min(r.count, size)
	nb := make([]Message, size)
	for i := 0; i < keep; i++ {
		nb[i] = r.buf[(r.head+r.count-keep+i)%len(r.buf)]
	}
	r.buf, r.head, r.count = nb, 0, keep
}

// expire drops messages older than ttl.
func (r *memRoom) expire(now time.Time, ttl time.Duration) {
	for r.count > 0 {
		m := &r.buf[r.head]
		if now.Sub(m.Time) < ttl {
			return
		}
		*m = Message{}
		r.head = (r.head + 1) % len(r.buf)
		r.count--
	}
}

// History returns the room's messages after offset in epoch.
func (m *Memory) History(ctx context.Context, room string, since Position) (History, error) {
	if err := ctx.Err(); err != nil {
		return History{}, err
	}
	now := m.cfg.Now()
	s := m.shard(room)
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.rooms[room]
	if r == nil {
		// Nothing was ever published here since this node started.
		return History{Complete: since.Offset == 0}, nil
	}
	if r.count > 0 {
		r.expire(now, r.limits.TTL)
	}
	h := History{Top: Position{Offset: r.offset, Epoch: r.epoch}}
	if since.Epoch != r.epoch && since.Offset != 0 {
		// The client's epoch is gone: offer what this epoch still holds,
		// marked incomplete.
		h.Messages = r.since(0)
		return h, nil
	}
	if since.Offset >= r.offset {
		h.Complete = since.Offset == r.offset
		return h, nil
	}
	h.Complete = since.Offset+1 >= r.oldest()
	h.Messages = r.since(since.Offset)
	return h, nil
}

// oldest is the first offset still retained (offset+1 when none is).
func (r *memRoom) oldest() uint64 { return r.offset - uint64(r.count) + 1 }

// since copies the retained messages after offset.
func (r *memRoom) since(offset uint64) []Message {
	from := max(offset+1, r.oldest())
	if from > r.offset {
		return nil
	}
	n := int(r.offset - from + 1)
	out := make([]Message, n)
	for i := 0; i < n; i++ {
		out[i] = r.buf[(r.head+r.count-n+i)%len(r.buf)]
	}
	return out
}

// sweep drops expired history, idle rooms and old idempotency keys.
func (m *Memory) sweep() {
	defer close(m.done)
	t := time.NewTicker(10 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-m.stop:
			return
		case <-t.C:
		}
		now := m.cfg.Now()
		for i := range m.shards {
			s := &m.shards[i]
			s.mu.Lock()
			for name, r := range s.rooms {
				r.expire(now, r.limits.TTL)
				if r.count == 0 {
					// The room's offsets restart with a new epoch on next use,
					// so clients holding old positions learn they were lost.
					delete(s.rooms, name)
				}
			}
			s.mu.Unlock()
		}
		for i := range m.keys {
			ks := &m.keys[i]
			ks.mu.Lock()
			for k, e := range ks.entries {
				if !now.Before(e.expires) {
					delete(ks.entries, k)
				}
			}
			ks.mu.Unlock()
		}
	}
}

// Close stops the broker's background work. Publish fails afterwards.
func (m *Memory) Close() error {
	select {
	case <-m.stop:
	default:
		close(m.stop)
	}
	<-m.done
	return nil
}
