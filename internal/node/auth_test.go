package node_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	notifyv1 "github.com/maxloyalty/notify/gen/notify/v1"
	"github.com/maxloyalty/notify/internal/auth"
	"github.com/maxloyalty/notify/internal/node"
)

// algNoneToken crafts an unsigned token ("alg": "none") for c.
func algNoneToken(c auth.Claims) string {
	enc := base64.RawURLEncoding.EncodeToString
	header := enc([]byte(`{"alg":"none","typ":"JWT"}`))
	claims := enc(fmt.Appendf(nil, `{"sub":%q,"role":%q,"restaurant_id":%q,"exp":%d}`,
		c.Subject, auth.RoleName(c.Role), c.RestaurantID, time.Now().Add(time.Hour).Unix()))
	return header + "." + claims + "."
}

// TestBadTokens: every bad token is refused with Unauthenticated over gRPC
// (unary and streaming) and 401 over REST (unary and streaming), and no
// error message leaks the node's secret.
func TestBadTokens(t *testing.T) {
	t.Parallel()
	const audience = "notify-api"
	plain := startNode(t, nil)
	aud := startNode(t, func(c *node.Config) { c.JWTAudience = audience })
	ctx := testCtx(t)

	cases := []struct {
		name string
		node *testNode
		tok  string
		want codes.Code // OK for the control cases
	}{
		{"valid (control)", plain, mint(t, serviceClaims), codes.OK},
		{"no token", plain, "", codes.Unauthenticated},
		{"expired", plain, mintWith(t, testSecret, serviceClaims, time.Hour, auth.WithIssuedAt(time.Now().Add(-2*time.Hour))), codes.Unauthenticated},
		{"wrong key", plain, mintWith(t, otherSecret, serviceClaims, time.Hour), codes.Unauthenticated},
		{"alg none", plain, algNoneToken(serviceClaims), codes.Unauthenticated},
		{"garbage", plain, "not-a-jwt", codes.Unauthenticated},
		{"audience (control)", aud, mint(t, serviceClaims, auth.WithAudience(audience)), codes.OK},
		{"wrong audience", aud, mint(t, serviceClaims, auth.WithAudience("another-api")), codes.Unauthenticated},
		{"no audience", aud, mint(t, serviceClaims), codes.Unauthenticated},
	}
	noLeak := func(t *testing.T, where, msg string) {
		t.Helper()
		for _, secret := range []string{testSecret, otherSecret} {
			if strings.Contains(msg, secret) {
				t.Errorf("%s: message %q contains a secret", where, msg)
			}
		}
	}
	wantHTTP := map[codes.Code]int{codes.OK: http.StatusOK, codes.Unauthenticated: http.StatusUnauthorized}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := dial(t, tc.node.GRPCAddr())

			_, err := c.Publish(withToken(ctx, tc.tok), pointsReq(pointsAdded("g1", "r1", 1), "guest:g1"))
			if got := status.Code(err); got != tc.want {
				t.Errorf("gRPC Publish: code %v (err %v), want %v", got, err, tc.want)
			}
			noLeak(t, "gRPC Publish", status.Convert(err).Message())

			sctx, cancel := context.WithCancel(ctx)
			defer cancel()
			s, err := openStream(sctx, c, tc.tok, &notifyv1.SubscribeRequest{Rooms: []string{"guest:g1"}})
			if err != nil {
				t.Fatalf("Subscribe: %v", err)
			}
			m, err := s.Recv()
			if got := status.Code(err); got != tc.want {
				t.Errorf("gRPC Subscribe: code %v (err %v), want %v", got, err, tc.want)
			}
			if err == nil && m.GetConnected() == nil {
				t.Errorf("gRPC Subscribe: first message %v, want connected", m)
			}
			noLeak(t, "gRPC Subscribe", status.Convert(err).Message())

			base := "http://" + tc.node.HTTPAddr()
			r := restDo(t, ctx, http.MethodPost, base+"/v1/events", tc.tok, `{"rooms":["guest:g1"],"pointsAdded":{"guestId":"g1","restaurantId":"r1","amount":"1"}}`)
			if r.status != wantHTTP[tc.want] {
				t.Errorf("REST publish: HTTP %d (%s), want %d", r.status, r.body, wantHTTP[tc.want])
			}
			if tc.want != codes.OK {
				if e := parseRestError(t, r.body); e.Code != int(codes.Unauthenticated) {
					t.Errorf("REST publish error body %s: code %d, want %d", r.body, e.Code, codes.Unauthenticated)
				}
			}
			noLeak(t, "REST publish", string(r.body))

			rs := restSubscribe(t, sctx, tc.node.HTTPAddr(), "rooms=guest:g1", tc.tok)
			if rs.resp.StatusCode != wantHTTP[tc.want] {
				t.Errorf("REST subscribe: HTTP %d, want %d", rs.resp.StatusCode, wantHTTP[tc.want])
			}
			if tc.want == codes.OK {
				if m := rs.next(t); m.GetConnected() == nil {
					t.Errorf("REST subscribe: first line %v, want connected", m)
				}
			} else {
				body, _ := io.ReadAll(io.LimitReader(rs.rd, 1<<20))
				noLeak(t, "REST subscribe", string(body))
				if e := parseRestError(t, body); e.Code != int(codes.Unauthenticated) {
					t.Errorf("REST subscribe error body %s: code %d, want %d", body, e.Code, codes.Unauthenticated)
				}
			}
		})
	}
}
