package node_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	notifyv1 "github.com/maxloyalty/notify/gen/notify/v1"
	"github.com/maxloyalty/notify/internal/node"
)

// TestBadRooms: malformed room names are InvalidArgument over gRPC and 400
// over REST, for subscribe and publish alike.
func TestBadRooms(t *testing.T) {
	t.Parallel()
	n := startNode(t, nil)
	ctx := testCtx(t)
	c := dial(t, n.GRPCAddr())
	base := "http://" + n.HTTPAddr()
	admin, svc := mint(t, adminClaims), mint(t, serviceClaims)

	for _, bad := range []string{
		"bogus",
		"guest:",
		"guest:a:b",
		"restaurant:r1:foo",
		"guest:" + strings.Repeat("a", 65),
		"user:" + strings.Repeat("b", 65),
		"restaurant:" + strings.Repeat("c", 65) + ":points",
	} {
		t.Run(bad, func(t *testing.T) {
			sctx, cancel := context.WithCancel(ctx)
			defer cancel()
			// admin may subscribe to any valid room, so only the name is at fault.
			s, err := openStream(sctx, c, admin, &notifyv1.SubscribeRequest{Rooms: []string{bad}})
			if err != nil {
				t.Fatalf("Subscribe: %v", err)
			}
			_, err = s.Recv()
			wantCode(t, err, codes.InvalidArgument, "gRPC Subscribe")

			_, err = c.Publish(withToken(ctx, svc), pointsReq(pointsAdded("g1", "r1", 1), bad))
			wantCode(t, err, codes.InvalidArgument, "gRPC Publish")

			rs := restSubscribe(t, sctx, n.HTTPAddr(), "rooms="+url.QueryEscape(bad), admin)
			if rs.resp.StatusCode != http.StatusBadRequest {
				t.Errorf("REST subscribe: HTTP %d, want 400", rs.resp.StatusCode)
			} else if b, _ := io.ReadAll(io.LimitReader(rs.rd, 1<<20)); parseRestError(t, b).Code != int(codes.InvalidArgument) {
				t.Errorf("REST subscribe: body %s, want code %d", b, codes.InvalidArgument)
			}

			body, _ := json.Marshal(map[string]any{"rooms": []string{bad}, "pointsAdded": map[string]any{"guestId": "g1", "restaurantId": "r1", "amount": "1"}})
			r := restDo(t, ctx, http.MethodPost, base+"/v1/events", svc, string(body))
			if r.status != http.StatusBadRequest {
				t.Errorf("REST publish: HTTP %d (%s), want 400", r.status, r.body)
			}
			r = restDo(t, ctx, http.MethodPost, base+"/v1/rooms/"+url.PathEscape(bad)+"/events", svc, `{"pointsAdded":{"guestId":"g1","restaurantId":"r1","amount":"1"}}`)
			if r.status != http.StatusBadRequest {
				t.Errorf("REST publish in room: HTTP %d (%s), want 400", r.status, r.body)
			}
		})
	}
}

// TestPublishWithoutPayload: InvalidArgument / 400 naming the payload.
func TestPublishWithoutPayload(t *testing.T) {
	t.Parallel()
	n := startNode(t, nil)
	ctx := testCtx(t)
	c := dial(t, n.GRPCAddr())
	svc := mint(t, serviceClaims)

	_, err := c.Publish(withToken(ctx, svc), &notifyv1.PublishRequest{Rooms: []string{"guest:g1"}})
	wantCode(t, err, codes.InvalidArgument, "gRPC Publish without payload")
	if msg := status.Convert(err).Message(); !strings.Contains(msg, "payload") {
		t.Errorf("gRPC message %q does not mention payload", msg)
	}

	for _, body := range []string{`{}`, `{"rooms":["guest:g1"]}`} {
		r := restDo(t, ctx, http.MethodPost, "http://"+n.HTTPAddr()+"/v1/events", svc, body)
		if r.status != http.StatusBadRequest {
			t.Errorf("REST publish %s: HTTP %d (%s), want 400", body, r.status, r.body)
			continue
		}
		if e := parseRestError(t, r.body); e.Code != int(codes.InvalidArgument) || !strings.Contains(e.Message, "payload") {
			t.Errorf("REST publish %s: error %+v, want code 3 mentioning payload", body, e)
		}
	}
}

// TestOversizedMessage: a publish above MaxMessageBytes is ResourceExhausted
// over gRPC and a 4xx (429) over REST.
func TestOversizedMessage(t *testing.T) {
	t.Parallel()
	n := startNode(t, func(c *node.Config) { c.MaxMessageBytes = 4096 })
	ctx := testCtx(t)
	c := dial(t, n.GRPCAddr())
	svc := mint(t, serviceClaims)

	p := pointsAdded("g1", "r1", 1)
	p.Description = strings.Repeat("x", 8000)
	_, err := c.Publish(withToken(ctx, svc), pointsReq(p))
	wantCode(t, err, codes.ResourceExhausted, "gRPC oversized Publish")

	// Just under the bound still works.
	p.Description = strings.Repeat("x", 1900)
	p.RestaurantName = strings.Repeat("n", 190)
	if _, err := c.Publish(withToken(ctx, svc), pointsReq(p)); err != nil {
		t.Errorf("gRPC Publish of ~2 KB: %v", err)
	}

	body := `{"pointsAdded":{"guestId":"g1","restaurantId":"r1","amount":"1","description":"` + strings.Repeat("y", 8000) + `"}}`
	r := restDo(t, ctx, http.MethodPost, "http://"+n.HTTPAddr()+"/v1/events", svc, body)
	// The gateway maps ResourceExhausted to 429, as notify.proto documents.
	if r.status != http.StatusTooManyRequests {
		t.Errorf("REST oversized publish: HTTP %d (%s), want 429", r.status, r.body)
	} else if e := parseRestError(t, r.body); e.Code != int(codes.ResourceExhausted) {
		t.Errorf("REST oversized publish: error %+v, want code %d", e, codes.ResourceExhausted)
	}
}
