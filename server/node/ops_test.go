package node_test

// End-to-end tests of the operational features: Prometheus metrics, the
// per-caller and per-port limits, TLS on both ports, CORS and health.
// Every helper of this file is prefixed "ops" so as not to collide with
// the helpers of the other test files of the package.

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"runtime"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	notifyv1 "github.com/maxloyalty/notify/gen/notify/v1"
	"github.com/maxloyalty/notify/server/auth"
	"github.com/maxloyalty/notify/server/certs"
	"github.com/maxloyalty/notify/server/limit"
	"github.com/maxloyalty/notify/server/node"
)

const (
	opsPublishMethod = "/notify.v1.NotificationService/Publish"
	opsBatchMethod   = "/notify.v1.NotificationService/PublishBatch"
	opsSubMethod     = "/notify.v1.NotificationService/Subscribe"
)

// ---- helpers ----

// opsService returns the claims of a service token with subject sub.
func opsService(sub string) auth.Claims {
	return auth.Claims{Subject: sub, Role: notifyv1.Role_ROLE_SERVICE}
}

// opsGuest returns the claims of a guest token with subject sub.
func opsGuest(sub string) auth.Claims {
	return auth.Claims{Subject: sub, Role: notifyv1.Role_ROLE_GUEST}
}

// opsReq is a PointsAdded for guest gid published in room.
func opsReq(gid, room string, amount int64) *notifyv1.PublishRequest {
	return pointsReq(pointsAdded(gid, "r1", amount), room)
}

// opsBatch is a PublishBatchRequest of n PointsAdded in room.
func opsBatch(gid, room string, n int) *notifyv1.PublishBatchRequest {
	b := &notifyv1.PublishBatchRequest{}
	for i := range n {
		b.Requests = append(b.Requests, opsReq(gid, room, int64(i+1)))
	}
	return b
}

// opsRESTEvent is the REST body of one PointsAdded for guest gid.
func opsRESTEvent(gid string, amount int) string {
	return fmt.Sprintf(`{"pointsAdded":{"guestId":%q,"amount":"%d","restaurantId":"r1"}}`, gid, amount)
}

// opsRESTBatch is the REST body of a batch of n PointsAdded in room.
func opsRESTBatch(gid, room string, n int) string {
	reqs := make([]string, n)
	for i := range reqs {
		reqs[i] = fmt.Sprintf(`{"rooms":[%q],"pointsAdded":{"guestId":%q,"amount":"%d","restaurantId":"r1"}}`, room, gid, i+1)
	}
	return `{"requests":[` + strings.Join(reqs, ",") + `]}`
}

// opsReason returns the reason of the ErrorInfo err's status carries.
func opsReason(err error) string {
	st, ok := status.FromError(err)
	if !ok {
		return ""
	}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			return info.Reason
		}
	}
	return ""
}

// opsWantExhausted fails unless err is ResourceExhausted with an ErrorInfo
// of reason.
func opsWantExhausted(t *testing.T, err error, reason, what string) {
	t.Helper()
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("%s: %v (code %v), want ResourceExhausted with reason %s", what, err, status.Code(err), reason)
	}
	if got := opsReason(err); got != reason {
		t.Fatalf("%s: ErrorInfo reason %q (err %v), want %q", what, got, err, reason)
	}
}

// opsRESTError is a gateway error body: a google.rpc.Status as JSON, or
// {"error": status} for a stream.
type opsRESTError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
	Details []struct {
		Type   string `json:"@type"`
		Reason string `json:"reason"`
	} `json:"details"`
}

func opsParseRESTError(b []byte) (opsRESTError, error) {
	var e struct {
		opsRESTError
		Error *opsRESTError `json:"error"`
	}
	if err := json.Unmarshal(b, &e); err != nil {
		return opsRESTError{}, err
	}
	if e.Error != nil {
		return *e.Error, nil
	}
	return e.opsRESTError, nil
}

// opsWantREST fails unless r has httpStatus and, if reason is set, an error
// body with code ResourceExhausted and an ErrorInfo of reason.
func opsWantREST(t *testing.T, r restResult, httpStatus int, reason, what string) {
	t.Helper()
	if r.status != httpStatus {
		t.Fatalf("%s: HTTP %d (%s), want %d", what, r.status, r.body, httpStatus)
	}
	if reason == "" {
		return
	}
	e, err := opsParseRESTError(r.body)
	if err != nil {
		t.Fatalf("%s: error body %q: %v", what, r.body, err)
	}
	if e.Code != int(codes.ResourceExhausted) {
		t.Errorf("%s: error code %d (%s), want %d", what, e.Code, r.body, codes.ResourceExhausted)
	}
	for _, d := range e.Details {
		if strings.HasSuffix(d.Type, "google.rpc.ErrorInfo") && d.Reason == reason {
			return
		}
	}
	t.Errorf("%s: error body %s has no ErrorInfo with reason %s", what, r.body, reason)
}

// opsDo sends an HTTP request with client and reads the whole response.
func opsDo(t *testing.T, ctx context.Context, client *http.Client, method, url, tok string, hdr http.Header, body []byte) (restResult, http.Header) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		t.Fatalf("NewRequest: %v", err)
	}
	for k, vs := range hdr {
		req.Header[k] = vs
	}
	if body != nil && req.Header.Get("Content-Type") == "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", method, url, err)
	}
	return restResult{status: resp.StatusCode, body: b}, resp.Header
}

// ---- metrics ----

// opsMetrics is one scrape of /metrics, by family name.
type opsMetrics map[string]*dto.MetricFamily

// opsScrape GETs base/metrics with client and parses the text format. A
// failed request is retried until the test timeout (a connection limit may
// refuse one connection).
func opsScrape(t *testing.T, ctx context.Context, client *http.Client, base string) opsMetrics {
	t.Helper()
	var lastErr error
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/metrics", nil)
		if err != nil {
			t.Fatalf("NewRequest: %v", err)
		}
		req.Header.Set("Accept", "text/plain; version=0.0.4")
		resp, err := client.Do(req)
		if err == nil {
			body, rerr := io.ReadAll(resp.Body)
			resp.Body.Close()
			switch {
			case rerr != nil:
				err = rerr
			case resp.StatusCode != http.StatusOK:
				t.Fatalf("GET /metrics: HTTP %d: %s", resp.StatusCode, body)
			default:
				p := expfmt.NewTextParser(model.UTF8Validation)
				fams, perr := p.TextToMetricFamilies(bytes.NewReader(body))
				if perr != nil {
					t.Fatalf("parsing /metrics: %v\n%s", perr, body)
				}
				return opsMetrics(fams)
			}
		}
		lastErr = err
		if ctx.Err() != nil {
			t.Fatalf("GET /metrics: %v", lastErr)
		}
		select {
		case <-ctx.Done():
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// opsLabels turns "k", "v", ... into a map.
func opsLabels(kv []string) map[string]string {
	m := make(map[string]string, len(kv)/2)
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m
}

// get returns the sum of the series of name whose labels include kv, and
// whether there was any. name may end in _count or _sum for a histogram.
func (m opsMetrics) get(name string, kv ...string) (float64, bool) {
	want := opsLabels(kv)
	fam, part := m[name], ""
	if fam == nil {
		for _, suffix := range []string{"_count", "_sum"} {
			if base, ok := strings.CutSuffix(name, suffix); ok && m[base] != nil {
				fam, part = m[base], suffix
			}
		}
	}
	if fam == nil {
		return 0, false
	}
	var sum float64
	found := false
series:
	for _, s := range fam.GetMetric() {
		have := make(map[string]string, len(s.GetLabel()))
		for _, lp := range s.GetLabel() {
			have[lp.GetName()] = lp.GetValue()
		}
		for k, v := range want {
			if have[k] != v {
				continue series
			}
		}
		found = true
		switch {
		case s.Counter != nil:
			sum += s.GetCounter().GetValue()
		case s.Gauge != nil:
			sum += s.GetGauge().GetValue()
		case s.Histogram != nil && part == "_sum":
			sum += s.GetHistogram().GetSampleSum()
		case s.Histogram != nil:
			sum += float64(s.GetHistogram().GetSampleCount())
		case s.Untyped != nil:
			sum += s.GetUntyped().GetValue()
		}
	}
	return sum, found
}

// must returns get's value, failing if there is no such series.
func (m opsMetrics) must(t *testing.T, name string, kv ...string) float64 {
	t.Helper()
	v, ok := m.get(name, kv...)
	if !ok {
		t.Fatalf("/metrics has no %s%v", name, opsLabels(kv))
	}
	return v
}

// opsMetricSeries names a series for messages.
func opsMetricSeries(name string, kv ...string) string {
	parts := make([]string, 0, len(kv)/2)
	for i := 0; i+1 < len(kv); i += 2 {
		parts = append(parts, fmt.Sprintf("%s=%q", kv[i], kv[i+1]))
	}
	return name + "{" + strings.Join(parts, ",") + "}"
}

// opsAwaitMetric scrapes until cond holds for the series' value, or fails
// after within.
func opsAwaitMetric(t *testing.T, ctx context.Context, client *http.Client, base string, within time.Duration, cond func(float64) bool, want, name string, kv ...string) float64 {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		v, ok := opsScrape(t, ctx, client, base).get(name, kv...)
		if ok && cond(v) {
			return v
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s = %v (present %v) after %v, want %s", opsMetricSeries(name, kv...), v, ok, within, want)
		}
		time.Sleep(20 * time.Millisecond) // polling interval, bounded by the deadline
	}
}

// TestMetrics drives real traffic through a node and checks that every
// notify_* instrument it should move did, read from GET /metrics.
func TestMetrics(t *testing.T) {
	t.Parallel()
	n := startNode(t, func(c *node.Config) {
		c.QueueBytes = 4096
		c.MaxBatch = 3
	})
	ctx := testCtx(t)
	c := dial(t, n.GRPCAddr())
	base := "http://" + n.HTTPAddr()
	hc := http.DefaultClient
	svc := mint(t, serviceClaims)

	before := opsScrape(t, ctx, hc, base)
	if v := before.must(t, "notify_grpc_requests_total", "method", opsPublishMethod, "code", "OK"); v != 0 {
		t.Errorf("fresh node: Publish OK count %v, want 0 (InitGRPC creates the series at zero)", v)
	}
	if v := before.must(t, "notify_subscribers", "room_kind", "guest"); v != 0 {
		t.Errorf("fresh node: guest subscribers %v, want 0", v)
	}

	// One guest stream, on guest:g1 only.
	subCtx, subCancel := context.WithCancel(ctx)
	defer subCancel()
	s, _ := subscribe(t, subCtx, c, mint(t, guestClaims), &notifyv1.SubscribeRequest{Rooms: []string{"guest:g1"}})

	// Five publishes in guest:g1: three over gRPC, two over REST (which
	// reaches the gRPC server in process, through the same interceptors).
	const grpcPubs, restPubs = 3, 2
	for i := range grpcPubs {
		publish(t, ctx, c, opsReq("g1", "guest:g1", int64(i+1)))
	}
	for i := range restPubs {
		r := restDo(t, ctx, http.MethodPost, base+"/v1/rooms/guest:g1/events", svc, opsRESTEvent("g1", 10+i))
		if r.status != http.StatusOK {
			t.Fatalf("REST publish %d: HTTP %d %s", i, r.status, r.body)
		}
	}
	s.nextN(t, grpcPubs+restPubs)

	// Failing calls: a guest may not publish (PermissionDenied), and a
	// batch above MaxBatch is refused by a limit (ResourceExhausted).
	_, err := c.Publish(withToken(ctx, mint(t, guestClaims)), opsReq("g1", "guest:g1", 1))
	wantCode(t, err, codes.PermissionDenied, "guest Publish")
	_, err = c.PublishBatch(withToken(ctx, svc), opsBatch("g1", "guest:g1", 4))
	opsWantExhausted(t, err, "BATCH_TOO_LARGE", "batch of 4 with MaxBatch 3")

	m := opsScrape(t, ctx, hc, base)
	delta := func(name string, kv ...string) float64 {
		t.Helper()
		b, _ := before.get(name, kv...)
		return m.must(t, name, kv...) - b
	}
	const pubs = grpcPubs + restPubs
	if d := delta("notify_grpc_requests_total", "method", opsPublishMethod, "code", "OK"); d < pubs {
		t.Errorf("Publish code=OK moved by %v, want >= %d (gRPC and REST publishes)", d, pubs)
	}
	if d := delta("notify_grpc_requests_total", "method", opsPublishMethod, "code", "PermissionDenied"); d < 1 {
		t.Errorf("Publish code=PermissionDenied moved by %v, want >= 1", d)
	}
	if d := delta("notify_grpc_requests_total", "method", opsBatchMethod, "code", "ResourceExhausted"); d < 1 {
		t.Errorf("PublishBatch code=ResourceExhausted moved by %v, want >= 1", d)
	}
	if d := delta("notify_grpc_request_duration_seconds_count", "method", opsPublishMethod, "code", "OK"); d < pubs {
		t.Errorf("Publish duration count moved by %v, want >= %d", d, pubs)
	}
	if d := delta("notify_events_published_total", "room_kind", "guest"); d < pubs {
		t.Errorf("events_published_total{guest} moved by %v, want >= %d", d, pubs)
	}
	if d := delta("notify_events_delivered_total"); d < pubs {
		t.Errorf("events_delivered_total moved by %v, want >= %d", d, pubs)
	}
	if d := delta("notify_delivery_latency_seconds_count"); d < pubs {
		t.Errorf("delivery_latency_seconds_count moved by %v, want >= %d", d, pubs)
	}
	if v := m.must(t, "notify_subscribers", "room_kind", "guest"); v != 1 {
		t.Errorf("subscribers{guest} = %v with one guest stream open, want 1", v)
	}
	if v := m.must(t, "notify_grpc_streams_open"); v < 1 {
		t.Errorf("grpc_streams_open = %v with a stream open, want >= 1", v)
	}
	if v := m.must(t, "notify_connections_open", "transport", "grpc"); v < 1 {
		t.Errorf(`connections_open{transport="grpc"} = %v, want >= 1`, v)
	}
	if v := m.must(t, "notify_connections_open", "transport", "http"); v < 1 {
		t.Errorf(`connections_open{transport="http"} = %v while scraping over HTTP, want >= 1`, v)
	}
	if v := m.must(t, "notify_build_info", "version", node.Version, "go_version", runtime.Version()); v != 1 {
		t.Errorf("build_info = %v, want 1", v)
	}
	if d := delta("notify_limit_rejections_total", "limit", "batch_size"); d < 1 {
		t.Errorf(`limit_rejections_total{limit="batch_size"} moved by %v, want >= 1`, d)
	}
	if v := m.must(t, "notify_hub_rooms"); v < 1 {
		t.Errorf("hub_rooms = %v with guest:g1 subscribed, want >= 1", v)
	}

	// The stream closes: the gauges go back down.
	subCancel()
	opsAwaitMetric(t, ctx, hc, base, 5*time.Second, func(v float64) bool { return v == 0 }, "0 after the stream closed",
		"notify_subscribers", "room_kind", "guest")
	opsAwaitMetric(t, ctx, hc, base, 5*time.Second, func(v float64) bool { return v == 0 }, "0 after the stream closed",
		"notify_grpc_streams_open")
	m = opsScrape(t, ctx, hc, base)
	if d := delta("notify_grpc_requests_total", "method", opsSubMethod, "code", "Canceled"); d < 1 {
		t.Errorf("Subscribe code=Canceled moved by %v after the client cancelled, want >= 1", d)
	}

	// A slow consumer: a stream with a small flow-control window that is
	// not read while events are published until the hub cuts it.
	slowConn := dial(t, n.GRPCAddr(), grpc.WithInitialWindowSize(64<<10), grpc.WithInitialConnWindowSize(64<<10))
	slowCtx, slowCancel := context.WithCancel(ctx)
	defer slowCancel()
	slow, _ := subscribe(t, slowCtx, slowConn, mint(t, opsRestaurant("rest2", "r2")), &notifyv1.SubscribeRequest{Rooms: []string{"restaurant:r2:points"}})
	overflowAt := opsOverflow(t, ctx, c, n, "r2", "restaurant:r2:points")
	t.Logf("slow consumer overflowed after %d publishes", overflowAt)

	// The stream's writer is blocked on flow control, so the counters only
	// move once the client reads again (see TestMetricsSlowConsumerNeverReads):
	// drain the stream to its end, bounded.
	stopSlow := time.AfterFunc(5*time.Second, slowCancel)
	defer stopSlow.Stop()
	var (
		disc   *notifyv1.Disconnected
		endErr error
	)
	for range overflowAt + 10 {
		msg, err := slow.Recv()
		if err != nil {
			endErr = err
			break
		}
		if d := msg.GetDisconnected(); d != nil {
			disc = d
		}
	}
	opsWantExhausted(t, endErr, "SLOW_CONSUMER", "slow stream's end")
	// A stream stuck on flow control ends without a Disconnected (the
	// status carries the reason); one that could be written has one.
	if disc != nil && disc.Reason != notifyv1.DisconnectReason_DISCONNECT_REASON_SLOW_CONSUMER {
		t.Errorf("slow stream: Disconnected %v, want SLOW_CONSUMER", disc)
	}
	opsAwaitMetric(t, ctx, hc, base, 5*time.Second, func(v float64) bool { return v >= 1 }, ">= 1",
		"notify_slow_consumer_disconnects_total")
	opsAwaitMetric(t, ctx, hc, base, 5*time.Second, func(v float64) bool { return v >= 1 }, ">= 1",
		"notify_queue_drops_total")
}

// opsOverflow publishes ~2 KB events in room, a restaurant room of rid
// (restaurant rooms have no inbox, so publishing is quick), until the hub
// reports one more slow consumer, and returns how many it took (bounded).
func opsOverflow(t *testing.T, ctx context.Context, c notifyv1.NotificationServiceClient, n *testNode, rid, room string) int {
	t.Helper()
	start := n.Hub().Stats().SlowConsumers
	svc := withToken(ctx, mint(t, serviceClaims))
	desc := strings.Repeat("d", 2000)
	const maxPublishes = 1000
	for i := range maxPublishes {
		if n.Hub().Stats().SlowConsumers > start {
			return i
		}
		p := pointsAdded("g1", rid, int64(i+1))
		p.Description = desc
		if _, err := c.Publish(svc, pointsReq(p, room)); err != nil {
			t.Fatalf("publish %d: %v", i+1, err)
		}
	}
	t.Fatalf("no slow consumer after %d publishes of ~2 KB to a stream that is not read", maxPublishes)
	return 0
}

// opsRestaurant returns the claims of a restaurant token for rid.
func opsRestaurant(sub, rid string) auth.Claims {
	return auth.Claims{Subject: sub, Role: notifyv1.Role_ROLE_RESTAURANT, RestaurantID: rid}
}

// TestMetricsSlowConsumerNeverReads documents the expected behaviour of a
// stream whose client stops reading for good. Once its queue overflows it
// should be ended within a short time: counted in
// notify_slow_consumer_disconnects_total and notify_queue_drops_total, its
// room subscription left, and its place among the user's streams given
// back, so that the same user can open a new stream. And when the client
// finally goes away, the cut must still be counted.
//
// The handler waits for each send on a goroutine of its own and ends the
// stream as soon as the hub cuts it (server/service/subscribe.go: send,
// abandon).
func TestMetricsSlowConsumerNeverReads(t *testing.T) {
	t.Parallel()
	n := startNode(t, func(c *node.Config) {
		c.QueueBytes = 4096
		c.MaxStreamsPerUser = 1
	})
	ctx := testCtx(t)
	c := dial(t, n.GRPCAddr())
	base := "http://" + n.HTTPAddr()
	scrape := func() (slow, drops, subs float64) {
		m := opsScrape(t, ctx, http.DefaultClient, base)
		return m.must(t, "notify_slow_consumer_disconnects_total"), m.must(t, "notify_queue_drops_total"),
			m.must(t, "notify_subscribers", "room_kind", "restaurant_points")
	}

	rest := mint(t, opsRestaurant("rest3", "r3"))
	rooms := []string{"restaurant:r3:points"}
	slowConn := dial(t, n.GRPCAddr(), grpc.WithInitialWindowSize(64<<10), grpc.WithInitialConnWindowSize(64<<10))
	slowCtx, slowCancel := context.WithCancel(ctx)
	defer slowCancel()
	subscribe(t, slowCtx, slowConn, rest, &notifyv1.SubscribeRequest{Rooms: rooms})
	opsOverflow(t, ctx, c, n, "r3", rooms[0])

	var problems []string
	// 1. The overflowed stream is ended while its client still does not read.
	deadline := time.Now().Add(2 * time.Second)
	slow, drops, subs := scrape()
	for (slow < 1 || subs != 0) && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond) // polling interval, bounded by the deadline
		slow, drops, subs = scrape()
	}
	if slow < 1 || drops < 1 || subs != 0 {
		problems = append(problems, fmt.Sprintf("2s after the overflow, with the client connected but not reading: "+
			"slow_consumer_disconnects_total=%v, queue_drops_total=%v, subscribers{restaurant_points}=%v (want >= 1, >= 1, 0)", slow, drops, subs))
	}
	// 2. The same user can open a new stream (MaxStreamsPerUser 1).
	rctx, rcancel := context.WithTimeout(ctx, 3*time.Second)
	defer rcancel()
	st, err := openStream(rctx, c, rest, &notifyv1.SubscribeRequest{Rooms: rooms})
	if err == nil {
		_, err = st.Recv()
	}
	if err != nil {
		problems = append(problems, fmt.Sprintf("a new stream of the same user with MaxStreamsPerUser 1: %v (want admitted)", err))
	}
	rcancel()
	// 3. The client goes away: the cut is counted all the same.
	slowCancel()
	opsAwaitMetric(t, ctx, http.DefaultClient, base, 5*time.Second, func(v float64) bool { return v == 0 },
		"0 once every stream is closed", "notify_subscribers", "room_kind", "restaurant_points")
	slow, drops, _ = scrape()
	if hub := n.Hub().Stats().SlowConsumers; slow < float64(hub) || drops < 1 {
		problems = append(problems, fmt.Sprintf("after the client went away: slow_consumer_disconnects_total=%v, queue_drops_total=%v, "+
			"while the hub counted %d slow consumers (want equal, and drops >= 1)", slow, drops, hub))
	}

	if len(problems) == 0 {
		return
	}
	t.Error("a stream that stops reading for good is not cut:\n  " + strings.Join(problems, "\n  "))
}

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
	deadline := time.Now().Add(5 * time.Second)
	for attempt := 1; ; attempt++ {
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
			break
		}
		acancel()
		opsWantExhausted(t, err, limit.ReasonTooManyStreams, "stream while the closed one is released")
		if time.Now().After(deadline) {
			t.Fatal("no new stream admitted within 5s of closing one")
		}
		time.Sleep(10 * time.Millisecond) // polling interval, bounded by the deadline
	}

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
	deadline := time.Now().Add(5 * time.Second)
	for {
		nc, ok := opsProbe(t, n.GRPCAddr())
		if ok {
			break
		}
		nc.Close()
		if time.Now().After(deadline) {
			t.Fatal("no connection admitted within 5s: the rate never refills")
		}
		time.Sleep(50 * time.Millisecond) // polling interval, bounded by the deadline
	}
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
	deadline := time.Now().Add(5 * time.Second)
	for {
		nc, ok := opsProbe(t, n.GRPCAddr())
		if ok {
			break
		}
		nc.Close()
		if time.Now().After(deadline) {
			t.Fatal("no connection admitted within 5s of closing one")
		}
		time.Sleep(20 * time.Millisecond) // polling interval, bounded by the deadline
	}
}

// ---- TLS ----

// opsStartNode is startNode for a node whose readiness is polled with
// client at scheme://HTTPAddr/readyz (startNode polls plain HTTP).
func opsStartNode(t *testing.T, client *http.Client, scheme string, mutate func(*node.Config)) *testNode {
	t.Helper()
	cfg := node.Config{
		GRPCAddr:  "127.0.0.1:0",
		HTTPAddr:  "127.0.0.1:0",
		ServerID:  "test-node",
		JWTSecret: testSecret,
		LogLevel:  "error",
		DataDir:   t.TempDir(),
	}
	if mutate != nil {
		mutate(&cfg)
	}
	ctx, cancel := context.WithCancel(context.Background())
	n, err := node.New(ctx, cfg, testLogger())
	if err != nil {
		cancel()
		t.Fatalf("node.New: %v", err)
	}
	tn := &testNode{Node: n, cfg: cfg, cancel: cancel, done: make(chan struct{})}
	go func() {
		tn.runErr = n.Run(ctx)
		close(tn.done)
	}()
	t.Cleanup(func() {
		if err := tn.stop(); err != nil {
			t.Errorf("stopping node: %v", err)
		}
	})
	deadline := time.Now().Add(testTimeout)
	for {
		resp, err := client.Get(scheme + "://" + n.HTTPAddr() + "/readyz")
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return tn
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("node not ready after %v (last error %v)", testTimeout, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// opsTLSClient returns an HTTPS client trusting pool, HTTP/2 preferred.
func opsTLSClient(t *testing.T, pool *x509.CertPool) *http.Client {
	t.Helper()
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

// TestTLS: with a certificate configured both ports speak TLS only.
func TestTLS(t *testing.T) {
	t.Parallel()
	certFile, keyFile, pool, err := certs.SelfSigned(t.TempDir(), "127.0.0.1")
	if err != nil {
		t.Fatalf("SelfSigned: %v", err)
	}
	hc := opsTLSClient(t, pool)
	n := opsStartNode(t, hc, "https", func(c *node.Config) {
		c.TLSCertFile, c.TLSKeyFile = certFile, keyFile
	})
	ctx := testCtx(t)
	base := "https://" + n.HTTPAddr()
	svc := mint(t, serviceClaims)

	// Native gRPC over TLS: subscribe and receive a published event.
	c := dial(t, n.GRPCAddr(), grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: pool})))
	s, _ := subscribe(t, ctx, c, mint(t, guestClaims), &notifyv1.SubscribeRequest{Rooms: []string{"guest:g1"}})
	pub := publish(t, ctx, c, opsReq("g1", "guest:g1", 1))
	if ev := s.next(t); ev.Id != pub.EventId {
		t.Fatalf("TLS stream got %s, want %s", ev.Id, pub.EventId)
	}

	// REST and /healthz over HTTPS.
	r, _ := opsDo(t, ctx, hc, http.MethodPost, base+"/v1/rooms/guest:g1/events", svc, nil, []byte(opsRESTEvent("g1", 2)))
	if r.status != http.StatusOK {
		t.Fatalf("HTTPS REST publish: HTTP %d %s", r.status, r.body)
	}
	var restResp notifyv1.PublishResponse
	unmarshalJSON(t, r.body, &restResp)
	if ev := s.next(t); ev.Id != restResp.EventId {
		t.Errorf("after the HTTPS publish the stream got %s, want %s", ev.Id, restResp.EventId)
	}
	r, _ = opsDo(t, ctx, hc, http.MethodGet, base+"/healthz", "", nil, nil)
	if r.status != http.StatusOK {
		t.Errorf("HTTPS /healthz: HTTP %d %s", r.status, r.body)
	}

	// grpc-web over HTTPS.
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/notify.v1.NotificationService/Publish",
		bytes.NewReader(webFrame(t, opsReq("g1", "guest:g1", 3))))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/grpc-web+proto")
	req.Header.Set("X-Grpc-Web", "1")
	req.Header.Set("Authorization", "Bearer "+svc)
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("grpc-web over HTTPS: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("grpc-web over HTTPS: HTTP %d", resp.StatusCode)
	}
	t.Logf("grpc-web over HTTPS spoke %s", resp.Proto)
	var webResp notifyv1.PublishResponse
	var webStatus string
	for range 10 {
		f, err := readWebFrame(resp.Body)
		if err != nil {
			t.Fatalf("grpc-web frame: %v", err)
		}
		if f.isTrailer() {
			webStatus = webTrailers(t, f.data).Get("Grpc-Status")
			break
		}
		if err := proto.Unmarshal(f.data, &webResp); err != nil {
			t.Fatalf("PublishResponse frame: %v", err)
		}
	}
	if webStatus != "0" || webResp.EventId == "" {
		t.Fatalf("grpc-web over HTTPS: status %q, response %v; want 0 and an event", webStatus, &webResp)
	}
	if ev := s.next(t); ev.Id != webResp.EventId {
		t.Errorf("after the grpc-web publish the stream got %s, want %s", ev.Id, webResp.EventId)
	}

	// Plaintext clients are refused on both ports.
	pctx, pcancel := context.WithTimeout(ctx, 5*time.Second)
	defer pcancel()
	_, err = dial(t, n.GRPCAddr()).Publish(withToken(pctx, svc), opsReq("g1", "guest:g1", 4))
	wantCode(t, err, codes.Unavailable, "plaintext gRPC to a TLS port")
	presp, err := http.Get("http://" + n.HTTPAddr() + "/healthz")
	if err == nil {
		_, _ = io.Copy(io.Discard, presp.Body)
		presp.Body.Close()
		if presp.StatusCode == http.StatusOK {
			t.Errorf("plain HTTP to the TLS port: HTTP 200, want a refusal")
		}
	}
	// A TLS client that does not trust the certificate is refused too.
	_, err = dial(t, n.GRPCAddr(), grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{}))).
		Publish(withToken(pctx, svc), opsReq("g1", "guest:g1", 5))
	wantCode(t, err, codes.Unavailable, "gRPC TLS client without the CA")
}

// ---- CORS ----

// TestCORS: with AllowedOrigins ["https://app.example"], preflights from
// that origin are answered with Access-Control-Allow-Origin, others not.
func TestCORS(t *testing.T) {
	t.Parallel()
	const good, bad = "https://app.example", "https://evil.example"
	n := startNode(t, func(c *node.Config) { c.AllowedOrigins = []string{good} })
	ctx := testCtx(t)
	base := "http://" + n.HTTPAddr()
	hc := http.DefaultClient

	preflight := func(path, origin, headers string) (restResult, http.Header) {
		t.Helper()
		h := http.Header{}
		h.Set("Origin", origin)
		h.Set("Access-Control-Request-Method", "POST")
		h.Set("Access-Control-Request-Headers", headers)
		return opsDo(t, ctx, hc, http.MethodOptions, base+path, "", h, nil)
	}

	// REST.
	r, h := preflight("/v1/events", good, "authorization,content-type")
	if r.status >= 300 || h.Get("Access-Control-Allow-Origin") != good {
		t.Errorf("REST preflight from %s: HTTP %d, Allow-Origin %q; want 2xx and %q", good, r.status, h.Get("Access-Control-Allow-Origin"), good)
	}
	if am := h.Get("Access-Control-Allow-Methods"); !strings.Contains(am, "POST") {
		t.Errorf("REST preflight Allow-Methods %q lacks POST", am)
	}
	if ah := strings.ToLower(h.Get("Access-Control-Allow-Headers")); !strings.Contains(ah, "authorization") || !strings.Contains(ah, "content-type") {
		t.Errorf("REST preflight Allow-Headers %q lacks authorization or content-type", ah)
	}
	r, h = preflight("/v1/events", bad, "authorization,content-type")
	if got := h.Get("Access-Control-Allow-Origin"); got != "" {
		t.Errorf("REST preflight from %s: Allow-Origin %q, want none", bad, got)
	}
	t.Logf("REST preflight from a disallowed origin: HTTP %d", r.status)

	// An actual REST request from the allowed origin carries the header.
	ah := http.Header{}
	ah.Set("Origin", good)
	r, h = opsDo(t, ctx, hc, http.MethodPost, base+"/v1/rooms/guest:g1/events", mint(t, serviceClaims), ah, []byte(opsRESTEvent("g1", 1)))
	if r.status != http.StatusOK || h.Get("Access-Control-Allow-Origin") != good {
		t.Errorf("REST POST from %s: HTTP %d, Allow-Origin %q; want 200 and %q", good, r.status, h.Get("Access-Control-Allow-Origin"), good)
	}
	ah.Set("Origin", bad)
	_, h = opsDo(t, ctx, hc, http.MethodPost, base+"/v1/rooms/guest:g1/events", mint(t, serviceClaims), ah, []byte(opsRESTEvent("g1", 2)))
	if got := h.Get("Access-Control-Allow-Origin"); got != "" {
		t.Errorf("REST POST from %s: Allow-Origin %q, want none", bad, got)
	}

	// grpc-web.
	const webPath = "/notify.v1.NotificationService/Publish"
	webHeaders := "authorization,content-type,x-grpc-web"
	r, h = preflight(webPath, good, webHeaders)
	if r.status >= 300 || h.Get("Access-Control-Allow-Origin") != good {
		t.Errorf("grpc-web preflight from %s: HTTP %d, Allow-Origin %q; want 2xx and %q", good, r.status, h.Get("Access-Control-Allow-Origin"), good)
	}
	r, h = preflight(webPath, bad, webHeaders)
	if got := h.Get("Access-Control-Allow-Origin"); got != "" {
		t.Errorf("grpc-web preflight from %s: Allow-Origin %q, want none (refused)", bad, got)
	}
	if got := h.Get("Access-Control-Allow-Headers"); got != "" {
		t.Errorf("grpc-web preflight from %s: Allow-Headers %q, want none", bad, got)
	}
	t.Logf("grpc-web preflight from a disallowed origin: HTTP %d", r.status)
}

// ---- health ----

// TestHealth: /healthz and /readyz answer 200 and gRPC health reports
// SERVING while the node serves; cancelling the node's context turns
// health NOT_SERVING before the connection goes.
func TestHealth(t *testing.T) {
	t.Parallel()
	const drain = 2 * time.Second
	n := startNode(t, func(c *node.Config) { c.ShutdownDrain = drain })
	ctx := testCtx(t)
	base := "http://" + n.HTTPAddr()

	for _, path := range []string{"/healthz", "/readyz"} {
		r := restDo(t, ctx, http.MethodGet, base+path, "", "")
		if r.status != http.StatusOK {
			t.Errorf("GET %s: HTTP %d %s, want 200", path, r.status, r.body)
		}
	}

	conn, err := grpc.NewClient("passthrough:///"+n.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	hc := healthpb.NewHealthClient(conn)
	for _, svcName := range []string{"", "notify.v1.NotificationService"} {
		resp, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: svcName})
		if err != nil || resp.Status != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("Check(%q) = %v, %v; want SERVING", svcName, resp, err)
		}
	}
	_, err = hc.Check(ctx, &healthpb.HealthCheckRequest{Service: "no.such.Service"})
	wantCode(t, err, codes.NotFound, "Check of an unknown service")

	wctx, wcancel := context.WithCancel(ctx)
	defer wcancel()
	w, err := hc.Watch(wctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatalf("Watch: %v", err)
	}
	if m, err := w.Recv(); err != nil || m.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("Watch first message %v, %v; want SERVING", m, err)
	}

	start := time.Now()
	n.cancel()

	// The watcher is told NOT_SERVING (or its stream ends) first.
	m, err := w.Recv()
	switch {
	case err == nil && m.Status == healthpb.HealthCheckResponse_NOT_SERVING:
		t.Logf("after cancel: Watch reported NOT_SERVING after %v", time.Since(start))
	case err != nil:
		wantCode(t, err, codes.Unavailable, "Watch after cancel")
		t.Logf("after cancel: Watch ended with %v", err)
	default:
		t.Fatalf("Watch after cancel: %v, want NOT_SERVING", m)
	}

	// A Check now: NOT_SERVING while the server drains, Unavailable once it
	// has stopped.
	cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
	defer ccancel()
	resp, err := hc.Check(cctx, &healthpb.HealthCheckRequest{})
	switch {
	case err == nil && resp.Status == healthpb.HealthCheckResponse_NOT_SERVING:
		t.Logf("after cancel: Check reported NOT_SERVING")
	case err != nil:
		wantCode(t, err, codes.Unavailable, "Check after cancel")
		t.Logf("after cancel: Check failed with %v", err)
	default:
		t.Errorf("Check after cancel = %v, want NOT_SERVING or Unavailable", resp)
	}

	// /readyz is 503 or the port is closed.
	if resp, err := http.Get(base + "/readyz"); err == nil {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Errorf("/readyz after cancel: 200 %s, want 503 or a closed port", b)
		}
		t.Logf("after cancel: /readyz HTTP %d %s", resp.StatusCode, bytes.TrimSpace(b))
	} else {
		t.Logf("after cancel: /readyz: %v", err)
	}

	// The watch, still open, holds GracefulStop; it is ended by the client
	// here and the node stops well within the drain time.
	wcancel()
	select {
	case <-n.done:
		t.Logf("Run returned %v after cancel", time.Since(start))
	case <-time.After(drain + 3*time.Second):
		t.Fatalf("Run did not return within %v of cancel", drain+3*time.Second)
	}
}
