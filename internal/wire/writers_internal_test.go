package wire

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"io"
	"math"
	"net"
	"os"
	"strconv"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding"
	protocodec "google.golang.org/grpc/encoding/proto"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/protobuf/proto"

	"github.com/maxloyalty/notify/internal/testenv"
)

// tcpPair returns both ends of a loopback TCP connection, with small
// socket buffers so that a peer that does not read fills them soon.
func tcpPair(t *testing.T) (server, client *net.TCPConn) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	cc, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	sc, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	server, client = sc.(*net.TCPConn), cc.(*net.TCPConn)
	t.Cleanup(func() { server.Close(); client.Close() })
	_ = server.SetWriteBuffer(64 << 10)
	_ = client.SetReadBuffer(64 << 10)
	return server, client
}

// TestRawWriter: a write the peer cannot take whole returns at once with
// what the kernel took, the rest written later arrives in order, and a
// socket's deadline and closing are errors, not "would block".
func TestRawWriter(t *testing.T) {
	sc, cc := tcpPair(t)
	rw := newRawWriter(sc)
	if rw == nil {
		t.Fatal("no raw writer for a TCP connection")
	}
	data := make([]byte, 8<<20)
	for i := range data {
		data[i] = byte(i * 7)
	}
	n, err := rw.write(data) // the client reads nothing yet: this must not wait for it
	if !errors.Is(err, errWouldBlock) || n <= 0 || n >= len(data) {
		t.Fatalf("write to a peer that does not read: %d of %d bytes, %v; want part of it and errWouldBlock", n, len(data), err)
	}
	got := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(cc)
		got <- b
	}()
	if _, err := sc.Write(data[n:]); err != nil {
		t.Fatal(err)
	}
	_ = sc.CloseWrite()
	if b := <-got; !bytes.Equal(b, data) {
		t.Fatalf("the peer read %d bytes, not the %d written (or not in order)", len(b), len(data))
	}

	_ = sc.SetWriteDeadline(time.Now().Add(-time.Second))
	if _, err := rw.write([]byte("x")); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("write past the deadline: %v; want a deadline error", err)
	}
	sc.Close()
	if _, err := rw.write([]byte("x")); err == nil || errors.Is(err, errWouldBlock) {
		t.Errorf("write to a closed socket: %v; want an error", err)
	}

	p1, p2 := net.Pipe()
	defer p1.Close()
	defer p2.Close()
	if newRawWriter(p1) != nil {
		t.Error("a raw writer for a pipe, which has no socket")
	}
	if w := newRawWriter(tls.Server(sc, &tls.Config{})); w == nil || !w.tls {
		t.Error("a TLS connection's socket not marked TLS: it would be written around crypto/tls")
	}
}

// TestQuietDeliveryAllocatesNothing: a delivery to a connection of its
// own takes an output buffer, writes it without blocking and puts the
// buffer back, as the connection is quiet again. None of that may
// allocate: at tens of thousands of deliveries a second, a few pointers
// each were most of what the collector had to collect.
func TestQuietDeliveryAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector drops pooled items on purpose")
	}
	sc, cc := tcpPair(t)
	rw := newRawWriter(sc)
	frame := make([]byte, 200)
	drain := make([]byte, 64<<10)
	allocs := testing.AllocsPerRun(1000, func() {
		b := append(getBuf(), frame...)
		if n, err := rw.write(b); err != nil || n != len(b) {
			t.Fatalf("write: %d of %d bytes, %v", n, len(b), err)
		}
		putBuf(b)
		if _, err := io.ReadFull(cc, drain[:len(frame)]); err != nil {
			t.Fatal(err)
		}
	})
	// A collection during the run empties the pools, which then allocate
	// once more; one allocation per delivery is what must not come back.
	if allocs >= 0.5 {
		t.Errorf("%.2f allocations per delivery, want none", allocs)
	}
}

// outService streams the responses a request asks for, each body starting
// with its index.
type outService struct {
	testpb.UnimplementedTestServiceServer
}

func (outService) StreamingOutputCall(req *testpb.StreamingOutputCallRequest, stream grpc.ServerStreamingServer[testpb.StreamingOutputCallResponse]) error {
	for i, p := range req.GetResponseParameters() {
		body := make([]byte, p.GetSize())
		copy(body, strconv.Itoa(i)+".")
		if err := stream.Send(&testpb.StreamingOutputCallResponse{Payload: &testpb.Payload{Body: body}}); err != nil {
			return err
		}
	}
	return nil
}

// TestSharedWritersStalledPeer: a client that stops reading with windows
// wide open fills its socket; its connection's turn leaves the shared
// writers for a goroutine of its own, other connections' streams go on
// meanwhile, and once the client reads again every response arrives whole
// and in order.
func TestSharedWritersStalledPeer(t *testing.T) {
	srv := NewServer(Config{Codec: encoding.GetCodecV2(protocodec.Name)})
	testpb.RegisterTestServiceServer(srv, outService{})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	defer func() { srv.Stop(); <-served }()

	// The stalled client, by hand: windows at their largest, then one call
	// for far more than the sockets between it and the server hold.
	nc, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	_ = nc.(*net.TCPConn).SetReadBuffer(64 << 10)
	_ = nc.SetDeadline(time.Now().Add(time.Minute))
	fr := http2.NewFramer(nc, nc)
	fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	if _, err := nc.Write([]byte(http2.ClientPreface)); err != nil {
		t.Fatal(err)
	}
	if err := fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: math.MaxInt32}); err != nil {
		t.Fatal(err)
	}
	if err := fr.WriteWindowUpdate(0, math.MaxInt32-65535); err != nil {
		t.Fatal(err)
	}
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for _, f := range [][2]string{{":method", "POST"}, {":scheme", "http"}, {":path", "/grpc.testing.TestService/StreamingOutputCall"},
		{":authority", "test"}, {"content-type", "application/grpc"}, {"te", "trailers"}} {
		_ = enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	const count, size = 640, 32 << 10
	ps := make([]*testpb.ResponseParameters, count)
	for i := range ps {
		ps[i] = &testpb.ResponseParameters{Size: size}
	}
	msg, _ := proto.Marshal(&testpb.StreamingOutputCallRequest{ResponseParameters: ps})
	body := binary.BigEndian.AppendUint32([]byte{0}, uint32(len(msg)))
	if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hb.Bytes(), EndHeaders: true}); err != nil {
		t.Fatal(err)
	}
	if err := fr.WriteData(1, true, append(body, msg...)); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 20*time.Second, "the stalled connection's turn to leave the shared writers", func() bool {
		return srv.writers.spills.Load() > 0
	})

	// Other connections are served meanwhile.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for range 20 {
		cc, err := grpc.NewClient(l.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		s, err := testpb.NewTestServiceClient(cc).StreamingOutputCall(ctx, &testpb.StreamingOutputCallRequest{ResponseParameters: ps[:20]})
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; ; i++ {
			r, err := s.Recv()
			if err == io.EOF && i == 20 {
				break
			}
			if err != nil || !bytes.HasPrefix(r.GetPayload().GetBody(), []byte(strconv.Itoa(i)+".")) {
				t.Fatalf("another connection's response %d while one stalls: %v", i, err)
			}
		}
		cc.Close()
	}

	// The stalled client reads: everything, in order, then the trailers.
	var data []byte
	for done := false; !done; {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("reading the stalled stream: %v (%d bytes read)", err, len(data))
		}
		switch f := f.(type) {
		case *http2.DataFrame:
			data = append(data, f.Data()...)
		case *http2.MetaHeadersFrame:
			if f.StreamEnded() {
				if st := f.PseudoValue("status"); st == "" && (len(f.RegularFields()) == 0 || f.RegularFields()[0].Value != "0") {
					t.Fatalf("trailers: %v", f.Fields)
				}
				done = true
			}
		}
	}
	for i := 0; i < count; i++ {
		if len(data) < 5 {
			t.Fatalf("the stream ended after %d responses", i)
		}
		n := int(binary.BigEndian.Uint32(data[1:5]))
		var r testpb.StreamingOutputCallResponse
		if err := proto.Unmarshal(data[5:5+n], &r); err != nil || !bytes.HasPrefix(r.GetPayload().GetBody(), []byte(strconv.Itoa(i)+".")) || len(r.GetPayload().GetBody()) != size {
			t.Fatalf("response %d: %v, body %q…", i, err, r.GetPayload().GetBody()[:min(8, len(r.GetPayload().GetBody()))])
		}
		data = data[5+n:]
	}
	if len(data) != 0 {
		t.Fatalf("%d bytes after the last response", len(data))
	}
}
