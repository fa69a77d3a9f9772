package main

import (
	"context"
	"os"
	"os/exec"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/maxloyalty/notify/internal/node"
)

var installTools sync.Mutex

// needTools makes sure the load generators are installed: under CI
// (CI=true) it installs the missing ones with apt-get, elsewhere it skips
// the test.
func needTools(t *testing.T, tools ...tool) {
	t.Helper()
	installTools.Lock()
	defer installTools.Unlock()
	var pkgs []string
	for _, tl := range tools {
		if _, err := exec.LookPath(tl.name); err != nil {
			pkgs = append(pkgs, tl.pkg)
		}
	}
	if len(pkgs) == 0 {
		return
	}
	if os.Getenv("CI") != "true" {
		t.Skipf("not installed: %s (Debian packages; CI=true installs them)", strings.Join(pkgs, ", "))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "apt-get", "update").CombinedOutput(); err != nil {
		t.Fatalf("apt-get update: %v\n%s", err, out)
	}
	cmd := exec.CommandContext(ctx, "apt-get", append([]string{"install", "-y", "--no-install-recommends"}, pkgs...)...)
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("apt-get install %s: %v\n%s", strings.Join(pkgs, " "), err, out)
	}
	for _, tl := range tools {
		if _, err := tl.path(); err != nil {
			t.Fatal(err)
		}
	}
}

// h2loadOutput is h2load 1.52's output of a run (progress lines omitted).
const h2loadOutput = `starting benchmark...
spawning thread #0: 2 total client(s). Timing-based test with 0s of warm-up time and 5s of main duration for measurements.
Warm-up phase is over for thread #0.
Main benchmark duration is started for thread #0.
Application protocol: h2c
Main benchmark duration is over for thread #0. Stopping all clients.
Stopped all clients for thread #0

finished in 5.00s, 17773.20 req/s, 2.05MB/s
requests: 88866 total, 88930 started, 88866 done, 88866 succeeded, 0 failed, 0 errored, 0 timeout
status codes: 88866 2xx, 0 3xx, 0 4xx, 0 5xx
traffic: 10.24MB (10736654) total, 173.59KB (177756) headers (space savings 94.74%), 7.70MB (8070296) data
                     min         max         mean         sd        +/- sd
time for request:      290us    120.64ms      3.19ms      5.39ms    93.99%
time for connect:      189us       418us       304us       162us   100.00%
time to 1st byte:    11.81ms     17.13ms     14.47ms      3.76ms   100.00%
req/s           :    8788.72     8981.85     8885.28      136.57   100.00%
`

func TestParseH2load(t *testing.T) {
	run, err := parseH2load([]byte(h2loadOutput))
	if err != nil {
		t.Fatal(err)
	}
	if want := (&driverRun{Responses: 88866, Seconds: 5}); !reflect.DeepEqual(want, run) {
		t.Errorf("got %+v, want %+v", run, want)
	}

	// Every request answered 415, as a gRPC port answers a wrong content
	// type: h2load counts them as failed, not as succeeded.
	out := strings.NewReplacer(
		"finished in 5.00s", "finished in 69.29ms",
		"88866 succeeded, 0 failed", "0 succeeded, 88866 failed",
		"88866 2xx, 0 3xx, 0 4xx", "0 2xx, 0 3xx, 88866 4xx",
	).Replace(h2loadOutput)
	run, err = parseH2load([]byte(out))
	if err != nil {
		t.Fatal(err)
	}
	if run.Responses != 0 || run.Non2xx != 88866 || run.Failed != 88866 || run.FirstError == "" || run.Seconds != 0.06929 {
		t.Errorf("415s: %+v", run)
	}

	// Streams reset or timed out get no status.
	out = strings.NewReplacer(
		"88866 succeeded, 0 failed, 0 errored, 0 timeout", "88800 succeeded, 66 failed, 60 errored, 6 timeout",
		"88866 2xx", "88800 2xx",
	).Replace(h2loadOutput)
	if run, err = parseH2load([]byte(out)); err != nil || run.Responses != 88800 || run.Failed != 72 || run.Non2xx != 0 {
		t.Errorf("errored: %+v, %v", run, err)
	}

	if _, err := parseH2load([]byte("connect to 127.0.0.1 failed\n")); err == nil {
		t.Error("output without a summary accepted")
	}
}

func TestParseH2loadLog(t *testing.T) {
	log := "1796595284252595\t200\t1000\n1796595284252547\t200\t3000\n1796595284252551\t-1\t10\n1796595284252552\t415\t20\n"
	h, failed, err := parseH2loadLog(strings.NewReader(log))
	if err != nil {
		t.Fatal(err)
	}
	if h.Count() != 2 || failed != 2 || h.Max() != 3*time.Millisecond {
		t.Errorf("count %d, failed %d, max %v", h.Count(), failed, h.Max())
	}
	if _, _, err := parseH2loadLog(strings.NewReader("1\t200\n")); err == nil {
		t.Error("short line accepted")
	}
	if _, _, err := parseH2loadLog(strings.NewReader("1\tOK\t3\n")); err == nil {
		t.Error("bad status accepted")
	}
}

func TestH2loadArgs(t *testing.T) {
	s := driverSpec{addr: "127.0.0.1:9", token: "tok", duration: 1500 * time.Millisecond, conns: 2, inFlight: 63, threads: 4}
	want := []string{"-D", "1500ms", "-c", "2", "-m", "32", "-t", "2",
		"-H", "content-type: application/grpc", "-H", "te: trailers", "-H", "authorization: Bearer tok",
		"-d", "body", "--log-file", "log", "http://127.0.0.1:9" + publishMethod}
	if got := h2loadArgs(s, "body", "log"); !slices.Equal(want, got) {
		t.Errorf("got %q\nwant %q", got, want)
	}
	s.rate = 1000
	if got := h2loadArgs(s, "body", "log"); !slices.Contains(got, "--rps") || !slices.Contains(got, "500") {
		t.Errorf("rate 1000 over 2 connections: %q", got)
	}
}

func TestParseWrk(t *testing.T) {
	out := "Running 3s test @ http://127.0.0.1:18080/v1/events\n  1 threads and 16 connections\n" +
		"notifybench-wrk requests=27032 duration_us=3013351 connect=0 read=2 write=0 status=30 timeout=1 p50_us=1287 p90_us=8307 p99_us=24416 max_us=43839\n"
	run, err := parseWrk([]byte(out))
	if err != nil {
		t.Fatal(err)
	}
	want := &driverRun{
		Responses: 27002, Non2xx: 30, Failed: 33, Seconds: 3.013351,
		Latency:    Latency{Count: 27032, P50: 1.287, P90: 8.307, P99: 24.416, Max: 43.839},
		FirstError: run.FirstError,
	}
	if !reflect.DeepEqual(want, run) || run.FirstError == "" {
		t.Errorf("got %+v, want %+v", run, want)
	}
	for _, bad := range []string{
		"Running 3s test\n",
		"notifybench-wrk requests=1 duration_us=2\n",
		"notifybench-wrk requests=x duration_us=3013351 connect=0 read=0 write=0 status=0 timeout=0 p50_us=1 p90_us=1 p99_us=1 max_us=1\n",
	} {
		if _, err := parseWrk([]byte(bad)); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
}

func TestLuaString(t *testing.T) {
	for s, want := range map[string]string{
		`{"a":"b"}`:   `[[{"a":"b"}]]`,
		`x]]y`:        `[=[x]]y]=]`,
		`x]]y]=]z`:    `[==[x]]y]=]z]==]`,
		`"quoted" \n`: `[["quoted" \n]]`,
	} {
		if got := luaString(s); got != want {
			t.Errorf("luaString(%q) = %s, want %s", s, got, want)
		}
	}
}

func TestParseCallCounts(t *testing.T) {
	text := `# HELP notify_grpc_requests_total gRPC calls completed, by full method name and status code.
# TYPE notify_grpc_requests_total counter
notify_grpc_requests_total{code="OK",method="/notify.v1.NotificationService/Publish"} 88930
notify_grpc_requests_total{code="Unauthenticated",method="/notify.v1.NotificationService/Publish"} 1000
notify_grpc_requests_total{code="OK",method="/notify.v1.NotificationService/PublishBatch"} 7
notify_grpc_requests_total{method="/notify.v1.NotificationService/Publish",code="Canceled"} 2
notify_grpc_requests_total_other{code="OK",method="/notify.v1.NotificationService/Publish"} 5
notify_grpc_requests_total{code="Internal",method="/x\"y\\z/Publish"} 3
`
	c, ok := parseCallCounts([]byte(text), publishMethod)
	if !ok {
		t.Fatal("not found")
	}
	if want := (callCounts{"OK": 88930, "Unauthenticated": 1000, "Canceled": 2}); !reflect.DeepEqual(want, c) {
		t.Errorf("got %v, want %v", c, want)
	}
	if c, ok := parseCallCounts([]byte(text), `/x"y\z/Publish`); !ok || c["Internal"] != 3 {
		t.Errorf("escaped method: %v %v", c, ok)
	}
	if _, ok := parseCallCounts([]byte(text), "/notify.v1.NotificationService/Subscribe"); ok {
		t.Error("found a method that is not there")
	}
	d := c.sub(callCounts{"OK": 88000, "Unauthenticated": 1000})
	if !reflect.DeepEqual(callCounts{"OK": 930, "Canceled": 2}, d) || d.ok() != 930 || d.failed() != 2 || d.String() != "Canceled 2" {
		t.Errorf("delta %v (ok %d, failed %d, %q)", d, d.ok(), d.failed(), d.String())
	}
}

func TestAccountDriver(t *testing.T) {
	cases := []struct {
		name      string
		transport string
		run       driverRun
		calls     callCounts
		inFlight  int64
		published int64
		errors    int64
	}{
		{"all OK, a few finished after the generator stopped", "h2load",
			driverRun{Responses: 1000, Seconds: 2}, callCounts{"OK": 1010}, 16, 1000, 0},
		{"gRPC errors in 200 responses", "h2load",
			driverRun{Responses: 1000, Seconds: 2}, callCounts{"OK": 700, "Unauthenticated": 300}, 16, 700, 300},
		{"every call refused, more counted than answered", "h2load",
			driverRun{Responses: 1000, Seconds: 2}, callCounts{"Unauthenticated": 1008}, 16, 0, 1000},
		{"REST errors are non-2xx, counted once", "wrk",
			driverRun{Responses: 900, Non2xx: 100, Failed: 100, Seconds: 2}, callCounts{"OK": 900, "ResourceExhausted": 100}, 16, 900, 100},
		{"cancelled by the generator's stop", "h2load",
			driverRun{Responses: 1000, Seconds: 2}, callCounts{"OK": 1000, "Canceled": 12}, 16, 1000, 0},
		{"more cancelled than were in flight", "h2load",
			driverRun{Responses: 1000, Seconds: 2}, callCounts{"OK": 970, "Canceled": 30}, 16, 970, 30},
		{"2xx the server did not count as OK", "h2load",
			driverRun{Responses: 1000, Seconds: 2}, callCounts{"OK": 900}, 16, 900, 100},
		{"transport errors without a status", "h2load",
			driverRun{Responses: 990, Failed: 10, FirstError: "h2load: 10 failed", Seconds: 2}, callCounts{"OK": 990}, 16, 990, 10},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := &Result{Transport: c.transport}
			accountDriver(r, &c.run, c.calls, c.inFlight)
			if r.Published != c.published || r.PublishErrors != c.errors {
				t.Errorf("published %d, errors %d; want %d, %d (notes %q)", r.Published, r.PublishErrors, c.published, c.errors, r.Notes)
			}
			if (r.PublishErrors > 0) != (r.PublishError != "") {
				t.Errorf("errors %d with first error %q", r.PublishErrors, r.PublishError)
			}
			if want := float64(c.published) / c.run.Seconds; r.AchievedRate != want {
				t.Errorf("rate %v, want %v", r.AchievedRate, want)
			}
		})
	}
}

// TestDriversAgainstNode runs h2load and wrk against an in-process node:
// every event they publish must be counted, and with a token the node
// refuses every call must be an error, although h2load sees HTTP 200.
func TestDriversAgainstNode(t *testing.T) {
	needTools(t, h2loadTool, wrkTool)
	n := startTestNode(t)
	for _, c := range []struct {
		name   string
		secret string
	}{
		{"accepted", node.DevSecret},
		{"refused", "not-the-dev-secret-not-the-dev-secret"},
	} {
		t.Run(c.name, func(t *testing.T) {
			o := defaultOptions()
			o.GRPCAddr, o.HTTPAddr = n.GRPCAddr(), n.HTTPAddr()
			o.Duration, o.Quiet, o.Concurrency, o.Publish = time.Second, true, 8, "unary,rest"
			o.Rate = 0
			if err := o.validate(); err != nil {
				t.Fatal(err)
			}
			b := &bench{opts: o, minter: newMinter(c.secret), server: &serverMeter{pid: os.Getpid()}}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			before, err := fetchCallCounts(ctx, o.HTTPAddr, publishMethod)
			if err != nil {
				t.Fatal(err)
			}
			rs, err := b.runMode(ctx, "publish")
			if err != nil {
				t.Fatal(err)
			}
			after, err := fetchCallCounts(ctx, o.HTTPAddr, publishMethod)
			if err != nil {
				t.Fatal(err)
			}
			if len(rs) != 2 || rs[0].Transport != "h2load" || rs[1].Transport != "wrk" {
				t.Fatalf("rows %+v", rs)
			}
			var published int64
			for _, r := range rs {
				published += r.Published
				if r.Latency.Count == 0 || r.ClientCores <= 0 {
					t.Errorf("%s: latency %+v, client cores %v", r.Mode, r.Latency, r.ClientCores)
				}
				if c.secret == node.DevSecret {
					if r.Published == 0 || r.PublishErrors != 0 || r.AchievedRate <= 0 {
						t.Errorf("%s: published %d, errors %d (%s)", r.Mode, r.Published, r.PublishErrors, r.PublishError)
					}
				} else if r.Published != 0 || r.PublishErrors == 0 || !strings.Contains(r.PublishError, "Unauthenticated") && !strings.Contains(r.PublishError, "not 2xx") {
					t.Errorf("%s: published %d, errors %d (%s)", r.Mode, r.Published, r.PublishErrors, r.PublishError)
				}
			}
			// The node completed every counted event, and at most the
			// calls in flight when each generator stopped besides.
			d := after.sub(before)
			if ok := d.ok(); published > ok || ok > published+2*int64(o.Concurrency) {
				t.Errorf("counted %d published events, the node %d OK calls", published, ok)
			}
		})
	}
}
