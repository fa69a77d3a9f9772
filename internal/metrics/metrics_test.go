package metrics_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/maxloyalty/notify/internal/limit"
	"github.com/maxloyalty/notify/internal/metrics"
	"github.com/maxloyalty/notify/internal/room"
	"github.com/maxloyalty/notify/internal/testenv"
)

const (
	checkMethod = "/grpc.health.v1.Health/Check"
	watchMethod = "/grpc.health.v1.Health/Watch"
)

// families is one scrape, by metric name.
type families map[string]*dto.MetricFamily

// serveMetrics serves m.Handler over real HTTP and returns its URL.
func serveMetrics(t *testing.T, m *metrics.Metrics) string {
	t.Helper()
	srv := httptest.NewServer(m.Handler())
	t.Cleanup(srv.Close)
	return srv.URL
}

// scrape fetches and parses the text exposition at url.
func scrape(t *testing.T, url string) families {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape: status %s", resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("scrape: parse: %v", err)
	}
	return fams
}

// value returns the value of the series of name whose labels include
// labels: a counter's or gauge's value, a histogram's sample count.
func (f families) value(name string, labels map[string]string) (float64, bool) {
	fam, ok := f[name]
	if !ok {
		return 0, false
	}
next:
	for _, m := range fam.GetMetric() {
		have := map[string]string{}
		for _, lp := range m.GetLabel() {
			have[lp.GetName()] = lp.GetValue()
		}
		for k, v := range labels {
			if have[k] != v {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.GetCounter().GetValue(), true
		case m.Gauge != nil:
			return m.GetGauge().GetValue(), true
		case m.Histogram != nil:
			return float64(m.GetHistogram().GetSampleCount()), true
		case m.Untyped != nil:
			return m.GetUntyped().GetValue(), true
		}
	}
	return 0, false
}

// bucket returns the cumulative count of histogram name at upper bound le.
func (f families) bucket(name string, le float64) (uint64, bool) {
	fam, ok := f[name]
	if !ok || len(fam.GetMetric()) == 0 {
		return 0, false
	}
	for _, b := range fam.GetMetric()[0].GetHistogram().GetBucket() {
		if b.GetUpperBound() == le {
			return b.GetCumulativeCount(), true
		}
	}
	return 0, false
}

type series struct {
	name   string
	labels map[string]string
	want   float64
}

func (s series) String() string {
	return s.name + model.LabelSet(toLabelSet(s.labels)).String()
}

func toLabelSet(m map[string]string) model.LabelSet {
	ls := model.LabelSet{}
	for k, v := range m {
		ls[model.LabelName(k)] = model.LabelValue(v)
	}
	return ls
}

// check fails for every series whose value is not the wanted one.
func check(t *testing.T, f families, want []series) {
	t.Helper()
	for _, s := range want {
		got, ok := f.value(s.name, s.labels)
		switch {
		case !ok:
			t.Errorf("%s: missing", s)
		case got != s.want:
			t.Errorf("%s = %v, want %v", s, got, s.want)
		}
	}
}

// eventually scrapes url until cond holds, failing t after 5 seconds.
func eventually(t *testing.T, url, what string, cond func(families) bool) {
	t.Helper()
	testenv.Eventually(t, 5*time.Second, what, func() bool { return cond(scrape(t, url)) })
}

func is(name string, labels map[string]string, want float64) func(families) bool {
	return func(f families) bool {
		got, ok := f.value(name, labels)
		return ok && got == want
	}
}

// startHealth serves gRPC health with m's interceptors and connection
// count on a loopback port and returns a client connection to it.
func startHealth(t *testing.T, m *metrics.Metrics) *grpc.ClientConn {
	t.Helper()
	srv := grpc.NewServer(
		grpc.ChainUnaryInterceptor(m.UnaryServerInterceptor()),
		grpc.ChainStreamInterceptor(m.StreamServerInterceptor()),
	)
	hs := health.NewServer()
	hs.SetServingStatus("notify", healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(srv, hs)
	m.InitGRPC(srv)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln = limit.NewConnRate(-1, 0, limit.OnOpen(m.OpenConns(metrics.TransportGRPC))).WrapListener(ln)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	t.Cleanup(func() {
		srv.Stop()
		<-done
	})
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func TestGRPCInterceptors(t *testing.T) {
	m := metrics.New("v1.2.3", "abc123")
	url := serveMetrics(t, m)
	conn := startHealth(t, m)
	client := healthpb.NewHealthClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	// Before any call: the registered methods' OK series exist at zero.
	check(t, scrape(t, url), []series{
		{"notify_grpc_requests_total", map[string]string{"method": checkMethod, "code": "OK"}, 0},
		{"notify_grpc_requests_total", map[string]string{"method": watchMethod, "code": "OK"}, 0},
		{"notify_grpc_streams_open", nil, 0},
		{"notify_connections_open", map[string]string{"transport": "grpc"}, 0},
	})

	for range 2 {
		if _, err := client.Check(ctx, &healthpb.HealthCheckRequest{Service: "notify"}); err != nil {
			t.Fatalf("Check: %v", err)
		}
	}
	_, err := client.Check(ctx, &healthpb.HealthCheckRequest{Service: "nope"})
	if status.Code(err) != codes.NotFound {
		t.Fatalf("Check(nope) = %v, want NotFound", err)
	}

	wctx, wcancel := context.WithCancel(ctx)
	defer wcancel()
	watch, err := client.Watch(wctx, &healthpb.HealthCheckRequest{Service: "notify"})
	if err != nil {
		t.Fatalf("Watch: %v", err)
	}
	if _, err := watch.Recv(); err != nil {
		t.Fatalf("Watch: Recv: %v", err)
	}
	eventually(t, url, "an open stream", is("notify_grpc_streams_open", nil, 1))
	check(t, scrape(t, url), []series{
		{"notify_grpc_requests_total", map[string]string{"method": checkMethod, "code": "OK"}, 2},
		{"notify_grpc_requests_total", map[string]string{"method": checkMethod, "code": "NotFound"}, 1},
		{"notify_grpc_request_duration_seconds", map[string]string{"method": checkMethod, "code": "OK"}, 2},
		{"notify_grpc_request_duration_seconds", map[string]string{"method": checkMethod, "code": "NotFound"}, 1},
		{"notify_connections_open", map[string]string{"transport": "grpc"}, 1},
	})
	if _, ok := scrape(t, url).value("notify_grpc_requests_total", map[string]string{"method": watchMethod, "code": "Canceled"}); ok {
		t.Error("stream counted before it ended")
	}

	wcancel()
	eventually(t, url, "the stream to end", is("notify_grpc_streams_open", nil, 0))
	check(t, scrape(t, url), []series{
		{"notify_grpc_requests_total", map[string]string{"method": watchMethod, "code": "Canceled"}, 1},
		{"notify_grpc_request_duration_seconds", map[string]string{"method": watchMethod, "code": "Canceled"}, 1},
		{"notify_grpc_requests_total", map[string]string{"method": watchMethod, "code": "OK"}, 0},
	})

	conn.Close()
	eventually(t, url, "the connection to close", is("notify_connections_open", map[string]string{"transport": "grpc"}, 0))
}

func TestInterceptorLabels(t *testing.T) {
	tests := []struct {
		name       string
		init       bool
		method     string
		err        error
		wantMethod string
		wantCode   string
	}{
		{"ok", true, checkMethod, nil, checkMethod, "OK"},
		{"status", true, checkMethod, status.Error(codes.ResourceExhausted, "slow"), checkMethod, "ResourceExhausted"},
		{"plain error", true, checkMethod, errors.New("boom"), checkMethod, "Unknown"},
		{"out of range code", true, checkMethod, status.Error(codes.Code(99), "odd"), checkMethod, "Unknown"},
		{"unregistered method", true, "/evil.Svc/Random123", nil, "unknown", "OK"},
		{"before InitGRPC", false, "/some.Svc/Method", nil, "/some.Svc/Method", "OK"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := metrics.New("v", "c")
			if tt.init {
				srv := grpc.NewServer()
				healthpb.RegisterHealthServer(srv, health.NewServer())
				m.InitGRPC(srv)
			}
			url := serveMetrics(t, m)
			unary := m.UnaryServerInterceptor()
			_, err := unary(context.Background(), nil, &grpc.UnaryServerInfo{FullMethod: tt.method},
				func(context.Context, any) (any, error) { return nil, tt.err })
			if err != tt.err {
				t.Fatalf("interceptor returned %v, want the handler's %v", err, tt.err)
			}
			stream := m.StreamServerInterceptor()
			err = stream(nil, nil, &grpc.StreamServerInfo{FullMethod: tt.method},
				func(any, grpc.ServerStream) error { return tt.err })
			if err != tt.err {
				t.Fatalf("stream interceptor returned %v, want the handler's %v", err, tt.err)
			}
			labels := map[string]string{"method": tt.wantMethod, "code": tt.wantCode}
			check(t, scrape(t, url), []series{
				{"notify_grpc_requests_total", labels, 2},
				{"notify_grpc_request_duration_seconds", labels, 2},
				{"notify_grpc_streams_open", nil, 0},
			})
		})
	}
}

func TestEvents(t *testing.T) {
	m := metrics.New("v1.2.3", "abc123")
	url := serveMetrics(t, m)

	m.SubscriberJoined("guest")
	m.SubscriberJoined("guest")
	m.SubscriberLeft("guest")
	m.SubscriberJoined("admin")
	m.EventPublished("restaurant_points")
	m.EventPublished("restaurant_points")
	m.EventPublished("user")
	m.EventPublished("bogus")
	m.Delivered(3, 2*time.Millisecond)
	m.Delivered(1, 2*time.Second)
	m.Delivered(0, time.Hour) // nothing
	m.QueueDropped(5)
	m.QueueDropped(-1) // nothing
	m.SlowConsumer()
	m.BrokerError("publish")
	m.BrokerError("publish")
	m.StoreError("append")
	m.LimitRejected("publish_rate")
	rooms := 7.0
	m.Observe("notify_hub_rooms", "Rooms with a subscriber.", func() float64 { return rooms })

	f := scrape(t, url)
	kind := func(k string) map[string]string { return map[string]string{"room_kind": k} }
	check(t, f, []series{
		{"notify_subscribers", kind("guest"), 1},
		{"notify_subscribers", kind("admin"), 1},
		{"notify_subscribers", kind("restaurant"), 0},
		{"notify_events_published_total", kind("restaurant_points"), 2},
		{"notify_events_published_total", kind("user"), 1},
		{"notify_events_published_total", kind("unknown"), 1},
		{"notify_events_published_total", kind("restaurant_transactions"), 0},
		{"notify_events_delivered_total", nil, 4},
		{"notify_delivery_latency_seconds", nil, 2},
		{"notify_queue_drops_total", nil, 5},
		{"notify_slow_consumer_disconnects_total", nil, 1},
		{"notify_broker_errors_total", map[string]string{"op": "publish"}, 2},
		{"notify_store_errors_total", map[string]string{"op": "append"}, 1},
		{"notify_limit_rejections_total", map[string]string{"limit": "publish_rate"}, 1},
		{"notify_build_info", map[string]string{"version": "v1.2.3", "commit": "abc123", "go_version": runtime.Version()}, 1},
		{"notify_hub_rooms", nil, 7},
	})
	if got := len(f["notify_events_published_total"].GetMetric()); got != len(metrics.RoomKinds())+1 {
		t.Errorf("notify_events_published_total has %d series, want %d (room kinds and unknown)", got, len(metrics.RoomKinds())+1)
	}
	for le, want := range map[float64]uint64{0.001: 0, 0.0025: 1, 1: 1, 2.5: 2, 5: 2} {
		if got, ok := f.bucket("notify_delivery_latency_seconds", le); !ok || got != want {
			t.Errorf("notify_delivery_latency_seconds{le=%v} = %d (present %v), want %d", le, got, ok, want)
		}
	}
	for _, name := range []string{"go_goroutines", "process_cpu_seconds_total"} {
		if _, ok := f[name]; !ok {
			t.Errorf("%s missing", name)
		}
	}
}

func TestObserveDuplicatePanics(t *testing.T) {
	m := metrics.New("v", "c")
	m.Observe("notify_x", "x", func() float64 { return 1 })
	defer func() {
		if recover() == nil {
			t.Error("registering notify_x twice did not panic")
		}
	}()
	m.Observe("notify_x", "x", func() float64 { return 2 })
}

func TestRoomKindsMatchPackageRoom(t *testing.T) {
	names := map[string]bool{}
	for _, k := range metrics.RoomKinds() {
		names[k] = true
		if _, ok := room.KindByName(k); !ok {
			t.Errorf("metrics kind %q is not a room kind", k)
		}
	}
	for k := room.Kind(1); k.String() != "unknown"; k++ {
		if !names[k.String()] {
			t.Errorf("room kind %q has no label value", k)
		}
	}
}

func TestHotPathDoesNotAllocate(t *testing.T) {
	m := metrics.New("v", "c")
	tests := []struct {
		name string
		fn   func()
	}{
		{"Delivered", func() { m.Delivered(4, 3*time.Millisecond) }},
		{"EventPublished", func() { m.EventPublished("restaurant_points") }},
		{"EventPublished unknown kind", func() { m.EventPublished("bogus") }},
		{"SubscriberJoined", func() { m.SubscriberJoined("guest") }},
		{"SubscriberLeft", func() { m.SubscriberLeft("guest") }},
		{"QueueDropped", func() { m.QueueDropped(2) }},
		{"SlowConsumer", m.SlowConsumer},
	}
	for _, tt := range tests {
		if n := testing.AllocsPerRun(1000, tt.fn); n != 0 {
			t.Errorf("%s: %v allocations per call, want 0", tt.name, n)
		}
	}
}

func BenchmarkDelivered(b *testing.B) {
	m := metrics.New("v", "c")
	b.ReportAllocs()
	for b.Loop() {
		m.Delivered(1, 3*time.Millisecond)
	}
}

func BenchmarkEventPublished(b *testing.B) {
	m := metrics.New("v", "c")
	b.ReportAllocs()
	for b.Loop() {
		m.EventPublished("restaurant_points")
	}
}

func BenchmarkDeliveredParallel(b *testing.B) {
	m := metrics.New("v", "c")
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			m.Delivered(1, 3*time.Millisecond)
		}
	})
}
