package delivery

import (
	"context"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/maxloyalty/notify/internal/broker"
	"github.com/maxloyalty/notify/internal/channel"
	"github.com/maxloyalty/notify/internal/channel/channeltest"
	"github.com/maxloyalty/notify/internal/hub"
	"github.com/maxloyalty/notify/internal/store"
	"github.com/maxloyalty/notify/internal/testenv"
	"github.com/maxloyalty/notify/internal/tracing"
	"github.com/maxloyalty/notify/internal/tracing/otlptest"
)

// TestDeliverySpansLinkToThePublish: with a tracer, each attempt of a
// delivery (web push) and of an event webhook is a span of its own trace,
// linked to the span of the publish that queued it, as a local OTLP/HTTP
// collector receives them.
func TestDeliverySpansLinkToThePublish(t *testing.T) {
	recv := otlptest.NewReceiver(t)
	for _, k := range []string{"OTEL_SDK_DISABLED", "OTEL_TRACES_EXPORTER", "OTEL_PROPAGATORS", "OTEL_EXPORTER_OTLP_PROTOCOL",
		"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_TRACES_SAMPLER", "OTEL_RESOURCE_ATTRIBUTES", "OTEL_SERVICE_NAME"} {
		t.Setenv(k, "")
	}
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", recv.Endpoint)
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "50") // ms: export soon after each span ends
	tr, err := tracing.FromEnv(context.Background(), "test")
	if err != nil || tr == nil {
		t.Fatalf("FromEnv = %v, %v", tr, err)
	}
	defer tr.Shutdown(context.Background())

	st := openSQLite(t)
	ps, wp, keys := webPush(t)
	hook := channeltest.NewWebhookReceiver(t, true)
	wh, err := channel.NewWebhook(channel.WebhookConfig{RootCAs: hook.CertPool()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { wh.Close() })
	cfg := testConfig(t)
	cfg.Senders = []channel.Sender{wp}
	cfg.Webhook = wh
	cfg.Webhooks = []Webhook{{Name: "ops", URL: hook.URL(), Secret: channel.Secret(hook.Secret), Events: true}}
	cfg.Policy = atOnce
	cfg.Tracer = tr.Tracer()
	q := startQueue(t, cfg, st)
	registerPush(t, st, ps, keys, "g1")

	// The publish, traced: its traceparent travels with the jobs.
	ctx, publishSpan := tr.Tracer().Start(t.Context(), "publish")
	ev := pointsAdded("g1", 9)
	data, err := proto.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	const room = "guest:g1"
	row := hub.EncodeEvent(broker.Message{Room: room, Offset: 1, Epoch: "e1", Data: data})
	pub := Publication{EventID: ev.Id, Key: ev.Id, Type: "points_added", Data: data, Time: time.Now(),
		Rooms: []Room{{Name: room, Offset: 1, Epoch: "e1"}}, TraceParent: tracing.TraceParent(ctx)}
	err = st.InsertWith(ctx, []store.NewItem{{Owner: "g1", EventID: ev.Id, EventType: "points_added", Event: row}},
		func(ctx context.Context, tx *store.Tx, inserted []bool) error {
			p := pub
			if inserted[0] {
				p.Owners = []Owner{{ID: "g1", Event: row}}
			}
			return q.Enqueue(ctx, tx, p)
		})
	if err != nil {
		t.Fatal(err)
	}
	publishSpan.End()
	testenv.Eventually(t, 10*time.Second, "the push", func() bool { return len(ps.Received()) == 1 })
	testenv.Eventually(t, 10*time.Second, "the event webhook", func() bool { return len(hook.Delivered()) >= 1 })

	want := otlptest.Link{TraceID: publishSpan.SpanContext().TraceID().String(), SpanID: publishSpan.SpanContext().SpanID().String()}
	spans, ok := recv.Wait(10*time.Second, func(spans []otlptest.Span) bool {
		return len(otlptest.Named(spans, "delivery webpush")) > 0 && len(otlptest.Named(spans, "delivery webhook")) > 0
	})
	if !ok {
		// The batch may not be due yet: flush it.
		if err := tr.Shutdown(context.Background()); err != nil {
			t.Fatal(err)
		}
		spans = recv.Spans()
	}
	for _, name := range []string{"delivery webpush", "delivery webhook"} {
		found := otlptest.Named(spans, name)
		if len(found) == 0 {
			t.Errorf("no %q span among %d", name, len(spans))
			continue
		}
		s := found[0]
		if len(s.Links) != 1 || s.Links[0] != want {
			t.Errorf("%s links %v, want the publish %v", name, s.Links, want)
		}
		if s.TraceID == want.TraceID || s.ParentSpanID != "" {
			t.Errorf("%s is in the publish's trace (%s, parent %q), want a root of its own", name, s.TraceID, s.ParentSpanID)
		}
		if s.Kind != "SPAN_KIND_CONSUMER" || s.Attributes["notify.event_id"] != ev.Id || s.Attributes["notify.attempt"] == "" {
			t.Errorf("%s: kind %s, attributes %v", name, s.Kind, s.Attributes)
		}
	}
}
