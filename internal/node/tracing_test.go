package node_test

import (
	"bufio"
	"context"
	"net/http"
	"strings"
	"testing"

	"google.golang.org/grpc/metadata"

	notifyv1 "github.com/maxloyalty/notify/gen/notify/v1"
	"github.com/maxloyalty/notify/internal/node"
	"github.com/maxloyalty/notify/internal/testenv"
	"github.com/maxloyalty/notify/internal/tracing"
	"github.com/maxloyalty/notify/internal/tracing/otlptest"
)

// caller is a traced client's span: its trace and span ids, which it
// sends as traceparent.
type caller struct{ trace, span string }

func (c caller) traceparent() string { return "00-" + c.trace + "-" + c.span + "-01" }

// tracingFromEnv builds tracing from the OTEL_* environment, pointed at a
// local OTLP/HTTP collector.
func tracingFromEnv(t *testing.T) (*tracing.Tracing, *otlptest.Receiver) {
	t.Helper()
	recv := otlptest.NewReceiver(t)
	for _, k := range []string{"OTEL_SDK_DISABLED", "OTEL_TRACES_EXPORTER", "OTEL_PROPAGATORS", "OTEL_EXPORTER_OTLP_PROTOCOL",
		"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_TRACES_SAMPLER", "OTEL_RESOURCE_ATTRIBUTES"} {
		t.Setenv(k, "")
	}
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", recv.Endpoint)
	t.Setenv("OTEL_SERVICE_NAME", "notifyd-test")
	tr, err := tracing.FromEnv(context.Background(), node.Version)
	if err != nil || tr == nil {
		t.Fatalf("tracing.FromEnv = %v, %v", tr, err)
	}
	t.Cleanup(func() { _ = tr.Shutdown(context.Background()) })
	return tr, recv
}

// tracedNode starts a node whose tracing is built from the OTEL_*
// environment, pointed at a local OTLP/HTTP collector.
func tracedNode(t *testing.T, transport string) (*testNode, *tracing.Tracing, *otlptest.Receiver) {
	t.Helper()
	tr, recv := tracingFromEnv(t)
	tn := startNode(t, func(c *node.Config) {
		c.Tracing = tr
		c.GRPCTransport = transport
	})
	return tn, tr, recv
}

// TestTracing: with tracing on, a publish over the native port (either
// transport) and over REST continues the trace its caller sent, with the
// broker step and the inbox write as children of the call's span; a REST
// stream's gRPC call continues its HTTP request's trace; probes are not
// traced; spans are described as OTEL_SERVICE_NAME says.
func TestTracing(t *testing.T) {
	for _, transport := range []string{"wire", "grpc-go"} {
		t.Run(transport, func(t *testing.T) {
			tn, tr, recv := tracedNode(t, transport)
			ctx := testCtx(t)
			svc := mint(t, serviceClaims)
			native := caller{"0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"}
			rest := caller{"4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"}
			stream := caller{"5cf92f3577b34da6a3ce929d0e0e4736", "11f067aa0ba902b7"}

			// Native gRPC: the client's trace context in its metadata.
			c := dial(t, tn.GRPCAddr())
			nctx := metadata.AppendToOutgoingContext(ctx, "traceparent", native.traceparent())
			publish(t, nctx, c, pointsReq(pointsAdded("g1", "r1", 5)))

			// REST: the same in the traceparent header.
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+tn.HTTPAddr()+"/v1/events",
				strings.NewReader(`{"pointsAdded":{"guestId":"g1","restaurantId":"r1","amount":7,"newBalance":7}}`))
			req.Header.Set("Authorization", "Bearer "+svc)
			req.Header.Set("traceparent", rest.traceparent())
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("REST publish: %s", resp.Status)
			}

			// A REST stream, read until Connected, then closed.
			sctx, cancel := context.WithCancel(ctx)
			req, _ = http.NewRequestWithContext(sctx, http.MethodGet, "http://"+tn.HTTPAddr()+"/v1/subscribe?rooms=guest:g1", nil)
			req.Header.Set("Authorization", "Bearer "+svc)
			req.Header.Set("traceparent", stream.traceparent())
			resp, err = http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := bufio.NewReader(resp.Body).ReadString('\n'); err != nil {
				t.Fatalf("REST stream: %v", err)
			}
			cancel()
			resp.Body.Close()

			// Every span has ended once the node has stopped; Shutdown
			// exports them.
			if err := tn.stop(); err != nil {
				t.Fatal(err)
			}
			if err := tr.Shutdown(context.Background()); err != nil {
				t.Fatal(err)
			}
			spans := recv.Spans()
			for _, s := range spans {
				t.Logf("%s %s %s parent %s", s.TraceID, s.Kind, s.Name, s.ParentSpanID)
				if s.Resource["service.name"] != "notifyd-test" {
					t.Errorf("span %s: service.name %q", s.Name, s.Resource["service.name"])
				}
				if strings.Contains(s.Name, "Health") || strings.Contains(s.Name, "readyz") || strings.Contains(s.Name, "healthz") {
					t.Errorf("a probe is traced: %s", s.Name)
				}
			}

			// Native: the RPC's span is the caller's child, and the broker
			// step and the inbox write are the RPC's.
			rpc := onlySpan(t, spans, func(s otlptest.Span) bool {
				return s.TraceID == native.trace && s.Name == "notify.v1.NotificationService/Publish" && s.Kind == "SPAN_KIND_SERVER"
			})
			if rpc.ParentSpanID != native.span {
				t.Errorf("native publish span's parent %s, want the caller's %s", rpc.ParentSpanID, native.span)
			}
			for _, step := range []string{"broker.Publish", "inbox.Insert"} {
				s := onlySpan(t, spans, func(s otlptest.Span) bool { return s.TraceID == native.trace && s.Name == step })
				if s.ParentSpanID != rpc.SpanID {
					t.Errorf("native %s's parent %s, want the RPC's %s", step, s.ParentSpanID, rpc.SpanID)
				}
				if s.Attributes["notify.event_id"] == "" {
					t.Errorf("native %s has no notify.event_id: %v", step, s.Attributes)
				}
			}

			// REST: the HTTP span is the caller's child; the publish steps
			// are the HTTP span's (the gateway calls the service in
			// process).
			httpSpan := onlySpan(t, spans, func(s otlptest.Span) bool { return s.TraceID == rest.trace && s.Kind == "SPAN_KIND_SERVER" })
			if httpSpan.ParentSpanID != rest.span || !strings.HasPrefix(httpSpan.Name, "POST") {
				t.Errorf("REST span %s with parent %s, want a POST span child of %s", httpSpan.Name, httpSpan.ParentSpanID, rest.span)
			}
			for _, step := range []string{"broker.Publish", "inbox.Insert"} {
				s := onlySpan(t, spans, func(s otlptest.Span) bool { return s.TraceID == rest.trace && s.Name == step })
				if s.ParentSpanID != httpSpan.SpanID {
					t.Errorf("REST %s's parent %s, want the HTTP span %s", step, s.ParentSpanID, httpSpan.SpanID)
				}
			}

			// The REST stream: HTTP span, then the in-process call's client
			// and server spans, all in the caller's trace.
			onlySpan(t, spans, func(s otlptest.Span) bool {
				return s.TraceID == stream.trace && s.Kind == "SPAN_KIND_SERVER" && s.ParentSpanID == stream.span
			})
			onlySpan(t, spans, func(s otlptest.Span) bool {
				return s.TraceID == stream.trace && s.Kind == "SPAN_KIND_SERVER" && s.Name == "notify.v1.NotificationService/Subscribe"
			})
		})
	}
}

// TestTracingDeliveries: the span of an event webhook's delivery is the
// root of a trace of its own, linked to the publish's inbox write, in the
// trace the publisher sent.
func TestTracingDeliveries(t *testing.T) {
	tr, recv := tracingFromEnv(t)
	e := startDeliveryNode(t, func(c *node.Config) { c.Tracing = tr })
	ctx := deliveryCtx(t)
	publisher := caller{"6cf92f3577b34da6a3ce929d0e0e4736", "22f067aa0ba902b7"}
	pctx := metadata.AppendToOutgoingContext(withToken(ctx, mint(t, serviceClaims)), "traceparent", publisher.traceparent())
	resp, err := e.pub.Publish(pctx, &notifyv1.PublishRequest{Payload: &notifyv1.PublishRequest_RestaurantStatusChanged{
		RestaurantStatusChanged: &notifyv1.RestaurantStatusChanged{RestaurantId: "r1", Status: notifyv1.RestaurantStatus_RESTAURANT_STATUS_ACTIVE},
	}})
	if err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, deliveryTimeout/2, "the event's webhook", func() bool {
		for _, d := range e.hook.Deliveries() {
			if d.ID == resp.EventId {
				return true
			}
		}
		return false
	})
	if err := e.tn.stop(); err != nil {
		t.Fatal(err)
	}
	if err := tr.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	spans := recv.Spans()
	insert := onlySpan(t, spans, func(s otlptest.Span) bool { return s.TraceID == publisher.trace && s.Name == "inbox.Insert" })
	hook := onlySpan(t, spans, func(s otlptest.Span) bool {
		return s.Name == "delivery webhook" && s.Attributes["notify.event_id"] == resp.EventId
	})
	want := otlptest.Link{TraceID: publisher.trace, SpanID: insert.SpanID}
	if len(hook.Links) != 1 || hook.Links[0] != want || hook.TraceID == publisher.trace {
		t.Errorf("webhook span in trace %s with links %v, want its own trace linked to %v", hook.TraceID, hook.Links, want)
	}
}

// TestTracingOff: a node without tracing serves as before (every other
// test runs so); FromEnv with no OTEL_* variable set leaves it off.
func TestTracingOff(t *testing.T) {
	for _, k := range []string{"OTEL_SDK_DISABLED", "OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"} {
		t.Setenv(k, "")
	}
	tr, err := tracing.FromEnv(context.Background(), node.Version)
	if tr != nil || err != nil {
		t.Fatalf("FromEnv with no OTEL_* set = %v, %v; want off", tr, err)
	}
	tn := startNode(t, func(c *node.Config) { c.Tracing = tr })
	ctx := testCtx(t)
	publish(t, ctx, dial(t, tn.GRPCAddr()), pointsReq(pointsAdded("g1", "r1", 5)))
	if err := tn.stop(); err != nil {
		t.Fatal(err)
	}
}

// onlySpan returns the one span that match says yes of.
func onlySpan(t *testing.T, spans []otlptest.Span, match func(otlptest.Span) bool) otlptest.Span {
	t.Helper()
	var found []otlptest.Span
	for _, s := range spans {
		if match(s) {
			found = append(found, s)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%d matching spans, want 1: %+v", len(found), found)
	}
	return found[0]
}
