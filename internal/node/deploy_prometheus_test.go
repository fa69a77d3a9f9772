package node_test

// The deploy checks' live peers (deploy_test.go): a real Prometheus
// scraping a node and evaluating deploy/'s rules, and the faults the
// rules are tested against.

import (
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
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/maxloyalty/notify/internal/testenv"
)

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
