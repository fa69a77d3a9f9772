package node_test

// End-to-end tests of the operational features: Prometheus metrics, the
// per-caller and per-port limits, TLS on both ports, CORS and health.
// Every helper of this file is prefixed "ops" so as not to collide with
// the helpers of the other test files of the package.

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	notifyv1 "github.com/maxloyalty/notify/gen/notify/v1"
	"github.com/maxloyalty/notify/internal/limit"
	"github.com/maxloyalty/notify/internal/node"
	"github.com/maxloyalty/notify/internal/testenv"
)

// ---- limits ----

// TestLimitPublishRate: PublishRate 5, PublishBurst 5 per token subject,
// batches counted per event.
func TestLimitPublishRate(t *testing.T) {
	t.Parallel()
	n := startNode(t, func(c *node.Config) {
		c.PublishRate = 5
		c.PublishBurst = 5
	})
	ctx := testCtx(t)
	c := dial(t, n.GRPCAddr())
	base := "http://" + n.HTTPAddr()
	// Restaurant rooms have no inbox: publishing there is quick.
	const pubRoom = "restaurant:r1:points"
	// A token gains one event every 200 ms: a step that must be refused is
	// only checked strictly when the steps before it took less than that.
	const refill = 200 * time.Millisecond
	var refusals int
	// refused requires err to be a RATE_LIMITED refusal, unless the bucket
	// may have refilled since start and err is nil.
	refused := func(t *testing.T, start time.Time, err error, what string) {
		t.Helper()
		if took := time.Since(start); err == nil && took >= refill {
			t.Logf("%s passed %v after the burst began: the bucket refilled, not checked", what, took)
			return
		}
		opsWantExhausted(t, err, limit.ReasonRateLimited, what)
		refusals++
	}

	t.Run("sixth immediate publish", func(t *testing.T) {
		tok := mint(t, opsService("rate-a"))
		start := time.Now()
		for i := range 5 {
			if _, err := c.Publish(withToken(ctx, tok), opsReq("g1", pubRoom, int64(i+1))); err != nil {
				t.Fatalf("publish %d of the burst: %v", i+1, err)
			}
		}
		_, err := c.Publish(withToken(ctx, tok), opsReq("g1", pubRoom, 6))
		refused(t, start, err, "6th publish")
		if err != nil {
			if msg := status.Convert(err).Message(); !strings.Contains(msg, "retry in") {
				t.Errorf("rate limit message %q does not say when to retry", msg)
			}
		}

		// The same subject over REST: 429 with the reason.
		r := restDo(t, ctx, http.MethodPost, base+"/v1/rooms/"+pubRoom+"/events", tok, opsRESTEvent("g1", 7))
		if took := time.Since(start); r.status == http.StatusOK && took >= refill {
			t.Logf("REST publish passed %v after the burst began: the bucket refilled, not checked", took)
		} else {
			opsWantREST(t, r, http.StatusTooManyRequests, limit.ReasonRateLimited, "REST publish over the rate")
			refusals++
		}

		// Another service subject has a bucket of its own.
		other := mint(t, opsService("rate-b"))
		for i := range 5 {
			if _, err := c.Publish(withToken(ctx, other), opsReq("g1", pubRoom, int64(i+1))); err != nil {
				t.Fatalf("other subject, publish %d: %v", i+1, err)
			}
		}
	})

	t.Run("batch counts per event", func(t *testing.T) {
		tok := mint(t, opsService("rate-c"))
		start := time.Now()
		if _, err := c.PublishBatch(withToken(ctx, tok), opsBatch("g1", pubRoom, 3)); err != nil {
			t.Fatalf("batch of 3 of a burst of 5: %v", err)
		}
		// 2 events left: a batch of 3 is refused as a whole, a batch of 2 passes.
		_, err := c.PublishBatch(withToken(ctx, tok), opsBatch("g1", pubRoom, 3))
		refused(t, start, err, "batch of 3 with 2 events left")
		if err != nil {
			if _, err := c.PublishBatch(withToken(ctx, tok), opsBatch("g1", pubRoom, 2)); err != nil {
				t.Fatalf("batch of 2 with 2 events left: %v", err)
			}
			_, err = c.Publish(withToken(ctx, tok), opsReq("g1", pubRoom, 9))
			refused(t, start, err, "publish after the burst was spent in batches")
		}
	})

	t.Run("batch above the burst leaves debt", func(t *testing.T) {
		// A batch larger than the burst passes on a full bucket and delays
		// what follows: 5 - 8 = -3 events, 800 ms until the next one.
		tok := mint(t, opsService("rate-d"))
		if _, err := c.PublishBatch(withToken(ctx, tok), opsBatch("g1", pubRoom, 8)); err != nil {
			t.Fatalf("batch of 8 on a full bucket of 5: %v", err)
		}
		_, err := c.Publish(withToken(ctx, tok), opsReq("g1", pubRoom, 1))
		opsWantExhausted(t, err, limit.ReasonRateLimited, "publish right after a batch of 8")
		refusals++

		// The same over REST: a batch of 6 passes, then 429.
		rtok := mint(t, opsService("rate-e"))
		r := restDo(t, ctx, http.MethodPost, base+"/v1/events:batchPublish", rtok, opsRESTBatch("g1", pubRoom, 6))
		opsWantREST(t, r, http.StatusOK, "", "REST batch of 6 on a full bucket")
		r = restDo(t, ctx, http.MethodPost, base+"/v1/events:batchPublish", rtok, opsRESTBatch("g1", pubRoom, 1))
		opsWantREST(t, r, http.StatusTooManyRequests, limit.ReasonRateLimited, "REST batch right after a batch of 6")
		refusals++
	})

	m := opsScrape(t, ctx, http.DefaultClient, base)
	if v := m.must(t, "notify_limit_rejections_total", "limit", "publish_rate"); v < float64(refusals) {
		t.Errorf(`limit_rejections_total{limit="publish_rate"} = %v, want >= %d`, v, refusals)
	}
}

// TestLimitStreamsPerUser: MaxStreamsPerUser 2 counts one user's streams
// over gRPC and REST alike; a closed stream gives its place back.
func TestLimitStreamsPerUser(t *testing.T) {
	t.Parallel()
	n := startNode(t, func(c *node.Config) { c.MaxStreamsPerUser = 2 })
	ctx := testCtx(t)
	c := dial(t, n.GRPCAddr())
	base := "http://" + n.HTTPAddr()
	g1 := mint(t, guestClaims)

	firstCtx, firstCancel := context.WithCancel(ctx)
	defer firstCancel()
	subscribe(t, firstCtx, c, g1, &notifyv1.SubscribeRequest{})
	subscribe(t, ctx, c, g1, &notifyv1.SubscribeRequest{Rooms: []string{"guest:g1"}})

	third, err := openStream(ctx, c, g1, &notifyv1.SubscribeRequest{})
	if err == nil {
		_, err = third.Recv()
	}
	opsWantExhausted(t, err, limit.ReasonTooManyStreams, "3rd stream of g1")

	rctx, rcancel := context.WithCancel(ctx)
	rs := restSubscribe(t, rctx, n.HTTPAddr(), "rooms=guest:g1", g1)
	body, _ := io.ReadAll(io.LimitReader(rs.rd, 1<<20))
	rcancel()
	opsWantREST(t, restResult{status: rs.resp.StatusCode, body: body}, http.StatusTooManyRequests, limit.ReasonTooManyStreams, "REST 3rd stream of g1")

	// Another user is not affected.
	subscribe(t, ctx, c, mint(t, opsGuest("g2")), &notifyv1.SubscribeRequest{})

	// Closing one of g1's streams gives its place back once the server has
	// seen the stream end: poll, bounded.
	firstCancel()
	attempt := 0
	testenv.Eventually(t, 5*time.Second, "a new stream admitted after closing one", func() bool {
		attempt++
		actx, acancel := context.WithCancel(ctx)
		st, err := openStream(actx, c, g1, &notifyv1.SubscribeRequest{})
		var m *notifyv1.SubscribeResponse
		if err == nil {
			m, err = st.Recv()
		}
		if err == nil {
			if m.GetConnected() == nil {
				acancel()
				t.Fatalf("first message %v, want connected", m)
			}
			t.Cleanup(acancel)
			t.Logf("a new stream was admitted at attempt %d", attempt)
			return true
		}
		acancel()
		opsWantExhausted(t, err, limit.ReasonTooManyStreams, "stream while the closed one is released")
		return false
	})

	m := opsScrape(t, ctx, http.DefaultClient, base)
	if v := m.must(t, "notify_limit_rejections_total", "limit", "streams"); v < 2 {
		t.Errorf(`limit_rejections_total{limit="streams"} = %v, want >= 2`, v)
	}
}

// TestLimitRooms: MaxRoomsPerStream 2 bounds the rooms of a stream and of
// a publish.
func TestLimitRooms(t *testing.T) {
	t.Parallel()
	n := startNode(t, func(c *node.Config) { c.MaxRoomsPerStream = 2 })
	ctx := testCtx(t)
	c := dial(t, n.GRPCAddr())
	base := "http://" + n.HTTPAddr()
	admin, svc := mint(t, adminClaims), mint(t, serviceClaims)
	three := []string{"guest:g1", "guest:g2", "guest:g3"}

	st, err := openStream(ctx, c, admin, &notifyv1.SubscribeRequest{Rooms: three})
	if err == nil {
		_, err = st.Recv()
	}
	opsWantExhausted(t, err, "TOO_MANY_ROOMS", "subscribe to 3 rooms")
	// Two rooms, and the guest's two default rooms, are fine.
	subscribe(t, ctx, c, admin, &notifyv1.SubscribeRequest{Rooms: three[:2]})
	subscribe(t, ctx, c, mint(t, guestClaims), &notifyv1.SubscribeRequest{})

	_, err = c.Publish(withToken(ctx, svc), pointsReq(pointsAdded("g1", "r1", 1), three...))
	opsWantExhausted(t, err, "TOO_MANY_ROOMS", "publish in 3 rooms")
	// Room and rooms together count too.
	req := pointsReq(pointsAdded("g1", "r1", 1), three[:2]...)
	req.Room = three[2]
	_, err = c.Publish(withToken(ctx, svc), req)
	opsWantExhausted(t, err, "TOO_MANY_ROOMS", "publish in 2 rooms plus room")
	if _, err := c.Publish(withToken(ctx, svc), pointsReq(pointsAdded("g1", "r1", 1), three[:2]...)); err != nil {
		t.Errorf("publish in 2 rooms: %v", err)
	}

	r := restDo(t, ctx, http.MethodPost, base+"/v1/events", svc,
		`{"rooms":["guest:g1","guest:g2","guest:g3"],"pointsAdded":{"guestId":"g1","amount":"1","restaurantId":"r1"}}`)
	opsWantREST(t, r, http.StatusTooManyRequests, "TOO_MANY_ROOMS", "REST publish in 3 rooms")

	rctx, rcancel := context.WithCancel(ctx)
	defer rcancel()
	q := url.Values{"rooms": three}
	rs := restSubscribe(t, rctx, n.HTTPAddr(), q.Encode(), admin)
	body, _ := io.ReadAll(io.LimitReader(rs.rd, 1<<20))
	opsWantREST(t, restResult{status: rs.resp.StatusCode, body: body}, http.StatusTooManyRequests, "TOO_MANY_ROOMS", "REST subscribe to 3 rooms")

	m := opsScrape(t, ctx, http.DefaultClient, base)
	if v := m.must(t, "notify_limit_rejections_total", "limit", "rooms"); v < 5 {
		t.Errorf(`limit_rejections_total{limit="rooms"} = %v, want >= 5`, v)
	}
}

// TestLimitBatchSize: MaxBatch 3 refuses a batch of 4 as a whole.
func TestLimitBatchSize(t *testing.T) {
	t.Parallel()
	n := startNode(t, func(c *node.Config) { c.MaxBatch = 3 })
	ctx := testCtx(t)
	c := dial(t, n.GRPCAddr())
	base := "http://" + n.HTTPAddr()
	svc := mint(t, serviceClaims)

	_, err := c.PublishBatch(withToken(ctx, svc), opsBatch("g1", "guest:g1", 4))
	opsWantExhausted(t, err, "BATCH_TOO_LARGE", "batch of 4")
	resp, err := c.PublishBatch(withToken(ctx, svc), opsBatch("g1", "guest:g1", 3))
	if err != nil {
		t.Fatalf("batch of 3: %v", err)
	}
	// Nothing of the refused batch was published: the batch of 3 starts at 1.
	if p := position(t, resp.Results[0], "guest:g1"); p.Offset != 1 {
		t.Errorf("first event after a refused batch at offset %d, want 1 (nothing of the refused batch published)", p.Offset)
	}

	r := restDo(t, ctx, http.MethodPost, base+"/v1/events:batchPublish", svc, opsRESTBatch("g1", "guest:g1", 4))
	opsWantREST(t, r, http.StatusTooManyRequests, "BATCH_TOO_LARGE", "REST batch of 4")
	r = restDo(t, ctx, http.MethodPost, base+"/v1/events:batchPublish", svc, opsRESTBatch("g1", "guest:g1", 3))
	opsWantREST(t, r, http.StatusOK, "", "REST batch of 3")
}

// TestLimitMessageSize: MaxMessageBytes 4096 bounds a gRPC message, and a
// REST body may be twice that before it is refused with 413 unread.
func TestLimitMessageSize(t *testing.T) {
	t.Parallel()
	const maxMsg = 4096
	n := startNode(t, func(c *node.Config) { c.MaxMessageBytes = maxMsg })
	ctx := testCtx(t)
	c := dial(t, n.GRPCAddr())
	base := "http://" + n.HTTPAddr()
	svc := mint(t, serviceClaims)

	big := pointsAdded("g1", "r1", 1)
	big.Description = strings.Repeat("x", 2*maxMsg)
	_, err := c.Publish(withToken(ctx, svc), pointsReq(big, "guest:g1"))
	wantCode(t, err, codes.ResourceExhausted, "gRPC Publish of 8 KB")

	// grpc-web reaches the same server: grpc-status 8.
	resp := webCall(t, ctx, n.HTTPAddr(), "Publish", svc, pointsReq(big, "guest:g1"))
	if st := opsWebStatus(t, resp); st != "8" {
		t.Errorf("grpc-web Publish of 8 KB: grpc-status %q, want 8", st)
	}

	// A REST body above 2 × MaxMessageBytes with a Content-Length: 413.
	body := `{"pointsAdded":{"guestId":"g1","amount":"1","restaurantId":"r1","description":"` + strings.Repeat("y", 3*maxMsg) + `"}}`
	r := restDo(t, ctx, http.MethodPost, base+"/v1/rooms/guest:g1/events", svc, body)
	opsWantREST(t, r, http.StatusRequestEntityTooLarge, "", "REST body of 12 KB")
	if e, err := opsParseRESTError(r.body); err != nil || e.Code != int(codes.ResourceExhausted) {
		t.Errorf("413 body %s: code %d (%v), want %d", r.body, e.Code, err, codes.ResourceExhausted)
	}

	// The same body sent chunked (no Content-Length) is cut by the body
	// reader at the bound: refused, never published.
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/rooms/guest:g1/events", io.MultiReader(strings.NewReader(body)))
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = -1
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+svc)
	hresp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("chunked POST: %v", err)
	}
	cb, _ := io.ReadAll(io.LimitReader(hresp.Body, 1<<20))
	hresp.Body.Close()
	if hresp.StatusCode < 400 || hresp.StatusCode >= 500 {
		t.Errorf("chunked REST body of 12 KB: HTTP %d (%s), want a 4xx", hresp.StatusCode, cb)
	}
	// It is refused like the same body with a Content-Length: 413, code 8.
	if hresp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("chunked REST body over the bound: HTTP %d %s, want 413 as with a Content-Length", hresp.StatusCode, bytes.TrimSpace(cb))
	}

	// Nothing above was published.
	ok, err := c.Publish(withToken(ctx, svc), opsReq("g1", "guest:g1", 1))
	if err != nil {
		t.Fatalf("small publish: %v", err)
	}
	if p := position(t, ok, "guest:g1"); p.Offset != 1 {
		t.Errorf("small publish at offset %d, want 1: an oversized message was published", p.Offset)
	}
}

// opsWebStatus reads a grpc-web response to its status: from the headers
// (trailers-only) or the trailer frame.
func opsWebStatus(t *testing.T, resp *http.Response) string {
	t.Helper()
	if st := resp.Header.Get("Grpc-Status"); st != "" {
		return st
	}
	for range 10 {
		f, err := readWebFrame(resp.Body)
		if err != nil {
			t.Fatalf("grpc-web frame: %v", err)
		}
		if f.isTrailer() {
			return webTrailers(t, f.data).Get("Grpc-Status")
		}
	}
	t.Fatal("no grpc-web trailer frame in 10 frames")
	return ""
}

// opsClientPreface is an HTTP/2 client connection preface with an empty
// SETTINGS frame.
var opsClientPreface = append([]byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), 0, 0, 0, 4, 0, 0, 0, 0, 0)

// opsProbe opens a raw TCP connection to a gRPC port and reports whether
// the server admitted it (answered the HTTP/2 preface) or closed it at
// once. An admitted connection stays open until the test ends or the
// caller closes it.
func opsProbe(t *testing.T, addr string) (net.Conn, bool) {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { nc.Close() })
	_ = nc.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := nc.Write(opsClientPreface); err != nil {
		return nc, false // reset before the write
	}
	buf := make([]byte, 9)
	_, err = io.ReadFull(nc, buf)
	var ne net.Error
	switch {
	case err == nil:
		if buf[3] != 4 { // the server's first frame is SETTINGS
			t.Fatalf("probe %s: first frame type %d, want SETTINGS", addr, buf[3])
		}
		_ = nc.SetDeadline(time.Time{})
		return nc, true
	case errors.As(err, &ne) && ne.Timeout():
		t.Fatalf("probe %s: neither admitted nor closed within 5s", addr)
	}
	return nc, false // EOF or reset: closed at once
}

// TestLimitConnRate: ConnRate 2, ConnBurst 2 on the gRPC port: the 3rd
// connection in quick succession is accepted and closed at once.
func TestLimitConnRate(t *testing.T) {
	t.Parallel()
	n := startNode(t, func(c *node.Config) {
		c.ConnRate = 2
		c.ConnBurst = 2
	})
	ctx := testCtx(t)
	base := "http://" + n.HTTPAddr()
	// One connection every 500 ms refills: the refusals are only checked
	// strictly when they come before that.
	const refill = 450 * time.Millisecond

	start := time.Now()
	var got []bool
	for range 4 {
		_, ok := opsProbe(t, n.GRPCAddr())
		got = append(got, ok)
	}
	// A fresh grpc.ClientConn is refused the same way: its call fails
	// Unavailable, not hanging (no WaitForReady).
	cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
	defer ccancel()
	_, grpcErr := dial(t, n.GRPCAddr()).Publish(withToken(cctx, mint(t, serviceClaims)), opsReq("g1", "guest:g1", 1))
	took := time.Since(start)
	t.Logf("probes admitted %v, then gRPC call: %v, in %v", got, grpcErr, took)
	if !got[0] || !got[1] {
		t.Fatalf("first two connections admitted = %v, want both within the burst of 2", got[:2])
	}
	if took < refill {
		if got[2] || got[3] {
			t.Errorf("3rd and 4th connections admitted = %v, want both closed at once", got[2:])
		}
		wantCode(t, grpcErr, codes.Unavailable, "gRPC call on a fresh connection over the rate")
	} else {
		t.Logf("took %v (>= %v): the bucket refilled, refusals not checked strictly", took, refill)
	}

	m := opsScrape(t, ctx, http.DefaultClient, base)
	if v := m.must(t, "notify_limit_rejections_total", "limit", "conn_rate"); v < 1 {
		t.Errorf(`limit_rejections_total{limit="conn_rate"} = %v, want >= 1`, v)
	}

	// The bucket refills: a new connection is admitted again, bounded.
	testenv.Eventually(t, 5*time.Second, "a connection admitted: the rate refills", func() bool {
		nc, ok := opsProbe(t, n.GRPCAddr())
		if !ok {
			nc.Close()
		}
		return ok
	})
}

// TestLimitMaxConnections: MaxConnections 2 on the gRPC port: a 3rd open
// connection is closed at once; closing one lets a new one in.
func TestLimitMaxConnections(t *testing.T) {
	t.Parallel()
	n := startNode(t, func(c *node.Config) { c.MaxConnections = 2 })
	ctx := testCtx(t)
	base := "http://" + n.HTTPAddr()

	first, ok1 := opsProbe(t, n.GRPCAddr())
	_, ok2 := opsProbe(t, n.GRPCAddr())
	if !ok1 || !ok2 {
		t.Fatalf("connections under the cap admitted = %v, %v; want both", ok1, ok2)
	}
	for i := range 2 {
		if _, ok := opsProbe(t, n.GRPCAddr()); ok {
			t.Fatalf("connection %d over the cap of 2 admitted", 3+i)
		}
	}
	// A real client over the cap fails Unavailable.
	cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
	defer ccancel()
	_, err := dial(t, n.GRPCAddr()).Publish(withToken(cctx, mint(t, serviceClaims)), opsReq("g1", "guest:g1", 1))
	wantCode(t, err, codes.Unavailable, "gRPC call over MaxConnections")

	m := opsScrape(t, ctx, http.DefaultClient, base)
	if v := m.must(t, "notify_limit_rejections_total", "limit", "max_connections"); v < 2 {
		t.Errorf(`limit_rejections_total{limit="max_connections"} = %v, want >= 2`, v)
	}

	// Closing one gives its place back once the server has seen it close.
	first.Close()
	testenv.Eventually(t, 5*time.Second, "a connection admitted after closing one", func() bool {
		nc, ok := opsProbe(t, n.GRPCAddr())
		if !ok {
			nc.Close()
		}
		return ok
	})
}
