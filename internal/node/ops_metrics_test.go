package node_test

// End-to-end tests of the operational features: Prometheus metrics, the
// per-caller and per-port limits, TLS on both ports, CORS and health.
// Every helper of this file is prefixed "ops" so as not to collide with
// the helpers of the other test files of the package.

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	notifyv1 "github.com/maxloyalty/notify/gen/notify/v1"
	"github.com/maxloyalty/notify/internal/auth"
	"github.com/maxloyalty/notify/internal/node"
	"github.com/maxloyalty/notify/internal/testenv"
)

// ---- metrics ----

// opsMetrics is one scrape of /metrics, by family name.
type opsMetrics map[string]*dto.MetricFamily

// opsScrape GETs base/metrics with client and parses the text format. A
// failed request is retried until the test timeout (a connection limit may
// refuse one connection).
func opsScrape(t *testing.T, ctx context.Context, client *http.Client, base string) opsMetrics {
	t.Helper()
	var (
		m       opsMetrics
		lastErr error
	)
	defer func() {
		if m == nil { // Eventually failed the test
			t.Logf("GET /metrics: %v", lastErr)
		}
	}()
	testenv.Eventually(t, testTimeout, "GET /metrics", func() bool {
		if ctx.Err() != nil {
			t.Fatalf("GET /metrics: %v", lastErr)
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/metrics", nil)
		if err != nil {
			t.Fatalf("NewRequest: %v", err)
		}
		req.Header.Set("Accept", "text/plain; version=0.0.4")
		resp, err := client.Do(req)
		if err != nil {
			lastErr = err
			return false
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		switch {
		case err != nil:
			lastErr = err
			return false
		case resp.StatusCode != http.StatusOK:
			t.Fatalf("GET /metrics: HTTP %d: %s", resp.StatusCode, body)
		}
		p := expfmt.NewTextParser(model.UTF8Validation)
		fams, err := p.TextToMetricFamilies(bytes.NewReader(body))
		if err != nil {
			t.Fatalf("parsing /metrics: %v\n%s", err, body)
		}
		m = opsMetrics(fams)
		return true
	})
	return m
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
	var (
		v       float64
		ok, met bool
	)
	defer func() {
		if !met { // Eventually failed the test
			t.Logf("%s = %v (present %v)", opsMetricSeries(name, kv...), v, ok)
		}
	}()
	testenv.Eventually(t, within, opsMetricSeries(name, kv...)+": want "+want, func() bool {
		v, ok = opsScrape(t, ctx, client, base).get(name, kv...)
		met = ok && cond(v)
		return met
	})
	return v
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
// stream as soon as the hub cuts it (internal/service/subscribe.go: send,
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
	var slow, drops, subs float64
	defer func() {
		if slow < 1 || subs != 0 { // Eventually failed the test
			t.Logf("slow_consumer_disconnects_total=%v, subscribers{restaurant_points}=%v", slow, subs)
		}
	}()
	testenv.Eventually(t, 2*time.Second, "the overflowed stream ended, with the client connected but not reading", func() bool {
		slow, drops, subs = scrape()
		return slow >= 1 && subs == 0
	})
	if drops < 1 {
		problems = append(problems, fmt.Sprintf("once the overflowed stream ended: queue_drops_total=%v (want >= 1)", drops))
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
