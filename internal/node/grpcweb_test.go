package node_test

import (
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	notifyv1 "github.com/maxloyalty/notify/gen/notify/v1"
)

// TestGRPCWebSubscribe speaks grpc-web over HTTP/1.1 by hand: a framed
// SubscribeRequest in, a stream of framed SubscribeResponses out.
func TestGRPCWebSubscribe(t *testing.T) {
	t.Parallel()
	n := startNode(t, nil)
	ctx := testCtx(t)
	c := dial(t, n.GRPCAddr())

	resp := webCall(t, ctx, n.HTTPAddr(), "Subscribe", mint(t, guestClaims), &notifyv1.SubscribeRequest{Rooms: []string{"guest:g1"}})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("grpc-web Subscribe: HTTP %d", resp.StatusCode)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/grpc-web") {
		t.Errorf("Content-Type = %q, want application/grpc-web...", ct)
	}
	if st := resp.Header.Get("Grpc-Status"); st != "" && st != "0" {
		t.Fatalf("grpc-web Subscribe refused: grpc-status %s %s", st, resp.Header.Get("Grpc-Message"))
	}
	ws := &webStream{body: resp.Body}
	first := ws.next(t)
	conn := first.GetConnected()
	if conn == nil || conn.UserId != "g1" || conn.Role != notifyv1.Role_ROLE_GUEST {
		t.Fatalf("first message = %v, want connected for g1", first)
	}

	pub := publish(t, ctx, c, pointsReq(pointsAdded("g1", "r1", 9)))
	var ev *notifyv1.Event
	for range 100 {
		m := ws.next(t)
		if len(m.Events) > 0 {
			ev = m.Events[0]
			break
		}
		if m.GetHeartbeat() == nil {
			t.Fatalf("unexpected message %v", m)
		}
	}
	if ev == nil {
		t.Fatal("no event")
	}
	want := position(t, pub, "guest:g1")
	if ev.Id != pub.EventId || ev.Room != "guest:g1" || ev.Offset != want.Offset || ev.Epoch != want.Epoch ||
		!proto.Equal(ev.GetPointsAdded(), pointsAdded("g1", "r1", 9)) {
		t.Errorf("event = %v, want %s at %v", ev, pub.EventId, want)
	}
}

// TestGRPCWebPublish makes a unary grpc-web call and reads its data and
// trailer frames.
func TestGRPCWebPublish(t *testing.T) {
	t.Parallel()
	n := startNode(t, nil)
	ctx := testCtx(t)

	resp := webCall(t, ctx, n.HTTPAddr(), "Publish", mint(t, serviceClaims),
		pointsReq(pointsAdded("g1", "r1", 5), "guest:g1"))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("grpc-web Publish: HTTP %d", resp.StatusCode)
	}
	var (
		msgs     []*notifyv1.PublishResponse
		trailers http.Header
	)
	for range 10 {
		f, err := readWebFrame(resp.Body)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("frame: %v", err)
		}
		if f.isTrailer() {
			trailers = webTrailers(t, f.data)
			continue
		}
		if trailers != nil {
			t.Fatalf("data frame after the trailer frame")
		}
		var m notifyv1.PublishResponse
		if err := proto.Unmarshal(f.data, &m); err != nil {
			t.Fatalf("PublishResponse frame: %v", err)
		}
		msgs = append(msgs, &m)
	}
	if len(msgs) != 1 {
		t.Fatalf("got %d PublishResponse frames, want 1", len(msgs))
	}
	if msgs[0].EventId == "" || len(msgs[0].Positions) != 1 || msgs[0].Positions[0].Room != "guest:g1" || msgs[0].Positions[0].Offset != 1 {
		t.Errorf("PublishResponse = %v, want an event id and guest:g1 offset 1", msgs[0])
	}
	if trailers == nil {
		t.Fatal("no trailer frame")
	}
	if got := trailers.Get("Grpc-Status"); got != "0" {
		t.Errorf("trailer grpc-status = %q (message %q), want 0", got, trailers.Get("Grpc-Message"))
	}

	// A grpc-web publish by a guest is refused with PermissionDenied (7).
	resp = webCall(t, ctx, n.HTTPAddr(), "Publish", mint(t, guestClaims), pointsReq(pointsAdded("g1", "r1", 5), "guest:g1"))
	st := resp.Header.Get("Grpc-Status")
	if st == "" {
		// Not trailers-only: the status is in the trailer frame.
		for range 10 {
			f, err := readWebFrame(resp.Body)
			if err != nil {
				t.Fatalf("frame: %v", err)
			}
			if f.isTrailer() {
				st = webTrailers(t, f.data).Get("Grpc-Status")
				break
			}
		}
	}
	if st != "7" {
		t.Errorf("guest grpc-web Publish: grpc-status %q, want 7 (PermissionDenied)", st)
	}
}
