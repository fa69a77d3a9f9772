package node_test

// The deploy checks' reading of PromQL (deploy_test.go): the expressions of
// deploy/'s rules and dashboard, the metrics and labels each names, and the
// check against what a running notifyd exposes.

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"google.golang.org/grpc/codes"
)

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
