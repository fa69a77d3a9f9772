package main

// The HTTP/2 attack suite: TestAttack and its cases. The raw-frame client
// is in attack_client_test.go, the checks and measurements in
// attack_checks_test.go.

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	notifyv1 "github.com/maxloyalty/notify/gen/notify/v1"
	"github.com/maxloyalty/notify/internal/testenv"
)

const (
	// reactTimeout bounds how long a server may take to answer a protocol
	// violation (close the connection, reset the stream, answer a call).
	reactTimeout = 5 * time.Second
	// stallTimeout: a write that makes no progress for this long means the
	// server stopped reading the connection.
	stallTimeout = time.Second
	// floodTime bounds each flood's duration.
	floodTime = 5 * time.Second
	// maxMessageBytes is notifyd's default --max-message-bytes.
	maxMessageBytes = 256 << 10

	// defaultGrowth bounds the RSS growth of notifyd during a case that
	// must leave memory flat: well above what a race-enabled notifyd grows
	// by while it serves these loads (the race detector multiplies the
	// heap), well below what the failures it catches grow it by (replies
	// or output queued without bound, a body buffered whole, a frame loop).
	defaultGrowth = 96 << 20
	// manyStreamsGrowth bounds the growth during the cases that hold up to
	// the stream limit's worth of calls open (each a handler goroutine
	// and its buffers, several times their size under the race detector).
	manyStreamsGrowth = 160 << 20
	// grpcGoUnreadGrowth bounds grpc-go's growth during the unread
	// responses: its server throttles its reader on queued control replies
	// only, so every unary response to a peer that never reads stays
	// queued, and its memory follows the calls (unreadCalls of them), by
	// 3 to 9 KiB each under the race detector depending on how far
	// collection lags on a busy machine.
	grpcGoUnreadGrowth = 320 << 20

	// continuationFloodBytes bounds the CONTINUATION flood; the server must
	// close before continuationMaxBytes were sent (its header list limit,
	// at most a few MiB, plus the sockets' buffers).
	continuationFloodBytes = 64 << 20
	continuationMaxBytes   = 24 << 20
	// endlessBodyBytes bounds the endless request body; endlessMaxWindow
	// bounds the stream window the server may grant it: one message of
	// the largest size and a window or two more.
	endlessBodyBytes = 64 << 20
	endlessMaxWindow = maxMessageBytes + 4<<20
	// controlFloodBytes bounds a flood of frames that each need a reply
	// of their size, never read: the replies to that many bytes of frames
	// are more than the sockets' buffers hold (a server whose writes block
	// and that goes on reading has queued the rest). controlFloodTime
	// bounds its duration.
	controlFloodBytes = 16 << 20
	controlFloodTime  = 15 * time.Second
	// unreadCalls bounds the calls sent on a connection that never reads.
	unreadCalls = 25600
	// rapidResetPairs bounds the HEADERS+RST_STREAM pairs.
	rapidResetPairs = 20000
	// readFloodFrames bounds each flood of case 8 (the client reads).
	readFloodFrames = 200000
	// maxAdvertisedStreams is the most SETTINGS_MAX_CONCURRENT_STREAMS
	// the suite accepts as a bound.
	maxAdvertisedStreams = 10000
	// zeroWindowStreams is the number of Subscribe streams that never
	// open their window; zeroWindowEvents the events published to them.
	zeroWindowStreams = 100
	zeroWindowEvents  = 300
	// slowlorisConns is the number of connections of each kind that stop
	// mid-handshake; slowlorisGrowth bounds the memory they may hold.
	slowlorisConns  = 50
	slowlorisGrowth = 64 << 20
	// bigHeader is the size of the one oversized header value of case 12.
	bigHeader = 100 << 10
)

// attackEnv is what a case attacks.
type attackEnv struct {
	d   *daemon
	svc string // a service token
}

// dial opens a raw connection to the native port.
func (e *attackEnv) dial(t *testing.T, o dialOpts) *rawConn {
	t.Helper()
	return dialRaw(t, e.d.grpcAddr, o)
}

// open dials and completes the handshake with default settings.
func (e *attackEnv) open(t *testing.T) *rawConn {
	t.Helper()
	c := e.dial(t, dialOpts{})
	c.handshake()
	return c
}

// attackCase is one attack, run on each transport.
type attackCase struct {
	name      string
	args      []string // extra notifyd flags
	maxGrowth int64    // bound on notifyd's RSS growth during the case
	// grpcGoGrowth, when set, replaces maxGrowth on grpc-go's server,
	// where it does not defend against the case.
	grpcGoGrowth int64
	run          func(t *testing.T, e *attackEnv)
}

// TestAttack runs the known HTTP/2 attacks (floods, unbounded buffers,
// malformed frames, the published CVE patterns) against a real notifyd on
// each transport of the native gRPC port, with a raw-frame client. Every
// case runs on a fresh notifyd and checks, besides its own expectation,
// that the server's memory stayed bounded, that a well-behaved client on
// another connection was served throughout, and that the process is still
// alive and SERVING at the end.
//
// The expectations are RFC 9113's and grpc-go's server's; where grpc-go
// does not defend against a pattern, the case asserts the bounds only and
// says what each transport does. One transport:
//
//	go test -race -run 'TestAttack/wire/' ./cmd/notifyd/
func TestAttack(t *testing.T) {
	for _, transport := range []string{"grpc-go", "wire"} {
		for _, c := range attackCases {
			t.Run(transport+"/"+c.name, func(t *testing.T) { runAttack(t, transport, c) })
		}
	}
}

// runAttack starts a notifyd on transport, a well-behaved client, runs the
// case, and checks the bounds common to every case.
func runAttack(t *testing.T, transport string, c attackCase) {
	// A soft limit on notifyd's heap, well below the growth bounds, makes
	// its collector keep up when the machine is busy (tests of other
	// packages run beside this one), so that RSS follows what the attack
	// makes the server keep, not how far collection lags. What a case
	// keeps without bound still grows past it, and past the bound.
	t.Setenv("GOMEMLIMIT", "48MiB")
	args := append([]string{"--grpc-transport", transport,
		// Go's own garbage collection pacing, so that RSS follows the live heap.
		"--gc-floor", "-1",
		"--log-level", "warn"}, c.args...)
	d := startDaemon(t, t.TempDir(), args...)
	e := &attackEnv{d: d, svc: token(t, serviceClaims)}
	mon := startMonitor(t, d, e.svc)
	mem := watchMem(t, d.cmd.Process.Pid)

	c.run(t, e)

	growth, base := mem.growth()
	t.Logf("notifyd RSS %s at the start, grew by at most %s", mib(base), mib(growth))
	bound := c.maxGrowth
	if transport == "grpc-go" && c.grpcGoGrowth != 0 {
		bound = c.grpcGoGrowth
	}
	if growth > bound {
		t.Errorf("notifyd RSS grew by %s during the attack, want at most %s", mib(growth), mib(bound))
	}
	mon.check(t)
	checkServing(t, d)
}

var attackCases = []attackCase{
	{name: "invalid-settings", maxGrowth: defaultGrowth, run: attackInvalidSettings},
	{name: "continuation-flood", maxGrowth: defaultGrowth, run: attackContinuationFlood},
	{name: "endless-body", maxGrowth: defaultGrowth, run: attackEndlessBody},
	{name: "unread-control-replies", maxGrowth: defaultGrowth, run: attackUnreadControlReplies},
	{name: "unread-responses", maxGrowth: manyStreamsGrowth, grpcGoGrowth: grpcGoUnreadGrowth, run: attackUnreadResponses},
	{name: "rapid-reset", maxGrowth: defaultGrowth, run: attackRapidReset},
	{name: "streams-past-limit", maxGrowth: manyStreamsGrowth, run: attackStreamsPastLimit},
	{name: "floods", maxGrowth: defaultGrowth, run: attackFloods},
	{
		name: "zero-window-subscribers",
		// Small queues so that slow consumers are cut early, room for the
		// streams, and a short history so that retained events do not
		// count as growth.
		args:      []string{"--queue-bytes", "16384", "--max-streams-per-user", "1000", "--history", "restaurant=10/1m"},
		maxGrowth: manyStreamsGrowth,
		run:       attackZeroWindowSubscribers,
	},
	{
		name:      "slowloris",
		args:      []string{"--keepalive-time", "1s", "--keepalive-timeout", "1s", "--min-ping-interval", "500ms"},
		maxGrowth: slowlorisGrowth,
		run:       attackSlowloris,
	},
	{name: "malformed-frames", maxGrowth: defaultGrowth, run: attackMalformedFrames},
	{name: "big-header", maxGrowth: defaultGrowth, run: attackBigHeader},
	{name: "non-grpc-requests", maxGrowth: defaultGrowth, run: attackNonGRPC},
}

// 1. Invalid SETTINGS values, then a request: a connection error of the
// type RFC 9113 §6.5.2 gives each. grpc-go's server checks only
// INITIAL_WINDOW_SIZE (FLOW_CONTROL_ERROR): it ignores an invalid
// MAX_FRAME_SIZE or ENABLE_PUSH (it never pushes, and writes frames of at
// most 16 KiB whatever the client allows) and answers the request. So the
// case accepts the RFC's connection error or the setting ignored with the
// request answered, within reactTimeout; never a hang.
func attackInvalidSettings(t *testing.T, e *attackEnv) {
	for _, v := range []struct {
		name    string
		setting http2.Setting
		code    http2.ErrCode
	}{
		{"max-frame-size-0", http2.Setting{ID: http2.SettingMaxFrameSize, Val: 0}, http2.ErrCodeProtocol},
		{"max-frame-size-2^24", http2.Setting{ID: http2.SettingMaxFrameSize, Val: 1 << 24}, http2.ErrCodeProtocol},
		{"enable-push-2", http2.Setting{ID: http2.SettingEnablePush, Val: 2}, http2.ErrCodeProtocol},
		{"initial-window-size-2^31", http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1 << 31}, http2.ErrCodeFlowControl},
	} {
		t.Run(v.name, func(t *testing.T) {
			c := e.dial(t, dialOpts{})
			c.settings(v.setting)
			id := c.publish(e.svc, "restaurant:atk")
			_ = c.flush() // the server may close first
			r := c.startReader()
			if expectErrorOrServed(t, r, v.code, 0, id, reactTimeout) {
				t.Logf("setting ignored, request answered: %s", r.describe())
			}
		})
	}
}

// 2. CONTINUATION flood (CVE-2023-45288): a header block that never ends,
// of never-indexed literal fields. The server must close the connection
// before much more than its header list limit was sent, not decode
// forever.
func attackContinuationFlood(t *testing.T, e *attackEnv) {
	c := e.open(t)
	r := c.startReader()
	id := c.newStream()
	c.built(c.wf.WriteHeaders(http2.HeadersFrameParam{
		StreamID:      id,
		BlockFragment: c.block(requestFields(e.d.grpcAddr, publishPath, e.svc)...),
	}))
	c.mustFlush()
	frag := c.block(hpack.HeaderField{Name: "x-flood", Value: strings.Repeat("a", 12000), Sensitive: true})
	if len(frag) > c.maxFrame() {
		t.Fatalf("fragment of %d bytes exceeds the frame size %d", len(frag), c.maxFrame())
	}
	for range 32 {
		c.built(c.wf.WriteContinuation(id, false, frag))
	}
	chunk := c.take()
	c.writeTimeout = stallTimeout
	start := time.Now()
	var err error
	for c.sent < continuationFloodBytes && time.Since(start) < floodTime && err == nil {
		err = c.write(chunk)
	}
	sent := c.sent
	closed := r.waitClosed(reactTimeout)
	t.Logf("CONTINUATION flood: %s sent in %v, write error %v; server: %s", mib(sent), time.Since(start).Round(time.Millisecond), err, r.describe())
	switch {
	case !closed && err == nil:
		t.Errorf("the server read %s of one header block without closing the connection", mib(sent))
	case !closed:
		t.Errorf("the server stopped reading after %s of one header block (%v) but did not close the connection within %v", mib(sent), err, reactTimeout)
	case sent > continuationMaxBytes:
		t.Errorf("the server closed the connection only after %s of one header block, want before %s", mib(sent), mib(continuationMaxBytes))
	}
}

// 3. A request body that never ends, sent without regard to flow control:
// the server must end the stream (RST_STREAM, a status, or a connection
// error: FLOW_CONTROL_ERROR once the client exceeds its window) without
// granting it more than a message's worth of window. And a message whose
// declared length exceeds --max-message-bytes is refused at once.
func attackEndlessBody(t *testing.T, e *attackEnv) {
	t.Run("endless", func(t *testing.T) {
		c := e.open(t)
		r := c.startReader()
		id := c.newStream()
		c.headers(id, false, requestFields(e.d.grpcAddr, publishPath, e.svc)...)
		c.data(id, false, grpcPrefix(maxMessageBytes))
		c.mustFlush()
		zeros := make([]byte, c.maxFrame())
		for range 16 {
			c.data(id, false, zeros)
		}
		chunk := c.take()
		c.writeTimeout = stallTimeout
		start := time.Now()
		var err error
		done := func() bool { return r.snapshot(func(s *seen) bool { return streamDone(id)(s) || s.closed != nil }) }
		for c.sent < endlessBodyBytes && time.Since(start) < floodTime && err == nil && !done() {
			err = c.write(chunk)
		}
		sent := c.sent
		r.wait(reactTimeout, streamDone(id))
		window := snapshotOf(r, func(s *seen) int64 { return streamWindow(c, s, id) })
		t.Logf("endless body: %s sent in %v (write error %v), stream window granted %d; server: %s",
			mib(sent), time.Since(start).Round(time.Millisecond), err, window, r.describe())
		if !r.snapshot(func(s *seen) bool { return streamDone(id)(s) || s.serverClosed() }) {
			t.Errorf("the server did not end a request whose body never ends within %v of %s sent", reactTimeout, mib(sent))
		}
		if window > endlessMaxWindow {
			t.Errorf("the server granted the endless body a window of %d bytes, want at most %d", window, endlessMaxWindow)
		}
	})
	t.Run("declared-too-large", func(t *testing.T) {
		c := e.open(t)
		r := c.startReader()
		id := c.newStream()
		c.headers(id, false, requestFields(e.d.grpcAddr, publishPath, e.svc)...)
		c.data(id, false, append(grpcPrefix(maxMessageBytes+1), make([]byte, 1024)...))
		c.mustFlush()
		// Nothing more is sent: the declared length alone must be refused.
		if !r.wait(reactTimeout, streamDone(id)) {
			t.Fatalf("a message declared %d bytes long (above %d) not refused within %v: %s", maxMessageBytes+1, maxMessageBytes, reactTimeout, r.describe())
		}
		snapshotOf(r, func(s *seen) bool {
			if resp := s.resp[id]; resp == nil || resp.grpcStatus != "8" {
				t.Errorf("a message declared %d bytes long: want grpc-status 8 (RESOURCE_EXHAUSTED): %s", maxMessageBytes+1, s)
			}
			return true
		})
	})
}

// streamWindow is the send window the server granted the client on stream
// id: its initial window and every WINDOW_UPDATE for the stream.
func streamWindow(c *rawConn, s *seen, id uint32) int64 {
	w := int64(65535)
	if v, ok := c.serverSetting(http2.SettingInitialWindowSize); ok {
		w = int64(v)
	}
	return w + s.windowUpdates[id]
}

// 4. Frames that each need a reply (SETTINGS, PING), sent without ever
// reading the replies (CVE-2019-9512, -9515): the server must stop reading
// (its writes blocked, it must not queue the replies without bound) or
// close the connection, before the flood ends.
func attackUnreadControlReplies(t *testing.T, e *attackEnv) {
	for _, v := range []struct {
		name  string
		frame func(c *rawConn, i int)
	}{
		{"settings", func(c *rawConn, _ int) { c.settings() }},
		{"ping", func(c *rawConn, i int) { c.ping(false, [8]byte{byte(i >> 8), byte(i)}) }},
	} {
		t.Run(v.name, func(t *testing.T) {
			c := e.dial(t, dialOpts{bufBytes: 4096})
			c.handshake()
			const perChunk = 4096
			for i := range perChunk {
				v.frame(c, i)
			}
			chunk := c.take()
			c.writeTimeout = stallTimeout
			start := time.Now()
			frames := 0
			var err error
			for c.sent < controlFloodBytes && time.Since(start) < controlFloodTime && err == nil {
				err = c.write(chunk)
				frames += perChunk
			}
			t.Logf("%s flood, replies unread: %d frames (%s) written in %v, then %v", v.name, frames, mib(c.sent), time.Since(start).Round(time.Millisecond), err)
			switch {
			case err == nil:
				t.Errorf("the server read %d %s frames (%s) whose replies were never read, without stopping or closing", frames, v.name, mib(c.sent))
			case !isTimeout(err) && !isClosedByPeer(err):
				t.Errorf("write: %v, want a timeout (the server stopped reading) or the server closing the connection", err)
			}
		})
	}
}

// 5. Many unary calls on one connection whose responses are never read:
// memory bounded, other clients served. A server may stop reading the
// connection once its writes block, or refuse streams past its limit
// (they never complete); either way the bounds are the assertion.
// grpc-go's server does neither for unary responses: it queues them all,
// and its bound is the larger grpcGoUnreadGrowth.
func attackUnreadResponses(t *testing.T, e *attackEnv) {
	c := e.dial(t, dialOpts{bufBytes: 4096})
	c.handshake()
	c.writeTimeout = stallTimeout
	start := time.Now()
	calls := 0
	var err error
	for calls < unreadCalls && time.Since(start) < floodTime && err == nil {
		for range 256 {
			c.publish(e.svc, "restaurant:atk")
			calls++
		}
		err = c.flush()
	}
	t.Logf("unread responses: %d calls (%s) written in %v, then %v", calls, mib(c.sent), time.Since(start).Round(time.Millisecond), err)
	if err != nil {
		if !isTimeout(err) && !isClosedByPeer(err) {
			t.Errorf("write: %v", err)
		}
		// The server stopped reading (no progress for stallTimeout) or
		// closed the connection: it is past every call it took.
		return
	}
	// pacing: the attack holds for an observation window with the socket
	// unread, while the server works through what it took and its memory
	// is sampled. Reading the socket to see a reply (a PING's ACK) would
	// let the server write its refusals and headers and take more calls:
	// another attack than responses nobody reads.
	time.Sleep(time.Second)
}

// 6. Rapid reset (CVE-2023-44487): HEADERS then RST_STREAM, over and over.
// The server closes the connection (GOAWAY ENHANCE_YOUR_CALM or similar) or
// bounds the work; the bounds and the other client are the assertion.
// Neither transport closes the connection; both stay within the bounds.
func attackRapidReset(t *testing.T, e *attackEnv) {
	c := e.open(t)
	r := c.startReader()
	c.writeTimeout = stallTimeout
	fields := requestFields(e.d.grpcAddr, publishPath, e.svc)
	start := time.Now()
	pairs := 0
	var err error
	for pairs < rapidResetPairs && time.Since(start) < floodTime && err == nil {
		for range 100 {
			id := c.newStream()
			c.headers(id, false, fields...)
			c.rst(id, http2.ErrCodeCancel)
			pairs++
		}
		err = c.flush()
		if r.snapshot(func(s *seen) bool { return s.closed != nil }) {
			break
		}
	}
	r.wait(500*time.Millisecond, func(*seen) bool { return false })
	t.Logf("rapid reset: %d HEADERS+RST_STREAM pairs in %v (write error %v); server: %s", pairs, time.Since(start).Round(time.Millisecond), err, r.describe())
}

// 7. More concurrent streams than the server's advertised
// SETTINGS_MAX_CONCURRENT_STREAMS: the extra ones are refused
// (RST_STREAM REFUSED_STREAM, or a connection error PROTOCOL_ERROR).
func attackStreamsPastLimit(t *testing.T, e *attackEnv) {
	c := e.open(t)
	limit, ok := c.serverSetting(http2.SettingMaxConcurrentStreams)
	if !ok {
		t.Fatalf("the server does not advertise SETTINGS_MAX_CONCURRENT_STREAMS: %v", c.server)
	}
	if limit > maxAdvertisedStreams {
		t.Fatalf("SETTINGS_MAX_CONCURRENT_STREAMS %d, want a bound of at most %d", limit, maxAdvertisedStreams)
	}
	r := c.startReader()
	const extra = 10
	fields := requestFields(e.d.grpcAddr, publishPath, e.svc)
	var ids []uint32
	for i := range int(limit) + extra {
		// A call without its message: its handler waits, the stream stays open.
		id := c.newStream()
		ids = append(ids, id)
		c.headers(id, false, fields...)
		if i%256 == 255 {
			c.mustFlush()
		}
	}
	c.mustFlush()
	last := ids[len(ids)-1]
	r.wait(reactTimeout, func(s *seen) bool { _, ok := s.rst[last]; return ok })
	snapshotOf(r, func(s *seen) bool {
		if s.serverClosed() {
			if g, ok := s.lastGoAway(); ok && g.code != http2.ErrCodeProtocol {
				t.Errorf("connection closed with GOAWAY %v, want REFUSED_STREAM resets or PROTOCOL_ERROR: %s", g.code, s)
			}
			return true
		}
		for i, id := range ids {
			code, reset := s.rst[id]
			switch {
			case i < int(limit) && reset:
				t.Errorf("stream %d (%d of the limit %d) reset %v", id, i+1, limit, code)
			case i >= int(limit) && !reset:
				t.Errorf("stream %d (%d past the limit %d) not refused within %v", id, i+1-int(limit), limit, reactTimeout)
			case i >= int(limit) && code != http2.ErrCodeRefusedStream:
				t.Errorf("stream %d past the limit reset %v, want REFUSED_STREAM", id, code)
			}
		}
		return true
	})
	t.Logf("limit %d; server: %s", limit, r.describe())
}

// 8. Floods of frames the server must handle cheaply, while the client
// reads everything: PING, SETTINGS, WINDOW_UPDATE, PRIORITY, empty DATA.
// Both transports end a PING flood with GOAWAY ENHANCE_YOUR_CALM
// (too_many_pings) and keep the connection open through the others.
// RFC 9113 requires neither, so the assertion is the bounds; what each
// transport did is logged.
func attackFloods(t *testing.T, e *attackEnv) {
	for _, v := range []struct {
		name  string
		setup func(c *rawConn) uint32 // opens a stream when the flood needs one
		frame func(c *rawConn, id uint32, i int)
	}{
		{"ping", nil, func(c *rawConn, _ uint32, i int) { c.ping(false, [8]byte{byte(i >> 16), byte(i >> 8), byte(i)}) }},
		{"settings", nil, func(c *rawConn, _ uint32, _ int) { c.settings() }},
		{"window-update", nil, func(c *rawConn, _ uint32, _ int) { c.windowUpdate(0, 1) }},
		{"priority", nil, func(c *rawConn, _ uint32, i int) { c.priority(uint32(2*i+1), 0, 15) }},
		{"empty-data", func(c *rawConn) uint32 {
			id := c.newStream()
			c.headers(id, false, requestFields(c.nc.RemoteAddr().String(), publishPath, e.svc)...)
			return id
		}, func(c *rawConn, id uint32, _ int) { c.data(id, false, nil) }},
	} {
		t.Run(v.name, func(t *testing.T) {
			c := e.open(t)
			r := c.startReader()
			var id uint32
			if v.setup != nil {
				id = v.setup(c)
				c.mustFlush()
			}
			c.writeTimeout = stallTimeout
			start := time.Now()
			frames := 0
			var err error
			for frames < readFloodFrames && time.Since(start) < floodTime && err == nil {
				for range 1024 {
					v.frame(c, id, frames)
					frames++
				}
				err = c.flush()
				if r.snapshot(func(s *seen) bool { return s.closed != nil }) {
					break
				}
			}
			r.wait(200*time.Millisecond, func(*seen) bool { return false })
			t.Logf("%s flood: %d frames in %v (write error %v); server: %s", v.name, frames, time.Since(start).Round(time.Millisecond), err, r.describe())
			if err != nil && !isTimeout(err) && !isClosedByPeer(err) {
				t.Errorf("write: %v", err)
			}
		})
	}
}

// 9. Many Subscribe streams whose window never opens
// (SETTINGS_INITIAL_WINDOW_SIZE 0) while events are published to their
// room: the server cannot send them anything, and must cut them as slow
// consumers instead of queueing without bound. One service token holds
// them all, in one shared room, so that each publish is queued for every
// stream.
func attackZeroWindowSubscribers(t *testing.T, e *attackEnv) {
	const room = "restaurant:atk9"
	c := e.dial(t, dialOpts{})
	c.handshake(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 0})
	r := c.startReader()
	n := zeroWindowStreams
	if limit, ok := c.serverSetting(http2.SettingMaxConcurrentStreams); ok && int(limit) < n {
		n = int(limit)
	}
	fields := requestFields(e.d.grpcAddr, subscribePath, e.svc)
	msg := grpcMessage(&notifyv1.SubscribeRequest{Rooms: []string{room}})
	for range n {
		id := c.newStream()
		c.headers(id, false, fields...)
		c.data(id, true, msg)
	}
	c.mustFlush()
	// The streams are subscribed once the hub counts them (and the
	// monitor's stream).
	subscribed := false
	defer func() {
		if !subscribed {
			t.Logf("connection: %s", r.describe())
		}
	}()
	testenv.Eventually(t, reactTimeout, fmt.Sprintf("the %d zero-window streams and the monitor's subscribed", n),
		func() bool { return subscribers(t, e.d) >= n+1 })
	subscribed = true

	before := metricValue(t, e.d, "notify_slow_consumer_disconnects_total")
	conn, err := grpc.NewClient("passthrough:///"+e.d.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	pub := notifyv1.NewNotificationServiceClient(conn)
	ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+e.svc)
	qr := strings.Repeat("q", 16<<10)
	for i := range zeroWindowEvents {
		cctx, cancel := context.WithTimeout(ctx, monitorCallTimeout)
		_, err := pub.Publish(cctx, &notifyv1.PublishRequest{
			Rooms: []string{room},
			Payload: &notifyv1.PublishRequest_CardCreated{CardCreated: &notifyv1.CardCreated{
				GuestId: "g1", CardId: fmt.Sprintf("c%d", i), RestaurantId: "r1", QrCode: qr,
			}},
		})
		cancel()
		if err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
	}
	// Every stream fell behind by far more than its queue: each must be cut.
	cut := 0.0
	defer func() {
		t.Logf("%d zero-window streams, %d events of 16 KiB: %v cut as slow consumers; connection: %s", n, zeroWindowEvents, cut, r.describe())
	}()
	testenv.Eventually(t, reactTimeout, fmt.Sprintf("all %d zero-window streams cut as slow consumers", n), func() bool {
		cut = metricValue(t, e.d, "notify_slow_consumer_disconnects_total") - before
		return int(cut) >= n
	})
}

// subscribers reads notifyd's open subscriber count from /metrics.
func subscribers(t *testing.T, d *daemon) int {
	return int(metricValue(t, d, "notify_subscribers"))
}

// metricValue returns the sum of a metric's series on d's /metrics.
func metricValue(t *testing.T, d *daemon, name string) float64 {
	t.Helper()
	client := &http.Client{Timeout: monitorCallTimeout}
	resp, err := client.Get("http://" + d.httpAddr + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	sum := 0.0
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(line, name+" ") && !strings.HasPrefix(line, name+"{") {
			continue
		}
		f := strings.Fields(line)
		if v, err := strconv.ParseFloat(f[len(f)-1], 64); err == nil {
			sum += v
		}
	}
	return sum
}

// 10. Slowloris: connections that stop mid-handshake (half the preface,
// the preface only, or half a frame header). The server closes them
// within its handshake and keepalive bounds or holds them at bounded
// memory; one its keepalive pinged must be closed, and what each
// transport did is logged. grpc-go closes those stopped
// mid-frame (unanswered keepalive pings) and holds the others until its
// connection timeout of two minutes; wire also closes those stopped after
// the preface.
func attackSlowloris(t *testing.T, e *attackEnv) {
	kinds := []struct {
		name string
		send func(c *rawConn) []byte
	}{
		{"half-preface", func(*rawConn) []byte { return []byte(http2.ClientPreface[:12]) }},
		{"preface-only", func(*rawConn) []byte { return []byte(http2.ClientPreface) }},
		{"half-frame-header", func(c *rawConn) []byte {
			c.settings()
			return append([]byte(http2.ClientPreface), append(c.take(), 0, 0, 10, byte(http2.FrameHeaders))...)
		}},
	}
	readers := make([][]*reader, len(kinds))
	for k, kind := range kinds {
		for range slowlorisConns {
			c := e.dial(t, dialOpts{noPreface: true})
			if err := c.write(kind.send(c)); err != nil {
				t.Fatalf("%s: %v", kind.name, err)
			}
			readers[k] = append(readers[k], c.startReader())
		}
	}
	// The server's keepalive acts on each connection on a clock of its
	// own. A control connection, opened after them all, that completes its
	// handshake but never answers the server's pings is closed once
	// keepalive (1s) plus its timeout (1s) have passed: by then the server
	// has pinged every connection its keepalive watches. Each of those is
	// then awaited until the server closes it.
	start := time.Now()
	ctl := e.open(t)
	cr := ctl.startReader()
	if !cr.wait(reactTimeout+2*time.Second, (*seen).serverClosed) {
		t.Errorf("the server did not close a connection that never answered its keepalive pings within %v: %s", reactTimeout+2*time.Second, cr.describe())
	}
	t.Logf("control connection closed by the server after %v: %s", time.Since(start).Round(time.Millisecond), cr.describe())
	pinged := func(s *seen) bool { return s.pings > 0 }
	for k, kind := range kinds {
		closed, pings := 0, 0
		for _, r := range readers[k] {
			if r.snapshot(pinged) {
				pings++
				if !r.wait(reactTimeout, (*seen).serverClosed) {
					t.Errorf("%s: a connection pinged by the server's keepalive, never answering, not closed within %v: %s", kind.name, reactTimeout, r.describe())
				}
			}
			if r.snapshot((*seen).serverClosed) {
				closed++
			}
		}
		t.Logf("%s: %d of %d connections closed by the server, %d pinged by its keepalive", kind.name, closed, len(readers[k]), pings)
	}
}

// 11. Malformed frames, each on a connection of its own, with the error
// RFC 9113 requires. Where grpc-go's server ignores a violation instead
// (DATA on a closed or an idle stream, a window overflow on the connection
// or on a stream, a TE field other than "trailers"), the case accepts that
// too: the RFC's error, or the violation ignored with the connection still
// serving calls; which one happened is logged.
func attackMalformedFrames(t *testing.T, e *attackEnv) {
	type check func(t *testing.T, c *rawConn, r *reader, id uint32)
	connErr := func(code http2.ErrCode) check {
		return func(t *testing.T, _ *rawConn, r *reader, _ uint32) { expectConnError(t, r, code, reactTimeout) }
	}
	streamErr := func(code http2.ErrCode) check {
		return func(t *testing.T, _ *rawConn, r *reader, id uint32) { expectStreamError(t, r, id, code, reactTimeout) }
	}
	// orIgnored accepts, besides the RFC's stream error, a server that
	// ignores the frame and goes on serving the connection.
	orIgnored := func(code http2.ErrCode) check {
		return func(t *testing.T, c *rawConn, r *reader, id uint32) {
			next := c.publish(e.svc, "restaurant:atk")
			_ = c.flush()
			if expectErrorOrServed(t, r, code, id, next, reactTimeout) {
				t.Logf("violation ignored (as grpc-go does), the connection serves: %s", r.describe())
			}
		}
	}
	// connErrOrIgnored accepts, besides the RFC's connection error, a
	// server that ignores the frame and goes on serving the connection.
	connErrOrIgnored := func(code http2.ErrCode) check {
		return func(t *testing.T, c *rawConn, r *reader, _ uint32) {
			next := c.publish(e.svc, "restaurant:atk")
			_ = c.flush()
			if expectErrorOrServed(t, r, code, 0, next, reactTimeout) {
				t.Logf("violation ignored (as grpc-go does), the connection serves: %s", r.describe())
			}
		}
	}
	// requestErrOrServed accepts, besides the RFC's stream error for a
	// malformed request, a server that serves the request.
	requestErrOrServed := func(code http2.ErrCode) check {
		return func(t *testing.T, c *rawConn, r *reader, id uint32) {
			if expectErrorOrServed(t, r, code, id, id, reactTimeout) {
				t.Logf("malformed request served (as grpc-go does): %s", r.describe())
			}
		}
	}
	// openStream opens a call without its message: an open stream.
	openStream := func(c *rawConn) uint32 {
		id := c.newStream()
		c.headers(id, false, requestFields(e.d.grpcAddr, publishPath, e.svc)...)
		return id
	}
	reqWith := func(mutate func([]hpack.HeaderField) []hpack.HeaderField) func(c *rawConn) uint32 {
		return func(c *rawConn) uint32 {
			id := c.newStream()
			c.headers(id, false, mutate(requestFields(e.d.grpcAddr, publishPath, e.svc))...)
			c.data(id, true, grpcMessage(publishRequest("restaurant:atk", "tx")))
			return id
		}
	}
	// completedCall runs a whole call and waits for its response.
	completedCall := func(t *testing.T, c *rawConn, r *reader) uint32 {
		id := c.publish(e.svc, "restaurant:atk")
		c.mustFlush()
		expectCallOK(t, r, id, reactTimeout)
		return id
	}
	for _, v := range []struct {
		name   string
		send   func(t *testing.T, c *rawConn, r *reader) uint32 // returns the stream at fault, if any
		expect check
	}{
		{"frame-larger-than-max-frame-size", func(t *testing.T, c *rawConn, _ *reader) uint32 {
			c.raw(http2.FrameHeaders, http2.FlagHeadersEndHeaders, c.newStream(), make([]byte, c.maxFrame()+1))
			return 0
		}, connErr(http2.ErrCodeFrameSize)},
		{"data-on-stream-0", func(t *testing.T, c *rawConn, _ *reader) uint32 {
			c.raw(http2.FrameData, 0, 0, []byte("x"))
			return 0
		}, connErr(http2.ErrCodeProtocol)},
		{"headers-on-stream-0", func(t *testing.T, c *rawConn, _ *reader) uint32 {
			c.raw(http2.FrameHeaders, http2.FlagHeadersEndHeaders|http2.FlagHeadersEndStream, 0, c.block(requestFields(e.d.grpcAddr, publishPath, e.svc)...))
			return 0
		}, connErr(http2.ErrCodeProtocol)},
		{"settings-on-stream-1", func(t *testing.T, c *rawConn, _ *reader) uint32 {
			c.raw(http2.FrameSettings, 0, 1, nil)
			return 0
		}, connErr(http2.ErrCodeProtocol)},
		{"ping-on-stream-1", func(t *testing.T, c *rawConn, _ *reader) uint32 {
			c.raw(http2.FramePing, 0, 1, make([]byte, 8))
			return 0
		}, connErr(http2.ErrCodeProtocol)},
		{"goaway-on-stream-1", func(t *testing.T, c *rawConn, _ *reader) uint32 {
			c.raw(http2.FrameGoAway, 0, 1, make([]byte, 8))
			return 0
		}, connErr(http2.ErrCodeProtocol)},
		{"data-padding-too-long", func(t *testing.T, c *rawConn, _ *reader) uint32 {
			id := openStream(c)
			c.raw(http2.FrameData, http2.FlagDataPadded, id, []byte{10, 'x'})
			return id
		}, connErr(http2.ErrCodeProtocol)},
		{"headers-padding-too-long", func(t *testing.T, c *rawConn, _ *reader) uint32 {
			// §6.2 makes this a PROTOCOL_ERROR without saying of the stream
			// or the connection: grpc-go resets the stream.
			id := c.newStream()
			c.raw(http2.FrameHeaders, http2.FlagHeadersEndHeaders|http2.FlagHeadersPadded, id, []byte{10, 0x82})
			return id
		}, streamErr(http2.ErrCodeProtocol)},
		{"settings-length-7", func(t *testing.T, c *rawConn, _ *reader) uint32 {
			c.raw(http2.FrameSettings, 0, 0, make([]byte, 7))
			return 0
		}, connErr(http2.ErrCodeFrameSize)},
		{"ping-length-7", func(t *testing.T, c *rawConn, _ *reader) uint32 {
			c.raw(http2.FramePing, 0, 0, make([]byte, 7))
			return 0
		}, connErr(http2.ErrCodeFrameSize)},
		{"window-update-0-on-connection", func(t *testing.T, c *rawConn, _ *reader) uint32 {
			c.windowUpdate(0, 0)
			return 0
		}, connErr(http2.ErrCodeProtocol)},
		{"window-update-0-on-stream", func(t *testing.T, c *rawConn, _ *reader) uint32 {
			id := openStream(c)
			c.windowUpdate(id, 0)
			return id
		}, streamErr(http2.ErrCodeProtocol)},
		{"data-on-closed-stream", func(t *testing.T, c *rawConn, r *reader) uint32 {
			id := completedCall(t, c, r)
			c.data(id, false, []byte("x"))
			return id
		}, orIgnored(http2.ErrCodeStreamClosed)},
		{"data-on-idle-stream", func(t *testing.T, c *rawConn, _ *reader) uint32 {
			// A stream id above the next call's, never opened.
			openStream(c)
			c.data(c.nextID+2, false, []byte("x"))
			return 0
		}, connErrOrIgnored(http2.ErrCodeProtocol)},
		{"window-overflow-on-connection", func(t *testing.T, c *rawConn, _ *reader) uint32 {
			c.windowUpdate(0, 1<<31-1)
			return 0
		}, connErrOrIgnored(http2.ErrCodeFlowControl)},
		{"window-overflow-on-stream", func(t *testing.T, c *rawConn, _ *reader) uint32 {
			id := openStream(c)
			c.windowUpdate(id, 1<<31-1)
			return id
		}, orIgnored(http2.ErrCodeFlowControl)},
		{"even-stream-id", func(t *testing.T, c *rawConn, _ *reader) uint32 {
			c.headers(2, true, requestFields(e.d.grpcAddr, publishPath, e.svc)...)
			return 0
		}, connErr(http2.ErrCodeProtocol)},
		{"decreasing-stream-id", func(t *testing.T, c *rawConn, r *reader) uint32 {
			c.nextID = 5
			completedCall(t, c, r)
			c.nextID = 3
			c.publish(e.svc, "restaurant:atk")
			return 0
		}, connErr(http2.ErrCodeProtocol)},
		{"uppercase-header-name", func(t *testing.T, c *rawConn, _ *reader) uint32 {
			return reqWith(func(f []hpack.HeaderField) []hpack.HeaderField {
				return append(f, hpack.HeaderField{Name: "X-Upper", Value: "1"})
			})(c)
		}, streamErr(http2.ErrCodeProtocol)},
		{"two-path-fields", func(t *testing.T, c *rawConn, _ *reader) uint32 {
			return reqWith(func(f []hpack.HeaderField) []hpack.HeaderField {
				return append([]hpack.HeaderField{{Name: ":path", Value: publishPath}}, f...)
			})(c)
		}, streamErr(http2.ErrCodeProtocol)},
		{"pseudo-header-after-regular", func(t *testing.T, c *rawConn, _ *reader) uint32 {
			return reqWith(func(f []hpack.HeaderField) []hpack.HeaderField {
				var pseudo, regular []hpack.HeaderField
				for _, hf := range f {
					if hf.Name == ":authority" {
						pseudo = append(pseudo, hf)
					} else {
						regular = append(regular, hf)
					}
				}
				return append(regular, pseudo...)
			})(c)
		}, streamErr(http2.ErrCodeProtocol)},
		{"connection-header", func(t *testing.T, c *rawConn, _ *reader) uint32 {
			return reqWith(func(f []hpack.HeaderField) []hpack.HeaderField {
				return append(f, hpack.HeaderField{Name: "connection", Value: "keep-alive"})
			})(c)
		}, streamErr(http2.ErrCodeProtocol)},
		{"te-not-trailers", func(t *testing.T, c *rawConn, _ *reader) uint32 {
			return reqWith(func(f []hpack.HeaderField) []hpack.HeaderField {
				for i := range f {
					if f[i].Name == "te" {
						f[i].Value = "gzip"
					}
				}
				return f
			})(c)
		}, requestErrOrServed(http2.ErrCodeProtocol)},
	} {
		t.Run(v.name, func(t *testing.T) {
			c := e.open(t)
			r := c.startReader()
			id := v.send(t, c, r)
			_ = c.flush() // the server may close first
			v.expect(t, c, r, id)
		})
	}
}

// 12. One header value of 100 KiB on one stream: that stream alone fails
// (RST_STREAM or a gRPC status) when the header list exceeds the server's
// advertised SETTINGS_MAX_HEADER_LIST_SIZE; the other streams of the same
// connection, one opened before it and one after, keep working.
func attackBigHeader(t *testing.T, e *attackEnv) {
	c := e.open(t)
	r := c.startReader()
	fields := requestFields(e.d.grpcAddr, publishPath, e.svc)
	before := c.newStream()
	c.headers(before, false, fields...)
	c.mustFlush()

	big := c.newStream()
	c.headers(big, false, append(fields, hpack.HeaderField{Name: "x-big", Value: strings.Repeat("b", bigHeader), Sensitive: true})...)
	c.data(big, true, grpcMessage(publishRequest("restaurant:atk", "tx-big")))
	c.mustFlush()
	if !r.wait(reactTimeout, streamDone(big)) {
		t.Errorf("the call with a %d-byte header not answered within %v: %s", bigHeader, reactTimeout, r.describe())
	}

	c.data(before, true, grpcMessage(publishRequest("restaurant:atk", "tx-before")))
	after := c.publish(e.svc, "restaurant:atk")
	_ = c.flush()
	expectCallOK(t, r, before, reactTimeout)
	expectCallOK(t, r, after, reactTimeout)

	limit, advertised := c.serverSetting(http2.SettingMaxHeaderListSize)
	snapshotOf(r, func(s *seen) bool {
		_, reset := s.rst[big]
		ok := !reset && s.resp[big] != nil && s.resp[big].grpcStatus == "0"
		if ok && advertised && limit < bigHeader {
			t.Errorf("a call with a %d-byte header succeeded though the server advertises SETTINGS_MAX_HEADER_LIST_SIZE %d", bigHeader, limit)
		}
		if s.closed != nil {
			t.Errorf("the connection ended: %s", s)
		}
		t.Logf("max header list size %d (advertised %v); server: %s", limit, advertised, s)
		return true
	})
}

// 13. Requests that are not gRPC: grpc-go's server answers HTTP 415
// (Unsupported Media Type) to a content-type other than application/grpc,
// whatever the method, and 405 to a gRPC content-type with a method other
// than POST; the connection goes on serving.
func attackNonGRPC(t *testing.T, e *attackEnv) {
	c := e.open(t)
	r := c.startReader()
	for _, v := range []struct {
		method, contentType string
		status              string
	}{
		{"GET", "text/plain", "415"},
		{"POST", "text/plain", "415"},
		{"GET", "application/grpc", "405"},
	} {
		id := c.newStream()
		c.headers(id, true,
			hpack.HeaderField{Name: ":method", Value: v.method},
			hpack.HeaderField{Name: ":scheme", Value: "http"},
			hpack.HeaderField{Name: ":path", Value: publishPath},
			hpack.HeaderField{Name: ":authority", Value: e.d.grpcAddr},
			hpack.HeaderField{Name: "content-type", Value: v.contentType},
		)
		c.mustFlush()
		if !r.wait(reactTimeout, streamDone(id)) {
			t.Errorf("%s %s not answered within %v: %s", v.method, v.contentType, reactTimeout, r.describe())
			continue
		}
		snapshotOf(r, func(s *seen) bool {
			resp := s.resp[id]
			if resp == nil || resp.status != v.status {
				t.Errorf("%s with content-type %s: want HTTP %s: %s", v.method, v.contentType, v.status, s)
			}
			return true
		})
	}
	id := c.publish(e.svc, "restaurant:atk")
	c.mustFlush()
	expectCallOK(t, r, id, reactTimeout)
}
