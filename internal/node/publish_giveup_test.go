package node_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	notifyv1 "github.com/maxloyalty/notify/gen/notify/v1"
	"github.com/maxloyalty/notify/internal/node"
	"github.com/maxloyalty/notify/internal/testenv"
)

// giveUpCalls is how many publishes each door's test makes with deadlines
// from 0 to 16 ms, or cancelled by the client at those times.
const giveUpCalls = 160

// TestPublishCallerGivesUp: publishers that give up midway (a deadline of
// 0 to 16 ms, or a client that cancels) through native gRPC and REST, one
// event or a batch per call: every event a subscriber received live is in
// the guest's inbox afterwards, and so is every event answered OK. Before
// the inbox write was freed from the caller's context, about one call in
// ten answered UNAVAILABLE "published but not stored" and its event was
// delivered and lost.
func TestPublishCallerGivesUp(t *testing.T) {
	t.Parallel()
	n := startNode(t, func(c *node.Config) { c.PublishRate = -1 })
	checkGiveUpDoors(t, n)
}

// TestPublishCallerGivesUpRedis is TestPublishCallerGivesUp on the Redis
// broker, whose publish is a script that Redis may run even when the
// caller's context ends while it waits for the answer.
func TestPublishCallerGivesUpRedis(t *testing.T) {
	t.Parallel()
	url := testenv.Service(t, testenv.RedisURL)
	n := startNode(t, func(c *node.Config) {
		c.PublishRate = -1
		c.Broker, c.RedisURL = "redis", url
		c.RedisPrefix = fmt.Sprintf("notify-giveup-%d", time.Now().UnixNano())
	})
	checkGiveUpDoors(t, n)
}

func checkGiveUpDoors(t *testing.T, n *testNode) {
	for _, door := range []string{"grpc", "rest"} {
		for _, batch := range []bool{false, true} {
			name := door
			if batch {
				name += "/batch"
			}
			gid := "giveup-" + strings.ReplaceAll(name, "/", "-")
			t.Run(name, func(t *testing.T) {
				checkGiveUp(t, n, door, batch, gid)
			})
		}
	}
}

func checkGiveUp(t *testing.T, n *testNode, door string, batch bool, gid string) {
	ctx := inboxCtx(t)
	c, ib := dialInbox(t, n.GRPCAddr())
	svc := mint(t, serviceClaims)
	guestTok := mint(t, guestID(gid))
	s, _ := subscribe(t, ctx, c, guestTok, &notifyv1.SubscribeRequest{Rooms: []string{"guest:" + gid}})

	var (
		mu sync.Mutex
		ok []string // event ids answered OK
		wg sync.WaitGroup
	)
	sem := make(chan struct{}, 8)
	for i := range giveUpCalls {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			// Deadlines from 0 to 16 ms, and every fifth call cancelled by
			// the client instead, at the same points.
			d := time.Duration(i%40) * 400 * time.Microsecond
			cctx, cancel := context.WithCancel(ctx)
			defer cancel()
			if i%5 == 0 {
				time.AfterFunc(d, cancel)
			} else {
				cctx, cancel = context.WithTimeout(cctx, d)
				defer cancel()
			}
			reqs := []*notifyv1.PublishRequest{pointsReq(pointsAdded(gid, "r1", int64(i+1)))}
			if batch {
				reqs = append(reqs, pointsReq(pointsAdded(gid, "r1", int64(1000+i))))
			}
			ids := giveUpPublish(cctx, c, n.HTTPAddr(), door, svc, reqs)
			mu.Lock()
			ok = append(ok, ids...)
			mu.Unlock()
		}()
	}
	wg.Wait()

	// A last event, published after every call above returned: the
	// stream has everything those calls delivered once it has this one.
	last := publish(t, ctx, c, pointsReq(pointsAdded(gid, "r1", 999999)))
	received := map[string]bool{}
	for {
		ev := s.next(t)
		if ev.Id == last.EventId {
			break
		}
		received[ev.Id] = true
	}

	// Writes of callers that gave up may still be running in the node's
	// store: poll.
	var missing []string
	defer func() {
		if len(missing) > 0 { // Eventually failed the test
			t.Logf("%d events delivered live or answered OK are not in the inbox: %v", len(missing), missing[:min(len(missing), 10)])
		}
	}()
	testenv.Eventually(t, testTimeout, "every event delivered live or answered OK in the inbox", func() bool {
		stored := map[string]bool{}
		for _, id := range inboxEventIDs(t, ctx, ib, guestTok) {
			stored[id] = true
		}
		missing = missing[:0]
		for id := range received {
			if !stored[id] {
				missing = append(missing, "live "+id)
			}
		}
		for _, id := range ok {
			if !stored[id] {
				missing = append(missing, "ok "+id)
			}
		}
		return len(missing) == 0
	})
	t.Logf("%d calls: %d events received live, %d answered OK, all stored", giveUpCalls, len(received), len(ok))
}

// giveUpPublish publishes reqs (one: Publish, several: PublishBatch) on
// ctx through door and returns the event ids answered OK.
func giveUpPublish(ctx context.Context, c notifyv1.NotificationServiceClient, httpAddr, door, tok string, reqs []*notifyv1.PublishRequest) []string {
	if door == "grpc" {
		if len(reqs) == 1 {
			resp, err := c.Publish(withToken(ctx, tok), reqs[0])
			if err != nil {
				return nil
			}
			return []string{resp.EventId}
		}
		resp, err := c.PublishBatch(withToken(ctx, tok), &notifyv1.PublishBatchRequest{Requests: reqs})
		if err != nil {
			return nil
		}
		var ids []string
		for _, r := range resp.Results {
			ids = append(ids, r.EventId)
		}
		return ids
	}
	var body, path string
	if len(reqs) == 1 {
		body, path = mustJSON(reqs[0]), "/v1/events"
	} else {
		body, path = mustJSON(&notifyv1.PublishBatchRequest{Requests: reqs}), "/v1/events:batchPublish"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+httpAddr+path, strings.NewReader(body))
	if err != nil {
		return nil
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+tok)
	// The client's deadline, passed on as gRPC's: the gateway sets it on
	// the call's context.
	if dl, ok := ctx.Deadline(); ok {
		req.Header.Set("Grpc-Timeout", fmt.Sprintf("%du", max(time.Until(dl).Microseconds(), 1)))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil
	}
	if resp.StatusCode != http.StatusOK {
		return nil
	}
	if len(reqs) == 1 {
		var pr notifyv1.PublishResponse
		if protojson.Unmarshal(b, &pr) != nil {
			return nil
		}
		return []string{pr.EventId}
	}
	var br notifyv1.PublishBatchResponse
	if protojson.Unmarshal(b, &br) != nil {
		return nil
	}
	var ids []string
	for _, r := range br.Results {
		ids = append(ids, r.EventId)
	}
	return ids
}

func mustJSON(m proto.Message) string {
	b, err := protojson.Marshal(m)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// inboxEventIDs lists the event ids of every notification in the caller's
// inbox, all pages.
func inboxEventIDs(t *testing.T, ctx context.Context, ib notifyv1.InboxServiceClient, tok string) []string {
	t.Helper()
	var out []string
	req := &notifyv1.ListNotificationsRequest{PageSize: 200}
	for range 100 {
		resp, err := ib.ListNotifications(withToken(ctx, tok), req)
		if err != nil {
			t.Fatalf("ListNotifications: %v", err)
		}
		out = append(out, eventIDs(resp.Notifications)...)
		if resp.NextPageToken == "" {
			return out
		}
		req.PageToken = resp.NextPageToken
	}
	t.Fatal("more than 100 pages of notifications")
	return nil
}
