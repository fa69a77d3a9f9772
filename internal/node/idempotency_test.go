package node_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	notifyv1 "github.com/maxloyalty/notify/gen/notify/v1"
	"github.com/maxloyalty/notify/internal/auth"
)

// idemCaller makes the calls of TestIdempotencyKeyReuse through one door,
// returning the response or the call's gRPC code and ErrorInfo reason (for
// REST, the code and reason of the error body) and, for REST, the HTTP
// status (TestIdempotencyKeyReuseRESTStatus checks it).
type idemCaller func(t *testing.T, method, tok string, req, resp proto.Message) (code codes.Code, reason string, httpStatus int)

func grpcIdemCaller(c notifyv1.NotificationServiceClient) idemCaller {
	return func(t *testing.T, method, tok string, req, resp proto.Message) (codes.Code, string, int) {
		t.Helper()
		ctx := withToken(testCtx(t), tok)
		var out proto.Message
		var err error
		switch method {
		case "Publish":
			out, err = c.Publish(ctx, req.(*notifyv1.PublishRequest))
		case "PublishBatch":
			out, err = c.PublishBatch(ctx, req.(*notifyv1.PublishBatchRequest))
		case "ConfirmAction":
			out, err = c.ConfirmAction(ctx, req.(*notifyv1.ConfirmActionRequest))
		}
		if err != nil {
			info := errorInfo(err)
			return status.Code(err), info.GetReason(), 0
		}
		proto.Merge(resp, out)
		return codes.OK, "", 0
	}
}

func restIdemCaller(httpAddr string) idemCaller {
	paths := map[string]string{"Publish": "/v1/events", "PublishBatch": "/v1/events:batchPublish", "ConfirmAction": "/v1/actions:confirm"}
	return func(t *testing.T, method, tok string, req, resp proto.Message) (codes.Code, string, int) {
		t.Helper()
		body, err := protojson.Marshal(req)
		if err != nil {
			t.Fatal(err)
		}
		r := restDo(t, testCtx(t), http.MethodPost, "http://"+httpAddr+paths[method], tok, string(body))
		if r.status == http.StatusOK {
			unmarshalJSON(t, r.body, resp)
			return codes.OK, "", r.status
		}
		var e struct {
			Code    int `json:"code"`
			Details []struct {
				Reason string `json:"reason"`
			} `json:"details"`
		}
		if err := json.Unmarshal(r.body, &e); err != nil {
			t.Fatalf("%s: error body %q: %v", method, r.body, err)
		}
		reason := ""
		if len(e.Details) > 0 {
			reason = e.Details[0].Reason
		}
		return codes.Code(e.Code), reason, r.status
	}
}

// TestIdempotencyKeyReuse: through native gRPC and REST, a request repeated
// with its idempotency key gets the first result with duplicate = true
// (Publish, each PublishBatch result) or the first event and position
// (ConfirmAction); the key with a different request is FAILED_PRECONDITION
// (reason IDEMPOTENCY_KEY_REUSED) and delivers nothing. Before, the second
// request got the first one's result silently, and the restaurant of a
// second confirmation never heard of it.
func TestIdempotencyKeyReuse(t *testing.T) {
	t.Parallel()
	n := startNode(t, nil)
	c := dial(t, n.GRPCAddr())
	for _, door := range []struct {
		name string
		call idemCaller
	}{
		{"grpc", grpcIdemCaller(c)},
		{"rest", restIdemCaller(n.HTTPAddr())},
	} {
		t.Run(door.name, func(t *testing.T) {
			ctx := testCtx(t)
			svc := mint(t, serviceClaims)
			gid := "idem-" + door.name
			guest := mint(t, auth.Claims{Subject: gid, Role: notifyv1.Role_ROLE_GUEST})
			r2 := "idem-r2-" + door.name
			// The guest has events from both restaurants, so may confirm
			// actions at either.
			publish(t, ctx, c, pointsReq(pointsAdded(gid, "r1", 1)))
			publish(t, ctx, c, pointsReq(pointsAdded(gid, r2, 1)))
			till, _ := subscribe(t, ctx, c, mint(t, auth.Claims{Subject: "cash-" + door.name, Role: notifyv1.Role_ROLE_CASHIER, RestaurantID: r2}),
				&notifyv1.SubscribeRequest{Rooms: []string{"restaurant:" + r2}})

			wantReused := func(t *testing.T, what string, code codes.Code, reason string, _ int) {
				t.Helper()
				if code != codes.FailedPrecondition || reason != "IDEMPOTENCY_KEY_REUSED" {
					t.Errorf("%s: code %v reason %q, want FAILED_PRECONDITION IDEMPOTENCY_KEY_REUSED", what, code, reason)
				}
			}

			t.Run("Publish", func(t *testing.T) {
				req := pointsReq(pointsAdded(gid, "r1", 5))
				req.IdempotencyKey = door.name + "-k1"
				var first, again notifyv1.PublishResponse
				if code, reason, _ := door.call(t, "Publish", svc, req, &first); code != codes.OK {
					t.Fatalf("first publish: %v %s", code, reason)
				}
				if code, reason, _ := door.call(t, "Publish", svc, req, &again); code != codes.OK || !again.Duplicate || again.EventId != first.EventId {
					t.Errorf("repeat: %v %s %v, want the first result (%s) with duplicate = true", code, reason, &again, first.EventId)
				}
				req = pointsReq(pointsAdded(gid, "r1", 500))
				req.IdempotencyKey = door.name + "-k1"
				code, reason, hs := door.call(t, "Publish", svc, req, &notifyv1.PublishResponse{})
				wantReused(t, "k1 with 500 points", code, reason, hs)
			})

			t.Run("PublishBatch", func(t *testing.T) {
				items := []*notifyv1.PublishRequest{pointsReq(pointsAdded(gid, "r1", 6)), pointsReq(pointsAdded(gid, "r1", 7))}
				items[0].IdempotencyKey, items[1].IdempotencyKey = door.name+"-b1", door.name+"-b2"
				var first, again notifyv1.PublishBatchResponse
				if code, reason, _ := door.call(t, "PublishBatch", svc, &notifyv1.PublishBatchRequest{Requests: items}, &first); code != codes.OK {
					t.Fatalf("first batch: %v %s", code, reason)
				}
				if code, _, _ := door.call(t, "PublishBatch", svc, &notifyv1.PublishBatchRequest{Requests: items}, &again); code != codes.OK || len(again.Results) != 2 {
					t.Fatalf("repeated batch: %v %v", code, &again)
				}
				for i, r := range again.Results {
					if !r.Duplicate || r.EventId != first.Results[i].EventId {
						t.Errorf("repeated batch result %d = %v, want a duplicate of %s", i, r, first.Results[i].EventId)
					}
				}
				items[1] = pointsReq(pointsAdded(gid, "r1", 700))
				items[1].IdempotencyKey = door.name + "-b2"
				code, reason, hs := door.call(t, "PublishBatch", svc, &notifyv1.PublishBatchRequest{Requests: items}, &notifyv1.PublishBatchResponse{})
				wantReused(t, "batch with b2 changed", code, reason, hs)
			})

			t.Run("ConfirmAction", func(t *testing.T) {
				req := &notifyv1.ConfirmActionRequest{ActionId: "act-1", Action: notifyv1.ActionType_ACTION_TYPE_POINTS_REDEEM, Amount: 5, RestaurantId: "r1"}
				var first, again notifyv1.ConfirmActionResponse
				if code, reason, _ := door.call(t, "ConfirmAction", guest, req, &first); code != codes.OK {
					t.Fatalf("first confirmation: %v %s", code, reason)
				}
				if code, reason, _ := door.call(t, "ConfirmAction", guest, req, &again); code != codes.OK ||
					again.EventId != first.EventId || !proto.Equal(again.Position, first.Position) {
					t.Errorf("repeat: %v %s %v, want the first result %v", code, reason, &again, &first)
				}
				other := &notifyv1.ConfirmActionRequest{ActionId: "act-1", Action: notifyv1.ActionType_ACTION_TYPE_POINTS_REDEEM, Amount: 500, RestaurantId: r2}
				code, reason, hs := door.call(t, "ConfirmAction", guest, other, &notifyv1.ConfirmActionResponse{})
				wantReused(t, "act-1 at "+r2+" for 500", code, reason, hs)

				// r2 heard nothing of the refused confirmation: the next
				// event in its room is this one.
				mark := publish(t, ctx, c, &notifyv1.PublishRequest{Payload: &notifyv1.PublishRequest_RestaurantStatusChanged{
					RestaurantStatusChanged: &notifyv1.RestaurantStatusChanged{RestaurantId: r2, Status: notifyv1.RestaurantStatus_RESTAURANT_STATUS_ACTIVE}}})
				if ev := till.next(t); ev.Id != mark.EventId {
					t.Errorf("restaurant %s received %v, want only the later status event %s", r2, ev, mark.EventId)
				}
			})
		})
	}
}

// TestIdempotencyKeyReuseRESTStatus: over REST, a reused key is HTTP 409
// Conflict with the status body (code 9, FAILED_PRECONDITION).
func TestIdempotencyKeyReuseRESTStatus(t *testing.T) {
	t.Parallel()
	n := startNode(t, nil)
	ctx := testCtx(t)
	svc := mint(t, serviceClaims)
	url := "http://" + n.HTTPAddr() + "/v1/events"
	body := func(amount string) string {
		return `{"idempotencyKey":"k409","pointsAdded":{"guestId":"g1","amount":"` + amount + `","restaurantId":"r1"}}`
	}
	if r := restDo(t, ctx, http.MethodPost, url, svc, body("5")); r.status != http.StatusOK {
		t.Fatalf("first publish: %d %s", r.status, r.body)
	}
	r := restDo(t, ctx, http.MethodPost, url, svc, body("500"))
	if e := parseRestError(t, r.body); e.Code != int(codes.FailedPrecondition) || !strings.Contains(e.Message, "idempotency_key") {
		t.Fatalf("reused key: %d %s, want code 9 naming idempotency_key", r.status, r.body)
	}
	if r.status != http.StatusConflict {
		t.Errorf("reused key: HTTP %d, want 409", r.status)
	}
}
