package gateway

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"net/http"
	"runtime/metrics"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/protobuf/proto"
	"nhooyr.io/websocket"
)

// The known attacks on the websocket transport, each over real sockets on
// loopback against a real grpc-go server (the interop TestService, with
// handlers that can hold a call open or flood the client): each is bounded
// in count and time, asserts that the server's heap stays bounded and that
// another client is still served, and that every call ends. Their server
// is in websocket_testserver_test.go, their raw client and heap bound in
// websocket_rawclient_test.go.

// TestWebsocketEndlessMessage: one data message that never ends (a frame
// without FIN, then continuation frames forever) while the handler holds
// the call. On a unary call the request is one message: what follows it is
// never buffered for the gRPC server, and the websocket is closed. In
// one-byte frames, each byte must not cost the server a read buffer. On a
// client-streaming call whose handler does not read, the bytes held for it
// are bounded. In every case the server closes the websocket and stays
// within its memory bound, and other clients are served.
func TestWebsocketEndlessMessage(t *testing.T) {
	const bound = 24 << 20
	small := grpcFrame(&testpb.StreamingInputCallRequest{Payload: &testpb.Payload{Body: []byte("x")}})
	for _, tc := range []struct {
		name, path string
		first      []byte // the data message's first frame
		frame      []byte // each continuation frame
		code       websocket.StatusCode
	}{
		// The gRPC server refuses a second message (its status is sent);
		// the rest of the message is dropped, then the websocket closed.
		{"unary, after its message", wsUnary, append([]byte{wsData}, grpcFrame(&testpb.SimpleRequest{})...), make([]byte, 16<<10), websocket.StatusNormalClosure},
		{"unary, one-byte frames inside its message", wsUnary, []byte{wsData, 0, 0, 4, 0, 0}, []byte{0}, websocket.StatusNormalClosure},
		{"client stream, one message without end", wsClientStream, []byte{wsData, 0, 0x7f, 0xff, 0xff, 0xff}, make([]byte, 16<<10), websocket.StatusMessageTooBig},
		{"client stream, many messages", wsClientStream, []byte{wsData}, bytes.Repeat(small, (16<<10)/len(small)), websocket.StatusMessageTooBig},
		{"client stream, one-byte frames", wsClientStream, []byte{wsData, 0, 0, 0x10, 0, 0}, []byte{0}, websocket.StatusMessageTooBig},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// The request's deadline is another test's: out of the way.
			s := newWSTestServer(t, &wsTestService{controls: true}, func(tr *wsTransport) { tr.requestTimeout = 2 * wsTestTimeout })
			g := newHeapGuard(bound)
			w := dialRawWS(t, s.addr, tc.path)
			if err := w.message([]byte(wsHoldBlock)); err != nil {
				t.Fatal(err)
			}
			if err := w.write(appendFrame(nil, false, opBinary, tc.first), wsTestTimeout); err != nil {
				t.Fatal(err)
			}
			var chunk []byte // continuation frames, many to a write
			for len(chunk) < 64<<10 {
				chunk = appendFrame(chunk, false, opContinuation, tc.frame)
			}
			// Forever, were the server to take it.
			res := s.attack(t, func() sent { return w.sendUntil(chunk, math.MaxInt, time.Now().Add(2*wsTestTimeout), g) })
			if res.over {
				t.Fatalf("the heap grew past %d MiB after %d KiB sent", bound>>20, res.bytes>>10)
			}
			g.check(t, fmt.Sprintf("after %d KiB sent", res.bytes>>10))
			if !res.refused {
				t.Fatalf("the server was still taking the endless message after %d KiB", res.bytes>>10)
			}
			code := w.closedBy(t, time.Now().Add(wsTestTimeout))
			t.Logf("%d KiB sent; closed with %v", res.bytes>>10, code)
			if code != tc.code {
				t.Errorf("closed with %v, want %v", code, tc.code)
			}
			s.checkServed(t, "after the attack")
		})
	}
}

// TestWebsocketManySmallMessages: many small data messages, each a whole
// small gRPC message, on a client-streaming call. grpc-go's ServeHTTP
// transport reads the request body ahead of the handler into a buffer
// without flow control, a read buffer per body read. With a handler that
// does not read, the buffers held for it stay bounded: with
// WebsocketStreamInterceptor on the gRPC server, the transport stops
// reading the websocket (the call stalls, as HTTP/2 flow control would
// stall it, until the client leaves); without it, the call is closed with
// 1009 once it has passed its bound. A handler that reads is served: with
// the interceptor, a stream of any length; without it, up to the bound.
func TestWebsocketManySmallMessages(t *testing.T) {
	const bound = 24 << 20
	small := &testpb.StreamingInputCallRequest{Payload: &testpb.Payload{Body: []byte("x")}}
	one := appendFrame(nil, true, opBinary, append([]byte{wsData}, grpcFrame(small)...))
	chunk := bytes.Repeat(one, (64<<10)/len(one))
	smalls := func(n int) []proto.Message {
		reqs := make([]proto.Message, n)
		for i := range reqs {
			reqs[i] = small
		}
		return reqs
	}
	for _, tc := range []struct {
		name        string
		interceptor bool
	}{
		{"without the interceptor", false},
		{"with the interceptor", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var opts []grpc.ServerOption
			if tc.interceptor {
				opts = append(opts, grpc.StreamInterceptor(WebsocketStreamInterceptor()))
			}
			s := newWSTestServer(t, &wsTestService{controls: true}, nil, opts...)

			g := newHeapGuard(bound)
			w := dialRawWS(t, s.addr, wsClientStream)
			if err := w.message([]byte(wsHoldBlock)); err != nil {
				t.Fatal(err)
			}
			res := s.attack(t, func() sent { return w.sendUntil(chunk, math.MaxInt, time.Now().Add(2*wsTestTimeout), g) })
			if res.over {
				t.Fatalf("to a handler that does not read: the heap grew past %d MiB after %d small messages", bound>>20, res.bytes/len(one))
			}
			g.check(t, fmt.Sprintf("after %d small messages to a handler that does not read", res.bytes/len(one)))
			t.Logf("%d small messages sent to a handler that does not read", res.bytes/len(one))
			if !res.refused {
				t.Fatalf("the server was still taking small messages after %d", res.bytes/len(one))
			}
			if tc.interceptor {
				// The client leaves: the call ends (s.settled, at the end).
				w.c.Close()
			} else if code := w.closedBy(t, time.Now().Add(wsTestTimeout)); code != websocket.StatusMessageTooBig {
				t.Errorf("closed with %v, want %v", code, websocket.StatusMessageTooBig)
			}

			// The bound is in read buffers (16 KiB each), one per small
			// message: 16 in the test's 256 KiB.
			n, past := 2000, 0
			if !tc.interceptor {
				n, past = 16, 17
			}
			out := wsGoodCall(context.Background(), s.addr, wsClientStream, smalls(n)...)
			var resp testpb.StreamingInputCallResponse
			if out.status != "0" || len(out.messages) != 1 || proto.Unmarshal(out.messages[0], &resp) != nil || resp.GetAggregatedPayloadSize() != int32(n) {
				t.Errorf("%d small messages to a handler that reads: status %q %q, %d replies (close %v, %v); want OK and a count of %d",
					n, out.status, out.message, len(out.messages), out.close, out.err, n)
			}
			if past > 0 {
				out := wsGoodCall(context.Background(), s.addr, wsClientStream, smalls(past)...)
				if out.status != "" || out.close != websocket.StatusMessageTooBig {
					t.Errorf("%d small messages without the interceptor: status %q, close %v (%v); want a close with %v",
						past, out.status, out.close, out.err, websocket.StatusMessageTooBig)
				}
			}
		})
	}
}

// TestWebsocketHeaderBlockLimit: the header block is read whole, up to
// headerMax bytes: one at the limit makes a call, one over it (in one frame
// or in many) closes the websocket with 1009, concurrently on many
// connections, within the memory bound.
func TestWebsocketHeaderBlockLimit(t *testing.T) {
	s := newWSTestServer(t, &wsTestService{controls: true}, nil)
	block := func(size int) []byte {
		b := []byte(wsHeaderBlock + "x-pad: ")
		b = append(b, bytes.Repeat([]byte{'a'}, size-len(b)-2)...)
		return append(b, '\r', '\n')
	}

	t.Run("at the limit", func(t *testing.T) {
		w := dialRawWS(t, s.addr, wsUnary)
		b := block(maxWSHeaderBytes)
		if len(b) != maxWSHeaderBytes {
			t.Fatalf("block of %d bytes", len(b))
		}
		msgs := appendFrame(nil, true, opBinary, b)
		msgs = appendFrame(msgs, true, opBinary, append([]byte{wsData}, grpcFrame(&testpb.SimpleRequest{Payload: &testpb.Payload{Body: []byte("hi")}})...))
		msgs = appendFrame(msgs, true, opBinary, []byte{wsEndOfInput})
		if err := w.write(msgs, wsTestTimeout); err != nil {
			t.Fatal(err)
		}
		var got []byte
		deadline := time.Now().Add(wsTestTimeout)
		for {
			f, err := w.readFrame(deadline, 1<<20)
			if err != nil {
				t.Fatalf("reading the response: %v (got %q)", err, got)
			}
			if f.op == opClose {
				break
			}
			got = append(got, f.payload...)
		}
		if !bytes.Contains(got, []byte("grpc-status: 0\r\n")) || !bytes.Contains(got, []byte("hi")) {
			t.Errorf("a call with a %d-byte header block got %q, want its echo and OK", len(b), got)
		}
	})

	t.Run("over the limit", func(t *testing.T) {
		const conns = 64
		g := newHeapGuard(16 << 20)
		b := block(maxWSHeaderBytes + 1)
		ws := make([]*rawWS, conns)
		for i := range ws {
			ws[i] = dialRawWS(t, s.addr, wsUnary)
			var msg []byte
			if i%2 == 0 {
				msg = appendFrame(nil, true, opBinary, b)
			} else {
				// In 1 KiB fragments.
				for j := 0; j < len(b); j += 1 << 10 {
					op := byte(opContinuation)
					if j == 0 {
						op = opBinary
					}
					msg = appendFrame(msg, j+1<<10 >= len(b), op, b[j:min(j+1<<10, len(b))])
				}
			}
			// The server may close before taking it all.
			_ = ws[i].write(msg, wsTestTimeout)
		}
		g.check(t, fmt.Sprintf("%d header blocks over the limit", conns))
		for i, w := range ws {
			if code := w.closedBy(t, time.Now().Add(wsTestTimeout)); code != websocket.StatusMessageTooBig {
				t.Errorf("connection %d: closed with %v, want %v", i, code, websocket.StatusMessageTooBig)
			}
		}
		s.checkServed(t, "after them")
	})
}

// TestWebsocketSlowloris: many websockets that send only the upgrade, or
// only the header block (and, for a method whose client does not stream,
// part of the request), then wait: the server closes each with 1008 once
// its time for the headers or the request has passed, at the cost of a few
// goroutines; meanwhile the heap stays bounded and other clients are
// served.
func TestWebsocketSlowloris(t *testing.T) {
	const conns = 100
	s := newWSTestServer(t, &wsTestService{controls: true}, nil)
	// What a waiting connection costs (buffers of the connection, the
	// call and the gRPC server's reader), counted once per connection.
	g := newHeapGuard(conns * 256 << 10)
	for _, tc := range []struct {
		name, path string
		send       [][]byte // whole messages sent
		within     time.Duration
	}{
		{"upgrade only", wsUnary, nil, 500 * time.Millisecond},
		{"header block only, unary", wsUnary, [][]byte{[]byte(wsHeaderBlock)}, time.Second},
		{"header block only, server stream", wsServerStream, [][]byte{[]byte(wsHeaderBlock)}, time.Second},
		{"request without its end, unary", wsUnary, [][]byte{[]byte(wsHeaderBlock), append([]byte{wsData}, grpcFrame(&testpb.SimpleRequest{})...)}, time.Second},
		{"half a request, server stream", wsServerStream, [][]byte{[]byte(wsHeaderBlock), {wsData, 0, 0, 0, 0, 9, 1, 2}}, time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start, created := time.Now(), goroutinesCreated()
			ws := make([]*rawWS, conns)
			for i := range ws {
				ws[i] = dialRawWS(t, s.addr, tc.path)
				for _, m := range tc.send {
					if err := ws[i].message(m); err != nil {
						t.Fatal(err)
					}
				}
			}
			g.check(t, fmt.Sprintf("%d waiting connections", conns))
			s.checkServed(t, "while they wait")
			// The time each had, from the last one's start, and a margin
			// for a loaded machine.
			deadline := time.Now().Add(tc.within + 5*time.Second)
			for i, w := range ws {
				if code := w.closedBy(t, deadline); code != websocket.StatusPolicyViolation {
					t.Errorf("connection %d: closed with %v, want %v", i, code, websocket.StatusPolicyViolation)
				}
			}
			t.Logf("%d connections closed %v after the first opened", conns, time.Since(start).Round(time.Millisecond))
			// They do not answer the close: the server drops them once its
			// close handshake times out.
			if err := s.settled(wsTestTimeout); err != nil {
				t.Fatal(err)
			}
			// Closing a connection at a deadline costs a few goroutines, not
			// a spin of the websocket library's (on a read whose context
			// ends, it starts goroutines until the connection is closed).
			if n := (goroutinesCreated() - created) / conns; n > 50 {
				t.Errorf("%d goroutines started per connection closed at its deadline", n)
			}
		})
	}
}

// goroutinesCreated is the count of goroutines the process has started.
func goroutinesCreated() uint64 {
	s := []metrics.Sample{{Name: "/sched/goroutines-created:goroutines"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// TestWebsocketPingFlood: pings (control frames, answered with pongs) as
// fast as a client can write them, by a client that reads the pongs and by
// one that never does, before the header block and during a call: the heap
// stays bounded, other clients are served, and a client that does not read
// is disconnected.
func TestWebsocketPingFlood(t *testing.T) {
	s := newWSTestServer(t, &wsTestService{controls: true}, nil)
	var pings []byte
	for len(pings) < 64<<10 {
		pings = appendFrame(pings, true, opPing, bytes.Repeat([]byte{'p'}, 125)) // the most a control frame holds
	}
	for _, tc := range []struct {
		name  string
		path  string
		send  [][]byte
		reads bool
	}{
		{"before the headers, pongs read", wsUnary, nil, true},
		{"before the headers, pongs not read", wsUnary, nil, false},
		{"during a call, pongs read", wsServerStream, [][]byte{[]byte(wsHoldBlock), append([]byte{wsData}, grpcFrame(&testpb.StreamingOutputCallRequest{})...), {wsEndOfInput}}, true},
		{"during a call, pongs not read", wsServerStream, [][]byte{[]byte(wsHoldBlock), append([]byte{wsData}, grpcFrame(&testpb.StreamingOutputCallRequest{})...), {wsEndOfInput}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := newHeapGuard(16 << 20)
			w := dialRawWS(t, s.addr, tc.path)
			for _, m := range tc.send {
				if err := w.message(m); err != nil {
					t.Fatal(err)
				}
			}
			readDone := make(chan struct{})
			var pongs atomic.Int64
			if tc.reads {
				go func() {
					defer close(readDone)
					for {
						f, err := w.readFrame(time.Now().Add(wsTestTimeout), 1<<20)
						if err != nil {
							return
						}
						if f.op == 0xA {
							pongs.Add(1)
						}
					}
				}()
			} else {
				close(readDone)
			}
			res := s.attack(t, func() sent { return w.sendUntil(pings, 16<<20, time.Now().Add(wsTestTimeout), g) })
			if res.over {
				t.Fatalf("the heap grew past its bound after %d KiB of pings", res.bytes>>10)
			}
			g.check(t, fmt.Sprintf("after %d KiB of pings", res.bytes>>10))
			t.Logf("%d KiB of pings sent, %d pongs read", res.bytes>>10, pongs.Load())
			if !tc.reads {
				// Never read: the server's pongs back up and it gives up
				// (reading now would let it go on).
				if err := s.settled(wsTestTimeout); err != nil {
					t.Errorf("a ping flood whose pongs are never read: %v", err)
				}
				w.closedBy(t, time.Now().Add(wsTestTimeout))
			}
			w.c.Close()
			<-readDone
		})
	}
}

// TestWebsocketClientNeverReads: a server-streaming call whose handler
// sends as fast as it can to a client that never reads: the server's
// writes time out, the call ends and the websocket closes; the heap stays
// bounded and other clients are served meanwhile.
func TestWebsocketClientNeverReads(t *testing.T) {
	s := newWSTestServer(t, &wsTestService{controls: true}, nil)
	g := newHeapGuard(16 << 20)
	w := dialRawWS(t, s.addr, wsServerStream)
	for _, m := range [][]byte{
		[]byte(wsHeaderBlock + "x-flood: 16384\r\n"),
		append([]byte{wsData}, grpcFrame(&testpb.StreamingOutputCallRequest{})...),
		{wsEndOfInput},
	} {
		if err := w.message(m); err != nil {
			t.Fatal(err)
		}
	}
	s.checkServed(t, "while the flooded client does not read")
	if err := s.settled(wsTestTimeout); err != nil {
		t.Fatalf("the call to a client that never reads did not end: %v", err)
	}
	g.check(t, "after the call")
	// The client reads now: what the server wrote before giving up, then
	// the end of the connection.
	w.closedBy(t, time.Now().Add(wsTestTimeout))
}

// TestWebsocketMethodKinds: the request deadline and the client-stream
// bounds follow each method's kind, read from the gRPC server; a method it
// does not know gets the stricter buffer bounds of a client stream.
func TestWebsocketMethodKinds(t *testing.T) {
	srv := grpc.NewServer()
	testpb.RegisterTestServiceServer(srv, &wsTestService{})
	tr := wsTestConfig(srv)
	for path, want := range map[string]bool{
		wsUnary:        false,
		wsServerStream: false,
		wsClientStream: true,
		wsBidi:         true,
		"/grpc.testing.TestService/HalfDuplexCall": true,
		"/grpc.testing.TestService/NoSuchMethod":   true,
	} {
		if got := tr.clientStreaming(path); got != want {
			t.Errorf("clientStreaming(%s) = %v, want %v", path, got, want)
		}
	}
	// A handler that is not a grpc.Server: every method is taken as a
	// client stream.
	other := &wsTransport{grpc: http.NotFoundHandler()}
	if !other.clientStreaming(wsUnary) {
		t.Error("clientStreaming without a grpc.Server = false, want true")
	}
}
