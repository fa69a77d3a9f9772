package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	notifyv1 "github.com/maxloyalty/notify/gen/notify/v1"
)

// soakRoom is a client's position in one room. The client's goroutine owns
// it; lastA mirrors last for the coordinator.
type soakRoom struct {
	name  string
	epoch string
	last  uint64
	hist  int // the room's history size on the server
	size  int // bytes of its last event on the wire (0: not yet seen)
	lastA atomic.Uint64
}

// soakCounts are one client's figures.
type soakCounts struct {
	connects, reconnects, resumes, unrecovered, beyond, beyondMissed                atomic.Int64
	drops, connDrops, poolDrops, cuts, cutsReading, stalls, stallsUncut, stallNanos atomic.Int64
	delivered, lost, duplicated, unknown, epochChanges, errors                      atomic.Int64
}

// soakClient is one subscriber that churns.
type soakClient struct {
	id      int
	kind    string // shared, personal or both
	rooms   []*soakRoom
	names   []string
	token   string
	web     bool
	staller bool
	rng     *rand.Rand
	started bool // a stream reached Connected: the next ones resume
	n       soakCounts
	errMu   sync.Mutex
	err     string // first unexpected stream end
	done    chan struct{}
}

func (c *soakClient) fail(format string, args ...any) {
	c.n.errors.Add(1)
	c.errMu.Lock()
	if c.err == "" {
		c.err = fmt.Sprintf(format, args...)
	}
	c.errMu.Unlock()
}

func (c *soakClient) room(name string) *soakRoom {
	for _, r := range c.rooms {
		if r.name == name {
			return r
		}
	}
	return nil
}

func (c *soakClient) positions() []*notifyv1.StreamPosition {
	ps := make([]*notifyv1.StreamPosition, len(c.rooms))
	for i, r := range c.rooms {
		ps[i] = &notifyv1.StreamPosition{Room: r.name, Offset: r.last, Epoch: r.epoch}
	}
	return ps
}

// poolConn is a shared gRPC connection; the slot's pointer changes when the
// coordinator replaces it.
type poolConn struct{ conn *grpc.ClientConn }

// soakEnv is what the clients share.
type soakEnv struct {
	o        options
	tops     *roomTops
	pool     []atomic.Pointer[poolConn]
	web      *http.Client
	draining atomic.Bool
	// cutBytes is what a stalled stream must have outstanding (published
	// but not read) before the server has surely cut it: its queue, the
	// flow-control windows and one coalesced write, with a margin.
	cutBytes int64
	// sizes guesses each room's bytes per event before one arrives.
	sizes map[string]int
}

// stallGuard is the share of a room's history a stall may leave unread:
// beyond it, the resume after the cut might not be covered.
const stallGuard = 0.9

// outstanding returns what c has not read yet of what was published in its
// rooms, in bytes, and the largest share of a room's history that is.
func (c *soakClient) outstanding(env *soakEnv) (int64, float64) {
	var b int64
	var use float64
	for _, r := range c.rooms {
		top := env.tops.top(r.name)
		if top <= r.last {
			continue
		}
		n := top - r.last
		size := r.size
		if size == 0 {
			size = env.sizes[r.name]
		}
		b += int64(n) * int64(size)
		if r.hist > 0 {
			use = max(use, float64(n)/float64(r.hist))
		}
	}
	return b, use
}

// soakStream is the state of one stream of a client.
type soakStream struct {
	c       *soakClient
	env     *soakEnv
	resumed bool // positions were sent
	resp    notifyv1.SubscribeResponse
	cut     bool // Disconnected{SLOW_CONSUMER}
	ended   string
	// A staller stops reading at stallAt; afterwards arm drops the stream
	// if the server has not cut it by then.
	stallAt time.Time
	stalled bool
	drained bool // the stall ended because the run began to drain
	arm     func()
}

var errNoStatus = errors.New("stream ended by the server with OK")

func (st *soakStream) handle(b []byte) error {
	st.resp.Reset()
	if err := proto.Unmarshal(b, &st.resp); err != nil {
		return err
	}
	c := st.c
	if cn := st.resp.GetConnected(); cn != nil {
		st.connected(cn)
	}
	for _, ev := range st.resp.Events {
		r := c.room(ev.Room)
		if r == nil {
			c.n.unknown.Add(1)
			continue
		}
		if r.epoch == "" {
			r.epoch = ev.Epoch // nothing had been published in the room
		} else if ev.Epoch != r.epoch {
			c.n.epochChanges.Add(1)
			r.epoch, r.last = ev.Epoch, ev.Offset
			r.lastA.Store(r.last)
			continue
		}
		switch {
		case ev.Offset <= r.last:
			c.n.duplicated.Add(1)
			continue
		case ev.Offset > r.last+1:
			c.n.lost.Add(int64(ev.Offset - r.last - 1))
		}
		r.last = ev.Offset
		r.lastA.Store(r.last)
		r.size = proto.Size(ev) + 4 // tag and length in the response
		c.n.delivered.Add(1)
	}
	if d := st.resp.GetDisconnected(); d != nil {
		if d.Reason == notifyv1.DisconnectReason_DISCONNECT_REASON_SLOW_CONSUMER {
			st.cut = true
		} else {
			st.ended = "Disconnected " + d.Reason.String()
		}
	}
	return nil
}

// connected checks each room's state against the client's position.
func (st *soakStream) connected(cn *notifyv1.Connected) {
	c := st.c
	c.n.connects.Add(1)
	if c.started {
		c.n.reconnects.Add(1)
	}
	c.started = true
	all := true
	for _, rs := range cn.Rooms {
		r := c.room(rs.Room)
		if r == nil {
			c.n.unknown.Add(1)
			continue
		}
		switch {
		case !st.resumed:
			// The first stream is live from the room's top.
			r.epoch, r.last = rs.Epoch, rs.Offset
		case rs.Recovered:
			if rs.StartOffset != r.last {
				c.fail("%s: recovered from offset %d, the client was at %d", r.name, rs.StartOffset, r.last)
			}
			if r.epoch == "" {
				r.epoch = rs.Epoch
			}
		default:
			all = false
			gap := int64(rs.Offset) - int64(r.last)
			switch {
			case r.epoch != "" && rs.Epoch != r.epoch:
				c.n.epochChanges.Add(1)
			case gap > int64(r.hist):
				// More was published since the client's position than the
				// room's history holds: the server could not cover it.
				c.n.beyond.Add(1)
				c.n.beyondMissed.Add(gap)
			default:
				c.n.unrecovered.Add(1)
				c.n.lost.Add(max(gap, 0))
			}
			r.epoch, r.last = rs.Epoch, rs.StartOffset
		}
		r.lastA.Store(r.last)
	}
	if st.resumed && all {
		c.n.resumes.Add(1)
	}
}

// afterMessage stalls a staller's stream once its time has come: it stops
// reading until the server has surely cut it (cutBytes outstanding), the
// room's history is nearly used up, --stall-max passes or the run drains.
func (st *soakStream) afterMessage(ctx context.Context) {
	if st.stalled || st.stallAt.IsZero() || time.Now().Before(st.stallAt) || st.env.draining.Load() {
		return
	}
	st.stalled = true
	c := st.c
	c.n.stalls.Add(1)
	start := time.Now()
	limit := st.env.o.Soak.StallMax
	for i := 0; i < 1_000_000 && ctx.Err() == nil && !st.env.draining.Load() && time.Since(start) < limit; i++ {
		b, use := c.outstanding(st.env)
		if b >= st.env.cutBytes || use >= stallGuard {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	c.n.stallNanos.Add(int64(time.Since(start)))
	st.drained = st.env.draining.Load()
	if st.arm != nil {
		st.arm()
	}
}

// readGRPC runs one stream over conn until it ends.
func (st *soakStream) readGRPC(ctx context.Context, conn *grpc.ClientConn, req *notifyv1.SubscribeRequest) error {
	cs, err := conn.NewStream(withToken(ctx, st.c.token), &notifyv1.NotificationService_ServiceDesc.Streams[0], subscribeMethod,
		grpc.ForceCodecV2(rawCodec{}))
	if err != nil {
		return err
	}
	if err := cs.SendMsg(req); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	_ = cs.CloseSend()
	var msg rawMsg
	for {
		if err := cs.RecvMsg(&msg); err != nil {
			if errors.Is(err, io.EOF) {
				return errNoStatus
			}
			return err
		}
		if err := st.handle(msg.b); err != nil {
			return err
		}
		st.afterMessage(ctx)
	}
}

// readWeb runs one stream over grpc-web; a trailer with OK is errNoStatus.
func (st *soakStream) readWeb(ctx context.Context, req *notifyv1.SubscribeRequest) error {
	err := webSubscribe(ctx, st.env.web, "http://"+st.env.o.HTTPAddr, st.c.token, "", req, st.handle)
	if err == nil {
		return errNoStatus
	}
	return err
}

// isCut reports whether err is the status of a stream cut as a slow consumer.
func isCut(err error) bool {
	s, ok := status.FromError(err)
	if !ok || s.Code() != codes.ResourceExhausted {
		return false
	}
	for _, d := range s.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			return info.Reason == "SLOW_CONSUMER"
		}
	}
	// grpc-web trailers carry no details here: go by the message.
	return strings.Contains(s.Message(), "queue overflowed")
}

func randDur(r *rand.Rand, lo, hi time.Duration) time.Duration {
	if hi <= lo {
		return lo
	}
	return lo + time.Duration(r.Int64N(int64(hi-lo)))
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// cycle opens one stream and reads it until the client drops it, the
// server cuts it, it fails or the run ends. It reports whether to reconnect
// at once (after a cut or a replaced connection) and whether it failed.
func (c *soakClient) cycle(ctx context.Context, env *soakEnv) (again, failed bool) {
	so := env.o.Soak
	req := &notifyv1.SubscribeRequest{Rooms: c.names}
	st := &soakStream{c: c, env: env, resumed: c.started}
	if st.resumed {
		req.Positions = c.positions()
	}
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var churned atomic.Bool
	drop := func() {
		if env.draining.Load() {
			return // draining: keep reading until the end
		}
		churned.Store(true)
		cancel()
	}
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	if c.staller && !env.draining.Load() {
		st.stallAt = time.Now().Add(randDur(c.rng, so.ChurnMin, max(so.ChurnMin, so.ChurnMax/2)))
		// After the stall the server should cut the stream as soon as the
		// client reads what it buffered; if not, drop it a little later.
		st.arm = func() { timer = time.AfterFunc(randDur(c.rng, 2*time.Second, 4*time.Second), drop) }
	} else {
		timer = time.AfterFunc(randDur(c.rng, so.ChurnMin, so.ChurnMax), drop)
	}

	var err error
	var private *grpc.ClientConn
	var slot *poolConn
	slotIdx := 0
	switch {
	case c.web:
		err = st.readWeb(sctx, req)
	default:
		conn := (*grpc.ClientConn)(nil)
		if c.rng.Float64() < so.ConnDrop {
			private, err = dialGRPC(env.o.GRPCAddr, int32(env.o.Window), int32(env.o.ConnWindow), nil)
			conn = private
		} else {
			slotIdx = c.id % len(env.pool)
			slot = env.pool[slotIdx].Load()
			conn = slot.conn
		}
		if err == nil {
			err = st.readGRPC(sctx, conn, req)
		}
	}
	cancel()
	if private != nil {
		_ = private.Close()
		c.n.connDrops.Add(1)
	}
	switch {
	case st.cut || isCut(err):
		c.n.cuts.Add(1)
		if !st.stalled {
			c.n.cutsReading.Add(1) // a client that was reading fell behind
		}
		return true, false
	case churned.Load():
		c.n.drops.Add(1)
		if st.stalled && !st.drained {
			// The stall ended and the client read on for seconds: the
			// server had not cut the stream.
			c.n.stallsUncut.Add(1)
		}
		return false, false
	case ctx.Err() != nil:
		return false, false
	case slot != nil && env.pool[slotIdx].Load() != slot:
		c.n.poolDrops.Add(1) // its connection was replaced under it
		return true, false
	}
	why := st.ended
	if why == "" && err != nil {
		why = err.Error()
	}
	c.fail("stream %d (%s, web=%v): %s", c.id, c.kind, c.web, why)
	return false, true
}

// run churns until ctx ends, at most maxCycles streams.
func (c *soakClient) run(ctx context.Context, env *soakEnv, delay time.Duration, maxCycles int) {
	defer close(c.done)
	if !sleepCtx(ctx, delay) {
		return
	}
	for range maxCycles {
		again, failed := c.cycle(ctx, env)
		if ctx.Err() != nil {
			return
		}
		pause := time.Duration(0)
		switch {
		case failed:
			pause = 200 * time.Millisecond
		case !again && !env.draining.Load():
			pause = randDur(c.rng, 0, env.o.Soak.ReconnectMax)
		}
		if !sleepCtx(ctx, pause) {
			return
		}
	}
}
