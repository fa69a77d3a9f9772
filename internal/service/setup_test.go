package service_test

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	notifyv1 "github.com/maxloyalty/notify/gen/notify/v1"
	"github.com/maxloyalty/notify/internal/auth"
	"github.com/maxloyalty/notify/internal/broker"
	"github.com/maxloyalty/notify/internal/hub"
	"github.com/maxloyalty/notify/internal/service"
	"github.com/maxloyalty/notify/internal/store"
	"github.com/maxloyalty/notify/internal/wire"
)

// blockingInbox's Badge, which a guest's Subscribe asks during its setup,
// waits for its context to end and says how it ended. The rest is a real
// SQLite inbox's.
type blockingInbox struct {
	service.Inbox
	called chan struct{}
	ended  chan error
}

func (b *blockingInbox) Badge(ctx context.Context, _ store.Viewer) (store.Counts, error) {
	b.called <- struct{}{}
	<-ctx.Done()
	b.ended <- ctx.Err()
	return store.Counts{}, ctx.Err()
}

// TestSetupEndsWithTheCall: on the wire transport, a client's cancel
// while a Subscribe's setup waits on the store ends the setup's work,
// through the transport stream's OnCancel (no watcher goroutine).
func TestSetupEndsWithTheCall(t *testing.T) {
	st, err := store.OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "inbox.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	in := &blockingInbox{Inbox: st, called: make(chan struct{}, 1), ended: make(chan error, 1)}
	h := hub.New()
	mem := broker.NewMemory(broker.MemoryConfig{}, h.Deliver)
	defer mem.Close()
	svc := service.New(service.Config{ServerID: "setup-test"}, mem, h, in, slog.New(slog.DiscardHandler))
	v, err := auth.NewVerifier(auth.Config{HMACSecret: rpcSecret, RequireExpiry: true})
	if err != nil {
		t.Fatal(err)
	}
	srv := wire.NewServer(wire.Config{Codec: service.NewCodec(), Detach: true,
		StreamInterceptors: []grpc.StreamServerInterceptor{v.StreamInterceptor(nil)}})
	notifyv1.RegisterNotificationServiceServer(srv, svc)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	defer func() {
		h.CloseAll(hub.ErrShutdown)
		srv.Stop()
		<-served
	}()
	conn, err := grpc.NewClient(l.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()

	ctx, cancel := context.WithCancel(as(t, guestCaller))
	defer cancel()
	if _, err := notifyv1.NewNotificationServiceClient(conn).Subscribe(ctx, &notifyv1.SubscribeRequest{}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-in.called:
	case <-time.After(10 * time.Second):
		t.Fatal("the setup did not ask for the badge")
	}
	cancel()
	select {
	case err := <-in.ended:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("the setup's context ended with %v, want Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the client's cancel did not end the setup's work")
	}
}
