package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	notifyv1 "github.com/maxloyalty/notify/gen/notify/v1"
)

// The publish mode's unary and REST variants are driven by standard load
// generators rather than by clients of this tool: h2load (Debian's
// nghttp2-client) sends one prepared gRPC request body over HTTP/2 with
// prior knowledge, and wrk sends one prepared JSON body over keep-alive
// HTTP/1.1 connections. Neither reads a gRPC status, so the server's own
// count of calls by code (notify_grpc_requests_total, which the REST
// gateway's calls go through as well) tells successes from errors.

// tool is an external program and the Debian package that carries it.
type tool struct{ name, pkg string }

var (
	h2loadTool = tool{name: "h2load", pkg: "nghttp2-client"}
	wrkTool    = tool{name: "wrk", pkg: "wrk"}
)

// path finds the program, or says how to install it.
func (t tool) path() (string, error) {
	p, err := exec.LookPath(t.name)
	if err != nil {
		return "", fmt.Errorf("%s not found: install Debian's %s (apt-get install %s; make bench does)", t.name, t.pkg, t.pkg)
	}
	return p, nil
}

// publishMethod is the full name of NotificationService.Publish, which the
// REST route POST /v1/events calls as well.
const publishMethod = "/notify.v1.NotificationService/Publish"

// driverRun is what one run of an external load generator reported.
type driverRun struct {
	// Responses counts the responses with a 2xx HTTP status, Non2xx those
	// with another status, and Failed every request that did not get a 2xx
	// response (Non2xx, stream and socket errors, timeouts). A 2xx response
	// may still carry a gRPC error: see callCounts.
	Responses  int64
	Non2xx     int64
	Failed     int64
	FirstError string
	Seconds    float64 // the generator's measured duration
	Latency    Latency
	CPU        time.Duration // the generator's user and system time
}

// driverSpec is one run of an external load generator.
type driverSpec struct {
	addr     string // host:port
	token    string
	req      *notifyv1.PublishRequest
	duration time.Duration
	conns    int
	inFlight int     // requests in flight over all connections
	threads  int     // the generator's threads
	rate     float64 // requests per second over all connections; 0: as fast as possible
	dir      string  // for the generator's files
}

// h2loadArgs returns h2load's command line for s, its request body in
// body and its per-request log in logFile.
func h2loadArgs(s driverSpec, body, logFile string) []string {
	streams := max(1, (s.inFlight+s.conns-1)/s.conns)
	args := []string{
		"-D", strconv.FormatInt(max(1, s.duration.Milliseconds()), 10) + "ms",
		"-c", strconv.Itoa(s.conns),
		"-m", strconv.Itoa(streams),
		"-t", strconv.Itoa(min(s.threads, s.conns)),
		"-H", "content-type: application/grpc",
		"-H", "te: trailers",
		"-H", "authorization: Bearer " + s.token,
		"-d", body,
		"--log-file", logFile,
	}
	if s.rate > 0 {
		args = append(args, "--rps", strconv.FormatFloat(math.Max(1, s.rate/float64(s.conns)), 'f', 0, 64))
	}
	return append(args, "http://"+s.addr+publishMethod)
}

// grpcBody is the request body of a unary gRPC call carrying req: the
// 5-byte message prefix (not compressed, length) and the message.
func grpcBody(req *notifyv1.PublishRequest) ([]byte, error) {
	msg, err := proto.Marshal(req)
	if err != nil {
		return nil, err
	}
	b := make([]byte, 5+len(msg))
	binary.BigEndian.PutUint32(b[1:5], uint32(len(msg)))
	copy(b[5:], msg)
	return b, nil
}

// runH2load publishes s.req with unary Publish calls from h2load.
func runH2load(ctx context.Context, s driverSpec) (*driverRun, error) {
	path, err := h2loadTool.path()
	if err != nil {
		return nil, err
	}
	body, err := grpcBody(s.req)
	if err != nil {
		return nil, err
	}
	bodyFile, logFile := filepath.Join(s.dir, "publish.grpc"), filepath.Join(s.dir, "h2load.log")
	if err := os.WriteFile(bodyFile, body, 0o600); err != nil {
		return nil, err
	}
	out, cpu, err := runTool(ctx, path, h2loadArgs(s, bodyFile, logFile), s.duration)
	if err != nil {
		return nil, err
	}
	run, err := parseH2load(out)
	if err != nil {
		return nil, err
	}
	run.CPU = cpu
	f, err := os.Open(logFile)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	h, failed, err := parseH2loadLog(f)
	if err != nil {
		return nil, fmt.Errorf("h2load log: %w", err)
	}
	run.Latency = h.Summary()
	if run.Failed > 0 && run.FirstError == "" {
		run.FirstError = fmt.Sprintf("h2load: %d requests failed (%d without a response)", run.Failed, failed)
	}
	return run, nil
}

// runTool runs a load generator that should end after about d, and returns
// its standard output and the CPU time it used. The run is bounded: it is
// killed a minute after d.
func runTool(ctx context.Context, path string, args []string, d time.Duration) ([]byte, time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, d+time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var cpu time.Duration
	if cmd.ProcessState != nil {
		cpu = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	}
	if err != nil {
		return nil, cpu, fmt.Errorf("%s: %w: %s", filepath.Base(path), err, lastLines(stderr.String()+stdout.String(), 5))
	}
	return stdout.Bytes(), cpu, nil
}

// lastLines returns the last n non-empty lines of s, joined by " | ".
func lastLines(s string, n int) string {
	var keep []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep[max(0, len(keep)-n):], " | ")
}

var (
	h2loadFinished = regexp.MustCompile(`(?m)^finished in ([0-9.]+)(us|ms|s),`)
	h2loadRequests = regexp.MustCompile(`(?m)^requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout`)
	h2loadStatus   = regexp.MustCompile(`(?m)^status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx`)
)

// parseH2load reads h2load's summary: the duration, the requests done and
// how they ended. Latency comes from its log (parseH2loadLog).
func parseH2load(out []byte) (*driverRun, error) {
	fin := h2loadFinished.FindSubmatch(out)
	req := h2loadRequests.FindSubmatch(out)
	st := h2loadStatus.FindSubmatch(out)
	if fin == nil || req == nil || st == nil {
		return nil, fmt.Errorf("h2load: unexpected output: %s", lastLines(string(out), 8))
	}
	secs, err := strconv.ParseFloat(string(fin[1]), 64)
	if err != nil {
		return nil, err
	}
	switch string(fin[2]) {
	case "ms":
		secs /= 1e3
	case "us":
		secs /= 1e6
	}
	n := func(b []byte) int64 { v, _ := strconv.ParseInt(string(b), 10, 64); return v }
	done, failed, timeout := n(req[3]), n(req[5]), n(req[7])
	ok2xx := n(st[1])
	run := &driverRun{Responses: ok2xx, Non2xx: n(st[2]) + n(st[3]) + n(st[4]), Seconds: secs}
	// Every request that did not end in a 2xx response is a failure,
	// whichever counter h2load put it in.
	run.Failed = max(done-ok2xx, failed) + timeout
	if run.Failed > 0 {
		run.FirstError = fmt.Sprintf("h2load: %d done, %d 2xx, %d 3xx, %d 4xx, %d 5xx, %d failed, %d errored, %d timeout",
			done, ok2xx, n(st[2]), n(st[3]), n(st[4]), failed, n(req[6]), timeout)
	}
	return run, nil
}

// parseH2loadLog reads h2load's per-request log (start µs, HTTP status,
// µs to the end of the response; status -1 for a failed stream) into a
// histogram of the 2xx responses' durations, and counts the failed ones.
func parseH2loadLog(r io.Reader) (*Histogram, int64, error) {
	h := &Histogram{}
	var failed int64
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Split(sc.Text(), "\t")
		if len(f) < 3 {
			return nil, 0, fmt.Errorf("line %q", sc.Text())
		}
		code, err1 := strconv.Atoi(f[1])
		us, err2 := strconv.ParseInt(f[2], 10, 64)
		if err := errors.Join(err1, err2); err != nil {
			return nil, 0, fmt.Errorf("line %q: %w", sc.Text(), err)
		}
		if code < 200 || code > 299 {
			failed++
			continue
		}
		h.Record(time.Duration(us) * time.Microsecond)
	}
	return h, failed, sc.Err()
}

// runWrk publishes s.req with POST /v1/events (JSON) from wrk.
func runWrk(ctx context.Context, s driverSpec) (*driverRun, error) {
	path, err := wrkTool.path()
	if err != nil {
		return nil, err
	}
	if s.rate > 0 {
		return nil, errors.New("wrk publishes as fast as it can: --rate must be 0 for the rest variant")
	}
	body, err := protojson.Marshal(s.req)
	if err != nil {
		return nil, err
	}
	script := filepath.Join(s.dir, "publish.lua")
	if err := os.WriteFile(script, []byte(wrkScript(string(body), "Bearer "+s.token)), 0o600); err != nil {
		return nil, err
	}
	conns := max(s.conns, 1)
	args := []string{
		"-t", strconv.Itoa(min(s.threads, conns)),
		"-c", strconv.Itoa(conns),
		"-d", strconv.FormatInt(max(1, int64(math.Round(s.duration.Seconds()))), 10) + "s",
		"--timeout", "10s",
		"-s", script,
		"http://" + s.addr + "/v1/events",
	}
	out, cpu, err := runTool(ctx, path, args, s.duration)
	if err != nil {
		return nil, err
	}
	run, err := parseWrk(out)
	if err != nil {
		return nil, err
	}
	run.CPU = cpu
	return run, nil
}

// wrkSummaryPrefix starts the line the script's done() prints.
const wrkSummaryPrefix = "notifybench-wrk"

// wrkScript is a wrk script that posts body with the authorization header
// on every request and prints the run's figures on one line at the end.
func wrkScript(body, auth string) string {
	return `wrk.method = "POST"
wrk.body = ` + luaString(body) + `
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = ` + luaString(auth) + `

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("` + wrkSummaryPrefix + ` requests=%d duration_us=%d connect=%d read=%d write=%d status=%d timeout=%d p50_us=%d p90_us=%d p99_us=%d max_us=%d\n",
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
`
}

// luaString quotes s as a Lua long string, whose contents are taken as
// they are.
func luaString(s string) string {
	eq := ""
	for strings.Contains(s, "]"+eq+"]") {
		eq += "="
	}
	return "[" + eq + "[" + s + "]" + eq + "]"
}

// parseWrk reads the line the script's done() printed. wrk counts a
// response with a status outside 2xx and 3xx in "status"; notifyd answers
// a successful publish with 200.
func parseWrk(out []byte) (*driverRun, error) {
	var line string
	for _, l := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(l, wrkSummaryPrefix+" ") {
			line = l
		}
	}
	if line == "" {
		return nil, fmt.Errorf("wrk: no summary line in its output: %s", lastLines(string(out), 8))
	}
	v := map[string]int64{}
	for _, kv := range strings.Fields(line)[1:] {
		k, val, ok := strings.Cut(kv, "=")
		n, err := strconv.ParseInt(val, 10, 64)
		if !ok || err != nil {
			return nil, fmt.Errorf("wrk: bad field %q", kv)
		}
		v[k] = n
	}
	for _, k := range []string{"requests", "duration_us", "connect", "read", "write", "status", "timeout", "p50_us", "p90_us", "p99_us", "max_us"} {
		if _, ok := v[k]; !ok {
			return nil, fmt.Errorf("wrk: summary without %s: %s", k, line)
		}
	}
	sockErrs := v["connect"] + v["read"] + v["write"] + v["timeout"]
	run := &driverRun{
		Responses: v["requests"] - v["status"],
		Non2xx:    v["status"],
		Failed:    v["status"] + sockErrs,
		Seconds:   float64(v["duration_us"]) / 1e6,
		Latency: Latency{
			Count: v["requests"],
			P50:   float64(v["p50_us"]) / 1e3,
			P90:   float64(v["p90_us"]) / 1e3,
			P99:   float64(v["p99_us"]) / 1e3,
			Max:   float64(v["max_us"]) / 1e3,
		},
	}
	if run.Failed > 0 {
		run.FirstError = fmt.Sprintf("wrk: %d responses not 2xx/3xx; socket errors: connect %d, read %d, write %d, timeout %d",
			v["status"], v["connect"], v["read"], v["write"], v["timeout"])
	}
	return run, nil
}
