package logging

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	notifyv1 "github.com/maxloyalty/notify/gen/notify/v1"
	"github.com/maxloyalty/notify/internal/auth"
)

// panicky is a health server whose Check panics for the service "boom".
type panicky struct{ *health.Server }

func (p panicky) Check(ctx context.Context, req *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	if req.Service == "boom" {
		panic("handler bug")
	}
	return p.Server.Check(ctx, req)
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func TestLogAndRecoverOverRealGRPC(t *testing.T) {
	var out syncBuffer
	log := slog.New(slog.NewTextHandler(&out, nil))
	secret := []byte("logging-test-secret-0123456789abcdef")
	v, err := auth.NewVerifier(auth.Config{HMACSecret: secret})
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(
		grpc.ChainUnaryInterceptor(UnaryServerInterceptor(log), v.UnaryInterceptor(nil), UnaryTag(), UnaryRecovery(log)),
		grpc.ChainStreamInterceptor(StreamServerInterceptor(log), v.StreamInterceptor(nil), StreamTag(), StreamRecovery(log)),
	)
	healthpb.RegisterHealthServer(srv, panicky{health.NewServer()})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	defer srv.Stop()
	conn, err := grpc.NewClient(l.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	tok, err := auth.NewSigner(secret).Mint(auth.Claims{Subject: "svc1", Role: notifyv1.Role_ROLE_SERVICE}, 0)
	if err != nil {
		t.Fatal(err)
	}
	ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+tok)
	c := healthpb.NewHealthClient(conn)

	_, err = c.Check(ctx, &healthpb.HealthCheckRequest{Service: "boom"})
	if status.Code(err) != codes.Internal || strings.Contains(err.Error(), "handler bug") {
		t.Fatalf("panicking handler = %v, want Internal without the panic text", err)
	}
	// The server keeps serving.
	if _, err := c.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatalf("call after a panic: %v", err)
	}
	_, err = c.Check(context.Background(), &healthpb.HealthCheckRequest{})
	if status.Code(err) != codes.Unauthenticated {
		t.Fatalf("no token = %v", err)
	}

	logs := out.String()
	for _, want := range []string{
		`level=ERROR msg="panic in handler" method=/grpc.health.v1.Health/Check panic="handler bug"`,
		`msg=rpc method=/grpc.health.v1.Health/Check code=Internal`,
		`msg=rpc method=/grpc.health.v1.Health/Check code=OK`,
		`user=svc1 role=service`,
		`code=Unauthenticated`,
	} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %q:\n%s", want, logs)
		}
	}
	if strings.Contains(logs, tok) || strings.Contains(logs, string(secret)) {
		t.Error("a token or the secret reached the log")
	}
}

func TestOneLine(t *testing.T) {
	if got := oneLine("a\nb\rc"); got != `a\nb\rc` {
		t.Fatalf("oneLine = %q", got)
	}
	if got := oneLine(strings.Repeat("x", 600)); len(got) != 515 {
		t.Fatalf("oneLine kept %d bytes", len(got))
	}
}
