package gateway

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/protobuf/proto"
	"nhooyr.io/websocket"

	"github.com/maxloyalty/notify/internal/testenv"
)

// FuzzWebsocketCall sends arbitrary client messages over a real websocket
// to the transport, in front of a real grpc-go server with the interop
// TestService (unary, server-, client- and bidi-streaming methods), and
// reads the server's messages meanwhile. The input is a method selector
// then a sequence of operations (see wsFuzzOps): whole binary or text
// messages, fragmented ones, one left unfinished, pings. The first message
// is the header block by position, whatever it holds.
//
// Invariants: the transport never panics; once the client has sent
// everything, the server ends the call and closes the websocket within
// wsFuzzSettle, except for a client stream whose client has not finished
// sending (a legitimately open call: the client then leaves, and the call
// must end as promptly); no goroutine is left afterwards; and the server's
// output is bounded by its input.
func FuzzWebsocketCall(f *testing.F) {
	for _, seed := range wsFuzzSeeds() {
		f.Add(seed)
	}
	// One server without WebsocketStreamInterceptor (as the gateway runs
	// today) and one with it; short timeouts, so that calls the client
	// leaves unfinished end quickly.
	configure := func(tr *wsTransport) {
		tr.headerTimeout = 100 * time.Millisecond
		tr.requestTimeout = 200 * time.Millisecond
		tr.writeTimeout = time.Second
		tr.drainTimeout = 200 * time.Millisecond
		tr.probeInterval = 50 * time.Millisecond
	}
	servers := [2]*wsTestServer{
		newWSTestServer(f, &wsTestService{}, configure),
		newWSTestServer(f, &wsTestService{}, configure, grpc.StreamInterceptor(WebsocketStreamInterceptor())),
	}
	for _, s := range servers {
		if out := wsGoodCall(context.Background(), s.addr, wsUnary, &testpb.SimpleRequest{}); out.status != "0" {
			f.Fatalf("warm-up call: %+v", out)
		}
	}

	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) == 0 || len(in) > 1<<20 {
			return
		}
		// Every earlier call has ended (or failed its input).
		base := runtime.NumGoroutine()
		s := servers[in[0]>>2&1]
		path := wsFuzzMethods[in[0]&3]
		ops := wsFuzzOps(in[1:])

		res := wsFuzzRun(t, s.addr, path, ops)
		if p := s.panics.Load(); p != nil {
			t.Fatalf("the transport panicked: %s", p)
		}
		open := path == wsClientStream || path == wsBidi
		if !res.closed && !(open && !res.finished) {
			t.Errorf("%s: the server had not closed the websocket %v after the client stopped (client finished sending: %v)", path, wsFuzzSettle, res.finished)
		}
		if err := s.settled(wsFuzzSettle); err != nil {
			t.Errorf("%s: after the client left: %v", path, err)
		}
		// Goroutines end when the runtime runs them: there is no event.
		atRest := false
		defer func() {
			if !atRest { // Eventually failed the test
				t.Logf("%s: %d goroutines after the call, %d before:\n%s", path, runtime.NumGoroutine(), base, wsGoroutineDump())
			}
		}()
		testenv.Eventually(t, wsFuzzSettle, path+": the call's goroutines to end", func() bool {
			atRest = runtime.NumGoroutine() <= base
			return atRest
		})
		// Replies echo at most wsTestMaxReplies times what they are sent;
		// add the header and trailer frames (an error's text included).
		if bound := wsTestMaxReplies*len(in) + 4096; res.out > bound {
			t.Errorf("%s: the server sent %d bytes for %d bytes of input (bound %d)", path, res.out, len(in), bound)
		}
	})
}

// wsFuzzSettle bounds how long the server may take to end a call once its
// client has stopped, and to release everything once it has ended (more
// than the transport's own timeouts in the fuzz configuration, and the
// websocket library's close handshake).
const wsFuzzSettle = 8 * time.Second

// wsFuzzMethods are the methods an input's first byte selects.
var wsFuzzMethods = [4]string{wsUnary, wsServerStream, wsClientStream, wsBidi}

// Operations of a fuzz input: an op byte (its low 3 bits the kind, the
// rest a parameter), a 2-byte big-endian length, then that many bytes of
// data (fewer at the end of the input).
const (
	wsOpBinary     = 0 // a whole binary message
	wsOpText       = 1 // a whole text message
	wsOpFragments  = 2 // a binary message in frames of (param+1) bytes
	wsOpPing       = 3 // a ping (at most 125 bytes)
	wsOpUnfinished = 4 // a binary message in frames of (param+1) bytes, never finished: the last operation
)

// wsFuzzOp is one operation.
type wsFuzzOp struct {
	kind, param byte
	data        []byte
}

// wsFuzzOps splits an input into operations.
func wsFuzzOps(in []byte) []wsFuzzOp {
	var ops []wsFuzzOp
	for len(in) > 0 {
		op := wsFuzzOp{kind: in[0] & 7, param: in[0] >> 3}
		in = in[1:]
		n := 0
		if len(in) >= 2 {
			n = int(binary.BigEndian.Uint16(in))
			in = in[2:]
		} else {
			in = nil
		}
		n = min(n, len(in))
		op.data, in = in[:n], in[n:]
		if op.kind > wsOpUnfinished {
			op.kind = wsOpBinary
		}
		ops = append(ops, op)
	}
	return ops
}

// wsFuzzInput encodes a selector and operations as an input.
func wsFuzzInput(selector byte, ops ...wsFuzzOp) []byte {
	in := []byte{selector}
	for _, op := range ops {
		in = append(in, op.kind|op.param<<3)
		in = binary.BigEndian.AppendUint16(in, uint16(len(op.data)))
		in = append(in, op.data...)
	}
	return in
}

// wsFuzzResult is what a fuzz client saw.
type wsFuzzResult struct {
	closed   bool // the server closed the websocket (or the connection)
	finished bool // the client sent an end of input, whole
	out      int  // bytes of the server's messages
}

// wsFuzzRun runs the operations as a client and reads the server's
// messages meanwhile; it leaves (closing its connection) once the server
// has closed, or when it has waited long enough.
func wsFuzzRun(t *testing.T, addr, path string, ops []wsFuzzOp) wsFuzzResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*wsFuzzSettle)
	defer cancel()
	var conn net.Conn
	var mu sync.Mutex
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		mu.Lock()
		conn = c
		mu.Unlock()
		return c, err
	}}}
	c, _, err := websocket.Dial(ctx, "ws://"+addr+path, &websocket.DialOptions{Subprotocols: []string{wsProtocol}, HTTPClient: hc})
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	mu.Lock()
	raw := conn
	mu.Unlock()
	defer raw.Close()
	c.SetReadLimit(1 << 20)

	var res wsFuzzResult
	var out atomic.Int64
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		for {
			_, b, err := c.Read(ctx)
			if err != nil {
				return
			}
			out.Add(int64(len(b)))
		}
	}()

	write := func(op wsFuzzOp) error {
		wctx, wcancel := context.WithTimeout(ctx, time.Second)
		defer wcancel()
		switch op.kind {
		case wsOpText:
			return c.Write(wctx, websocket.MessageText, op.data)
		case wsOpPing:
			// Answered by the server's reader: wait for the pong only as
			// long as a write.
			_ = c.Ping(wctx)
			return nil
		case wsOpFragments, wsOpUnfinished:
			w, err := c.Writer(wctx, websocket.MessageBinary)
			if err != nil {
				return err
			}
			size := int(op.param) + 1
			for d := op.data; len(d) > 0; d = d[min(size, len(d)):] {
				if _, err := w.Write(d[:min(size, len(d))]); err != nil {
					return err
				}
			}
			if op.kind == wsOpUnfinished {
				return nil
			}
			return w.Close()
		default:
			return c.Write(wctx, websocket.MessageBinary, op.data)
		}
	}
	for i, op := range ops {
		if op.kind == wsOpPing && len(op.data) > 125 {
			op.data = op.data[:125]
		}
		if err := write(op); err != nil {
			break // the server may have closed
		}
		if i > 0 && op.kind != wsOpPing && op.kind != wsOpText && op.kind != wsOpUnfinished && bytes.Equal(op.data, []byte{wsEndOfInput}) {
			res.finished = true
		}
		if op.kind == wsOpUnfinished {
			break
		}
	}

	// The server ends a call whose client has finished sending (or has
	// broken the protocol, or is not streaming) on its own; otherwise the
	// client waits a little, then leaves.
	wait := wsFuzzSettle
	if (path == wsClientStream || path == wsBidi) && !res.finished {
		wait = 50 * time.Millisecond
	}
	select {
	case <-readDone:
		res.closed = true
	case <-time.After(wait):
	}
	raw.Close()
	<-readDone
	res.out = int(out.Load())
	return res
}

// wsGoroutineDump is every goroutine's stack, cut to a readable length.
func wsGoroutineDump() string {
	b := make([]byte, 1<<20)
	b = b[:runtime.Stack(b, true)]
	if len(b) > 32<<10 {
		b = append(b[:32<<10], "\n..."...)
	}
	return string(b)
}

// wsFuzzSeeds are valid calls of each kind and the cases the transport
// must refuse: empty messages, the end of input alone, text frames,
// malformed header blocks, huge declared lengths, fragments, a message
// never finished, pings, data after the end of input.
func wsFuzzSeeds() [][]byte {
	const (
		unary, serverStream, clientStream, bidi = 0, 1, 2, 3
		intercepted                             = 4
	)
	msg := func(m proto.Message) wsFuzzOp {
		return wsFuzzOp{kind: wsOpBinary, data: append([]byte{wsData}, grpcFrame(m)...)}
	}
	bin := func(b ...byte) wsFuzzOp { return wsFuzzOp{kind: wsOpBinary, data: b} }
	text := func(s string) wsFuzzOp { return wsFuzzOp{kind: wsOpText, data: []byte(s)} }
	hdr := wsFuzzOp{kind: wsOpBinary, data: []byte(wsHeaderBlock)}
	eoi := bin(wsEndOfInput)
	payload := &testpb.Payload{Body: []byte("hello")}
	out := &testpb.StreamingOutputCallRequest{Payload: payload, ResponseParameters: []*testpb.ResponseParameters{{Size: 5}, {Size: 5}}}
	in := &testpb.StreamingInputCallRequest{Payload: payload}
	frag := func(size byte, data []byte) wsFuzzOp {
		return wsFuzzOp{kind: wsOpFragments, param: size - 1, data: data}
	}

	seeds := [][]byte{
		// Valid calls.
		wsFuzzInput(unary, hdr, msg(&testpb.SimpleRequest{Payload: payload}), eoi),
		wsFuzzInput(serverStream, hdr, msg(out), eoi),
		wsFuzzInput(clientStream, hdr, msg(in), msg(in), msg(in), eoi),
		wsFuzzInput(clientStream|intercepted, hdr, msg(in), msg(in), msg(in), eoi),
		wsFuzzInput(bidi, hdr, msg(out), msg(out), eoi),
		wsFuzzInput(bidi|intercepted, hdr, msg(out), msg(out), eoi),
		// Two messages in one data message, one message over two.
		wsFuzzInput(clientStream, hdr, bin(append(append([]byte{wsData}, grpcFrame(in)...), grpcFrame(in)...)...), eoi),
		wsFuzzInput(unary, hdr, bin(append([]byte{wsData}, grpcFrame(&testpb.SimpleRequest{Payload: payload})[:4]...)...),
			bin(append([]byte{wsData}, grpcFrame(&testpb.SimpleRequest{Payload: payload})[4:]...)...), eoi),
		// Fragments, of the headers and of the data.
		wsFuzzInput(unary, frag(3, []byte(wsHeaderBlock)), frag(1, append([]byte{wsData}, grpcFrame(&testpb.SimpleRequest{Payload: payload})...)), eoi),
		wsFuzzInput(clientStream, hdr, frag(2, append([]byte{wsData}, bytes.Repeat(grpcFrame(in), 3)...)), eoi),
		// Empty messages; the end of input alone; data after it.
		wsFuzzInput(unary, hdr, bin(), bin(wsData), eoi),
		wsFuzzInput(unary, hdr, eoi),
		wsFuzzInput(clientStream, hdr, eoi),
		wsFuzzInput(serverStream, hdr, msg(out), eoi, msg(out)),
		wsFuzzInput(unary),
		wsFuzzInput(unary, bin()),
		// Text frames.
		wsFuzzInput(unary, text(wsHeaderBlock), msg(&testpb.SimpleRequest{}), eoi),
		wsFuzzInput(unary, hdr, text("\x00\x00\x00\x00\x00\x00"), eoi),
		// Malformed header blocks.
		wsFuzzInput(unary, bin([]byte("content-type application/grpc-web\r\n")...), eoi),
		wsFuzzInput(unary, bin([]byte("x-grpc-web: 1\r\n")...), eoi),
		wsFuzzInput(unary, bin([]byte("content-type: application/grpc-web-text\r\n")...), eoi),
		wsFuzzInput(unary, bin([]byte("\r\n\r\ncontent-type: application/grpc-web\r\n")...), eoi),
		wsFuzzInput(unary, bin([]byte("content-type: application/grpc-web\r\n continued\r\n\x00: \xff\r\n")...), eoi),
		wsFuzzInput(unary, bin([]byte(wsHeaderBlock+"grpc-timeout: 99999999999H\r\n")...), msg(&testpb.SimpleRequest{}), eoi),
		wsFuzzInput(unary, bin([]byte(wsHeaderBlock+"grpc-encoding: gzip\r\n")...), bin(wsData, 1, 0, 0, 0, 3, 1, 2, 3), eoi),
		wsFuzzInput(unary, bin([]byte(wsHeaderBlock+"x-bin: "+strings.Repeat("a", 1000)+"\r\n")...), msg(&testpb.SimpleRequest{}), eoi),
		// Huge declared lengths.
		wsFuzzInput(unary, hdr, bin(wsData, 0, 0x7f, 0xff, 0xff, 0xff, 1, 2, 3), eoi),
		wsFuzzInput(clientStream, hdr, bin(wsData, 0, 0xff, 0xff, 0xff, 0xff, 1, 2, 3), eoi),
		wsFuzzInput(clientStream|intercepted, hdr, bin(wsData, 0, 0, 0x10, 0, 0), eoi),
		wsFuzzInput(serverStream, hdr, bin(wsData, 0, 0, 0, 0x10, 0), eoi),
		// Unknown control bytes.
		wsFuzzInput(unary, hdr, bin(2, 0, 0, 0, 0, 0), eoi),
		wsFuzzInput(unary, hdr, bin(wsEndOfInput, 0)),
		// A message never finished.
		wsFuzzInput(unary, hdr, wsFuzzOp{kind: wsOpUnfinished, data: append([]byte{wsData}, grpcFrame(&testpb.SimpleRequest{})...)}),
		wsFuzzInput(clientStream, hdr, wsFuzzOp{kind: wsOpUnfinished, param: 3, data: []byte{wsData, 0, 0, 0, 1}}),
		wsFuzzInput(unary, wsFuzzOp{kind: wsOpUnfinished, data: []byte("content-type")}),
		// Pings, before the headers and during a call.
		wsFuzzInput(serverStream, wsFuzzOp{kind: wsOpPing, data: []byte("p")}, hdr, wsFuzzOp{kind: wsOpPing}, msg(out), eoi),
		// A client stream left open.
		wsFuzzInput(bidi|intercepted, hdr, msg(out)),
	}
	// Many small messages, to the bound of a stream without the
	// interceptor and past it.
	many := []wsFuzzOp{hdr}
	for range 20 {
		many = append(many, msg(in))
	}
	seeds = append(seeds, wsFuzzInput(clientStream, append(many, eoi)...), wsFuzzInput(clientStream|intercepted, append(many, eoi)...))
	return seeds
}

func TestWsFuzzOps(t *testing.T) {
	in := wsFuzzInput(3, wsFuzzOp{kind: wsOpFragments, param: 4, data: []byte("abc")}, wsFuzzOp{kind: wsOpPing})
	ops := wsFuzzOps(in[1:])
	if len(ops) != 2 || ops[0].kind != wsOpFragments || ops[0].param != 4 || string(ops[0].data) != "abc" || ops[1].kind != wsOpPing || len(ops[1].data) != 0 {
		t.Errorf("wsFuzzOps(wsFuzzInput(...)) = %+v", ops)
	}
	if got := fmt.Sprint(wsFuzzOps([]byte{7, 0})); got != "[{0 0 []}]" {
		t.Errorf("a truncated operation: %s", got)
	}
}
