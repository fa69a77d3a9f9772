package wire_test

// Protocol tests of the wire server, continued (protocol_test.go):
// compression, stats handlers, message limits on client streams,
// connection age and keepalive.

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/maxloyalty/notify/internal/wire"
	"golang.org/x/net/http2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// --- compression ------------------------------------------------------------

// clientStats records what a grpc-go client's stats handler sees.
type clientStats struct {
	mu          sync.Mutex
	compression []string
	payloads    [][2]int // Length, CompressedLength
}

func (s *clientStats) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context { return ctx }
func (s *clientStats) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context {
	return ctx
}
func (s *clientStats) HandleConn(context.Context, stats.ConnStats) {}
func (s *clientStats) HandleRPC(_ context.Context, st stats.RPCStats) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch st := st.(type) {
	case *stats.InHeader:
		s.compression = append(s.compression, st.Compression)
	case *stats.InPayload:
		s.payloads = append(s.payloads, [2]int{st.Length, st.CompressedLength})
	}
}

// TestGzip: a call compressed with gzip is answered with gzip: the
// response's grpc-encoding says so and its messages are compressed.
func TestGzip(t *testing.T) {
	s := startWire(t, wire.Config{}, 0)
	t.Run("grpc-go client", func(t *testing.T) {
		rec := &clientStats{}
		conn, err := grpc.NewClient(s.addr, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithStatsHandler(rec))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		c := testpb.NewTestServiceClient(conn)
		cx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		resp, err := c.UnaryCall(cx, &testpb.SimpleRequest{ResponseSize: 10_000, Payload: &testpb.Payload{Body: make([]byte, 5000)}}, grpc.UseCompressor("gzip"))
		if err != nil || len(resp.GetPayload().GetBody()) != 10_000 {
			t.Fatalf("unary: %v", err)
		}
		stream, err := c.StreamingOutputCall(cx, &testpb.StreamingOutputCallRequest{ResponseParameters: []*testpb.ResponseParameters{{Size: 8000}, {Size: 8000}}}, grpc.UseCompressor("gzip"))
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 10; i++ {
			if _, err := stream.Recv(); err == io.EOF {
				break
			} else if err != nil {
				t.Fatal(err)
			}
		}
		rec.mu.Lock()
		defer rec.mu.Unlock()
		if fmt.Sprint(rec.compression) != "[gzip gzip]" {
			t.Errorf("response compression %q, want gzip for both calls", rec.compression)
		}
		if len(rec.payloads) != 3 {
			t.Fatalf("%d responses, want 3", len(rec.payloads))
		}
		for _, p := range rec.payloads {
			if p[1] == 0 || p[1] >= p[0] {
				t.Errorf("response of %d bytes arrived as %d compressed bytes", p[0], p[1])
			}
		}
	})
	t.Run("raw", func(t *testing.T) {
		c := dialH2(t, s.addr, 0)
		body, _ := proto.Marshal(&testpb.SimpleRequest{ResponseSize: 4000})
		var z bytes.Buffer
		w := gzip.NewWriter(&z)
		_, _ = w.Write(body)
		_ = w.Close()
		msg := append(binary.BigEndian.AppendUint32([]byte{1}, uint32(z.Len())), z.Bytes()...)
		id := c.newID()
		c.headers(id, false, callFields("UnaryCall", "grpc-encoding", "gzip", "grpc-accept-encoding", "gzip")...)
		c.data(id, true, msg)
		st := c.expectCode(id, codes.OK)
		if got := st.header("grpc-encoding"); got != "gzip" {
			t.Errorf("response grpc-encoding %q, want gzip", got)
		}
		flags, msgs, err := st.messages()
		if err != nil || len(msgs) != 1 || flags[0] != 1 {
			t.Fatalf("response: %v, flags %v", err, flags)
		}
		r, err := gzip.NewReader(bytes.NewReader(msgs[0]))
		if err != nil {
			t.Fatal(err)
		}
		plain, err := io.ReadAll(r)
		var resp testpb.SimpleResponse
		if err != nil || proto.Unmarshal(plain, &resp) != nil || len(resp.GetPayload().GetBody()) != 4000 {
			t.Fatalf("decompressed response: %v", err)
		}
		// A compressor the server lacks.
		id = c.newID()
		c.headers(id, false, callFields("UnaryCall", "grpc-encoding", "snappy")...)
		c.data(id, true, msg)
		c.expectCode(id, codes.Unimplemented)
	})
}

// --- stats handlers -------------------------------------------------------

type (
	rpcTag  struct{}
	connTag struct{}
)

// statsRecorder records the events of a server's stats handler, by call.
type statsRecorder struct {
	mu      sync.Mutex
	conn    []string
	methods []string   // by call, in the order tagged
	events  [][]string // by call
	ends    []error    // by call: End's error
	bad     []string
	changed chan struct{} // a token when an event was recorded, for await
}

func (r *statsRecorder) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.conn = append(r.conn, "TagConn")
	return context.WithValue(ctx, connTag{}, true)
}

func (r *statsRecorder) HandleConn(ctx context.Context, s stats.ConnStats) {
	r.mu.Lock()
	defer r.mu.Unlock()
	defer r.recordedLocked()
	if ctx.Value(connTag{}) == nil {
		r.bad = append(r.bad, fmt.Sprintf("%T without the connection's tag", s))
	}
	switch s.(type) {
	case *stats.ConnBegin:
		r.conn = append(r.conn, "ConnBegin")
	case *stats.ConnEnd:
		r.conn = append(r.conn, "ConnEnd")
	}
}

func (r *statsRecorder) TagRPC(ctx context.Context, info *stats.RPCTagInfo) context.Context {
	r.mu.Lock()
	defer r.mu.Unlock()
	if ctx.Value(connTag{}) == nil {
		r.bad = append(r.bad, "TagRPC without the connection's tag")
	}
	r.methods = append(r.methods, info.FullMethodName)
	r.events = append(r.events, []string{"TagRPC"})
	r.ends = append(r.ends, nil)
	return context.WithValue(ctx, rpcTag{}, len(r.events)-1)
}

func (r *statsRecorder) HandleRPC(ctx context.Context, s stats.RPCStats) {
	r.mu.Lock()
	defer r.mu.Unlock()
	defer r.recordedLocked()
	i, ok := ctx.Value(rpcTag{}).(int)
	if !ok {
		r.bad = append(r.bad, fmt.Sprintf("%T without the call's tag", s))
		return
	}
	if s.IsClient() {
		r.bad = append(r.bad, fmt.Sprintf("%T says it is the client's", s))
	}
	name := strings.TrimPrefix(fmt.Sprintf("%T", s), "*stats.")
	r.events[i] = append(r.events[i], name)
	if e, ok := s.(*stats.End); ok {
		r.ends[i] = e.Error
	}
}

// ended reports whether every call tagged so far has had its End.
func (r *statsRecorder) ended() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, ev := range r.events {
		if ev[len(ev)-1] != "End" {
			return false
		}
	}
	return true
}

func (r *statsRecorder) connEnded() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.conn) > 0 && r.conn[len(r.conn)-1] == "ConnEnd"
}

// recordedLocked wakes await: an event was recorded.
func (r *statsRecorder) recordedLocked() {
	select {
	case r.changedLocked() <- struct{}{}:
	default: // a token is there already
	}
}

func (r *statsRecorder) changedLocked() chan struct{} {
	if r.changed == nil {
		r.changed = make(chan struct{}, 1)
	}
	return r.changed
}

// await waits up to 10 seconds for cond, looking again at every event the
// stats handler records.
func (r *statsRecorder) await(t *testing.T, what string, cond func() bool) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for !cond() {
		r.mu.Lock()
		changed := r.changedLocked()
		r.mu.Unlock()
		select {
		case <-changed:
		case <-timeout:
			t.Fatalf("timed out waiting: %s", what)
		}
	}
}

// TestStatsHandler: a stats handler sees the connection begin and end and,
// for every call, grpc-go's server events in grpc-go's order, End last
// with the call's status.
func TestStatsHandler(t *testing.T) {
	rec := &statsRecorder{}
	s := startWire(t, wire.Config{StatsHandlers: []stats.Handler{rec}}, 0)
	conn, err := grpc.NewClient(s.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	c := testpb.NewTestServiceClient(conn)
	cx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.UnaryCall(cx, &testpb.SimpleRequest{ResponseSize: 5}); err != nil {
		t.Fatal(err)
	}
	_, err = c.UnaryCall(cx, &testpb.SimpleRequest{ResponseStatus: &testpb.EchoStatus{Code: int32(codes.NotFound), Message: "nope"}})
	if status.Code(err) != codes.NotFound {
		t.Fatalf("failing call: %v", err)
	}
	so, err := c.StreamingOutputCall(cx, &testpb.StreamingOutputCallRequest{ResponseParameters: params(3, 10)})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 4; i++ {
		if _, err := so.Recv(); (err == io.EOF) != (i == 3) || err != nil && err != io.EOF {
			t.Fatalf("server stream, response %d: %v", i, err)
		}
	}
	bidi, err := c.FullDuplexCall(cx)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if err := bidi.Send(&testpb.StreamingOutputCallRequest{Payload: &testpb.Payload{Body: []byte("x")}}); err != nil {
			t.Fatal(err)
		}
		if _, err := bidi.Recv(); err != nil {
			t.Fatal(err)
		}
	}
	_ = bidi.CloseSend()
	if _, err := bidi.Recv(); err != io.EOF {
		t.Fatalf("bidi end: %v", err)
	}
	rec.await(t, "End of every call", rec.ended)
	conn.Close()
	rec.await(t, "ConnEnd", rec.connEnded)

	rec.mu.Lock()
	defer rec.mu.Unlock()
	for _, b := range rec.bad {
		t.Error(b)
	}
	if got := strings.Join(rec.conn, " "); got != "TagConn ConnBegin ConnEnd" {
		t.Errorf("connection events %q", got)
	}
	head := "TagRPC InHeader Begin InPayload "
	want := []struct {
		method, events string
		code           codes.Code
	}{
		{"UnaryCall", head + "OutHeader OutPayload OutTrailer End", codes.OK},
		{"UnaryCall", head + "OutTrailer End", codes.NotFound},
		{"StreamingOutputCall", head + "OutHeader OutPayload OutPayload OutPayload OutTrailer End", codes.OK},
		{"FullDuplexCall", "TagRPC InHeader Begin InPayload OutHeader OutPayload InPayload OutPayload OutTrailer End", codes.OK},
	}
	if len(rec.events) != len(want) {
		t.Fatalf("%d calls seen, want %d: %v", len(rec.events), len(want), rec.methods)
	}
	for i, w := range want {
		if rec.methods[i] != testMethod+w.method {
			t.Errorf("call %d: method %q, want %s", i, rec.methods[i], w.method)
		}
		if got := strings.Join(rec.events[i], " "); got != w.events {
			t.Errorf("call %d (%s):\n got %s\nwant %s", i, w.method, got, w.events)
		}
		if status.Code(rec.ends[i]) != w.code {
			t.Errorf("call %d (%s): End error %v, want %v", i, w.method, rec.ends[i], w.code)
		}
	}
}

// TestStatsEndWithoutHandler: a call that began (its InHeader and Begin
// were seen) and ends before its handler runs, reset by the client or
// with its connection, still gets its End, as on grpc-go's server, so
// that a tracing handler ends its span.
func TestStatsEndWithoutHandler(t *testing.T) {
	rec := &statsRecorder{}
	s := startWire(t, wire.Config{StatsHandlers: []stats.Handler{rec}}, 0)
	c := dialH2(t, s.addr, 0)
	id := c.newID()
	c.headers(id, false, callFields("UnaryCall")...)
	c.ping()
	_ = c.fr.WriteRSTStream(id, http2.ErrCodeCancel)
	id = c.newID()
	c.headers(id, false, callFields("UnaryCall")...)
	c.ping()
	c.nc.Close()
	rec.await(t, "ConnEnd", rec.connEnded)
	rec.await(t, "End of every call", rec.ended)
}

// TestClientStreamMessageOverLimit: a message over MaxRecvMsgSize on a
// client-streaming call, whose handler runs already, fails the call with
// RESOURCE_EXHAUSTED once: the stats handler sees one End, last, and the
// handler reads nothing after it.
func TestClientStreamMessageOverLimit(t *testing.T) {
	rec := &statsRecorder{}
	s := startWire(t, wire.Config{MaxRecvMsgSize: 1000, StatsHandlers: []stats.Handler{rec}}, 0)
	c := dialH2(t, s.addr, 0)
	id := c.newID()
	c.headers(id, false, callFields("StreamingInputCall")...)
	c.data(id, false, frameMsg(&testpb.StreamingInputCallRequest{Payload: &testpb.Payload{Body: []byte("one")}}))
	c.data(id, false, []byte{0, 0, 0, 0x07, 0xd0}) // 2000 bytes
	c.expectCode(id, codes.ResourceExhausted)
	select {
	case <-s.svc.inputDone:
	case <-time.After(10 * time.Second):
		t.Fatal("the handler did not return")
	}
	rec.await(t, "End", rec.ended)
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.events) != 1 {
		t.Fatalf("%d calls seen", len(rec.events))
	}
	ev := rec.events[0]
	if n := strings.Count(strings.Join(ev, " "), "End"); n != 1 || ev[len(ev)-2] != "OutTrailer" {
		t.Errorf("events %v, want one OutTrailer and End, last", ev)
	}
	if status.Code(rec.ends[0]) != codes.ResourceExhausted {
		t.Errorf("End error %v, want ResourceExhausted", rec.ends[0])
	}
}

// --- connection lifetime --------------------------------------------------

// TestMaxConnectionIdle: a connection with no call for MaxConnectionIdle
// gets GOAWAY NO_ERROR and is closed; one with a call running is not.
func TestMaxConnectionIdle(t *testing.T) {
	const idle = 200 * time.Millisecond
	s := startWire(t, wire.Config{MaxConnectionIdle: idle}, 0)
	t.Run("idle", func(t *testing.T) {
		c := dialH2(t, s.addr, 0)
		c.expectGoAway(http2.ErrCodeNo)
	})
	t.Run("busy", func(t *testing.T) {
		c := dialH2(t, s.addr, 0)
		id := c.unary(&testpb.SimpleRequest{ResponseSize: 1}, "x-gate", "1")
		s.svc.waitStarted(t, 1)
		// A connection dialed after this one, idle, gets its GOAWAY once
		// MaxConnectionIdle has passed for it; by then it has for this one.
		dialH2(t, s.addr, 0).expectGoAway(http2.ErrCodeNo)
		for _, f := range c.ping() {
			if f.typ == http2.FrameGoAway {
				t.Fatalf("%v while a call ran", f)
			}
		}
		s.svc.releaseOne(t)
		c.expectCode(id, codes.OK)
		g := c.expectGoAway(http2.ErrCodeNo)
		if g.last != id {
			t.Errorf("GOAWAY's last stream %d, want %d", g.last, id)
		}
	})
}

// TestMaxConnectionAge: a connection past MaxConnectionAge gets GOAWAY
// NO_ERROR naming its last stream; new streams are refused; it is closed
// when its calls end, or when the grace period ends.
func TestMaxConnectionAge(t *testing.T) {
	hold := func(c *h2Client) uint32 {
		id := c.newID()
		c.headers(id, false, callFields("StreamingOutputCall", "x-hold", "1")...)
		c.data(id, true, frameMsg(&testpb.StreamingOutputCallRequest{ResponseParameters: params(1, 5)}))
		return id
	}
	t.Run("grace", func(t *testing.T) {
		s := startWire(t, wire.Config{MaxConnectionAge: 200 * time.Millisecond, MaxConnectionAgeGrace: 300 * time.Millisecond}, 0)
		c := dialH2(t, s.addr, 0)
		id := hold(c)
		if g := c.nextGoAway(1000, http2.ErrCodeNo); g.last != id {
			t.Fatalf("%v, want GOAWAY NO_ERROR last=%d", g, id)
		}
		for i := 0; ; i++ {
			if _, err := c.next(); err != nil {
				break // closed at the end of the grace period
			}
			if i == 1000 {
				t.Fatal("the connection goes on after its grace period")
			}
		}
		if c.stream(id).ended {
			t.Errorf("the held stream ended normally: %v", c.stream(id))
		}
	})
	t.Run("no grace", func(t *testing.T) {
		s := startWire(t, wire.Config{MaxConnectionAge: 200 * time.Millisecond}, 0)
		c := dialH2(t, s.addr, 0)
		id := hold(c)
		if g := c.nextGoAway(1000, http2.ErrCodeNo); g.last != id {
			t.Fatalf("%v, want GOAWAY NO_ERROR last=%d", g, id)
		}
		late := c.unary(&testpb.SimpleRequest{ResponseSize: 1})
		c.expectRST(late, http2.ErrCodeRefusedStream)
		for _, f := range c.ping() {
			if f.typ == http2.FrameGoAway {
				t.Fatalf("second GOAWAY %v", f)
			}
		}
		// The connection stays while its call runs; it closes when the
		// call ends.
		if err := c.fr.WriteRSTStream(id, http2.ErrCodeCancel); err != nil {
			t.Fatal(err)
		}
		c.expectEnd()
	})
}

// TestKeepaliveUnreadClient: a client that sends nothing and reads
// nothing while the server has output for it is closed by keepalive: the
// ping cannot be answered, so it is closed KeepaliveTime+KeepaliveTimeout
// after its last frame (and its stuck write given up).
func TestKeepaliveUnreadClient(t *testing.T) {
	const kt, kto, sockBuf = 300 * time.Millisecond, 300 * time.Millisecond, 32 << 10
	rec := &statsRecorder{}
	s := startWire(t, wire.Config{KeepaliveTime: kt, KeepaliveTimeout: kto, StatsHandlers: []stats.Handler{rec}}, sockBuf)
	c := dialH2(t, s.addr, sockBuf, http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1<<31 - 1})
	if err := c.fr.WriteWindowUpdate(0, 1<<31-1-65535); err != nil {
		t.Fatal(err)
	}
	id := c.newID()
	c.headers(id, false, callFields("StreamingOutputCall")...)
	c.data(id, true, frameMsg(&testpb.StreamingOutputCallRequest{ResponseParameters: params(1000, 32<<10)}))
	start := time.Now()
	rec.await(t, "the connection to close", rec.connEnded)
	// The server's write to a client that reads nothing is given a second
	// after the close; the rest is slack for a loaded machine.
	if d := time.Since(start); d > kt+kto+time.Second+5*time.Second {
		t.Errorf("closed %v after the client's last frame, want about %v", d, kt+kto)
	}
	t.Logf("closed after %v", time.Since(start))
}
