package wire_test

// Protocol tests of the wire server, continued (protocol_test.go): the
// stream quota, floods of control frames and of unread responses, header
// lists and error message sizes.

import (
	"bytes"
	"errors"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/maxloyalty/notify/internal/testenv"
	"github.com/maxloyalty/notify/internal/wire"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc/codes"
	testpb "google.golang.org/grpc/interop/grpc_testing"
)

// --- the stream quota -----------------------------------------------------

// TestMaxConcurrentStreams: with a quota of 4, a fifth open stream is
// refused; streams the client reset count while their handlers run, so
// that a fifth call starts only once one of them returns.
func TestMaxConcurrentStreams(t *testing.T) {
	s := startWire(t, wire.Config{MaxConcurrentStreams: 4}, 0)
	c := dialH2(t, s.addr, 0)
	var held []uint32
	for i := 0; i < 4; i++ {
		held = append(held, c.unary(&testpb.SimpleRequest{ResponseSize: 1}, "x-gate", "1"))
	}
	s.svc.waitStarted(t, 4)
	refused := c.unary(&testpb.SimpleRequest{ResponseSize: 1})
	c.expectRST(refused, http2.ErrCodeRefusedStream)

	for _, id := range held {
		if err := c.fr.WriteRSTStream(id, http2.ErrCodeCancel); err != nil {
			t.Fatal(err)
		}
	}
	c.ping() // the resets are handled: no stream is open, four handlers run
	next := c.unary(&testpb.SimpleRequest{ResponseSize: 1}, "x-gate", "1")
	// The reader takes next's HEADERS and waits for a place in the quota:
	// past the point where it would have started the handler.
	testenv.Eventually(t, 10*time.Second, "the reader to wait for a place in the quota", readerWaitsForQuota)
	select {
	case <-s.svc.started:
		t.Fatal("a fifth handler started while four ran")
	default:
	}
	s.svc.releaseOne(t)
	s.svc.waitStarted(t, 1)
	s.svc.releaseAll()
	c.expectCode(next, codes.OK)
	c.goodCall()
}

// readerWaitsForQuota reports whether a connection's reader waits, on the
// connection's cond, for a handler's place in the stream quota.
func readerWaitsForQuota() bool {
	buf := make([]byte, 1<<20)
	for _, g := range strings.Split(string(buf[:runtime.Stack(buf, true)]), "\n\n") {
		if strings.Contains(g, "sync.(*Cond).Wait") && strings.Contains(g, "wire.(*conn).onHeaders") {
			return true
		}
	}
	return false
}

// --- floods ---------------------------------------------------------------

// TestControlFlood: a client that sends control frames and never reads
// the replies is no longer read once the replies back up: its writes
// block after a bounded number of bytes, the server's heap stays bounded,
// and other connections are served meanwhile.
func TestControlFlood(t *testing.T) {
	const sockBuf = 32 << 10
	for _, tc := range []struct {
		name  string
		frame func(fr *http2.Framer)
	}{
		{"SETTINGS", func(fr *http2.Framer) { _ = fr.WriteSettings() }},
		{"PING", func(fr *http2.Framer) { _ = fr.WritePing(false, [8]byte{1, 2, 3}) }},
		{"SETTINGS with values", func(fr *http2.Framer) {
			_ = fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 70000}, http2.Setting{ID: http2.SettingHeaderTableSize, Val: 100})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := startWire(t, wire.Config{}, sockBuf)
			chunk := rawFrames(func(fr *http2.Framer) {
				for i := 0; i < 4096; i++ {
					tc.frame(fr)
				}
			})
			before := heapInuse()
			c := dialH2(t, s.addr, sockBuf)
			const offered, bound = 32 << 20, 4 << 20
			written, blocked, err := writeUntilBlocked(c.nc, chunk, offered)
			if err != nil {
				t.Fatalf("after %d bytes: %v", written, err)
			}
			if !blocked || written > bound {
				t.Fatalf("the server read %d bytes of %s from a client that reads nothing (blocked %v), want it to stop below %d", written, tc.name, blocked, bound)
			}
			if d := heapInuse() - before; d > 16<<20 {
				t.Errorf("heap grew by %d bytes", d)
			}
			other := dialH2(t, s.addr, 0)
			other.goodCall()
			t.Logf("%s: blocked after %d bytes", tc.name, written)
		})
	}
}

// TestUnreadResponses: a client that sends 20,000 calls and reads none of
// their responses is no longer read once the responses back up: its
// writes block after a bounded number of bytes and the server's heap
// stays bounded; other connections are served meanwhile. The server reads
// the calls it takes (MaxConcurrentStreams, 1000, whose handlers then wait
// to send) and the calls it refuses while its tiny refusals still fit in
// the sockets' buffers, some 1.5 MB of the 4.8 MB offered.
func TestUnreadResponses(t *testing.T) {
	const sockBuf = 32 << 10
	s := startWire(t, wire.Config{}, sockBuf)
	before := heapInuse()
	c := dialH2(t, s.addr, sockBuf)
	var calls bytes.Buffer
	fr := http2.NewFramer(&calls, nil)
	msg := frameMsg(&testpb.SimpleRequest{ResponseSize: 10_000, Payload: &testpb.Payload{Body: make([]byte, 200)}})
	for i := 0; i < 20_000; i++ {
		id := c.newID()
		_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: c.encode(callFields("UnaryCall")...), EndHeaders: true})
		_ = fr.WriteData(id, true, msg)
	}
	const bound = 3 << 20
	written, blocked, err := writeUntilBlocked(c.nc, calls.Bytes(), calls.Len())
	if err != nil {
		t.Fatalf("after %d bytes: %v", written, err)
	}
	if !blocked || written > bound {
		t.Fatalf("the server read %d of %d bytes of calls whose responses are not read (blocked %v), want it to stop below %d", written, calls.Len(), blocked, bound)
	}
	if d := heapInuse() - before; d > 48<<20 {
		t.Errorf("heap grew by %d bytes", d)
	}
	other := dialH2(t, s.addr, 0)
	other.goodCall()
	t.Logf("blocked after %d of %d bytes", written, calls.Len())
}

// --- header lists ---------------------------------------------------------

// TestHeaderLists: a large header value within the bound is served; a
// header list past the bound fails its call only; a CONTINUATION flood is
// cut by a connection error soon after the bound.
func TestHeaderLists(t *testing.T) {
	t.Run("100 KiB value", func(t *testing.T) {
		s := startWire(t, wire.Config{}, 0)
		c := dialH2(t, s.addr, 0)
		id := c.unary(&testpb.SimpleRequest{ResponseSize: 1}, "x-big", strings.Repeat("v", 100<<10))
		if st := c.await(id); !st.reset && st.grpcCode() != codes.OK {
			t.Errorf("a 100 KiB header under the bound: %v", st)
		}
		c.goodCall()
	})
	t.Run("over MaxHeaderListSize", func(t *testing.T) {
		s := startWire(t, wire.Config{MaxHeaderListSize: 32 << 10}, 0)
		c := dialH2(t, s.addr, 0)
		v := strings.Repeat("v", 12<<10)
		id := c.unary(&testpb.SimpleRequest{ResponseSize: 1}, "x-a", v, "x-b", v, "x-c", v)
		c.expectCode(id, codes.ResourceExhausted)
		c.goodCall()
	})
	t.Run("CONTINUATION flood", func(t *testing.T) {
		const limit, sockBuf = 256 << 10, 32 << 10
		s := startWire(t, wire.Config{MaxHeaderListSize: limit}, sockBuf)
		c := dialH2(t, s.addr, sockBuf)
		id := c.newID()
		first := c.encode(callFields("UnaryCall")...)
		var lit bytes.Buffer
		enc := hpack.NewEncoder(&lit)
		for i := 0; i < 15; i++ {
			_ = enc.WriteField(hpack.HeaderField{Name: "x-flood", Value: strings.Repeat("f", 1000), Sensitive: true})
		}
		head := rawFrames(func(fr *http2.Framer) {
			_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: first})
		})
		cont := rawFrames(func(fr *http2.Framer) { _ = fr.WriteContinuation(id, false, lit.Bytes()) })
		var written atomic.Int64
		stop := make(chan struct{})
		wdone := make(chan struct{})
		go func() {
			defer close(wdone)
			n, err := c.nc.Write(head)
			written.Add(int64(n))
			for err == nil && written.Load() < 64<<20 {
				select {
				case <-stop:
					return
				default:
				}
				n, err = c.nc.Write(cont)
				written.Add(int64(n))
			}
		}()
		var at int64
		for i := 0; ; i++ {
			f, err := c.next()
			if err == nil && i == 1_000_000 {
				err = errors.New("a million frames")
			}
			if err != nil {
				close(stop)
				<-wdone
				t.Fatalf("connection ended without GOAWAY after %d bytes: %v", written.Load(), err)
			}
			if f.typ == http2.FrameGoAway {
				at = written.Load()
				if f.code == http2.ErrCodeNo {
					t.Errorf("%v, want a connection error", f)
				}
				break
			}
		}
		close(stop)
		<-wdone
		if at > limit+4<<20 {
			t.Fatalf("the flood was cut after %d bytes, want fewer than %d", at, limit+4<<20)
		}
		t.Logf("cut after %d bytes", at)
	})
}

// TestErrorMessageAmplification: what the server writes stays within a
// small multiple of what the client sends. A grpc-message that repeats
// the :path of an unknown service must not turn the client's HPACK
// references (a byte each) into kilobytes of output per call: here two
// 1940-byte paths alternate, which the client's table holds and the
// server's, holding them with the longer name and prefix, does not.
func TestErrorMessageAmplification(t *testing.T) {
	s := startWire(t, wire.Config{}, 0)
	c := dialH2(t, s.addr, 0)
	const calls = 1000
	var in bytes.Buffer
	fr := http2.NewFramer(&in, nil)
	for i := 0; i < calls; i++ {
		path := "/" + strings.Repeat(string(rune('a'+i%2)), 1940) + "/M"
		block := c.encode(":method", "POST", ":scheme", "http", ":path", path, ":authority", "x", "content-type", "application/grpc")
		_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: c.newID(), BlockFragment: block, EndStream: true, EndHeaders: true})
	}
	werr := make(chan error, 1)
	go func() { _, err := c.nc.Write(in.Bytes()); werr <- err }()
	out := 0
	for ended := 0; ended < calls; {
		f, err := c.fr.ReadFrame()
		if err != nil {
			t.Fatalf("after %d calls: %v", ended, err)
		}
		out += 9 + int(f.Header().Length)
		if h, ok := f.(*http2.MetaHeadersFrame); ok && h.StreamEnded() {
			ended++
		}
	}
	if err := <-werr; err != nil {
		t.Fatal(err)
	}
	if bound := 16*in.Len() + 64<<10; out > bound {
		t.Errorf("the server wrote %d bytes for %d bytes of calls, want at most %d", out, in.Len(), bound)
	}
}
