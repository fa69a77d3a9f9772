package main

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	notifyv1 "github.com/maxloyalty/notify/gen/notify/v1"
	"github.com/maxloyalty/notify/internal/auth"
	"github.com/maxloyalty/notify/internal/testenv"
)

// TestSIGKILLDuringBatchPublish: notifyd is SIGKILLed while a batch is
// being published. Every event of the batch is then either committed (its
// inbox row is listed after the restart) or the batch is reported failed to
// its publisher; retrying the same batch, with the same idempotency keys,
// completes it with every event stored exactly once.
func TestSIGKILLDuringBatchPublish(t *testing.T) {
	dir := t.TempDir()
	d := startDaemon(t, dir)
	ctx := testCtx(t)
	svc := token(t, auth.Claims{Subject: "backend", Role: notifyv1.Role_ROLE_SERVICE})
	const n = 200
	batch := &notifyv1.PublishBatchRequest{}
	for i := range n {
		batch.Requests = append(batch.Requests, &notifyv1.PublishRequest{
			IdempotencyKey: fmt.Sprintf("batch-key-%d", i),
			Payload: &notifyv1.PublishRequest_PointsAdded{PointsAdded: &notifyv1.PointsAdded{
				GuestId: "g1", RestaurantId: "r1", TransactionId: fmt.Sprintf("t%d", i), Amount: int64(i + 1), NewBalance: int64(i + 1),
			}},
		})
	}
	publishBatch := func(d *daemon) error {
		conn, err := grpc.NewClient("passthrough:///"+d.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return err
		}
		defer conn.Close()
		bctx, cancel := context.WithTimeout(metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+svc), 20*time.Second)
		defer cancel()
		resp, err := notifyv1.NewNotificationServiceClient(conn).PublishBatch(bctx, batch)
		if err == nil && len(resp.Results) != n {
			return fmt.Errorf("%d results for %d requests", len(resp.Results), n)
		}
		return err
	}

	errc := make(chan error, 1)
	go func() { errc <- publishBatch(d) }()
	// Kill it once part of the batch is committed (each event is its own
	// inbox commit), polling the guest's unread count.
	conn, err := grpc.NewClient("passthrough:///"+d.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	gctx := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token(t, guestClaims))
	testenv.Eventually(t, 10*time.Second, "an event of the batch committed", func() bool {
		resp, err := notifyv1.NewInboxServiceClient(conn).GetUnreadCount(gctx, &notifyv1.GetUnreadCountRequest{})
		return err == nil && resp.UnreadCount > 0
	})
	conn.Close()
	d.kill(t)
	d.requireKilled(t)
	firstErr := <-errc

	d2 := startDaemon(t, dir)
	before := inbox(t, ctx, d2)
	if firstErr == nil && len(before) != n {
		t.Fatalf("the batch was acknowledged but %d of %d events are stored", len(before), n)
	}
	t.Logf("killed mid-batch: publisher got %v; %d of %d events were committed", firstErr, len(before), n)

	if err := publishBatch(d2); err != nil {
		t.Fatalf("retrying the batch after the restart: %v", err)
	}
	after := inbox(t, ctx, d2)
	seen := map[string]int{}
	for _, it := range after {
		seen[it.Event.GetPointsAdded().GetTransactionId()]++
	}
	var problems []string
	for i := range n {
		if c := seen[fmt.Sprintf("t%d", i)]; c != 1 {
			problems = append(problems, fmt.Sprintf("t%d stored %d times", i, c))
		}
	}
	if len(after) != n || len(problems) > 0 {
		t.Fatalf("after the retry: %d rows, want %d, each once: %s", len(after), n, strings.Join(problems[:min(len(problems), 10)], "; "))
	}
}
