package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/maxloyalty/notify/internal/channel/channeltest"
	"github.com/maxloyalty/notify/internal/testenv"
)

// Delivery timings of these tests: a job killed mid-attempt is retried by
// the restarted node once rescueAfter has passed since it started.
const (
	jobTimeout  = 2 * time.Second
	rescueAfter = 3 * time.Second
)

// deliveryArgs configures notifyd with the webhook "ops" at hook (its
// secret in a file) and short waits.
func deliveryArgs(t *testing.T, hook *channeltest.WebhookReceiver, extra ...string) []string {
	t.Helper()
	secrets := filepath.Join(t.TempDir(), "webhook-secrets")
	if err := os.WriteFile(secrets, []byte("# name=secret\nops="+hook.Secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return append([]string{
		"--webhooks", "ops=" + hook.URL(),
		"--webhook-secrets-file", secrets,
		"--delivery-poll-interval", "100ms",
		"--delivery-retry-base", "200ms",
		"--delivery-retry-max", "1s",
		"--delivery-job-timeout", jobTimeout.String(),
		"--delivery-rescue-after", rescueAfter.String(),
	}, extra...)
}

// postgresSchema is testenv.PostgresSchema. It stays as a thin wrapper
// only because schedule_test.go also calls it by this name; new tests call
// testenv.PostgresSchema.
func postgresSchema(t *testing.T) string {
	t.Helper()
	return testenv.PostgresSchema(t)
}

// TestDeliverySIGKILL: notifyd SIGKILLed while webhook deliveries are in
// flight (held, unanswered, by the receiver) and others wait in the queue
// loses none and sends none twice once restarted on the same database.
func TestDeliverySIGKILL(t *testing.T) {
	t.Parallel()
	for _, db := range []string{"sqlite", "postgres"} {
		t.Run(db, func(t *testing.T) {
			t.Parallel()
			ctx := testCtx(t)
			hook := channeltest.NewWebhookReceiver(t, false)
			hook.Hold()
			dir := t.TempDir()
			args := deliveryArgs(t, hook, "--server-id", "kill-"+db)
			if db == "postgres" {
				args = append(args, "--store", postgresSchema(t))
			}
			d := startDaemon(t, dir, args...)
			svc := token(t, serviceClaims)
			const n = 20
			published := map[string]bool{}
			for i := range n {
				id, err := restPublish(ctx, http.DefaultClient, d.httpAddr, svc, pointsBody("kill-"+strconv.Itoa(i), int64(i+1)))
				if err != nil {
					t.Fatalf("publish %d: %v", i, err)
				}
				published[id] = true
			}
			// The webhook queue's 10 workers are all in an attempt.
			testenv.Eventually(t, startTimeout, "10 deliveries in flight", func() bool { return hook.Held() == 10 })
			d.kill(t)
			d.requireKilled(t)
			testenv.Eventually(t, startTimeout, "the held requests to end with their client", func() bool { return hook.Held() == 0 })
			hook.Release()
			if len(hook.Delivered()) != 0 {
				t.Fatalf("delivered before the kill: %v", hook.Delivered())
			}
			// The attempts cut by the kill are rescued once rescueAfter has
			// passed since they started. River's rescuer runs on the
			// leading node when it is elected, then every half minute; the
			// restarted node is elected only once the killed one's lease
			// has expired, which is later than rescueAfter after the kill,
			// so its first run finds them all. The restart need not wait:
			// the test waits for the deliveries themselves.
			d2 := startDaemon(t, dir, args...)
			testenv.Eventually(t, 2*startTimeout, "every event delivered after the restart", func() bool { return len(hook.Delivered()) >= n })
			// A second send would come from a job not yet finished (retried
			// or rescued again): once the queue holds none, none can come.
			testenv.Eventually(t, startTimeout, "no unfinished delivery job", func() bool { return unfinishedJobs(t, d2.httpAddr) == 0 })
			got := hook.Delivered()
			for id := range published {
				if got[id] != 1 {
					t.Errorf("event %s delivered %d times, want once", id, got[id])
				}
			}
			if len(got) != n {
				t.Errorf("%d webhook ids delivered, want the %d events: %v", len(got), n, got)
			}
		})
	}
}

// sentCounter reads notify_delivery_sent_total{channel="webhook"} from a
// notifyd's /metrics.
func sentCounter(t *testing.T, httpAddr string) int {
	t.Helper()
	resp, err := http.Get("http://" + httpAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^notify_delivery_sent_total\{channel="webhook"\} (\d+)`).FindSubmatch(b)
	if m == nil {
		t.Fatalf("no notify_delivery_sent_total for webhook in /metrics of %s", httpAddr)
	}
	v, _ := strconv.Atoi(string(m[1]))
	return v
}

// unfinishedJobs sums notify_delivery_queue_jobs (every channel and
// state: available, scheduled, retryable, running) from a notifyd's
// /metrics; the gauges are read from the database at each scrape. It
// fails t when /metrics has none, so that a scrape that could not read
// the queue never passes for an empty one.
func unfinishedJobs(t *testing.T, httpAddr string) int {
	t.Helper()
	resp, err := http.Get("http://" + httpAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	ms := regexp.MustCompile(`(?m)^notify_delivery_queue_jobs\{[^}]*\} (\d+)$`).FindAllSubmatch(b, -1)
	if len(ms) == 0 {
		t.Fatalf("no notify_delivery_queue_jobs in /metrics of %s", httpAddr)
	}
	sum := 0
	for _, m := range ms {
		v, _ := strconv.Atoi(string(m[1]))
		sum += v
	}
	return sum
}

// TestDeliveryTwoNodesPostgres: two notifyd on one PostgreSQL database
// share the delivery work. Each takes one webhook delivery at a time, so
// two held at once means both work; every event is then delivered once.
func TestDeliveryTwoNodesPostgres(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	dsn := postgresSchema(t)
	hook := channeltest.NewWebhookReceiver(t, false)
	hook.Hold()
	var nodes []*daemon
	for i := range 2 {
		nodes = append(nodes, startDaemon(t, t.TempDir(), deliveryArgs(t, hook,
			"--store", dsn, "--server-id", fmt.Sprintf("pair-%d", i), "--delivery-workers", "webhook=1")...))
	}
	svc := token(t, serviceClaims)
	const n = 10
	for i := range n {
		if _, err := restPublish(ctx, http.DefaultClient, nodes[0].httpAddr, svc, pointsBody("pair-"+strconv.Itoa(i), 1)); err != nil {
			t.Fatal(err)
		}
	}
	testenv.Eventually(t, startTimeout, "a delivery in flight on each node", func() bool { return hook.Held() == 2 })
	hook.Release()
	testenv.Eventually(t, startTimeout, "every event delivered", func() bool { return len(hook.Delivered()) == n })
	for id, k := range hook.Delivered() {
		if k != 1 {
			t.Errorf("event %s delivered %d times", id, k)
		}
	}
	// A node counts a delivery once it has recorded the receiver's answer.
	var a, b int
	testenv.Eventually(t, startTimeout, "both nodes to count every delivery", func() bool {
		a, b = sentCounter(t, nodes[0].httpAddr), sentCounter(t, nodes[1].httpAddr)
		return a+b == n
	})
	if a == 0 || b == 0 {
		t.Errorf("sent per node: %d and %d, want both working and %d in all", a, b, n)
	}
}
