package wire_test

import (
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/encoding/proto"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/metadata"

	"github.com/maxloyalty/notify/internal/testenv"
	"github.com/maxloyalty/notify/internal/wire"
)

// stackCodec is the proto codec, recording the goroutine stack of every
// Unmarshal.
type stackCodec struct {
	encoding.CodecV2
	mu     sync.Mutex
	stacks []string
}

func (c *stackCodec) Unmarshal(data mem.BufferSlice, v any) error {
	b := make([]byte, 8<<10)
	c.mu.Lock()
	c.stacks = append(c.stacks, string(b[:runtime.Stack(b, false)]))
	c.mu.Unlock()
	return c.CodecV2.Unmarshal(data, v)
}

// TestStreamRequestDecodedAside: the request of a server-streaming call is
// decoded on a short-lived goroutine, not on the handler's, whose stack a
// live stream keeps for its whole life; a unary call's is decoded inline.
func TestStreamRequestDecodedAside(t *testing.T) {
	codec := &stackCodec{CodecV2: encoding.GetCodecV2(proto.Name)}
	srv := wire.NewServer(wire.Config{Codec: codec})
	testpb.RegisterTestServiceServer(srv, &testService{cancelled: make(chan struct{})})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	defer func() { srv.Stop(); <-served }()
	conn, err := grpc.NewClient(l.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := testpb.NewTestServiceClient(conn)

	s, err := c.StreamingOutputCall(ctx(t), &testpb.StreamingOutputCallRequest{ResponseParameters: params(1, 10)})
	if err != nil {
		t.Fatal(err)
	}
	recvAll(t, s, 1, 10, nil)
	if _, err := c.UnaryCall(ctx(t), &testpb.SimpleRequest{ResponseSize: 1}); err != nil {
		t.Fatal(err)
	}

	codec.mu.Lock()
	defer codec.mu.Unlock()
	if len(codec.stacks) != 2 {
		t.Fatalf("%d requests decoded, want 2", len(codec.stacks))
	}
	const aside = "created by github.com/maxloyalty/notify/internal/stack.Aside"
	if !strings.Contains(codec.stacks[0], aside) {
		t.Errorf("streaming request decoded on the handler's goroutine:\n%s", codec.stacks[0])
	}
	if strings.Contains(codec.stacks[1], aside) {
		t.Errorf("unary request decoded aside:\n%s", codec.stacks[1])
	}
}

// TestIdleReaderStartsAfresh: once the calls of a TLS connection the
// poller cannot take (its socket hidden) are set up and it has nothing
// more to read, its reader is a fresh goroutine (resume), not the one whose
// stack the handshake and the request grew; a unary call after that is
// served as before. (An idle connection on a socket holds no reader at
// all: see TestParkedConnections.)
func TestIdleReaderStartsAfresh(t *testing.T) {
	srv := wire.NewServer(wire.Config{Codec: encoding.GetCodecV2(proto.Name)})
	svc := &testService{cancelled: make(chan struct{})}
	testpb.RegisterTestServiceServer(srv, svc)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l, pool := wire.TLSListener(t, hiddenSockets{l})
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	defer func() { srv.Stop(); <-served }()
	conn, err := grpc.NewClient(l.Addr().String(), grpc.WithTransportCredentials(credentials.NewClientTLSFromCert(pool, "127.0.0.1")))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := testpb.NewTestServiceClient(conn)

	s, err := c.StreamingOutputCall(metadata.AppendToOutgoingContext(ctx(t), "x-hold", "1"), &testpb.StreamingOutputCallRequest{ResponseParameters: params(1, 10)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Recv(); err != nil {
		t.Fatal(err)
	}
	reader := func() string {
		buf := make([]byte, 1<<20)
		for _, g := range strings.Split(string(buf[:runtime.Stack(buf, true)]), "\n\n") {
			if strings.Contains(g, "wire.(*lazyReader).fill") {
				return g
			}
		}
		return ""
	}
	// The kernel's socket and the runtime's poller decide when the reader
	// parks: there is no event to wait on.
	testenv.Eventually(t, 5*time.Second, "the idle connection's reader to be a fresh goroutine", func() bool {
		return strings.Contains(reader(), "wire.(*conn).resume")
	})
	if _, err := c.UnaryCall(ctx(t), &testpb.SimpleRequest{ResponseSize: 1}); err != nil {
		t.Fatalf("a call after the handoff: %v", err)
	}
}

// hiddenSockets accepts connections that do not give their socket away
// (no syscall.Conn): neither parked nor written without blocking.
type hiddenSockets struct{ net.Listener }

func (l hiddenSockets) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return struct{ net.Conn }{c}, nil
}
