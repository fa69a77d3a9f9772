package node_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	mwlogging "github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/logging"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	otelcodes "go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	oteltrace "go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"

	notifyv1 "github.com/maxloyalty/notify/gen/notify/v1"
	"github.com/maxloyalty/notify/internal/node"
)

// TestInterceptorContract: a standard stream interceptor (go-grpc-middleware's
// logging) and stats handler (otelgrpc) see a Subscribe stream end when it
// really ends, with the code its client receives, on both native
// transports: nothing is recorded while the stream is live (past a
// heartbeat), and the end is recorded however the stream ends.
func TestInterceptorContract(t *testing.T) {
	t.Parallel()
	endings := []struct {
		name string
		code codes.Code
		// mutate adjusts the node; tok is the subscriber's token.
		mutate func(*node.Config)
		tok    func(t *testing.T) string
		// slow: the client stops reading after the heartbeat and events
		// are published until the stream is cut.
		slow bool
		// end ends the stream (nil: it ends by itself).
		end func(n *testNode, cancel context.CancelFunc)
	}{
		{
			name: "client cancel", code: codes.Canceled,
			end: func(_ *testNode, cancel context.CancelFunc) { cancel() },
		},
		{
			name: "token expiry", code: codes.Unauthenticated,
			// No leeway: the stream ends at the token's exp, 2 to 3 s
			// from now (exp has one-second precision).
			mutate: func(c *node.Config) { c.JWTLeeway = -1 },
			tok:    func(t *testing.T) string { return mintWith(t, testSecret, guestClaims, 3*time.Second) },
		},
		{
			name: "node shutdown", code: codes.Unavailable,
			end: func(n *testNode, _ context.CancelFunc) { n.cancel() },
		},
		{
			name: "slow consumer", code: codes.ResourceExhausted,
			mutate: func(c *node.Config) { c.QueueBytes = 4 << 10 },
			slow:   true,
		},
	}
	for _, transport := range []string{"grpc-go", "wire"} {
		t.Run(transport, func(t *testing.T) {
			t.Parallel()
			for _, e := range endings {
				t.Run(e.name, func(t *testing.T) {
					t.Parallel()
					rec := newEndRecorder()
					n := startNode(t, func(c *node.Config) {
						c.GRPCTransport = transport
						c.HeartbeatInterval = 100 * time.Millisecond
						c.ReconnectDelayMin, c.ReconnectDelayMax = 10*time.Millisecond, 20*time.Millisecond
						c.ShutdownDrain = 5 * time.Second
						c.StreamInterceptors = []grpc.StreamServerInterceptor{
							mwlogging.StreamServerInterceptor(rec.logger(), mwlogging.WithLogOnEvents(mwlogging.FinishCall)),
						}
						c.StatsHandlers = []stats.Handler{otelgrpc.NewServerHandler(otelgrpc.WithTracerProvider(rec.tp))}
						if e.mutate != nil {
							e.mutate(c)
						}
					})
					ctx := testCtx(t)
					var opts []grpc.DialOption
					if e.slow {
						// Fixed 64 KiB windows, so that a stream not read
						// blocks the server soon.
						opts = append(opts, grpc.WithInitialWindowSize(64<<10), grpc.WithInitialConnWindowSize(64<<10))
					}
					sc := dial(t, n.GRPCAddr(), opts...)
					pub := dial(t, n.GRPCAddr())
					tok := mint(t, guestClaims)
					if e.tok != nil {
						tok = e.tok(t)
					}
					subCtx, cancel := context.WithCancel(ctx)
					defer cancel()
					s, _ := subscribe(t, subCtx, sc, tok, &notifyv1.SubscribeRequest{Rooms: []string{"guest:g1"}})
					publish(t, ctx, pub, pointsReq(pointsAdded("g1", "r1", 1), "guest:g1"))
					s.next(t)
					waitHeartbeat(t, s)

					if got := rec.ends(); len(got) != 0 {
						t.Fatalf("the logging interceptor recorded the live stream's end, code %s", got[0].code)
					}
					if got := rec.spans(); len(got) != 0 {
						t.Fatalf("a Subscribe server span ended while the stream is live, status %v", got[0].Status)
					}

					started := time.Now()
					var streamErr error
					switch {
					case e.slow:
						streamErr = floodUntilCut(t, ctx, pub, s, rec)
					default:
						if e.end != nil {
							e.end(n, cancel)
						}
						streamErr = drain(s)
					}
					if got := status.Code(streamErr); got != e.code {
						t.Fatalf("client's stream ended with %v (%v), want %v", got, streamErr, e.code)
					}
					clientStatus := status.Convert(streamErr)

					end := rec.waitEnd(t)
					if end.code != e.code.String() {
						t.Errorf("logging interceptor recorded grpc.code %q, the client received %v", end.code, e.code)
					}
					if end.at.Before(started) {
						t.Errorf("logging interceptor recorded the end %v before the stream was ended", started.Sub(end.at))
					}

					span, ok := rec.waitSpan()
					if !ok {
						t.Fatalf("no Subscribe server span ended (otelgrpc on %s)", transport)
					}
					if span.EndTime.Before(started) {
						t.Errorf("the server span ended %v before the stream was ended", started.Sub(span.EndTime))
					}
					wantSpan, wantDesc := otelcodes.Unset, ""
					if e.code == codes.Unavailable {
						// otelgrpc marks a server span failed for server-side
						// codes only, with the status message.
						wantSpan, wantDesc = otelcodes.Error, clientStatus.Message()
					}
					if span.Status.Code != wantSpan || span.Status.Description != wantDesc {
						t.Errorf("span status %v %q, want %v %q", span.Status.Code, span.Status.Description, wantSpan, wantDesc)
					}
					if got, want := spanCode(span), otelCodeName(e.code); got != want {
						t.Errorf("span rpc.response.status_code %q, want %q", got, want)
					}
				})
			}
		})
	}
}

// waitHeartbeat reads until a heartbeat arrives: the stream has then been
// live for a heartbeat interval.
func waitHeartbeat(t *testing.T, s *stream) {
	t.Helper()
	for range 100 {
		m, err := s.Recv()
		if err != nil {
			t.Fatalf("Recv while waiting for a heartbeat: %v", err)
		}
		if m.GetHeartbeat() != nil {
			return
		}
	}
	t.Fatal("no heartbeat in 100 messages")
}

// drain reads s until it ends and returns its error.
func drain(s *stream) error {
	for range 100000 {
		if _, err := s.Recv(); err != nil {
			return err
		}
	}
	return errors.New("the stream did not end in 100000 messages")
}

// floodUntilCut publishes 1 KB events to guest:g1 while s is not read,
// until the server records the stream's end (bounded in count), then
// reads s to its end.
func floodUntilCut(t *testing.T, ctx context.Context, pub notifyv1.NotificationServiceClient, s *stream, rec *endRecorder) error {
	t.Helper()
	svc := withToken(ctx, mint(t, serviceClaims))
	desc := strings.Repeat("d", 1000)
	for i := range 2000 {
		p := pointsAdded("g1", "r1", int64(i+2))
		p.Description = desc
		if _, err := pub.Publish(svc, pointsReq(p, "guest:g1")); err != nil {
			t.Fatalf("publish %d: %v", i+1, err)
		}
		if len(rec.ends()) > 0 {
			break
		}
	}
	return drain(s)
}

// endRecorder records what a standard logging interceptor and an
// OpenTelemetry stats handler see of Subscribe calls.
type endRecorder struct {
	exp *signalExporter
	tp  *sdktrace.TracerProvider

	mu       sync.Mutex
	finished []loggedEnd
	logged   chan struct{} // a token when an end was logged
}

// signalExporter is an in-memory exporter that leaves a token in ended
// whenever it has taken spans.
type signalExporter struct {
	*tracetest.InMemoryExporter
	ended chan struct{}
}

func (e *signalExporter) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	err := e.InMemoryExporter.ExportSpans(ctx, spans)
	select {
	case e.ended <- struct{}{}:
	default: // a token is there already
	}
	return err
}

// loggedEnd is one "finished call" log entry of a Subscribe.
type loggedEnd struct {
	code string
	at   time.Time
}

func newEndRecorder() *endRecorder {
	exp := &signalExporter{InMemoryExporter: tracetest.NewInMemoryExporter(), ended: make(chan struct{}, 1)}
	return &endRecorder{exp: exp, tp: sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp)), logged: make(chan struct{}, 1)}
}

// logger is go-grpc-middleware's logger, keeping Subscribe's ends.
func (r *endRecorder) logger() mwlogging.Logger {
	return mwlogging.LoggerFunc(func(_ context.Context, _ mwlogging.Level, msg string, fields ...any) {
		if msg != "finished call" {
			return
		}
		f := make(map[string]any, len(fields)/2)
		for i := 0; i+1 < len(fields); i += 2 {
			if k, ok := fields[i].(string); ok {
				f[k] = fields[i+1]
			}
		}
		if f[mwlogging.MethodFieldKey] != "Subscribe" {
			return
		}
		code, _ := f["grpc.code"].(string)
		r.mu.Lock()
		r.finished = append(r.finished, loggedEnd{code: code, at: time.Now()})
		r.mu.Unlock()
		select {
		case r.logged <- struct{}{}:
		default: // a token is there already
		}
	})
}

func (r *endRecorder) ends() []loggedEnd {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]loggedEnd(nil), r.finished...)
}

// spans returns the ended Subscribe server spans.
func (r *endRecorder) spans() []tracetest.SpanStub {
	var out []tracetest.SpanStub
	for _, s := range r.exp.GetSpans() {
		if s.SpanKind == oteltrace.SpanKindServer && strings.HasSuffix(s.Name, "/Subscribe") {
			out = append(out, s)
		}
	}
	return out
}

// waitEnd waits for the one Subscribe end the interceptor logs.
func (r *endRecorder) waitEnd(t *testing.T) loggedEnd {
	t.Helper()
	select {
	case <-r.logged:
	case <-time.After(testTimeout):
		t.Fatalf("logging interceptor recorded no end within %v of the client's", testTimeout)
	}
	got := r.ends()
	if len(got) != 1 {
		t.Fatalf("logging interceptor recorded %d ends of one stream", len(got))
	}
	return got[0]
}

// waitSpan waits a little for the Subscribe server span: it ends as the
// status is written, about when the client reads it.
func (r *endRecorder) waitSpan() (tracetest.SpanStub, bool) {
	timeout := time.After(2 * time.Second)
	for {
		if got := r.spans(); len(got) > 0 {
			return got[0], true
		}
		select {
		case <-r.exp.ended:
		case <-timeout:
			return tracetest.SpanStub{}, false
		}
	}
}

// spanCode is the span's rpc.response.status_code attribute.
func spanCode(s tracetest.SpanStub) string {
	for _, a := range s.Attributes {
		if a.Key == "rpc.response.status_code" {
			return a.Value.AsString()
		}
	}
	return ""
}

// otelCodeName is a gRPC code as OpenTelemetry's semantic conventions
// spell it.
func otelCodeName(c codes.Code) string {
	switch c {
	case codes.Canceled:
		return "CANCELLED"
	case codes.ResourceExhausted:
		return "RESOURCE_EXHAUSTED"
	default:
		return strings.ToUpper(c.String())
	}
}
