package node_test

// Checks of deploy/: the Prometheus alerting rules and the Grafana
// dashboard may only name metrics, label values and labels that a running
// notifyd exposes, and the dashboard must be importable as it is. Reading
// and checking their expressions is in deploy_promql_test.go; the real
// Prometheus and the faults the rules are tested against, in
// deploy_prometheus_test.go.

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	notifyv1 "github.com/maxloyalty/notify/gen/notify/v1"
	"github.com/maxloyalty/notify/internal/auth"
	"github.com/maxloyalty/notify/internal/node"
	"github.com/maxloyalty/notify/internal/testenv"
)

// Paths of the files checked, from this package's directory.
const (
	deployAlerts    = "../../deploy/prometheus/alerts.yaml"
	deployDashboard = "../../deploy/grafana/notify.json"
)

// TestDeployMetricNames runs a node on Redis and SQLite, makes it publish,
// deliver, and fail a broker and an inbox write (so that the error
// counters, which have no series before their first error, exist), scrapes
// /metrics, and checks every expression of the alerting rules and of the
// dashboard against it. With a real Prometheus scraping the node (Debian's
// prometheus; required in CI), the failures must start their alerts, every
// rule must evaluate without error, and every dashboard query must return
// data.
func TestDeployMetricNames(t *testing.T) {
	exprs := append(deployRuleExprs(t, deployAlerts), deployDashboardExprs(t, deployDashboard)...)
	redisURL := testenv.Service(t, testenv.RedisURL)

	u, err := url.Parse(redisURL)
	if err != nil {
		t.Fatalf("%s: %v", testenv.RedisURL, err)
	}
	proxy := startCutProxy(t, u.Host)
	u.Host = proxy.addr()
	dir := t.TempDir()
	dbPath := filepath.Join(dir, "notify.db")
	n := startNode(t, func(c *node.Config) {
		c.Broker = "redis"
		c.RedisURL = u.String()
		c.RedisPrefix = fmt.Sprintf("notify-deploy-test-%d", time.Now().UnixNano())
		c.Store = dbPath
	})
	// Longer than testCtx: Prometheus scrapes and evaluates once a second.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := dial(t, n.GRPCAddr())
	base := "http://" + n.HTTPAddr()
	svc := withToken(ctx, mint(t, serviceClaims))

	// A subscriber, publishes into its inbox room, deliveries.
	subCtx, subCancel := context.WithCancel(ctx)
	defer subCancel()
	s, _ := subscribe(t, subCtx, c, mint(t, guestClaims), &notifyv1.SubscribeRequest{Rooms: []string{"guest:g1"}})
	const pubs = 3
	for i := range pubs {
		publish(t, ctx, c, pointsReq(pointsAdded("g1", "r1", int64(i+1))))
	}
	s.nextN(t, pubs)

	// A real Prometheus, when installed (in CI it must be), scrapes the
	// node and evaluates the alerting rules from now on.
	prom := startPrometheus(t, n.HTTPAddr())
	if prom != nil {
		prom.await(t, ctx, "two scrapes of the node", `count_over_time(up{job="notify"}[1m]) >= 2`)
	}
	// twice does a failing step, and with Prometheus, waits until it has
	// scraped the series the failure made, then fails again: a counter's
	// first sample is not an increase to rate().
	twice := func(step func(), series string) {
		t.Helper()
		step()
		if prom != nil {
			prom.await(t, ctx, series, series)
			step()
		}
	}

	// An inbox write fails: the store refuses new inbox rows.
	failInboxWrites(t, dbPath)
	twice(func() {
		_, err := c.Publish(svc, pointsReq(pointsAdded("g1", "r1", 100)))
		wantCode(t, err, codes.Unavailable, "publish with inbox writes refused")
	}, `notify_store_errors_total{op="insert"}`)

	// The broker goes away: a publish and a new room's subscription fail.
	proxy.cut()
	twice(func() {
		if _, err := c.Publish(svc, pointsReq(pointsAdded("g1", "r1", 101))); err == nil {
			t.Fatal("publish with the broker unreachable succeeded")
		}
	}, `notify_broker_errors_total{op="publish"}`)
	g2 := auth.Claims{Subject: "g2", Role: notifyv1.Role_ROLE_GUEST}
	twice(func() {
		if st, err := openStream(ctx, c, mint(t, g2), &notifyv1.SubscribeRequest{Rooms: []string{"guest:g2"}}); err == nil {
			if _, err := st.Recv(); err == nil {
				t.Fatal("subscribe to a new room with the broker unreachable succeeded")
			}
		}
	}, `notify_broker_errors_total{op="listen"}`)

	m := opsScrape(t, ctx, http.DefaultClient, base)
	for _, e := range exprs {
		for _, p := range checkPromExpr(e.expr, m) {
			t.Errorf("%s: %s\n  expr: %s", e.where, p, e.expr)
		}
	}
	if prom == nil {
		return
	}

	// The failures above start their alerts (pending: each has a "for").
	for _, alert := range []string{"NotifyInboxWriteFailures", "NotifyBrokerErrors", "NotifyBrokerListenFailing", "NotifyPublishErrors"} {
		prom.await(t, ctx, alert+" pending", `ALERTS{alertname="`+alert+`", alertstate="pending", job="notify"}`)
	}
	// Every rule evaluates without error, and every dashboard query
	// returns data for this node.
	for _, r := range prom.rules(t, ctx) {
		if r.Health != "ok" {
			t.Errorf("rule %s: health %q: %s", r.Name, r.Health, r.LastError)
		}
	}
	for _, e := range deployDashboardExprs(t, deployDashboard) {
		q := grafanaToPromQL(e.expr)
		res, err := prom.query(ctx, q)
		switch {
		case err != nil:
			t.Errorf("%s: %v\n  query: %s", e.where, err, q)
		case len(res) == 0:
			t.Errorf("%s: no data\n  query: %s", e.where, q)
		}
	}
}

// TestDeployDashboard: the dashboard is importable on any Grafana with a
// Prometheus data source: the data source is a variable that every panel
// and query uses, panel ids are unique, panels fit the 24-column grid, and
// every variable a query names is defined. With promtool (required in CI,
// where `make check-alerts` installs it), every query is valid PromQL.
func TestDeployDashboard(t *testing.T) {
	b, err := os.ReadFile(deployDashboard)
	if err != nil {
		t.Fatal(err)
	}
	var d grafanaDashboard
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", deployDashboard, err)
	}
	if d.UID == "" || d.Title == "" || d.SchemaVersion == 0 {
		t.Errorf("uid %q, title %q, schemaVersion %d: want all set", d.UID, d.Title, d.SchemaVersion)
	}
	vars := map[string]bool{"__rate_interval": true, "__interval": true, "__range": true}
	hasDS := false
	for _, v := range d.Templating.List {
		vars[v.Name] = true
		if v.Name == "datasource" && v.Type == "datasource" && v.Query == "prometheus" {
			hasDS = true
		}
		if v.Type == "query" && v.Datasource.UID != "${datasource}" {
			t.Errorf("variable %s: data source %q, want ${datasource}", v.Name, v.Datasource.UID)
		}
	}
	if !hasDS {
		t.Fatal(`no templating variable "datasource" of type datasource for prometheus`)
	}
	ids := map[int]bool{}
	queries := 0
	varRef := regexp.MustCompile(`\$\{?(\w+)`)
	for _, p := range d.allPanels() {
		if ids[p.ID] {
			t.Errorf("panel id %d used twice", p.ID)
		}
		ids[p.ID] = true
		if p.GridPos.W <= 0 || p.GridPos.X < 0 || p.GridPos.X+p.GridPos.W > 24 {
			t.Errorf("panel %q: gridPos x %d w %d outside the 24 columns", p.Title, p.GridPos.X, p.GridPos.W)
		}
		if p.Type == "row" {
			continue
		}
		if p.Datasource.UID != "${datasource}" || len(p.Targets) == 0 {
			t.Errorf("panel %q: data source %q with %d queries, want ${datasource} and at least one", p.Title, p.Datasource.UID, len(p.Targets))
		}
		for _, q := range p.Targets {
			queries++
			if q.Datasource.UID != "${datasource}" || q.Expr == "" {
				t.Errorf("panel %q query %s: data source %q, expr %q", p.Title, q.RefID, q.Datasource.UID, q.Expr)
			}
			for _, m := range varRef.FindAllStringSubmatch(q.Expr, -1) {
				if !vars[m[1]] {
					t.Errorf("panel %q query %s: variable $%s is not defined", p.Title, q.RefID, m[1])
				}
			}
		}
	}
	if queries == 0 {
		t.Fatal("the dashboard has no queries")
	}

	promtool, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("promtool is required in CI (make check-alerts installs it)")
		}
		t.Skip("promtool not installed: the queries' PromQL is not checked")
	}
	// Each query becomes a recording rule, which promtool parses.
	var rules strings.Builder
	rules.WriteString("groups:\n  - name: dashboard\n    rules:\n")
	exprs := deployDashboardExprs(t, deployDashboard)
	for i, e := range exprs {
		q, _ := json.Marshal(grafanaToPromQL(e.expr))
		fmt.Fprintf(&rules, "      - record: dashboard_query_%d\n        expr: %s\n", i, q)
	}
	path := filepath.Join(t.TempDir(), "dashboard.rules.yaml")
	if err := os.WriteFile(path, []byte(rules.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(promtool, "check", "rules", path).CombinedOutput()
	if err != nil {
		t.Errorf("promtool check rules on the dashboard's queries: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), fmt.Sprintf("%d rules found", len(exprs))) {
		t.Errorf("promtool checked %s, want %d rules", out, len(exprs))
	}
}

// TestCheckPromExpr: the checker finds what the real files must not have.
func TestCheckPromExpr(t *testing.T) {
	m := opsParse(t, `# TYPE notify_limit_rejections_total counter
notify_limit_rejections_total{limit="conn_rate"} 0
notify_limit_rejections_total{limit="streams"} 0
# TYPE notify_delivery_latency_seconds histogram
notify_delivery_latency_seconds_bucket{le="1"} 0
notify_delivery_latency_seconds_bucket{le="+Inf"} 0
notify_delivery_latency_seconds_sum 0
notify_delivery_latency_seconds_count 0
# TYPE notify_grpc_requests_total counter
notify_grpc_requests_total{method="/notify.v1.NotificationService/Publish",code="OK"} 0
`)
	for _, tc := range []struct {
		expr string
		bad  []string // substrings of the problems expected, in order
	}{
		{expr: `sum by (job, instance, limit) (rate(notify_limit_rejections_total{limit=~"conn_rate|streams"}[5m])) > 1`},
		{expr: `histogram_quantile(0.99, sum by (le) (rate(notify_delivery_latency_seconds_bucket{job="$job"}[$__rate_interval])))`},
		{expr: `sum by (code) (rate(notify_grpc_requests_total{code=~"Unavailable|Internal", method=~"/x/(Publish)"}[5m])) / ignoring (code) group_left sum(up{job="notify"})`},
		{expr: `rate(notify_delivery_latency_seconds_count[5m]) and on (instance) notify_limit_rejections_total`},
		{expr: `rate(notify_nope_total[5m])`, bad: []string{"notify_nope_total"}},
		{expr: `notify_limit_rejections_total{limit="conn_rates"}`, bad: []string{`limit="conn_rates"`}},
		{expr: `notify_limit_rejections_total{limit=~"conn_rate|max_conns"}`, bad: []string{`max_conns`}},
		{expr: `notify_grpc_requests_total{code=~"OK|Unavailible"}`, bad: []string{`Unavailible`}},
		{expr: `sum by (kind) (notify_limit_rejections_total)`, bad: []string{`"kind"`}},
		{expr: `notify_limit_rejections_total{reason!="x"}`, bad: []string{`"reason"`}},
		{expr: `node_load1 > 1`, bad: []string{"node_load1"}},
		{expr: `process_open_fds{job="notify"}`, bad: []string{"process_open_fds"}},
	} {
		got := checkPromExpr(tc.expr, m)
		ok := len(got) == len(tc.bad)
		for i := 0; ok && i < len(got); i++ {
			ok = strings.Contains(got[i], tc.bad[i])
		}
		if !ok {
			t.Errorf("checkPromExpr(%s) = %q, want problems naming %q", tc.expr, got, tc.bad)
		}
	}
}
