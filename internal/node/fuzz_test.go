package node_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"testing"
	"time"
	"unicode/utf8"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	notifyv1 "github.com/maxloyalty/notify/gen/notify/v1"
	"github.com/maxloyalty/notify/internal/auth"
	"github.com/maxloyalty/notify/internal/broker"
	"github.com/maxloyalty/notify/internal/node"
	"github.com/maxloyalty/notify/internal/room"
	"github.com/maxloyalty/notify/internal/testenv"
)

// fuzzStepTimeout bounds one request or stream opening of a fuzz input: a
// server that takes longer is hung.
const fuzzStepTimeout = 5 * time.Second

// fuzzNode builds and runs a dev-mode node for a fuzz target (once per fuzz
// worker process), stopped by f.Cleanup. mutate may adjust the config.
func fuzzNode(f *testing.F, mutate func(*node.Config)) *node.Node {
	f.Helper()
	cfg := node.Config{
		GRPCAddr:      "127.0.0.1:0",
		HTTPAddr:      "127.0.0.1:0",
		ServerID:      "fuzz-node",
		Dev:           true,
		DataDir:       f.TempDir(),
		LogLevel:      "error",
		GRPCTransport: testGRPCTransport(),
		// The fuzzer is one caller sending as fast as it can: limits would
		// only turn its inputs into 429s.
		PublishRate:       -1,
		MaxStreamsPerUser: -1,
		ConnRate:          -1,
	}
	if mutate != nil {
		mutate(&cfg)
	}
	ctx, cancel := context.WithCancel(context.Background())
	n, err := node.New(ctx, cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		cancel()
		f.Fatalf("node.New: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	f.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				f.Errorf("node Run: %v", err)
			}
		case <-time.After(30 * time.Second):
			f.Errorf("node did not stop within 30s")
		}
	})
	// Ready when /readyz says so.
	testenv.Eventually(f, 10*time.Second, "the node to be ready", func() bool {
		resp, err := http.Get("http://" + n.HTTPAddr() + "/readyz")
		if err != nil {
			return false
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return n
}

// fuzzToken mints a one-day token with the dev secret.
func fuzzToken(f *testing.F, c auth.Claims) string {
	f.Helper()
	tok, err := auth.NewSigner([]byte(node.DevSecret)).Mint(c, 24*time.Hour)
	if err != nil {
		f.Fatalf("Mint(%+v): %v", c, err)
	}
	return tok
}

// fuzzHTTPClient is a client of its own, so that its idle connections are
// closed when the target ends.
func fuzzHTTPClient(f *testing.F) *http.Client {
	tr := &http.Transport{MaxIdleConnsPerHost: 4, ResponseHeaderTimeout: fuzzStepTimeout}
	f.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: fuzzStepTimeout}
}

// FuzzRESTBodies sends arbitrary bodies through the real REST gateway of a
// running node: POST /v1/events, /v1/events:batchPublish (service token),
// /v1/inbox/notifications:markRead (guest token), and GET
// /v1/inbox/notifications with an arbitrary page_token. The server must
// answer every request (no connection error: nothing crashed or hung), never
// with a 5xx other than 503, and with a 200 only for a body that is valid
// JSON.
func FuzzRESTBodies(f *testing.F) {
	n := fuzzNode(f, nil)
	base := "http://" + n.HTTPAddr()
	svc := fuzzToken(f, auth.Claims{Subject: "svc1", Role: notifyv1.Role_ROLE_SERVICE})
	guest := fuzzToken(f, auth.Claims{Subject: "g1", Role: notifyv1.Role_ROLE_GUEST})
	client := fuzzHTTPClient(f)

	for _, s := range []struct{ body, pageToken string }{
		{`{"pointsAdded":{"guestId":"g1","cardId":"c1","restaurantId":"r1","restaurantName":"Chez Max","amount":100,"newBalance":600,"transactionId":"t1","description":"Lunch"}}`, ""},
		{`{"rooms":["guest:g1"],"idempotencyKey":"k1","pointsRedeemed":{"guestId":"g1","restaurantId":"r1","amount":"2","rewardName":"tea"}}`, "MQ"},
		{`{"requests":[{"rooms":["guest:g1"],"pointsAdded":{"guestId":"g1","amount":"1","restaurantId":"r1"}},{"systemAlert":{"level":"ALERT_LEVEL_CRITICAL","title":"Disk"}}]}`, "MTIzNDU2Nzg5"},
		{`{"ids":["1","2","999999999999999999999"]}`, "OTIyMzM3MjAzNjg1NDc3NTgwNw"},
		{`{"ids":[]}`, "!!!"},
		{`{"requests":[]}`, "MDE"},
		{`{}`, "MQ=="},
		{``, "\x00"},
		{`null`, "%"},
		{`[]`, "a b"},
		{`"x"`, ""},
		{`{"pointsAdded":{"guestId":"g1","restaurantId":"r1","amount":1e400}}`, ""},
		{`{"pointsAdded":{"guestId":"g1","restaurantId":"r1","amount":"9223372036854775808"}}`, ""},
		{`{"pointsAdded":{"guestId":"g1","restaurantId":"r1","amount":1,"occurredAt":"9999-12-31T23:59:59Z"}}`, ""},
		{`{"pointsAdded":{"guestId":"g1","restaurantId":"r1","amount":1,"occurredAt":"0001-01-01T00:00:00Z"}}`, ""},
		{`{"pointsAdded":{"guestId":"g1","restaurantId":"r1","amount":1},"systemAlert":{"level":1,"title":"t"}}`, ""},
		{`{"guestCardUpdated":{"guestId":"g1","cardId":"c1","status":"CARD_STATUS_UNKNOWN_VALUE","tier":99}}`, ""},
		{`{"restaurantStatusChanged":{"restaurantId":"r1","status":2,"estimatedRestore":"10000-01-01T00:00:00Z"}}`, ""},
		{`{"rooms":["admin","admin","guest:g1","restaurant:r1:points","user:","x"],"adminNotification":{"type":1,"priority":1,"title":"t"}}`, ""},
		{`{"room":"guest:g1","cardCreated":{"guestId":"g1","cardId":"c1","restaurantId":"r1","qrCode":"data:"}}`, ""},
		{`{"idempotencyKey":"` + string(bytes.Repeat([]byte("k"), 200)) + `","actionConfirmed":{"actionId":"a","action":1,"guestId":"g1","restaurantId":"r1"}}`, ""},
		{`{"unknownField":1}`, ""},
		{`{"pointsAdded":{"guestId":"\ud800","restaurantId":"r1","amount":1}}`, ""},
		{"{\"pointsAdded\":{\"guestId\":\"g\xff\",\"restaurantId\":\"r1\",\"amount\":1}}", ""},
		{`{"requests":[{"requests":[]}]}`, ""},
		{`{"ids":` + string(bytes.Repeat([]byte(`[`), 10000)) + `}`, ""},
		{`{"pointsAdded":` + string(bytes.Repeat([]byte(`{"a":`), 2000)) + `1` + string(bytes.Repeat([]byte(`}`), 2001)), ""},
	} {
		f.Add([]byte(s.body), s.pageToken)
	}

	f.Fuzz(func(t *testing.T, body []byte, pageToken string) {
		validJSON := json.Valid(body)
		for _, c := range []struct{ path, token string }{
			{"/v1/events", svc},
			{"/v1/events:batchPublish", svc},
			{"/v1/inbox/notifications:markRead", guest},
		} {
			code, resp := fuzzHTTP(t, client, http.MethodPost, base+c.path, c.token, body)
			fuzzCheckStatus(t, "POST "+c.path, body, code, resp)
			if code == http.StatusOK && !validJSON {
				t.Fatalf("POST %s with a body that is not valid JSON (%q) answered 200: %s", c.path, body, resp)
			}
		}
		q := url.Values{"page_token": {pageToken}}
		code, resp := fuzzHTTP(t, client, http.MethodGet, base+"/v1/inbox/notifications?"+q.Encode(), guest, nil)
		fuzzCheckStatus(t, fmt.Sprintf("GET /v1/inbox/notifications?page_token=%q", pageToken), nil, code, resp)
	})
}

// fuzzHTTP does one request and reads its whole response; any transport
// error fails the test (the server crashed, hung or dropped the connection).
func fuzzHTTP(t *testing.T, client *http.Client, method, url, tok string, body []byte) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatalf("NewRequest %s %s: %v", method, url, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s (body %q): %v", method, url, body, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		t.Fatalf("%s %s (body %q): reading the response: %v", method, url, body, err)
	}
	return resp.StatusCode, b
}

func fuzzCheckStatus(t *testing.T, what string, body []byte, code int, resp []byte) {
	t.Helper()
	if code >= 500 && code != http.StatusServiceUnavailable {
		t.Fatalf("%s (body %q) answered %d: %s", what, body, code, resp)
	}
}

// FuzzResumePositions opens streams over real gRPC with an arbitrary resume
// position on a node with history: a service stream of the history rooms
// plus the position's room, a guest stream of guest:g1 plus that room, and a
// guest stream of its default rooms. Each must open with Connected or end
// with InvalidArgument or PermissionDenied, never another code and never a
// hang. When Connected: only the position's room may be recovered, and then
// only in the position's epoch (or from offset 0, "nothing seen", which the
// broker honours in any epoch when the room's current epoch is whole), with
// the position as its start; and what is replayed before the stream's unread
// count is exactly each room's events after its start offset, in its epoch.
//
// The room epochs are random per node, so an epoch of "@current" stands for
// the position's room's current epoch on the node under test.
func FuzzResumePositions(f *testing.F) {
	// guest:g1 keeps 3 events of the 5 it gets, so that older positions
	// fall out of its window; the other rooms keep everything.
	n := fuzzNode(f, func(c *node.Config) {
		c.History = map[room.Kind]broker.Limits{room.KindGuest: {Size: 3, TTL: time.Hour}}
	})
	svcTok := fuzzToken(f, auth.Claims{Subject: "svc1", Role: notifyv1.Role_ROLE_SERVICE})
	guestTok := fuzzToken(f, auth.Claims{Subject: "g1", Role: notifyv1.Role_ROLE_GUEST})
	conn, err := grpc.NewClient("passthrough:///"+n.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { conn.Close() })
	c := notifyv1.NewNotificationServiceClient(conn)

	// History: guest:g1 and restaurant:r1:points 5 events, admin 2.
	ctx, cancel := context.WithTimeout(metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+svcTok), 30*time.Second)
	defer cancel()
	epochs := map[string]string{}
	for i := range 5 {
		resp, err := c.Publish(ctx, &notifyv1.PublishRequest{Payload: &notifyv1.PublishRequest_PointsAdded{PointsAdded: &notifyv1.PointsAdded{
			GuestId: "g1", RestaurantId: "r1", Amount: int64(i + 1), NewBalance: int64(100 + i),
		}}})
		if err != nil {
			f.Fatalf("publish: %v", err)
		}
		for _, p := range resp.Positions {
			epochs[p.Room] = p.Epoch
		}
	}
	for range 2 {
		resp, err := c.Publish(ctx, &notifyv1.PublishRequest{Payload: &notifyv1.PublishRequest_SystemAlert{SystemAlert: &notifyv1.SystemAlert{
			Level: notifyv1.AlertLevel_ALERT_LEVEL_WARNING, Title: "disk",
		}}})
		if err != nil {
			f.Fatalf("publish: %v", err)
		}
		epochs["admin"] = resp.Positions[0].Epoch
	}
	historyRooms := []string{"guest:g1", "restaurant:r1:points", "admin"}

	for _, s := range []struct {
		room   string
		offset uint64
		epoch  string
	}{
		{"guest:g1", 5, "@current"},      // up to date
		{"guest:g1", 2, "@current"},      // replay 3..5
		{"guest:g1", 1, "@current"},      // offset 2 left the window
		{"guest:g1", 0, "@current"},      // from the start, which is gone
		{"guest:g1", 6, "@current"},      // beyond the top
		{"guest:g1", 3, "other-epoch"},   // lost epoch
		{"guest:g1", 0, ""},              // nothing seen
		{"restaurant:r1:points", 0, "x"}, // nothing seen, foreign epoch, whole history
		{"restaurant:r1:points", 3, "x"}, // lost epoch: the current one is replayed whole
		{"restaurant:r1:points", 4, "@current"},
		{"admin", 2, "@current"},
		{"admin", 18446744073709551615, "@current"},
		{"user:g1", 0, ""},  // a room without history
		{"user:g1", 1, "e"}, // a position in a room without history
		{"guest:g2", 1, ""}, // another guest's room
		{"restaurant:r2", 0, ""},
		{"guest:", 0, ""}, // not a room
		{"nope", 1, "e"},
		{"guest:g1", 1, "0123456789012345678901234567890123456789012345678901234567890123456789"}, // epoch too long
	} {
		f.Add(s.room, s.offset, s.epoch)
	}

	f.Fuzz(func(t *testing.T, roomName string, offset uint64, epoch string) {
		if !utf8.ValidString(roomName) || !utf8.ValidString(epoch) {
			// proto3 strings are UTF-8: the client cannot even encode these.
			return
		}
		if epoch == "@current" {
			epoch = epochs[roomName]
		}
		pos := []*notifyv1.StreamPosition{{Room: roomName, Offset: offset, Epoch: epoch}}
		withRoom := func(rooms ...string) []string {
			if slices.Contains(rooms, roomName) {
				return rooms
			}
			return append(rooms, roomName)
		}
		fuzzResume(t, c, "service stream", svcTok, &notifyv1.SubscribeRequest{Rooms: withRoom(historyRooms...), Positions: pos})
		fuzzResume(t, c, "guest stream", guestTok, &notifyv1.SubscribeRequest{Rooms: withRoom("guest:g1"), Positions: pos})
		fuzzResume(t, c, "guest default stream", guestTok, &notifyv1.SubscribeRequest{Positions: pos})
	})
}

// fuzzResume opens one stream and checks how it starts (see FuzzResumePositions).
func fuzzResume(t *testing.T, c notifyv1.NotificationServiceClient, what, tok string, req *notifyv1.SubscribeRequest) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), fuzzStepTimeout)
	defer cancel()
	st, err := c.Subscribe(metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok), req)
	if err != nil {
		t.Fatalf("%s %v: Subscribe: %v", what, req, err)
	}
	m, err := st.Recv()
	if err != nil {
		switch code := status.Code(err); {
		case code == codes.InvalidArgument || code == codes.PermissionDenied:
			return
		case errors.Is(ctx.Err(), context.DeadlineExceeded):
			t.Fatalf("%s %v: no first message within %v (hung): %v", what, req, fuzzStepTimeout, err)
		default:
			t.Fatalf("%s %v: first Recv: %v, want Connected, InvalidArgument or PermissionDenied", what, req, err)
		}
	}
	connected := m.GetConnected()
	if connected == nil || len(m.Events) != 0 {
		t.Fatalf("%s %v: first message %v, want Connected", what, req, m)
	}
	p := req.Positions[0]
	states := map[string]*notifyv1.RoomState{}
	for _, s := range connected.Rooms {
		states[s.Room] = s
		if !s.Recovered {
			continue
		}
		if s.Room != p.Room {
			t.Fatalf("%s %v: room %s without a position is recovered: %v", what, req, s.Room, connected)
		}
		if p.Offset != 0 && p.Epoch != s.Epoch {
			t.Fatalf("%s %v: %s recovered from epoch %q, but the room's epoch is %q", what, req, s.Room, p.Epoch, s.Epoch)
		}
		if s.StartOffset != p.Offset || p.Offset > s.Offset {
			t.Fatalf("%s %v: %s recovered from %d with start %d and top %d", what, req, s.Room, p.Offset, s.StartOffset, s.Offset)
		}
	}
	if _, ok := states[p.Room]; !ok {
		t.Fatalf("%s %v: Connected without the position's room: %v", what, req, connected)
	}

	// The replay comes before the first unread count.
	replayed := map[string][]*notifyv1.Event{}
	for {
		m, err := st.Recv()
		if err != nil {
			t.Fatalf("%s %v: reading the replay: %v", what, req, err)
		}
		for _, ev := range m.Events {
			replayed[ev.Room] = append(replayed[ev.Room], ev)
		}
		if m.GetUnread() != nil {
			break
		}
	}
	for name, s := range states {
		evs := replayed[name]
		if s.StartOffset > s.Offset || uint64(len(evs)) != s.Offset-s.StartOffset {
			t.Fatalf("%s %v: %s starts at %d with top %d, but %d events were replayed", what, req, name, s.StartOffset, s.Offset, len(evs))
		}
		for i, ev := range evs {
			if ev.Offset != s.StartOffset+uint64(i)+1 || ev.Epoch != s.Epoch {
				t.Fatalf("%s %v: %s replayed %d@%s as event %d, want %d@%s", what, req, name, ev.Offset, ev.Epoch, i, s.StartOffset+uint64(i)+1, s.Epoch)
			}
		}
		delete(replayed, name)
	}
	for name := range replayed {
		t.Fatalf("%s %v: events replayed in %s, which is not a room of the stream", what, req, name)
	}
}
