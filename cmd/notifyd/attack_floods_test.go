package main

// The attack suite's cases against unbounded buffers and floods (2 to
// 10): what the server keeps or does for a peer that sends without end,
// or does not read. TestAttack and the case table are in attack_test.go.

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
