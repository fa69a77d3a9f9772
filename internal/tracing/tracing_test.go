package tracing

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	notifyv1 "github.com/maxloyalty/notify/gen/notify/v1"
	"github.com/maxloyalty/notify/internal/tracing/otlptest"
)

// otelVars are the variables FromEnv and the exporters read; each test
// starts from none of them set.
var otelVars = []string{
	"OTEL_SDK_DISABLED", "OTEL_TRACES_EXPORTER", "OTEL_PROPAGATORS", "OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES",
	"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
	"OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_INSECURE",
	"OTEL_TRACES_SAMPLER", "OTEL_TRACES_SAMPLER_ARG",
}

// setEnv sets the OTEL variables to env, unsetting the others.
func setEnv(t *testing.T, env map[string]string) {
	t.Helper()
	for _, k := range otelVars {
		t.Setenv(k, env[k])
	}
}

// TestFromEnvOff: tracing is off unless the environment says where to
// export; a value it does not know is an error, not silence.
func TestFromEnvOff(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  map[string]string
		err  string // "": off without error
	}{
		{"nothing set", nil, ""},
		{"exporter none", map[string]string{"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1"}, ""},
		{"SDK disabled", map[string]string{"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"}, ""},
		{"unknown exporter", map[string]string{"OTEL_TRACES_EXPORTER": "zipkin"}, `OTEL_TRACES_EXPORTER "zipkin"`},
		{"unknown protocol", map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, `"http/json"`},
		{"unknown propagator", map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_PROPAGATORS": "b3"}, `OTEL_PROPAGATORS "b3"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			setEnv(t, tc.env)
			tr, err := FromEnv(context.Background(), "test")
			defer tr.Shutdown(context.Background())
			if tc.err == "" {
				if tr != nil || err != nil {
					t.Fatalf("FromEnv = %v, %v; want off", tr, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("FromEnv error %v, want one saying %s", err, tc.err)
			}
		})
	}
}

// TestNilIsOff: a nil Tracing's handlers and tracer do nothing.
func TestNilIsOff(t *testing.T) {
	var tr *Tracing
	if tr.ServerHandler() != nil || tr.ClientHandler() != nil {
		t.Error("a nil Tracing has stats handlers")
	}
	h := http.NotFoundHandler()
	if got := tr.Handler(h); got == nil {
		t.Error("a nil Tracing's Handler is nil")
	}
	_, span := tr.Tracer().Start(context.Background(), "x")
	if span.SpanContext().IsValid() {
		t.Error("a nil Tracing's tracer records spans")
	}
	if err := tr.Shutdown(context.Background()); err != nil {
		t.Error(err)
	}
}

// publisher answers Publish with an event id.
type publisher struct {
	notifyv1.UnimplementedNotificationServiceServer
}

func (publisher) Publish(context.Context, *notifyv1.PublishRequest) (*notifyv1.PublishResponse, error) {
	return &notifyv1.PublishResponse{EventId: "e1"}, nil
}

// serve starts a gRPC server on a loopback port with t's server handler
// and returns a client connection to it with t's client handler.
func serve(t *testing.T, tr *Tracing) *grpc.ClientConn {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.StatsHandler(tr.ServerHandler()))
	notifyv1.RegisterNotificationServiceServer(srv, publisher{})
	healthpb.RegisterHealthServer(srv, health.NewServer())
	var wg sync.WaitGroup
	wg.Go(func() { _ = srv.Serve(ln) })
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithStatsHandler(tr.ClientHandler()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.Close()
		srv.Stop()
		wg.Wait()
	})
	return conn
}

// TestExportOTLPHTTP: with only OTEL_EXPORTER_OTLP_ENDPOINT set, spans of
// gRPC calls (client and server, one trace) and of HTTP requests (which
// continue the trace a client sent) reach a local OTLP/HTTP collector,
// described by OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES; health
// checks and probes are not traced.
func TestExportOTLPHTTP(t *testing.T) {
	recv := otlptest.NewReceiver(t)
	setEnv(t, map[string]string{
		"OTEL_EXPORTER_OTLP_ENDPOINT": recv.Endpoint,
		"OTEL_SERVICE_NAME":           "notify-test",
		"OTEL_RESOURCE_ATTRIBUTES":    "deployment.environment.name=test",
	})
	ctx := context.Background()
	tr, err := FromEnv(ctx, "v9")
	if err != nil || tr == nil {
		t.Fatalf("FromEnv = %v, %v", tr, err)
	}
	defer tr.Shutdown(ctx)

	conn := serve(t, tr)
	if _, err := notifyv1.NewNotificationServiceClient(conn).Publish(ctx, &notifyv1.PublishRequest{}); err != nil {
		t.Fatal(err)
	}
	if _, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatal(err)
	}

	// HTTP: the handler's span continues the caller's trace, and a span
	// the handler starts is its child.
	mux := http.NewServeMux()
	mux.HandleFunc("/v1/events", func(w http.ResponseWriter, r *http.Request) {
		_, span := tr.Tracer().Start(r.Context(), "inner")
		span.End()
	})
	mux.HandleFunc("/healthz", func(http.ResponseWriter, *http.Request) {})
	hs := httptest.NewServer(tr.Handler(mux))
	defer hs.Close()
	callerCtx, caller := tr.Tracer().Start(ctx, "caller")
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, hs.URL+"/v1/events", nil)
	req.Header.Set("traceparent", TraceParent(callerCtx))
	for _, path := range []string{"/v1/events", "/healthz"} {
		req.URL.Path = path
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	caller.End()

	// Shutdown flushes every span to the collector.
	if err := tr.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	spans := recv.Spans()
	var names []string
	for _, s := range spans {
		names = append(names, s.Name+" "+s.Kind)
	}
	t.Logf("spans: %v", names)

	server := one(t, spans, "notify.v1.NotificationService/Publish", "SPAN_KIND_SERVER")
	client := one(t, spans, "notify.v1.NotificationService/Publish", "SPAN_KIND_CLIENT")
	if server.TraceID != client.TraceID || server.ParentSpanID != client.SpanID {
		t.Errorf("the server span %+v does not continue the client's %+v", server, client)
	}
	want := map[string]string{"service.name": "notify-test", "service.version": "v9", "deployment.environment.name": "test"}
	for k, v := range want {
		if server.Resource[k] != v {
			t.Errorf("resource %s = %q, want %q (resource %v)", k, server.Resource[k], v, server.Resource)
		}
	}
	httpSpan := one(t, spans, "POST /v1/events", "SPAN_KIND_SERVER")
	callerSpan := one(t, spans, "caller", "SPAN_KIND_INTERNAL")
	inner := one(t, spans, "inner", "SPAN_KIND_INTERNAL")
	if httpSpan.TraceID != callerSpan.TraceID || httpSpan.ParentSpanID != callerSpan.SpanID {
		t.Errorf("the HTTP span %+v does not continue the caller's %+v", httpSpan, callerSpan)
	}
	if inner.ParentSpanID != httpSpan.SpanID {
		t.Errorf("the handler's span %+v is not the HTTP span's child", inner)
	}
	for _, s := range spans {
		if s.Kind == "SPAN_KIND_SERVER" && (strings.Contains(s.Name, "Health") || strings.Contains(s.Name, "healthz")) {
			t.Errorf("probe traced by the server: %+v", s)
		}
	}
}

// one returns the only span of spans with name and kind.
func one(t *testing.T, spans []otlptest.Span, name, kind string) otlptest.Span {
	t.Helper()
	var found []otlptest.Span
	for _, s := range otlptest.Named(spans, name) {
		if s.Kind == kind {
			found = append(found, s)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%d spans %q of kind %s, want 1", len(found), name, kind)
	}
	return found[0]
}

// grpcCollector is an OTLP/gRPC trace receiver.
type grpcCollector struct {
	collectortrace.UnimplementedTraceServiceServer
	mu    sync.Mutex
	names []string
}

func (c *grpcCollector) Export(_ context.Context, req *collectortrace.ExportTraceServiceRequest) (*collectortrace.ExportTraceServiceResponse, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, rs := range req.ResourceSpans {
		for _, ss := range rs.ScopeSpans {
			for _, s := range ss.Spans {
				c.names = append(c.names, s.Name)
			}
		}
	}
	return &collectortrace.ExportTraceServiceResponse{}, nil
}

// TestExportOTLPGRPC: OTEL_EXPORTER_OTLP_PROTOCOL=grpc exports over
// OTLP/gRPC.
func TestExportOTLPGRPC(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	coll := &grpcCollector{}
	srv := grpc.NewServer()
	collectortrace.RegisterTraceServiceServer(srv, coll)
	var wg sync.WaitGroup
	wg.Go(func() { _ = srv.Serve(ln) })
	defer func() {
		srv.Stop()
		wg.Wait()
	}()
	setEnv(t, map[string]string{
		"OTEL_TRACES_EXPORTER":        "otlp",
		"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
		"OTEL_EXPORTER_OTLP_ENDPOINT": "http://" + ln.Addr().String(),
	})
	ctx := context.Background()
	tr, err := FromEnv(ctx, "v9")
	if err != nil || tr == nil {
		t.Fatalf("FromEnv = %v, %v", tr, err)
	}
	_, span := tr.Tracer().Start(ctx, "over grpc")
	span.End()
	if err := tr.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	coll.mu.Lock()
	defer coll.mu.Unlock()
	if diff := cmp.Diff([]string{"over grpc"}, coll.names); diff != "" {
		t.Errorf("exported (-want +got):\n%s", diff)
	}
}

// TestTraceParentLink: the traceparent of a span names it again as a
// link; no span, no traceparent; a malformed one is an error.
func TestTraceParentLink(t *testing.T) {
	if got := TraceParent(context.Background()); got != "" {
		t.Errorf("TraceParent without a span = %q", got)
	}
	recv := otlptest.NewReceiver(t)
	setEnv(t, map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": recv.Endpoint})
	tr, err := FromEnv(context.Background(), "v9")
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Shutdown(context.Background())
	ctx, span := tr.Tracer().Start(context.Background(), "publish")
	defer span.End()
	tp := TraceParent(ctx)
	if !strings.HasPrefix(tp, "00-"+span.SpanContext().TraceID().String()+"-"+span.SpanContext().SpanID().String()+"-") {
		t.Errorf("TraceParent = %q, span %v", tp, span.SpanContext())
	}
	link, err := Link(tp)
	if err != nil || link.SpanContext.TraceID() != span.SpanContext().TraceID() || link.SpanContext.SpanID() != span.SpanContext().SpanID() {
		t.Errorf("Link(%q) = %v, %v", tp, link, err)
	}
	for _, bad := range []string{"", "00-xyz", "00-00000000000000000000000000000000-0000000000000000-01"} {
		if _, err := Link(bad); !errors.Is(err, ErrTraceParent) {
			t.Errorf("Link(%q) error %v, want ErrTraceParent", bad, err)
		}
	}
}
