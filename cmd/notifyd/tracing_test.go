package main

import (
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/maxloyalty/notify/internal/tracing/otlptest"
)

// TestTracingFromEnv: notifyd takes its tracing from the OTEL_* variables
// alone, and exports the spans of its last calls when it stops: a REST
// publish continues the trace its caller sent, described by
// OTEL_SERVICE_NAME, at a local OTLP/HTTP collector.
func TestTracingFromEnv(t *testing.T) {
	// Not parallel: the child inherits these variables.
	recv := otlptest.NewReceiver(t)
	for _, k := range []string{"OTEL_SDK_DISABLED", "OTEL_TRACES_EXPORTER", "OTEL_PROPAGATORS", "OTEL_EXPORTER_OTLP_PROTOCOL",
		"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_TRACES_SAMPLER", "OTEL_RESOURCE_ATTRIBUTES"} {
		t.Setenv(k, "")
	}
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", recv.Endpoint)
	t.Setenv("OTEL_SERVICE_NAME", "notifyd-e2e")
	ctx := testCtx(t)
	d := startDaemon(t, t.TempDir())

	const traceID, parent = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+d.httpAddr+"/v1/events", strings.NewReader(pointsBody("tx1", 5)))
	req.Header.Set("Authorization", "Bearer "+token(t, serviceClaims))
	req.Header.Set("traceparent", "00-"+traceID+"-"+parent+"-01")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("publish: %s", resp.Status)
	}

	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-d.done:
	case <-time.After(startTimeout):
		t.Fatalf("notifyd still running %v after SIGTERM", startTimeout)
	}
	spans := recv.Spans()
	var httpSpan, insert bool
	for _, s := range spans {
		if s.TraceID != traceID {
			continue
		}
		if s.Resource["service.name"] != "notifyd-e2e" {
			t.Errorf("span %s: service.name %q, want notifyd-e2e", s.Name, s.Resource["service.name"])
		}
		httpSpan = httpSpan || s.Kind == "SPAN_KIND_SERVER" && s.ParentSpanID == parent
		insert = insert || s.Name == "inbox.Insert"
	}
	if !httpSpan || !insert {
		t.Errorf("spans of the caller's trace: HTTP span %v, inbox.Insert %v; want both (all spans: %+v)", httpSpan, insert, spans)
	}
}
