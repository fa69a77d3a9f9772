package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	notifyv1 "github.com/maxloyalty/notify/gen/notify/v1"
	"github.com/maxloyalty/notify/internal/node"
)

// flatSamples is a steady server: values wobble around a level, as the Go
// heap does between GC cycles, without a trend.
func flatSamples(n int) []soakSample {
	wobble := []int64{0, 3, -2, 4, -3, 1, -1, 2}
	out := []soakSample{{At: 0, RSS: 20 << 20, FDs: 20, Goroutines: 30, Threads: 8}}
	for i := 1; i <= n; i++ {
		w := wobble[i%len(wobble)]
		out = append(out, soakSample{
			At:         float64(i * 5),
			RSS:        (60 + w) << 20,
			FDs:        100 + int(w),
			Goroutines: 600 + int(w)*5,
			Threads:    12,
		})
	}
	return out
}

// TestSoakGrowthVerdict checks the growth verdict on synthetic samples: a
// flat series passes, a leak in any of the three figures fails.
func TestSoakGrowthVerdict(t *testing.T) {
	lim := growthLimits{RSSPct: 20, RSSMB: 8, GoroutinePct: 10, GoroutineSlack: 50, FDSlack: 32}
	const warmup, end = 20, 120

	growth, fails := judgeGrowth(flatSamples(24), nil, warmup, end, lim, false)
	if len(fails) != 0 || len(growth) != 3 {
		t.Fatalf("flat series: %v %+v", fails, growth)
	}
	for _, g := range growth {
		if !g.OK || g.Growth > g.Allowed {
			t.Errorf("flat series: %+v", g)
		}
	}
	if g := growth[0]; g.Name != "rss_bytes" || g.Start != 20<<20 || g.Allowed != 12<<20 {
		t.Errorf("RSS: start %v, allowed %v (want 20 MiB, 20%% of 60 MiB)", g.Start, g.Allowed)
	}

	// Each leak alone, growing steadily after the warm-up.
	leaks := []struct {
		name   string
		metric string
		grow   func(s *soakSample, step int)
	}{
		{"rss", "rss_bytes", func(s *soakSample, i int) { s.RSS += int64(i) << 20 }},        // +1 MiB per sample
		{"goroutines", "goroutines", func(s *soakSample, i int) { s.Goroutines += 10 * i }}, // +10 per sample
		{"fds", "open_files", func(s *soakSample, i int) { s.FDs += 3 * i }},                // +3 per sample
	}
	for _, l := range leaks {
		s := flatSamples(24)
		for i := range s {
			if s[i].At >= warmup {
				l.grow(&s[i], i)
			}
		}
		growth, fails := judgeGrowth(s, nil, warmup, end, lim, false)
		if len(fails) != 1 || !strings.HasPrefix(fails[0], l.metric+" grew") {
			t.Errorf("%s leak: failures %q", l.name, fails)
		}
		for _, g := range growth {
			if g.OK != (g.Name != l.metric) {
				t.Errorf("%s leak: %+v", l.name, g)
			}
		}
	}

	// One spike at the end (a GC cycle, a burst of resumes) is not a trend.
	s := flatSamples(24)
	s[len(s)-1].RSS += 40 << 20
	s[len(s)-1].Goroutines += 400
	if _, fails := judgeGrowth(s, nil, warmup, end, lim, false); len(fails) != 0 {
		t.Errorf("one spike: %v", fails)
	}

	// Small servers: the absolute RSS allowance applies.
	s = flatSamples(24)
	for i := range s {
		s[i].RSS -= 50 << 20
		if s[i].At >= warmup {
			s[i].RSS += int64(i) << 18 // +6 MiB in all, below 8 MiB
		}
	}
	if _, fails := judgeGrowth(s, nil, warmup, end, lim, false); len(fails) != 0 {
		t.Errorf("small server, +6 MiB: %v", fails)
	}

	// Without go_goroutines the threads are judged.
	s = flatSamples(24)
	for i := range s {
		s[i].Goroutines = -1
		if s[i].At >= warmup {
			s[i].Threads += i
		}
	}
	growth, fails = judgeGrowth(s, nil, warmup, end, growthLimits{RSSPct: 20, RSSMB: 8, GoroutinePct: 10, GoroutineSlack: 5, FDSlack: 32}, true)
	if len(fails) != 1 || growth[1].Name != "threads" || growth[1].OK {
		t.Errorf("threads: %v %+v", fails, growth)
	}

	// Too few samples after the warm-up cannot be judged.
	if _, fails := judgeGrowth(flatSamples(3), nil, warmup, end, lim, false); len(fails) != 1 || !strings.Contains(fails[0], "too few samples") {
		t.Errorf("3 samples: %v", fails)
	}
}

func TestParseGoGoroutines(t *testing.T) {
	text := "# HELP go_gc_duration_seconds x\ngo_gc_duration_seconds{quantile=\"0\"} 1e-05\n" +
		"# HELP go_goroutines Number of goroutines that currently exist.\n# TYPE go_goroutines gauge\n" +
		"go_goroutines 612\ngo_goroutines_other 3\n"
	if n, ok := parseGoGoroutines([]byte(text)); !ok || n != 612 {
		t.Errorf("got %d %v, want 612", n, ok)
	}
	if _, ok := parseGoGoroutines([]byte("go_threads 12\n")); ok {
		t.Error("found go_goroutines where there is none")
	}
	if n := parseThreads([]byte("Name:\tnotifyd\nThreads:\t11\nVmRSS:\t1 kB\n")); n != 11 {
		t.Errorf("threads %d", n)
	}
}

// TestSoakEndToEnd runs a short soak with real churn against a node in this
// process: streams are dropped, connections closed and replaced, stalled
// streams cut (a small queue makes that quick), and every event must still
// arrive once and in order. The node shares this process with the load
// generator and the race detector, so its RSS, goroutines and open files
// are sampled but not judged here (TestSoakGrowthVerdict covers the
// verdict; make soak judges a separate notifyd).
func TestSoakEndToEnd(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	n := startTestNodeWith(t, func(c *node.Config) { c.QueueBytes = 64 << 10 })

	o := defaultOptions()
	o.soakDefaults(map[string]bool{})
	o.GRPCAddr, o.HTTPAddr = n.GRPCAddr(), n.HTTPAddr()
	o.Quiet = true
	o.QueueBytes = 64 << 10
	o.Subscribers, o.Conns = 30, 3
	o.Duration, o.Drain = 12*time.Second, 20*time.Second
	o.Rate, o.Payload = 150, 128
	s := &o.Soak
	// Large shared events, so that a stalled stream overflows its queue and
	// window within its stall even when a loaded machine publishes slowly.
	s.SharedRate, s.SharedPayload = 100, 1900
	s.Warmup, s.SampleEvery, s.Settle = 4*time.Second, time.Second, 0
	s.ChurnMin, s.ChurnMax, s.ReconnectMax = 300*time.Millisecond, 1500*time.Millisecond, 200*time.Millisecond
	s.ConnDrop, s.StallFraction, s.WebFraction, s.PoolRotate = 0.3, 0.2, 0.1, 4*time.Second
	s.StallMax = 8 * time.Second
	s.RSSGrowthPct, s.GoroutineGrowthPct, s.FDSlack = 1000, 1000, 1000 // sampled, not judged
	if err := o.validate(); err != nil {
		t.Fatal(err)
	}
	b := &bench{opts: o, minter: newMinter(node.DevSecret), server: &serverMeter{pid: os.Getpid()}}
	rctx, rcancel := context.WithTimeout(ctx, 2*time.Minute)
	defer rcancel()
	r, err := b.runSoak(rctx)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := printSoak(&out, r); err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", out.String())
	if r.Verdict != "PASS" || len(r.Failures) != 0 {
		t.Errorf("verdict %s: %q", r.Verdict, r.Failures)
	}
	if r.Published == 0 || r.Delivered == 0 || r.Reconnects == 0 || r.Resumes == 0 || r.Cuts == 0 || r.Stalls == 0 ||
		r.ConnDrops == 0 || r.PoolRotations == 0 || r.Web == 0 {
		t.Errorf("not enough churn: published %d, delivered %d, reconnects %d, resumes %d, stalls %d, cuts %d, connections closed %d, replaced %d, grpc-web %d",
			r.Published, r.Delivered, r.Reconnects, r.Resumes, r.Stalls, r.Cuts, r.ConnDrops, r.PoolRotations, r.Web)
	}
	if r.Lost != 0 || r.Duplicated != 0 || r.Unrecovered != 0 || r.BeyondHistory != 0 || r.StreamErrors != 0 || r.Behind != 0 {
		t.Errorf("lost %d, duplicated %d, unrecovered %d, beyond history %d, stream errors %d (%s), behind %d",
			r.Lost, r.Duplicated, r.Unrecovered, r.BeyondHistory, r.StreamErrors, r.StreamError, r.Behind)
	}
	if len(r.Growth) != 3 || len(r.Samples) < 8 {
		t.Fatalf("%d samples, growth %+v", len(r.Samples), r.Growth)
	}
	for _, s := range r.Samples {
		if s.RSS <= 0 || s.FDs <= 0 || s.Goroutines <= 0 {
			t.Errorf("sample %+v", s)
		}
	}
	js, err := json.Marshal([]*SoakResult{r})
	if err != nil || !bytes.Contains(js, []byte(`"verdict":"PASS"`)) {
		t.Errorf("JSON: %v %.300s", err, js)
	}
}

// TestSoakCommandLine checks the mode's flags without running a soak.
func TestSoakCommandLine(t *testing.T) {
	ctx := context.Background()
	var out, errw bytes.Buffer
	for _, args := range [][]string{
		{"soak", "--grpc", "10.1.2.3:9090"},
		{"soak", "--http", "localhost:8080"},
		{"soak", "--shared-rate", "500", "--rate", "100"},
		{"soak", "--stall-fraction", "1.5"},
		{"soak", "--churn-min", "5s", "--churn-max", "1s"},
		{"soak", "--duration", "30s", "--warmup", "30s"},
		{"soak", "--history", "nosuchkind=1/1m"},
	} {
		if err := run(ctx, append(args, "--quiet", "--server-pid", "1"), &out, &errw); err == nil {
			t.Errorf("%q accepted", args)
		}
	}
	o := defaultOptions()
	o.soakDefaults(map[string]bool{})
	if o.Subscribers != 200 || o.Duration != 2*time.Minute || o.Rate != 200 || o.Window != 64<<10 || o.SpawnArgs != "--log-level error" {
		t.Errorf("soak defaults: %d subscribers, %v, %v/s, window %d, spawn args %q", o.Subscribers, o.Duration, o.Rate, o.Window, o.SpawnArgs)
	}
	if w := o.Soak.warmup(2 * time.Minute); w != time.Minute {
		t.Errorf("warm-up of 2m: %v", w)
	}
	if w := o.Soak.warmup(8 * time.Minute); w != 96*time.Second {
		t.Errorf("warm-up of 8m: %v", w)
	}
	if w := o.Soak.warmup(30 * time.Second); w != 15*time.Second {
		t.Errorf("warm-up of 30s: %v", w)
	}
	if w := o.Soak.warmup(10 * time.Minute); w != 2*time.Minute {
		t.Errorf("warm-up of 10m: %v", w)
	}
}

// TestSoakAccounting feeds one client's streams by hand: continuity across
// a resume, duplicates, gaps, a resume the history covered but the server
// did not recover (a failure) and one it could not cover (reported apart).
func TestSoakAccounting(t *testing.T) {
	c := &soakClient{rooms: []*soakRoom{{name: "restaurant:r1:transactions", hist: 1000}, {name: "guest:g1", hist: 100}}}
	env := &soakEnv{}
	feed := func(st *soakStream, msg *notifyv1.SubscribeResponse) {
		t.Helper()
		b, err := proto.Marshal(msg)
		if err != nil {
			t.Fatal(err)
		}
		if err := st.handle(b); err != nil {
			t.Fatal(err)
		}
	}
	connected := func(states ...*notifyv1.RoomState) *notifyv1.SubscribeResponse {
		return &notifyv1.SubscribeResponse{Control: &notifyv1.SubscribeResponse_Connected{Connected: &notifyv1.Connected{Rooms: states}}}
	}
	events := func(room string, offsets ...uint64) *notifyv1.SubscribeResponse {
		m := &notifyv1.SubscribeResponse{}
		for _, o := range offsets {
			m.Events = append(m.Events, &notifyv1.Event{Room: room, Epoch: "e1", Offset: o})
		}
		return m
	}
	shared, guest := "restaurant:r1:transactions", "guest:g1"

	// First stream: live from the tops (the guest room has no events yet).
	st := &soakStream{c: c, env: env}
	feed(st, connected(&notifyv1.RoomState{Room: shared, Epoch: "e1", Offset: 10}, &notifyv1.RoomState{Room: guest}))
	feed(st, events(shared, 11, 12))
	feed(st, events(guest, 1))
	// Second stream resumes: recovered, replay continues exactly.
	st = &soakStream{c: c, env: env, resumed: true}
	if ps := c.positions(); ps[0].Offset != 12 || ps[0].Epoch != "e1" || ps[1].Offset != 1 || ps[1].Epoch != "e1" {
		t.Fatalf("positions %v", ps)
	}
	feed(st, connected(&notifyv1.RoomState{Room: shared, Epoch: "e1", Offset: 20, Recovered: true, StartOffset: 12},
		&notifyv1.RoomState{Room: guest, Epoch: "e1", Offset: 1, Recovered: true, StartOffset: 1}))
	feed(st, events(shared, 13, 14, 14, 17)) // a duplicate, then 15 and 16 missing
	feed(st, &notifyv1.SubscribeResponse{Control: &notifyv1.SubscribeResponse_Disconnected{Disconnected: &notifyv1.Disconnected{
		Reason: notifyv1.DisconnectReason_DISCONNECT_REASON_SLOW_CONSUMER}}})
	if !st.cut {
		t.Error("Disconnected{SLOW_CONSUMER} not taken for a cut")
	}
	// Third: the server does not recover a gap of 33 the history holds
	// (a failure: 33 lost), nor a guest gap of 150 beyond its 100 events.
	st = &soakStream{c: c, env: env, resumed: true}
	feed(st, connected(&notifyv1.RoomState{Room: shared, Epoch: "e1", Offset: 50, StartOffset: 50},
		&notifyv1.RoomState{Room: guest, Epoch: "e1", Offset: 151, StartOffset: 151}))
	feed(st, events(shared, 51))
	feed(st, events("admin", 1))

	n := &c.n
	got := []int64{n.connects.Load(), n.reconnects.Load(), n.resumes.Load(), n.delivered.Load(), n.duplicated.Load(), n.lost.Load(),
		n.unrecovered.Load(), n.beyond.Load(), n.beyondMissed.Load(), n.unknown.Load(), n.errors.Load()}
	want := []int64{3, 2, 1, 7, 1, 2 + 33, 1, 1, 150, 1, 0}
	if !slices.Equal(got, want) {
		t.Errorf("connects, reconnects, resumes, delivered, duplicated, lost, unrecovered, beyond, beyond missed, unknown, errors = %v, want %v", got, want)
	}
	if c.rooms[0].lastA.Load() != 51 || c.rooms[1].last != 151 {
		t.Errorf("positions %d %d", c.rooms[0].lastA.Load(), c.rooms[1].last)
	}
	if !isCut(status.Error(codes.ResourceExhausted, "subscriber queue overflowed: the client stopped reading")) ||
		isCut(status.Error(codes.ResourceExhausted, "too many streams")) || isCut(status.Error(codes.Canceled, "queue overflowed")) {
		t.Error("isCut")
	}
}
