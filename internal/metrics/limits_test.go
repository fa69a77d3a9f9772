package metrics_test

import (
	"io"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/maxloyalty/notify/internal/metrics"
)

// TestLimitSeriesFromStart: every limit's refusal counter is exposed at 0
// before its first refusal, connections refused on accept included.
func TestLimitSeriesFromStart(t *testing.T) {
	m := metrics.New("test", "")
	body := scrapeText(t, m)
	for _, l := range metrics.Limits() {
		if want := `notify_limit_rejections_total{limit="` + l + `"} 0`; !strings.Contains(body, want) {
			t.Errorf("no %s before any refusal", want)
		}
	}
	m.LimitRejected("conn_rate")
	if want := `notify_limit_rejections_total{limit="conn_rate"} 1`; !strings.Contains(scrapeText(t, m), want) {
		t.Errorf("no %s after a refusal", want)
	}
}

func scrapeText(t *testing.T, m *metrics.Metrics) string {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	b, err := io.ReadAll(rec.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestErrorSeriesFromStart: the broker and store error counters are
// exposed at 0 for every op before the first error, so that an alert on
// their rate fires on the first one.
func TestErrorSeriesFromStart(t *testing.T) {
	m := metrics.New("test", "")
	body := scrapeText(t, m)
	for _, op := range metrics.BrokerOps() {
		if want := `notify_broker_errors_total{op="` + op + `"} 0`; !strings.Contains(body, want) {
			t.Errorf("no %s before any error", want)
		}
	}
	for _, op := range metrics.StoreOps() {
		if want := `notify_store_errors_total{op="` + op + `"} 0`; !strings.Contains(body, want) {
			t.Errorf("no %s before any error", want)
		}
	}
}
