package wire_test

import (
	"errors"
	"net"
	"os"
	"syscall"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/encoding/proto"
	testpb "google.golang.org/grpc/interop/grpc_testing"

	"github.com/maxloyalty/notify/internal/wire"
)

// exhausted is a listener whose first Accepts fail as a process out of
// descriptors sees them fail.
type exhausted struct {
	net.Listener
	fails int
}

func (l *exhausted) Accept() (net.Conn, error) {
	if l.fails > 0 {
		l.fails--
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.EMFILE)}
	}
	return l.Listener.Accept()
}

// TestAcceptOutOfDescriptors: running out of descriptors for a while does
// not stop the server: it backs off and serves the next connection.
func TestAcceptOutOfDescriptors(t *testing.T) {
	srv := wire.NewServer(wire.Config{Codec: encoding.GetCodecV2(proto.Name)})
	testpb.RegisterTestServiceServer(srv, &testService{})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(&exhausted{Listener: l, fails: 3}) }()
	defer func() {
		srv.Stop()
		if err := <-served; !errors.Is(err, wire.ErrServerStopped) {
			t.Errorf("Serve: %v", err)
		}
	}()
	conn, err := grpc.NewClient(l.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := testpb.NewTestServiceClient(conn).UnaryCall(ctx(t), &testpb.SimpleRequest{ResponseSize: 1}); err != nil {
		t.Fatalf("a call after the listener ran out of descriptors: %v", err)
	}
}
