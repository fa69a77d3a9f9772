package broker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisConfig configures a Redis broker.
type RedisConfig struct {
	// URL is the Redis URL, e.g. redis://127.0.0.1:6379/0. Required.
	URL string
	// Prefix starts every key and channel. Default "notify".
	Prefix string
	// Limits returns the history bounds of a room. Nil: 100 messages, 5 minutes.
	Limits func(room string) Limits
	// IdempotencyWindow is how long idempotency keys are remembered. Zero: 2 minutes.
	IdempotencyWindow time.Duration
	// ListenTimeout bounds waiting for Redis to confirm a room subscription.
	// Zero: 5 seconds.
	ListenTimeout time.Duration
	// Log receives connection events. Nil: discarded.
	Log *slog.Logger
}

// Redis is the broker shared by several nodes. Offsets, epochs, history and
// idempotency keys live in Redis and are changed by one Lua script per
// publish, so every node sees the same positions; live messages reach each
// node over Redis Pub/Sub, on channels of just the rooms it has subscribers
// in.
//
// When the Pub/Sub connection breaks, messages may have been missed, so
// Redis calls its lost callback: the node ends its streams, and clients
// resume from the shared history on reconnecting. When Redis restarts
// without its data, rooms get new epochs and clients learn that their
// positions are lost.
type Redis struct {
	cfg     RedisConfig
	client  *redis.Client
	ps      *redis.PubSub
	handler Handler
	lost    func(error)

	mu        sync.Mutex
	rooms     map[string]int             // room -> listeners on this node
	confirmed map[string]bool            // channel -> Redis confirmed the subscription on the current connection
	waiters   map[string][]chan struct{} // channel -> Listen calls awaiting confirmation

	stop chan struct{}
	done chan struct{}
}

// NewRedis connects to Redis and starts receiving. h gets every message of
// the rooms this node listens to, in offset order per room; lost is called
// (from the receiving goroutine) when messages may have been missed.
func NewRedis(ctx context.Context, cfg RedisConfig, h Handler, lost func(error)) (*Redis, error) {
	opts, err := redis.ParseURL(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("redis url: %w", err)
	}
	if cfg.Prefix == "" {
		cfg.Prefix = "notify"
	}
	if cfg.Limits == nil {
		cfg.Limits = func(string) Limits { return Limits{Size: 100, TTL: 5 * time.Minute} }
	}
	if cfg.IdempotencyWindow == 0 {
		cfg.IdempotencyWindow = 2 * time.Minute
	}
	if cfg.ListenTimeout == 0 {
		cfg.ListenTimeout = 5 * time.Second
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	opts.DialTimeout = 2 * time.Second
	opts.ReadTimeout = 3 * time.Second
	opts.WriteTimeout = 3 * time.Second
	opts.MaxRetries = 1
	// A command's context bounds getting a connection, not the reply,
	// which is read within ReadTimeout: a publish whose caller gives up
	// after its script was sent returns the script's result, so that the
	// service stores what Redis delivered (TestRedisPublishGivenUp).
	opts.ContextTimeoutEnabled = false
	client := redis.NewClient(opts)
	if err := client.Ping(ctx).Err(); err != nil {
		client.Close()
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	r := &Redis{
		cfg:       cfg,
		client:    client,
		handler:   h,
		lost:      lost,
		rooms:     make(map[string]int),
		confirmed: make(map[string]bool),
		waiters:   make(map[string][]chan struct{}),
		stop:      make(chan struct{}),
		done:      make(chan struct{}),
	}
	r.ps = client.Subscribe(context.Background())
	go r.receive()
	return r, nil
}

func (r *Redis) key(room, kind string) string { return r.cfg.Prefix + ":{" + room + "}:" + kind }
func (r *Redis) channel(room string) string   { return r.cfg.Prefix + ":ch:" + room }

// publishScript assigns offsets, appends to each room's capped stream and
// publishes, atomically, for every room of one publication; with an
// idempotency key it first looks for an earlier result: the same request's
// (its fingerprint matches, or either has none) is returned as a duplicate,
// another request's is refused. The key's value is "fingerprint|result"
// (a value without "|", kept by an earlier version, has no fingerprint).
//
// KEYS: idempotency key, then seq, epoch, hist for each room.
// ARGV: data, now (ms), idempotency ttl (ms), event id, has key (0/1),
// fingerprint, then size, ttl (ms), new epoch, channel, room for each room.
// Reply: {0, result} published, {1, result} duplicate, {2, first result}
// key reused for another request.
var publishScript = redis.NewScript(`
if ARGV[5] == '1' then
  local prev = redis.call('GET', KEYS[1])
  if prev then
    local fp, res = '', prev
    local bar = string.find(prev, '|', 1, true)
    if bar then
      fp, res = string.sub(prev, 1, bar - 1), string.sub(prev, bar + 1)
    end
    if fp ~= '' and ARGV[6] ~= '' and fp ~= ARGV[6] then return {2, res} end
    return {1, res}
  end
end
local n = (#KEYS - 1) / 3
local parts = {}
for i = 1, n do
  local seq, ep, hist = KEYS[3*i-1], KEYS[3*i], KEYS[3*i+1]
  local a = 6 + 5*(i-1)
  local size, ttl = tonumber(ARGV[a+1]), tonumber(ARGV[a+2])
  local epoch = redis.call('GET', ep)
  if not epoch then
    epoch = ARGV[a+3]
    redis.call('SET', ep, epoch)
    redis.call('DEL', seq, hist)
  end
  local off = redis.call('INCR', seq)
  local meta = math.max(ttl, 86400000)
  redis.call('PEXPIRE', seq, meta)
  redis.call('PEXPIRE', ep, meta)
  if size > 0 and ttl > 0 then
    redis.call('XADD', hist, 'MAXLEN', size, off .. '-0', 'd', ARGV[1], 't', ARGV[2])
    redis.call('PEXPIRE', hist, ttl)
  else
    redis.call('DEL', hist)
  end
  redis.call('PUBLISH', ARGV[a+4], off .. ':' .. epoch .. ':' .. ARGV[2] .. ':' .. ARGV[1])
  parts[#parts+1] = ARGV[a+5] .. '=' .. off .. '@' .. epoch
end
local result = ARGV[4] .. '\n' .. table.concat(parts, '\n')
if ARGV[5] == '1' then
  redis.call('SET', KEYS[1], ARGV[6] .. '|' .. result, 'PX', ARGV[3])
end
return {0, result}
`)

// Publish assigns the publication an offset in each room, appends it to the
// rooms' histories and publishes it to every node, in one atomic step.
func (r *Redis) Publish(ctx context.Context, p Publication) (Result, error) {
	if strings.Contains(p.Fingerprint, "|") {
		return Result{}, fmt.Errorf("redis publish: fingerprint %q contains '|'", p.Fingerprint)
	}
	now := time.Now()
	keys := make([]string, 0, 1+3*len(p.Rooms))
	idem := r.cfg.Prefix + ":idem:" + p.IdempotencyKey
	keys = append(keys, idem)
	args := []any{p.Data, now.UnixMilli(), r.cfg.IdempotencyWindow.Milliseconds(), p.EventID, boolArg(p.IdempotencyKey != ""), p.Fingerprint}
	for _, room := range p.Rooms {
		l := r.cfg.Limits(room)
		keys = append(keys, r.key(room, "seq"), r.key(room, "epoch"), r.key(room, "hist"))
		args = append(args, l.Size, l.TTL.Milliseconds(), newEpoch(), r.channel(room), room)
	}
	v, err := publishScript.Run(ctx, r.client, keys, args...).Slice()
	if err != nil {
		return Result{}, r.wrap(ctx, err)
	}
	if len(v) != 2 {
		return Result{}, fmt.Errorf("redis publish: unexpected reply %v", v)
	}
	state, _ := v[0].(int64)
	s, _ := v[1].(string)
	res, err := parseResult(s)
	if err != nil {
		return Result{}, err
	}
	if state == 2 {
		return Result{}, fmt.Errorf("%w: first used for event %s", ErrKeyReused, res.EventID)
	}
	res.Duplicate = state == 1
	return res, nil
}

func boolArg(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

// parseResult reads "eventid\nroom=offset@epoch\n...".
func parseResult(s string) (Result, error) {
	lines := strings.Split(s, "\n")
	res := Result{EventID: lines[0]}
	for _, l := range lines[1:] {
		room, rest, ok1 := strings.Cut(l, "=")
		off, epoch, ok2 := strings.Cut(rest, "@")
		n, err := strconv.ParseUint(off, 10, 64)
		if !ok1 || !ok2 || err != nil {
			return Result{}, fmt.Errorf("redis publish: malformed result %q", l)
		}
		res.Positions = append(res.Positions, RoomPosition{Room: room, Position: Position{Offset: n, Epoch: epoch}})
	}
	return res, nil
}

// historyScript reads a room's epoch, top offset and retained messages in
// one consistent step. KEYS: seq, epoch, hist. ARGV: first stream id to read.
var historyScript = redis.NewScript(`
local epoch = redis.call('GET', KEYS[2]) or ''
local top = redis.call('GET', KEYS[1]) or '0'
return {epoch, top, redis.call('XRANGE', KEYS[3], ARGV[1], '+')}
`)

// History returns the room's messages after since, from Redis.
func (r *Redis) History(ctx context.Context, room string, since Position) (History, error) {
	v, err := historyScript.Run(ctx, r.client, []string{r.key(room, "seq"), r.key(room, "epoch"), r.key(room, "hist")}, "-").Slice()
	if err != nil {
		return History{}, r.wrap(ctx, err)
	}
	if len(v) != 3 {
		return History{}, fmt.Errorf("redis history: unexpected reply %v", v)
	}
	epoch, _ := v[0].(string)
	top, _ := strconv.ParseUint(fmt.Sprint(v[1]), 10, 64)
	if epoch == "" {
		// Nothing published within the room's lifetime in Redis.
		return History{Complete: since.Offset == 0}, nil
	}
	entries, _ := v[2].([]any)
	ttl := r.cfg.Limits(room).TTL
	cutoff := time.Now().Add(-ttl).UnixMilli()
	var retained []Message
	for _, e := range entries {
		m, ok := parseEntry(room, epoch, e)
		if !ok || m.Time.UnixMilli() < cutoff {
			continue
		}
		retained = append(retained, m)
	}
	h := History{Top: Position{Offset: top, Epoch: epoch}}
	if since.Epoch != epoch && since.Offset != 0 {
		h.Messages = retained
		return h, nil
	}
	if since.Offset >= top {
		h.Complete = since.Offset == top
		return h, nil
	}
	oldest := top + 1
	if len(retained) > 0 {
		oldest = retained[0].Offset
	}
	h.Complete = since.Offset+1 >= oldest
	for _, m := range retained {
		if m.Offset > since.Offset {
			h.Messages = append(h.Messages, m)
		}
	}
	return h, nil
}

// parseEntry reads one XRANGE entry: [id, [d, data, t, ms]].
func parseEntry(room, epoch string, e any) (Message, bool) {
	pair, ok := e.([]any)
	if !ok || len(pair) != 2 {
		return Message{}, false
	}
	id, _ := pair[0].(string)
	off, _, _ := strings.Cut(id, "-")
	n, err := strconv.ParseUint(off, 10, 64)
	if err != nil {
		return Message{}, false
	}
	fields, _ := pair[1].([]any)
	m := Message{Room: room, Offset: n, Epoch: epoch}
	for i := 0; i+1 < len(fields); i += 2 {
		k, _ := fields[i].(string)
		val, _ := fields[i+1].(string)
		switch k {
		case "d":
			m.Data = []byte(val)
		case "t":
			ms, _ := strconv.ParseInt(val, 10, 64)
			m.Time = time.UnixMilli(ms)
		}
	}
	return m, true
}

// Listen makes this node receive the room's messages; it returns once Redis
// has confirmed the subscription on the current Pub/Sub connection, so that
// a history read afterwards leaves no gap (after a reconnection, the
// resubscription must be confirmed again). Calls are counted; each must be
// paired with Unlisten.
func (r *Redis) Listen(ctx context.Context, room string) error {
	ch := r.channel(room)
	r.mu.Lock()
	r.rooms[room]++
	first := r.rooms[room] == 1
	if r.confirmed[ch] {
		r.mu.Unlock()
		return nil
	}
	wait := make(chan struct{})
	r.waiters[ch] = append(r.waiters[ch], wait)
	r.mu.Unlock()

	if first {
		if err := r.ps.Subscribe(ctx, ch); err != nil {
			r.Unlisten(room)
			return r.wrap(ctx, err)
		}
	}
	t := time.NewTimer(r.cfg.ListenTimeout)
	defer t.Stop()
	select {
	case <-wait:
		return nil
	case <-ctx.Done():
		r.Unlisten(room)
		return ctx.Err()
	case <-t.C:
		r.Unlisten(room)
		return fmt.Errorf("%w: no subscription confirmation for %s", ErrUnavailable, room)
	}
}

// Unlisten undoes one Listen; the last one unsubscribes the node.
func (r *Redis) Unlisten(room string) {
	r.mu.Lock()
	r.rooms[room]--
	last := r.rooms[room] <= 0
	if last {
		delete(r.rooms, room)
		delete(r.confirmed, r.channel(room))
	}
	r.mu.Unlock()
	if last {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		// A failure leaves a subscription that delivers to no one; it goes
		// with the next reconnect.
		_ = r.ps.Unsubscribe(ctx, r.channel(room))
	}
}

// receive feeds Pub/Sub messages to the handler until Close.
func (r *Redis) receive() {
	defer close(r.done)
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-r.stop
		cancel()
	}()
	healthy := true
	for {
		msg, err := r.ps.ReceiveTimeout(ctx, 5*time.Second)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				// Idle: check the connection is still there.
				if perr := r.ps.Ping(ctx); perr == nil {
					continue
				}
			}
			if healthy {
				healthy = false
				r.cfg.Log.Warn("redis pub/sub connection lost", "err", err)
				// Subscriptions must be confirmed again on the next
				// connection before a Listen may trust them.
				r.mu.Lock()
				clear(r.confirmed)
				r.mu.Unlock()
				r.lost(fmt.Errorf("%w: %w", ErrUnavailable, err))
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(200 * time.Millisecond):
			}
			continue
		}
		if !healthy {
			healthy = true
			r.cfg.Log.Info("redis pub/sub connection restored")
		}
		switch m := msg.(type) {
		case *redis.Subscription:
			r.mu.Lock()
			switch m.Kind {
			case "subscribe":
				if r.rooms[strings.TrimPrefix(m.Channel, r.cfg.Prefix+":ch:")] > 0 {
					r.confirmed[m.Channel] = true
				}
				for _, w := range r.waiters[m.Channel] {
					close(w)
				}
				delete(r.waiters, m.Channel)
			case "unsubscribe":
				delete(r.confirmed, m.Channel)
			}
			r.mu.Unlock()
		case *redis.Message:
			if out, ok := r.decode(m); ok {
				r.handler(out)
			}
		}
	}
}

// decode reads "offset:epoch:ms:data" from a room channel.
func (r *Redis) decode(m *redis.Message) (Message, bool) {
	room := strings.TrimPrefix(m.Channel, r.cfg.Prefix+":ch:")
	b := []byte(m.Payload)
	parts := make([][]byte, 0, 3)
	for range 3 {
		i := bytes.IndexByte(b, ':')
		if i < 0 {
			return Message{}, false
		}
		parts = append(parts, b[:i])
		b = b[i+1:]
	}
	off, err1 := strconv.ParseUint(string(parts[0]), 10, 64)
	ms, err2 := strconv.ParseInt(string(parts[2]), 10, 64)
	if err1 != nil || err2 != nil {
		return Message{}, false
	}
	return Message{Room: room, Offset: off, Epoch: string(parts[1]), Data: b, Time: time.UnixMilli(ms)}, true
}

// Ping checks that Redis answers.
func (r *Redis) Ping(ctx context.Context) error {
	if err := r.client.Ping(ctx).Err(); err != nil {
		return r.wrap(ctx, err)
	}
	return nil
}

// Announce stores this node's description for ttl, for Nodes.
func (r *Redis) Announce(ctx context.Context, id string, data []byte, ttl time.Duration) error {
	if err := r.client.Set(ctx, r.cfg.Prefix+":node:"+id, data, ttl).Err(); err != nil {
		return r.wrap(ctx, err)
	}
	return nil
}

// Nodes returns the descriptions of every node announced and not expired.
func (r *Redis) Nodes(ctx context.Context) ([][]byte, error) {
	var out [][]byte
	iter := r.client.Scan(ctx, 0, r.cfg.Prefix+":node:*", 100).Iterator()
	var keys []string
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
	}
	if err := iter.Err(); err != nil {
		return nil, r.wrap(ctx, err)
	}
	if len(keys) == 0 {
		return nil, nil
	}
	vals, err := r.client.MGet(ctx, keys...).Result()
	if err != nil {
		return nil, r.wrap(ctx, err)
	}
	for _, v := range vals {
		if s, ok := v.(string); ok {
			out = append(out, []byte(s))
		}
	}
	return out, nil
}

// wrap marks connection failures as ErrUnavailable; the caller's own
// cancellation stays what it is.
func (r *Redis) wrap(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return fmt.Errorf("%w: %w", ErrUnavailable, err)
}

// Close stops receiving and closes the connections.
func (r *Redis) Close() error {
	select {
	case <-r.stop:
		return nil
	default:
		close(r.stop)
	}
	err := r.ps.Close()
	<-r.done
	return errors.Join(err, r.client.Close())
}
