package node_test

// Checks of deploy/: the Prometheus alerting rules and the Grafana
// dashboard may only name metrics, label values and labels that a running
// notifyd exposes, and the dashboard must be importable as it is.

import (
	"bufio"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
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

// deployExpr is one PromQL expression and where it was found.
type deployExpr struct{ where, expr string }

// deployRuleExprs returns the expr of every rule in a rules file. It reads
// the YAML line by line, as written there: "expr:" followed by the
// expression on the same line or by an indented block ("expr: |").
func deployRuleExprs(t *testing.T, path string) []deployExpr {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var (
		out         []deployExpr
		rules       int
		name        string
		block       *strings.Builder
		blockIndent int
	)
	indent := func(s string) int { return len(s) - len(strings.TrimLeft(s, " ")) }
	flush := func() {
		if block != nil {
			out = append(out, deployExpr{where: path + " " + name, expr: strings.TrimSpace(block.String())})
			block = nil
		}
	}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		if block != nil {
			if trimmed == "" || indent(line) > blockIndent {
				block.WriteString(trimmed + "\n")
				continue
			}
			flush()
		}
		if strings.HasPrefix(trimmed, "#") {
			continue
		}
		if v, ok := strings.CutPrefix(trimmed, "- alert:"); ok {
			name, rules = strings.TrimSpace(v), rules+1
		} else if v, ok := strings.CutPrefix(trimmed, "- record:"); ok {
			name, rules = strings.TrimSpace(v), rules+1
		} else if v, ok := strings.CutPrefix(trimmed, "expr:"); ok {
			v = strings.TrimSpace(v)
			switch {
			case v == "|" || v == "|-" || v == ">" || v == ">-":
				block, blockIndent = &strings.Builder{}, indent(line)
			case strings.HasPrefix(v, `"`) || strings.HasPrefix(v, "'"):
				t.Fatalf("%s %s: a quoted expr; write it plain or as a block", path, name)
			default:
				out = append(out, deployExpr{where: path + " " + name, expr: v})
			}
		}
	}
	flush()
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if rules == 0 || len(out) != rules {
		t.Fatalf("%s: %d rules but %d expressions read", path, rules, len(out))
	}
	return out
}

// grafanaDashboard is the part of a Grafana dashboard the tests read.
type grafanaDashboard struct {
	UID           string         `json:"uid"`
	Title         string         `json:"title"`
	SchemaVersion int            `json:"schemaVersion"`
	Panels        []grafanaPanel `json:"panels"`
	Templating    struct {
		List []struct {
			Name       string            `json:"name"`
			Type       string            `json:"type"`
			Query      any               `json:"query"`
			Definition string            `json:"definition"`
			Datasource grafanaDatasource `json:"datasource"`
		} `json:"list"`
	} `json:"templating"`
}

type grafanaDatasource struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type grafanaPanel struct {
	ID         int                      `json:"id"`
	Type       string                   `json:"type"`
	Title      string                   `json:"title"`
	Datasource grafanaDatasource        `json:"datasource"`
	GridPos    struct{ X, Y, W, H int } `json:"gridPos"`
	Targets    []struct {
		Expr       string            `json:"expr"`
		RefID      string            `json:"refId"`
		Datasource grafanaDatasource `json:"datasource"`
	} `json:"targets"`
	Panels []grafanaPanel `json:"panels"` // a collapsed row's
}

// allPanels returns every panel, those inside collapsed rows included.
func (d *grafanaDashboard) allPanels() []grafanaPanel {
	var out []grafanaPanel
	var walk func([]grafanaPanel)
	walk = func(ps []grafanaPanel) {
		for _, p := range ps {
			out = append(out, p)
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	return out
}

// deployDashboardExprs returns the dashboard's queries and the metric its
// query variables read.
func deployDashboardExprs(t *testing.T, path string) []deployExpr {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var d grafanaDashboard
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	var out []deployExpr
	for _, p := range d.allPanels() {
		for _, q := range p.Targets {
			out = append(out, deployExpr{where: fmt.Sprintf("%s panel %q query %s", path, p.Title, q.RefID), expr: q.Expr})
		}
	}
	// label_values(metric{...}, label): the metric part is PromQL.
	labelValues := regexp.MustCompile(`^label_values\((.+),\s*(\w+)\)$`)
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		m := labelValues.FindStringSubmatch(v.Definition)
		if m == nil {
			t.Fatalf("%s: variable %s: definition %q is not label_values(selector, label)", path, v.Name, v.Definition)
		}
		out = append(out, deployExpr{where: fmt.Sprintf("%s variable %s", path, v.Name), expr: fmt.Sprintf("group by (%s) (%s)", m[2], m[1])})
	}
	if len(out) == 0 {
		t.Fatalf("%s: no queries", path)
	}
	return out
}

// grafanaToPromQL replaces the dashboard's variables by values, for promtool.
func grafanaToPromQL(expr string) string {
	return strings.NewReplacer("$__rate_interval", "5m", "$__interval", "1m", "$__range", "1h",
		"${datasource}", "prometheus", "$job", "notify", "$instance", ".+").Replace(expr)
}

// ---- PromQL references ----

// promSelector is a metric named in an expression and its label matchers.
type promSelector struct {
	metric   string
	matchers []promMatcher
}

type promMatcher struct{ label, op, value string }

// promGroupingKeywords take a list of labels in parentheses.
var promGroupingKeywords = []string{"by", "without", "on", "ignoring", "group_left", "group_right"}

// promRefs returns the metrics an expression names, with their label
// matchers, and the labels its grouping clauses name. It is a tokenizer,
// not a parser: enough for the expressions of deploy/, where an identifier
// followed by "(" is a function or a grouping keyword, and any other is a
// metric unless it is one of promKeywords. Range selectors ("[5m]",
// "[$__rate_interval]") and strings outside selectors are skipped.
func promRefs(expr string) (sels []promSelector, grouping []string) {
	i := 0
	skipSpace := func() {
		for i < len(expr) && (expr[i] == ' ' || expr[i] == '\n' || expr[i] == '\t') {
			i++
		}
	}
	ident := func() string {
		start := i
		for i < len(expr) && (expr[i] == '_' || expr[i] == ':' || expr[i] >= 'a' && expr[i] <= 'z' || expr[i] >= 'A' && expr[i] <= 'Z' || i > start && expr[i] >= '0' && expr[i] <= '9') {
			i++
		}
		return expr[start:i]
	}
	quoted := func() string {
		q := expr[i]
		i++
		var b strings.Builder
		for i < len(expr) && expr[i] != q {
			if expr[i] == '\\' && i+1 < len(expr) {
				i++
			}
			b.WriteByte(expr[i])
			i++
		}
		i++ // the closing quote
		return b.String()
	}
	for i < len(expr) {
		ch := expr[i]
		switch {
		case ch == '"' || ch == '\'' || ch == '`':
			quoted()
		case ch == '[':
			for i < len(expr) && expr[i] != ']' {
				i++
			}
		case ch >= '0' && ch <= '9' || ch == '.':
			for i < len(expr) && (expr[i] >= '0' && expr[i] <= '9' || expr[i] == '.' || expr[i] == 'e') {
				i++
			}
			continue
		case ch == '_' || ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z':
			name := ident()
			skipSpace()
			switch {
			case i < len(expr) && expr[i] == '(' && slices.Contains(promGroupingKeywords, name):
				end := strings.IndexByte(expr[i:], ')')
				if end < 0 {
					return sels, grouping
				}
				for _, l := range strings.Split(expr[i+1:i+end], ",") {
					if l = strings.TrimSpace(l); l != "" {
						grouping = append(grouping, l)
					}
				}
				i += end + 1
			case i < len(expr) && expr[i] == '(':
				// A function call.
			case i < len(expr) && expr[i] == '{':
				sel := promSelector{metric: name}
				i++
				for {
					skipSpace()
					if i >= len(expr) || expr[i] == '}' {
						i++
						break
					}
					if expr[i] == ',' {
						i++
						continue
					}
					label := ident()
					skipSpace()
					start := i
					for i < len(expr) && strings.IndexByte("=!~", expr[i]) >= 0 {
						i++
					}
					op := expr[start:i]
					skipSpace()
					if label == "" || op == "" || i >= len(expr) || strings.IndexByte("\"'`", expr[i]) < 0 {
						return append(sels, sel), grouping // malformed: promtool reports it
					}
					sel.matchers = append(sel.matchers, promMatcher{label, op, quoted()})
				}
				sels = append(sels, sel)
			case !slices.Contains(promKeywords, strings.ToLower(name)):
				sels = append(sels, promSelector{metric: name})
			}
			continue
		}
		i++
	}
	return sels, grouping
}

// promKeywords are PromQL's words that are not metrics where they stand
// without "(" after them: binary operators, modifiers, literals, and the
// aggregation operators and grouping keywords ("sum by (le) (...)",
// "group_left sum(...)").
var promKeywords = append([]string{"and", "or", "unless", "atan2", "bool", "offset", "inf", "nan",
	"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values", "bottomk", "topk", "quantile"},
	promGroupingKeywords...)

// promMetricPrefix matches the names notifyd exposes: its own and the Go
// and process collectors'.
var promMetricPrefix = regexp.MustCompile(`^(notify|go|process)_[a-z0-9_]+$`)

// promWords matches a regular expression that is a plain alternation of
// label values, such as "conn_rate|max_connections".
var promWords = regexp.MustCompile(`^[A-Za-z0-9_]+(\|[A-Za-z0-9_]+)*$`)

// checkPromExpr returns what expr names that the scrape m does not have:
// a metric (a histogram's _bucket, _sum and _count are its base name's),
// a label value matched with "=" or listed in a "=~" alternation, a label
// matched in another way, or a grouping label. Labels Prometheus adds
// (job, instance) and le are known; gRPC status codes are checked against
// gRPC's list, since a code's series exists only once a call ended with it.
func checkPromExpr(expr string, m opsMetrics) []string {
	var problems []string
	sels, grouping := promRefs(expr)
	labels := map[string]bool{"job": true, "instance": true, "le": true}
	for _, s := range sels {
		if s.metric == "up" {
			continue // Prometheus's own, per target
		}
		if !promMetricPrefix.MatchString(s.metric) {
			problems = append(problems, fmt.Sprintf("metric %s is not one of notifyd's", s.metric))
			continue
		}
		fam := m[s.metric]
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if base, ok := strings.CutSuffix(s.metric, suffix); ok && fam == nil && m[base] != nil {
				fam = m[base]
			}
		}
		if fam == nil {
			problems = append(problems, fmt.Sprintf("metric %s is not in /metrics", s.metric))
			continue
		}
		values := map[string]map[string]bool{}
		for _, series := range fam.GetMetric() {
			for _, lp := range series.GetLabel() {
				if values[lp.GetName()] == nil {
					values[lp.GetName()] = map[string]bool{}
				}
				values[lp.GetName()][lp.GetValue()] = true
				labels[lp.GetName()] = true
			}
		}
		for _, mt := range s.matchers {
			if mt.label == "job" || mt.label == "instance" {
				continue
			}
			if values[mt.label] == nil {
				problems = append(problems, fmt.Sprintf("%s has no label %q", s.metric, mt.label))
				continue
			}
			var want []string
			switch {
			case mt.op == "=":
				want = []string{mt.value}
			case mt.op == "=~" && promWords.MatchString(mt.value):
				want = strings.Split(mt.value, "|")
			}
			for _, v := range want {
				if mt.label == "code" {
					if !promIsCode(v) {
						problems = append(problems, fmt.Sprintf("%s: code %q is not a gRPC status code", s.metric, v))
					}
				} else if !values[mt.label][v] {
					problems = append(problems, fmt.Sprintf(`%s has no series with %s="%s"`, s.metric, mt.label, v))
				}
			}
		}
	}
	for _, l := range grouping {
		if !labels[l] {
			problems = append(problems, fmt.Sprintf("grouping label %q is on none of the expression's metrics", l))
		}
	}
	return problems
}

// promIsCode reports whether s names a gRPC status code as the metrics
// label it (codes.Code's String).
func promIsCode(s string) bool {
	for c := codes.OK; c <= codes.Unauthenticated; c++ {
		if c.String() == s {
			return true
		}
	}
	return false
}

// opsParse parses a scrape's text.
func opsParse(t *testing.T, body string) opsMetrics {
	t.Helper()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("parsing %q: %v", body, err)
	}
	return opsMetrics(fams)
}

// ---- a real Prometheus ----

// promServer is a Prometheus of the test's own, scraping one node every
// second as job "notify" and evaluating deploy/'s alerting rules.
type promServer struct {
	base   string
	logs   *deployLog
	exited chan struct{}
}

// deployLog collects a child's output.
type deployLog struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (l *deployLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *deployLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// startPrometheus starts Debian's prometheus on a free loopback port,
// scraping target, and returns nil when it is not installed (a failure in
// CI, where `make check-alerts` installs it). It is stopped when the test
// ends.
func startPrometheus(t *testing.T, target string) *promServer {
	t.Helper()
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("prometheus is required in CI (make check-alerts installs Debian's prometheus)")
		}
		t.Log("prometheus not installed: the rules and the dashboard are not evaluated")
		return nil
	}
	rules, err := filepath.Abs(deployAlerts)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	config := fmt.Sprintf(`global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: [%q]
scrape_configs:
  - job_name: notify
    static_configs:
      - targets: [%q]
`, rules, target)
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	p := &promServer{base: "http://" + addr, logs: &deployLog{}, exited: make(chan struct{})}
	cmd := exec.Command(bin, "--config.file="+filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(dir, "data"), "--web.listen-address="+addr, "--log.level=warn")
	cmd.Stdout, cmd.Stderr = p.logs, p.logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting prometheus: %v", err)
	}
	go func() {
		_ = cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-p.exited
		}
		if t.Failed() {
			t.Logf("prometheus output:\n%s", p.logs.String())
		}
	})
	return p
}

// promResponse is the envelope of Prometheus's HTTP API.
type promResponse struct {
	Status string          `json:"status"`
	Error  string          `json:"error"`
	Data   json.RawMessage `json:"data"`
}

// get calls the API at path and returns its data.
func (p *promServer) get(ctx context.Context, path string) (json.RawMessage, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.base+path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var r promResponse
	if err := json.NewDecoder(io.LimitReader(resp.Body, 8<<20)).Decode(&r); err != nil {
		return nil, fmt.Errorf("%s: HTTP %d: %w", path, resp.StatusCode, err)
	}
	if r.Status != "success" {
		return nil, fmt.Errorf("%s: %s", r.Status, r.Error)
	}
	return r.Data, nil
}

// query evaluates q now and returns its series.
func (p *promServer) query(ctx context.Context, q string) ([]json.RawMessage, error) {
	data, err := p.get(ctx, "/api/v1/query?query="+url.QueryEscape(q))
	if err != nil {
		return nil, err
	}
	var v struct {
		Result []json.RawMessage `json:"result"`
	}
	if err := json.Unmarshal(data, &v); err != nil {
		return nil, err
	}
	return v.Result, nil
}

// await polls q until it returns a series, failing after 30 seconds or
// when Prometheus exits.
func (p *promServer) await(t *testing.T, ctx context.Context, what, q string) {
	t.Helper()
	var (
		found bool
		last  error
	)
	defer func() {
		if !found { // Eventually failed the test
			t.Logf("prometheus: last error %v\n  query: %s", last, q)
		}
	}()
	testenv.Eventually(t, 30*time.Second, "prometheus: "+what, func() bool {
		select {
		case <-p.exited:
			t.Fatalf("prometheus exited:\n%s", p.logs.String())
		default:
		}
		if ctx.Err() != nil {
			t.Fatalf("prometheus: waiting for %s: %v", what, ctx.Err())
		}
		res, err := p.query(ctx, q)
		last = err
		found = err == nil && len(res) > 0
		return found
	})
}

// promRule is one rule's state in /api/v1/rules.
type promRule struct {
	Name      string `json:"name"`
	Health    string `json:"health"`
	LastError string `json:"lastError"`
}

// rules returns every rule's state once each has been evaluated.
func (p *promServer) rules(t *testing.T, ctx context.Context) []promRule {
	t.Helper()
	var out []promRule
	evaluated := false
	defer func() {
		if !evaluated { // Eventually failed the test
			t.Logf("prometheus rules: %+v", out)
		}
	}()
	testenv.Eventually(t, 30*time.Second, "prometheus: every rule evaluated", func() bool {
		data, err := p.get(ctx, "/api/v1/rules")
		if err != nil {
			t.Fatalf("prometheus rules: %v", err)
		}
		var v struct {
			Groups []struct {
				Rules []promRule `json:"rules"`
			} `json:"groups"`
		}
		if err := json.Unmarshal(data, &v); err != nil {
			t.Fatalf("prometheus rules: %v", err)
		}
		out = out[:0]
		evaluated = true
		for _, g := range v.Groups {
			for _, r := range g.Rules {
				out = append(out, r)
				evaluated = evaluated && r.Health != "unknown"
			}
		}
		evaluated = evaluated && len(out) > 0
		return evaluated
	})
	return out
}

// ---- failures on demand ----

// failInboxWrites makes the SQLite database at path refuse every new inbox
// row, through a connection of the test's own: the node's store then fails
// its inserts as it would on a broken disk.
func failInboxWrites(t *testing.T, path string) {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`CREATE TRIGGER deploy_test_refuse BEFORE INSERT ON inbox_items BEGIN SELECT RAISE(ABORT, 'refused by the test'); END`); err != nil {
		t.Fatalf("adding the refusing trigger: %v", err)
	}
}

// cutProxy forwards TCP connections to a target until cut, which closes
// its listener (new connections are refused) and every open connection.
type cutProxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	conns  map[net.Conn]bool
	closed bool
	wg     sync.WaitGroup
}

func startCutProxy(t *testing.T, target string) *cutProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{ln: ln, target: target, conns: map[net.Conn]bool{}}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.cut)
	return p
}

func (p *cutProxy) addr() string { return p.ln.Addr().String() }

func (p *cutProxy) accept() {
	defer p.wg.Done()
	for {
		in, err := p.ln.Accept()
		if err != nil {
			return
		}
		out, err := net.DialTimeout("tcp", p.target, 5*time.Second)
		if err != nil {
			in.Close()
			continue
		}
		if !p.track(in, out) {
			return
		}
		p.wg.Add(2)
		go p.pipe(in, out)
		go p.pipe(out, in)
	}
}

// track records a connection pair; false once the proxy is cut.
func (p *cutProxy) track(conns ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		for _, c := range conns {
			c.Close()
		}
		return false
	}
	for _, c := range conns {
		p.conns[c] = true
	}
	return true
}

func (p *cutProxy) pipe(dst, src net.Conn) {
	defer p.wg.Done()
	_, _ = io.Copy(dst, src)
	dst.Close()
	src.Close()
}

// cut refuses new connections, closes the open ones, and waits for the
// proxy's goroutines. It may be called more than once.
func (p *cutProxy) cut() {
	p.mu.Lock()
	p.closed = true
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.ln.Close()
	p.wg.Wait()
}
