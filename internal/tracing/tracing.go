package tracing

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"strings"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	"google.golang.org/grpc/stats"
)

// instrumentation names the tracer of notify's own spans.
const instrumentation = "github.com/maxloyalty/notify"

// Tracing is a tracer provider with the propagator that carries its trace
// context in and out of calls. A nil *Tracing is tracing off: every
// method then returns a no-op (Tracer, ServerHandler...) or does nothing.
type Tracing struct {
	tp   trace.TracerProvider
	prop propagation.TextMapPropagator
	// shutdown flushes and stops the exporters; nil for a provider given
	// to New, which its owner shuts down.
	shutdown func(context.Context) error
}

// New returns a Tracing over tp and prop (nil prop: W3C trace context and
// baggage). The caller keeps tp and shuts it down.
func New(tp trace.TracerProvider, prop propagation.TextMapPropagator) *Tracing {
	if prop == nil {
		prop = propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
	}
	return &Tracing{tp: tp, prop: prop}
}

// FromEnv builds tracing from the standard OpenTelemetry environment
// variables, or returns nil when they leave it off, which they do by
// default:
//
//   - OTEL_SDK_DISABLED=true, or OTEL_TRACES_EXPORTER=none: off.
//   - OTEL_TRACES_EXPORTER: a comma-separated list of "otlp" and
//     "console" (spans as JSON lines on standard output). Unset, tracing
//     is on, with "otlp", only when OTEL_EXPORTER_OTLP_ENDPOINT or
//     OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set (OpenTelemetry's own
//     default is "otlp" always; a node exports nothing unless told where).
//   - OTEL_EXPORTER_OTLP_TRACES_PROTOCOL, else OTEL_EXPORTER_OTLP_PROTOCOL:
//     "http/protobuf" (the default) or "grpc". The exporters read the
//     other OTEL_EXPORTER_OTLP_* variables themselves (endpoint, headers,
//     timeout, compression, certificates).
//   - OTEL_SERVICE_NAME (default "notifyd") and OTEL_RESOURCE_ATTRIBUTES
//     describe the node; service.version is version.
//   - OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG choose the sampler
//     (default parentbased_always_on), OTEL_BSP_* tune the batching; the
//     SDK reads both.
//   - OTEL_PROPAGATORS: a comma-separated list of "tracecontext",
//     "baggage" and "none" (default "tracecontext,baggage").
//
// Anything else in these variables is an error, so that a typo does not
// silently turn tracing off. Call Shutdown to flush the spans at exit.
func FromEnv(ctx context.Context, version string) (*Tracing, error) {
	if strings.EqualFold(strings.TrimSpace(os.Getenv("OTEL_SDK_DISABLED")), "true") {
		return nil, nil
	}
	names := list(os.Getenv("OTEL_TRACES_EXPORTER"))
	if len(names) == 0 && (os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != "") {
		names = []string{"otlp"}
	}
	if len(names) == 0 || slices.Equal(names, []string{"none"}) {
		return nil, nil
	}
	prop, err := propagators(os.Getenv("OTEL_PROPAGATORS"))
	if err != nil {
		return nil, err
	}
	res, err := resource.New(ctx,
		// Later options win: the environment over the defaults.
		resource.WithAttributes(semconv.ServiceName("notifyd"), semconv.ServiceVersion(version)),
		resource.WithTelemetrySDK(),
		resource.WithHost(),
		resource.WithFromEnv(),
	)
	if err != nil {
		return nil, fmt.Errorf("tracing: resource: %w", err)
	}
	opts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res)}
	var exporters []sdktrace.SpanExporter
	for _, name := range names {
		exp, err := exporter(ctx, name)
		if err != nil {
			for _, e := range exporters {
				_ = e.Shutdown(ctx)
			}
			return nil, err
		}
		exporters = append(exporters, exp)
		opts = append(opts, sdktrace.WithBatcher(exp))
	}
	tp := sdktrace.NewTracerProvider(opts...)
	t := New(tp, prop)
	t.shutdown = tp.Shutdown
	return t, nil
}

// list splits a comma-separated variable into its trimmed, lowercase,
// non-empty items.
func list(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.ToLower(strings.TrimSpace(s)); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// exporter returns the span exporter OTEL_TRACES_EXPORTER names.
func exporter(ctx context.Context, name string) (sdktrace.SpanExporter, error) {
	switch name {
	case "otlp":
		protocol := os.Getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
		if protocol == "" {
			protocol = os.Getenv("OTEL_EXPORTER_OTLP_PROTOCOL")
		}
		switch protocol {
		case "", "http/protobuf":
			return otlptracehttp.New(ctx)
		case "grpc":
			return otlptracegrpc.New(ctx)
		}
		return nil, fmt.Errorf("tracing: OTEL_EXPORTER_OTLP_PROTOCOL %q: http/protobuf or grpc", protocol)
	case "console":
		return stdouttrace.New(stdouttrace.WithWriter(os.Stdout))
	}
	return nil, fmt.Errorf("tracing: OTEL_TRACES_EXPORTER %q: otlp, console or none", name)
}

// propagators returns the propagator OTEL_PROPAGATORS names.
func propagators(v string) (propagation.TextMapPropagator, error) {
	names := list(v)
	if len(names) == 0 {
		names = []string{"tracecontext", "baggage"}
	}
	var ps []propagation.TextMapPropagator
	for _, n := range names {
		switch n {
		case "tracecontext":
			ps = append(ps, propagation.TraceContext{})
		case "baggage":
			ps = append(ps, propagation.Baggage{})
		case "none":
		default:
			return nil, fmt.Errorf("tracing: OTEL_PROPAGATORS %q: tracecontext, baggage or none", n)
		}
	}
	return propagation.NewCompositeTextMapPropagator(ps...), nil
}

// LogErrors sends the OpenTelemetry SDK's errors (an exporter that cannot
// reach its collector...) to log. It sets a process-wide handler: only
// notifyd calls it.
func LogErrors(log *slog.Logger) {
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
		log.Warn("tracing", "err", err)
	}))
}

// Shutdown flushes the spans not exported yet and stops the exporters,
// within ctx. Spans started afterwards are dropped.
func (t *Tracing) Shutdown(ctx context.Context) error {
	if t == nil || t.shutdown == nil {
		return nil
	}
	return t.shutdown(ctx)
}

// TracerProvider returns the provider (a no-op one when t is nil).
func (t *Tracing) TracerProvider() trace.TracerProvider {
	if t == nil {
		return noop.NewTracerProvider()
	}
	return t.tp
}

// Tracer returns the tracer of notify's own spans.
func (t *Tracing) Tracer() trace.Tracer {
	return t.TracerProvider().Tracer(instrumentation)
}

// untracedMethod and untracedPath are the gRPC methods and HTTP paths
// that probes, scrapers and tools call every few seconds: spans of them
// would bury the rest.
func untracedMethod(method string) bool {
	return strings.HasPrefix(method, "/grpc.health.v1.") || strings.HasPrefix(method, "/grpc.reflection.")
}

func untracedPath(path string) bool {
	switch path {
	case "/healthz", "/readyz", "/metrics":
		return true
	}
	return false
}

// ServerHandler returns the gRPC stats handler that traces each call a
// server receives (otelgrpc), continuing the trace context the caller
// sent; nil when t is nil. Health checks and reflection are not traced.
func (t *Tracing) ServerHandler() stats.Handler {
	if t == nil {
		return nil
	}
	return otelgrpc.NewServerHandler(
		otelgrpc.WithTracerProvider(t.tp),
		otelgrpc.WithPropagators(t.prop),
		otelgrpc.WithMeterProvider(metricnoop.NewMeterProvider()),
		otelgrpc.WithFilter(func(info *stats.RPCTagInfo) bool { return !untracedMethod(info.FullMethodName) }),
	)
}

// ClientHandler returns the gRPC stats handler that traces each call a
// client makes and sends its trace context along; nil when t is nil.
func (t *Tracing) ClientHandler() stats.Handler {
	if t == nil {
		return nil
	}
	return otelgrpc.NewClientHandler(
		otelgrpc.WithTracerProvider(t.tp),
		otelgrpc.WithPropagators(t.prop),
		otelgrpc.WithMeterProvider(metricnoop.NewMeterProvider()),
	)
}

// Handler wraps h so that each HTTP request is traced (otelhttp),
// continuing the trace context the client sent; h itself when t is nil.
// Probes (/healthz, /readyz) and /metrics are not traced.
func (t *Tracing) Handler(h http.Handler) http.Handler {
	if t == nil {
		return h
	}
	return otelhttp.NewHandler(h, "notifyd",
		otelhttp.WithTracerProvider(t.tp),
		otelhttp.WithPropagators(t.prop),
		otelhttp.WithMeterProvider(metricnoop.NewMeterProvider()),
		otelhttp.WithFilter(func(r *http.Request) bool { return !untracedPath(r.URL.Path) }),
	)
}

// TraceParent returns the W3C traceparent of ctx's span, to be kept with
// work that outlives the call (an event's deliveries), or "" when ctx has
// no valid span.
func TraceParent(ctx context.Context) string {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return ""
	}
	c := propagation.MapCarrier{}
	propagation.TraceContext{}.Inject(ctx, c)
	return c["traceparent"]
}

// ErrTraceParent is returned by Link for a traceparent it cannot read.
var ErrTraceParent = errors.New("tracing: malformed traceparent")

// Link returns a link to the span a traceparent (from TraceParent) names:
// a span of later work links to the call that caused it instead of
// continuing its trace, which may have ended long before.
func Link(traceparent string) (trace.Link, error) {
	ctx := propagation.TraceContext{}.Extract(context.Background(), propagation.MapCarrier{"traceparent": traceparent})
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() {
		return trace.Link{}, ErrTraceParent
	}
	return trace.Link{SpanContext: sc}, nil
}
