package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"net/textproto"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	notifyv1 "github.com/maxloyalty/notify/gen/notify/v1"
	"github.com/maxloyalty/notify/server/auth"
	"github.com/maxloyalty/notify/server/node"
	"github.com/maxloyalty/notify/server/room"
)

// The soak mode churns subscribers against a running notifyd for a bounded
// time while publishers publish at a bounded rate, and samples the server
// process (RSS, goroutines, open files). Each subscriber repeatedly opens a
// stream, reads for a random while, drops the stream (sometimes with its
// connection) and resumes from the last offset and epoch it received; a
// fraction of them stop reading until the server cuts them as slow
// consumers, then resume too. Every event must arrive exactly once and in
// order across the reconnects, and the samples taken after the warm-up must
// not grow beyond the tolerances.

// soakOptions are the soak mode's flags (registered for every mode like the
// others, used by soak only).
type soakOptions struct {
	on bool // the mode is soak (set by run before validation)

	Warmup        time.Duration
	SampleEvery   time.Duration
	SharedRate    float64
	SharedPayload int
	ChurnMin      time.Duration
	ChurnMax      time.Duration
	ReconnectMax  time.Duration
	ConnDrop      float64
	StallFraction float64
	StallMax      time.Duration
	WebFraction   float64
	PoolRotate    time.Duration
	History       string
	Settle        time.Duration

	RSSGrowthPct       float64
	RSSGrowthMB        float64
	GoroutineGrowthPct float64
	GoroutineSlack     int
	FDSlack            int
}

func defaultSoakOptions() soakOptions {
	return soakOptions{
		SampleEvery:        5 * time.Second,
		SharedRate:         60,
		SharedPayload:      2048,
		ChurnMin:           time.Second,
		ChurnMax:           8 * time.Second,
		ReconnectMax:       500 * time.Millisecond,
		ConnDrop:           0.25,
		StallFraction:      0.1,
		StallMax:           40 * time.Second,
		WebFraction:        0.1,
		PoolRotate:         20 * time.Second,
		Settle:             3 * time.Second,
		RSSGrowthPct:       20,
		RSSGrowthMB:        8,
		GoroutineGrowthPct: 10,
		GoroutineSlack:     50,
		FDSlack:            32,
	}
}

func (s *soakOptions) bind(fs *flag.FlagSet) {
	fs.DurationVar(&s.Warmup, "warmup", s.Warmup, "soak: samples before this are not judged (default 20% of --duration, at least 60s, at most half of it)")
	fs.DurationVar(&s.SampleEvery, "sample-every", s.SampleEvery, "soak: interval between samples of the server's RSS, goroutines and open files")
	fs.Float64Var(&s.SharedRate, "shared-rate", s.SharedRate, "soak: events/s published in the shared room, part of --rate (the rest goes to the guest rooms)")
	fs.IntVar(&s.SharedPayload, "shared-payload", s.SharedPayload, "soak: encoded PointsAdded bytes of the shared room's events (--payload: the guest rooms')")
	fs.DurationVar(&s.ChurnMin, "churn-min", s.ChurnMin, "soak: shortest time a stream stays open before the client drops it")
	fs.DurationVar(&s.ChurnMax, "churn-max", s.ChurnMax, "soak: longest time a stream stays open before the client drops it")
	fs.DurationVar(&s.ReconnectMax, "reconnect-max", s.ReconnectMax, "soak: a dropped client reconnects after a random pause up to this")
	fs.Float64Var(&s.ConnDrop, "conn-drop", s.ConnDrop, "soak: fraction of gRPC streams opened on a connection of their own, closed with the stream")
	fs.Float64Var(&s.StallFraction, "stall-fraction", s.StallFraction, "soak: fraction of the subscribers that stop reading in every stream until the server cuts them as slow consumers")
	fs.DurationVar(&s.StallMax, "stall-max", s.StallMax, "soak: longest stall")
	fs.Float64Var(&s.WebFraction, "web-fraction", s.WebFraction, "soak: fraction of the subscribers that use grpc-web (HTTP/1.1) instead of native gRPC")
	fs.DurationVar(&s.PoolRotate, "pool-rotate", s.PoolRotate, "soak: every this often one shared gRPC connection is closed (its streams reconnect) and replaced (0: never)")
	fs.StringVar(&s.History, "history", s.History, "soak: the server's resume history if not notifyd's default, as its --history flag (kind=size/ttl,...); passed to --spawn")
	fs.DurationVar(&s.Settle, "settle", s.Settle, "soak: wait after the clients stop before the last sample")
	fs.Float64Var(&s.RSSGrowthPct, "max-rss-growth", s.RSSGrowthPct, "soak: RSS may grow this many percent after the warm-up (or --max-rss-growth-mb, whichever is larger)")
	fs.Float64Var(&s.RSSGrowthMB, "max-rss-growth-mb", s.RSSGrowthMB, "soak: RSS may grow this many MiB after the warm-up (or --max-rss-growth percent, whichever is larger)")
	fs.Float64Var(&s.GoroutineGrowthPct, "max-goroutine-growth", s.GoroutineGrowthPct, "soak: goroutines may grow this many percent after the warm-up, plus --goroutine-slack")
	fs.IntVar(&s.GoroutineSlack, "goroutine-slack", s.GoroutineSlack, "soak: goroutines may grow by this many more")
	fs.IntVar(&s.FDSlack, "fd-slack", s.FDSlack, "soak: open files may grow by this many after the warm-up")
}

// soakDefaults sets the soak mode's defaults of the shared flags the
// command line did not set.
func (o *options) soakDefaults(set map[string]bool) {
	o.Soak.on = true
	if !set["subscribers"] {
		o.Subscribers = 200
	}
	if !set["rate"] {
		o.Rate = 200
	}
	if !set["duration"] {
		o.Duration = 2 * time.Minute
	}
	if !set["window"] {
		// Small, so that a stalled stream overflows its server queue soon;
		// it does not slow the readers at these rates.
		o.Window = 64 << 10
	}
	if !set["drain"] {
		o.Drain = 20 * time.Second
	}
	if !set["spawn-args"] {
		// A spawned notifyd keeps its defaults (queue, history, limits): they
		// are what the soak checks.
		// notifyd logs every stream that ends with an error at warn: the
		// soak ends thousands on purpose.
		extra := []string{"--log-level", "error"}
		if o.QueueBytes > 0 {
			extra = append(extra, "--queue-bytes", strconv.Itoa(o.QueueBytes))
		}
		if o.Soak.History != "" {
			extra = append(extra, "--history", o.Soak.History)
		}
		o.SpawnArgs = strings.Join(extra, " ")
	}
}

// maxDuration bounds --duration: soaks may run long, the other modes not.
func (o *options) maxDuration() time.Duration {
	if o.Soak.on {
		return 24 * time.Hour
	}
	return 10 * time.Minute
}

// warmup is the warm-up of a run of d: the flag, or 20% of d, at least a
// minute and at most half of d. notifyd's RSS settles only after its guest
// rooms' histories have filled (85 s at the default rates) and a few rounds
// of stalls and resumes have set the heap's high-water mark: with 24 s of
// warm-up, a 2-minute run judged that rise (+12 MB of +12.8 allowed once).
func (s *soakOptions) warmup(d time.Duration) time.Duration {
	if s.Warmup > 0 {
		return s.Warmup
	}
	return min(max(d/5, time.Minute), d/2)
}

// checkSoak validates the soak flags.
func (o *options) checkSoak() error {
	s := o.Soak
	for _, a := range []string{o.GRPCAddr, o.HTTPAddr} {
		host, _, err := net.SplitHostPort(a)
		if err != nil {
			return fmt.Errorf("soak: address %q: %w", a, err)
		}
		if host != "127.0.0.1" {
			return fmt.Errorf("soak: address %q: the soak only targets 127.0.0.1", a)
		}
	}
	frac := func(name string, f float64) error {
		if f < 0 || f > 1 || math.IsNaN(f) {
			return fmt.Errorf("soak: --%s: %v is not in [0, 1]", name, f)
		}
		return nil
	}
	switch {
	case o.Subscribers < 1 || o.Subscribers > 100_000:
		return fmt.Errorf("soak: --subscribers: %d is not in [1, 100000]", o.Subscribers)
	case o.Rate <= 0 || o.Rate > 100_000:
		return fmt.Errorf("soak: --rate: %v is not in (0, 100000]: the soak publishes at a bounded rate", o.Rate)
	case s.SharedRate < 0 || s.SharedRate > o.Rate:
		return fmt.Errorf("soak: --shared-rate: %v is not in [0, --rate]", s.SharedRate)
	case s.SharedPayload < 0 || s.SharedPayload > 64<<10 || o.Payload < 0 || o.Payload > 64<<10:
		return errors.New("soak: --payload and --shared-payload must be in [0, 65536]")
	case s.ChurnMin <= 0 || s.ChurnMax < s.ChurnMin:
		return errors.New("soak: need 0 < --churn-min <= --churn-max")
	case s.ReconnectMax < 0 || s.StallMax <= 0 || s.PoolRotate < 0 || s.Settle < 0:
		return errors.New("soak: --reconnect-max, --pool-rotate and --settle must not be negative, --stall-max must be positive")
	case s.SampleEvery < 100*time.Millisecond:
		return errors.New("soak: --sample-every must be at least 100ms")
	case s.warmup(o.Duration) >= o.Duration:
		return fmt.Errorf("soak: --warmup %v leaves nothing of --duration %v", s.warmup(o.Duration), o.Duration)
	case s.RSSGrowthPct < 0 || s.RSSGrowthMB < 0 || s.GoroutineGrowthPct < 0 || s.GoroutineSlack < 0 || s.FDSlack < 0:
		return errors.New("soak: growth tolerances must not be negative")
	}
	for name, f := range map[string]float64{"conn-drop": s.ConnDrop, "stall-fraction": s.StallFraction, "web-fraction": s.WebFraction} {
		if err := frac(name, f); err != nil {
			return err
		}
	}
	if s.History != "" {
		if _, err := node.ParseHistory(s.History); err != nil {
			return fmt.Errorf("soak: --history: %w", err)
		}
	}
	return nil
}

// soakSample is one reading of the server process.
type soakSample struct {
	At         float64 `json:"t_s"` // seconds since the run began
	RSS        int64   `json:"rss_bytes"`
	FDs        int     `json:"open_files"`
	Goroutines int     `json:"goroutines"` // -1: /metrics had no go_goroutines
	Threads    int     `json:"threads"`
}

// sampler reads a process's RSS, open files and threads from /proc and its
// goroutines from go_goroutines at its /metrics.
type sampler struct {
	pid     int
	metrics string // http://host:port/metrics
	client  *http.Client
}

func (s *sampler) sample(at float64) (soakSample, error) {
	sm := soakSample{At: math.Round(at*10) / 10, Goroutines: -1}
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.pid))
	if err != nil {
		return sm, err
	}
	if sm.RSS, err = parseVmRSS(st); err != nil {
		return sm, err
	}
	sm.Threads = parseThreads(st)
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", s.pid))
	if err != nil {
		return sm, err
	}
	sm.FDs = len(fds)
	if n, err := s.goroutines(); err == nil {
		sm.Goroutines = n
	}
	return sm, nil
}

func (s *sampler) goroutines() (int, error) {
	resp, err := s.client.Get(s.metrics)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("GET /metrics: HTTP %d", resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return 0, err
	}
	n, ok := parseGoGoroutines(body)
	if !ok {
		return 0, errors.New("/metrics has no go_goroutines")
	}
	return n, nil
}

// parseGoGoroutines finds "go_goroutines <n>" in the Prometheus text format.
func parseGoGoroutines(text []byte) (int, bool) {
	sc := bufio.NewScanner(bytes.NewReader(text))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, "go_goroutines")
		if !ok || (rest != "" && rest[0] != ' ' && rest[0] != '{') {
			continue
		}
		f := strings.Fields(rest)
		if strings.HasPrefix(rest, "{") {
			_, after, _ := strings.Cut(rest, "}")
			f = strings.Fields(after)
		}
		if len(f) < 1 {
			continue
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			continue
		}
		return int(v), true
	}
	return 0, false
}

// parseThreads finds "Threads: <n>" in /proc/<pid>/status (0 if absent).
func parseThreads(status []byte) int {
	sc := bufio.NewScanner(bytes.NewReader(status))
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "Threads:"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(rest))
			return n
		}
	}
	return 0
}

// growthLimits are the tolerated increases from the samples just after the
// warm-up to the last samples of the run.
type growthLimits struct {
	RSSPct         float64 // RSS: this many percent of the base...
	RSSMB          float64 // ... or this many MiB, whichever is larger
	GoroutinePct   float64 // goroutines: this many percent of the base...
	GoroutineSlack int     // ... plus this many
	FDSlack        int     // open files: this many
}

func (l growthLimits) String() string {
	return fmt.Sprintf("RSS +%g%% or +%g MiB (the larger), goroutines +%g%% +%d, open files +%d",
		l.RSSPct, l.RSSMB, l.GoroutinePct, l.GoroutineSlack, l.FDSlack)
}

// metricGrowth is one sampled figure's verdict.
type metricGrowth struct {
	Name      string  `json:"name"`
	Start     float64 `json:"start"`
	Base      float64 `json:"after_warmup"`
	End       float64 `json:"end"`
	Max       float64 `json:"max_after_warmup"`
	AfterStop float64 `json:"after_stop"`
	Growth    float64 `json:"growth"`
	Allowed   float64 `json:"allowed_growth"`
	OK        bool    `json:"ok"`
}

// judgeWindow returns how many samples the base and end values are the
// median of, out of n after the warm-up: a third of them, so that a few
// noisy readings (the Go heap breathes with each GC cycle) neither hide nor
// fake a trend, while a steady leak still shows as two thirds of its growth.
func judgeWindow(n int) int { return max(1, n/3) }

// judgeGrowth compares the samples taken between warmup and end (seconds
// since the start): the median of the first third against the median of
// the last third. The first sample is the start; afterStop, when set, is
// reported only. threads judges the thread count instead of goroutines
// (no go_goroutines).
func judgeGrowth(samples []soakSample, afterStop *soakSample, warmup, end float64, lim growthLimits, threads bool) ([]metricGrowth, []string) {
	var window []soakSample
	for _, s := range samples {
		if s.At >= warmup && s.At <= end {
			window = append(window, s)
		}
	}
	if len(samples) == 0 || len(window) < 2 {
		return nil, []string{fmt.Sprintf("too few samples after the warm-up (%d): lengthen --duration or shorten --sample-every", len(window))}
	}
	k := judgeWindow(len(window))
	type metric struct {
		name    string
		get     func(soakSample) float64
		allowed func(base float64) float64
	}
	gName, gGet := "goroutines", func(s soakSample) float64 { return float64(s.Goroutines) }
	if threads {
		gName, gGet = "threads", func(s soakSample) float64 { return float64(s.Threads) }
	}
	metrics := []metric{
		{"rss_bytes", func(s soakSample) float64 { return float64(s.RSS) },
			func(b float64) float64 { return max(b*lim.RSSPct/100, lim.RSSMB*(1<<20)) }},
		{gName, gGet, func(b float64) float64 { return math.Floor(b*lim.GoroutinePct/100) + float64(lim.GoroutineSlack) }},
		{"open_files", func(s soakSample) float64 { return float64(s.FDs) }, func(float64) float64 { return float64(lim.FDSlack) }},
	}
	var out []metricGrowth
	var fails []string
	for _, m := range metrics {
		vals := make([]float64, len(window))
		for i, s := range window {
			vals[i] = m.get(s)
		}
		g := metricGrowth{Name: m.name, Start: m.get(samples[0]), Base: median(vals[:k]), End: median(vals[len(vals)-k:]), Max: slices.Max(vals), AfterStop: -1}
		if afterStop != nil {
			g.AfterStop = m.get(*afterStop)
		}
		g.Growth = g.End - g.Base
		g.Allowed = m.allowed(g.Base)
		g.OK = g.Growth <= g.Allowed
		if !g.OK {
			fails = append(fails, fmt.Sprintf("%s grew from %s to %s after the warm-up (allowed +%s)", m.name, fmtMetric(m.name, g.Base), fmtMetric(m.name, g.End), fmtMetric(m.name, g.Allowed)))
		}
		out = append(out, g)
	}
	return out, fails
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	n := len(s)
	if n == 0 {
		return 0
	}
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

func fmtMetric(name string, v float64) string {
	if v < 0 {
		return "-"
	}
	if name == "rss_bytes" {
		return strconv.FormatFloat(v/(1<<20), 'f', 1, 64) + " MB"
	}
	return strconv.FormatFloat(v, 'f', 0, 64)
}

// soakRoom is a client's position in one room. The client's goroutine owns
// it; lastA mirrors last for the coordinator.
type soakRoom struct {
	name  string
	epoch string
	last  uint64
	hist  int // the room's history size on the server
	size  int // bytes of its last event on the wire (0: not yet seen)
	lastA atomic.Uint64
}

// soakCounts are one client's figures.
type soakCounts struct {
	connects, reconnects, resumes, unrecovered, beyond, beyondMissed                atomic.Int64
	drops, connDrops, poolDrops, cuts, cutsReading, stalls, stallsUncut, stallNanos atomic.Int64
	delivered, lost, duplicated, unknown, epochChanges, errors                      atomic.Int64
}

// soakClient is one subscriber that churns.
type soakClient struct {
	id      int
	kind    string // shared, personal or both
	rooms   []*soakRoom
	names   []string
	token   string
	web     bool
	staller bool
	rng     *rand.Rand
	started bool // a stream reached Connected: the next ones resume
	n       soakCounts
	errMu   sync.Mutex
	err     string // first unexpected stream end
	done    chan struct{}
}

func (c *soakClient) fail(format string, args ...any) {
	c.n.errors.Add(1)
	c.errMu.Lock()
	if c.err == "" {
		c.err = fmt.Sprintf(format, args...)
	}
	c.errMu.Unlock()
}

func (c *soakClient) room(name string) *soakRoom {
	for _, r := range c.rooms {
		if r.name == name {
			return r
		}
	}
	return nil
}

func (c *soakClient) positions() []*notifyv1.StreamPosition {
	ps := make([]*notifyv1.StreamPosition, len(c.rooms))
	for i, r := range c.rooms {
		ps[i] = &notifyv1.StreamPosition{Room: r.name, Offset: r.last, Epoch: r.epoch}
	}
	return ps
}

// poolConn is a shared gRPC connection; the slot's pointer changes when the
// coordinator replaces it.
type poolConn struct{ conn *grpc.ClientConn }

// soakEnv is what the clients share.
type soakEnv struct {
	o        options
	tops     *roomTops
	pool     []atomic.Pointer[poolConn]
	web      *http.Client
	draining atomic.Bool
	// cutBytes is what a stalled stream must have outstanding (published
	// but not read) before the server has surely cut it: its queue, the
	// flow-control windows and one coalesced write, with a margin.
	cutBytes int64
	// sizes guesses each room's bytes per event before one arrives.
	sizes map[string]int
}

// stallGuard is the share of a room's history a stall may leave unread:
// beyond it, the resume after the cut might not be covered.
const stallGuard = 0.9

// outstanding returns what c has not read yet of what was published in its
// rooms, in bytes, and the largest share of a room's history that is.
func (c *soakClient) outstanding(env *soakEnv) (int64, float64) {
	var b int64
	var use float64
	for _, r := range c.rooms {
		top := env.tops.top(r.name)
		if top <= r.last {
			continue
		}
		n := top - r.last
		size := r.size
		if size == 0 {
			size = env.sizes[r.name]
		}
		b += int64(n) * int64(size)
		if r.hist > 0 {
			use = max(use, float64(n)/float64(r.hist))
		}
	}
	return b, use
}

// soakStream is the state of one stream of a client.
type soakStream struct {
	c       *soakClient
	env     *soakEnv
	resumed bool // positions were sent
	resp    notifyv1.SubscribeResponse
	cut     bool // Disconnected{SLOW_CONSUMER}
	ended   string
	// A staller stops reading at stallAt; afterwards arm drops the stream
	// if the server has not cut it by then.
	stallAt time.Time
	stalled bool
	drained bool // the stall ended because the run began to drain
	arm     func()
}

var errNoStatus = errors.New("stream ended by the server with OK")

func (st *soakStream) handle(b []byte) error {
	st.resp.Reset()
	if err := proto.Unmarshal(b, &st.resp); err != nil {
		return err
	}
	c := st.c
	if cn := st.resp.GetConnected(); cn != nil {
		st.connected(cn)
	}
	for _, ev := range st.resp.Events {
		r := c.room(ev.Room)
		if r == nil {
			c.n.unknown.Add(1)
			continue
		}
		if r.epoch == "" {
			r.epoch = ev.Epoch // nothing had been published in the room
		} else if ev.Epoch != r.epoch {
			c.n.epochChanges.Add(1)
			r.epoch, r.last = ev.Epoch, ev.Offset
			r.lastA.Store(r.last)
			continue
		}
		switch {
		case ev.Offset <= r.last:
			c.n.duplicated.Add(1)
			continue
		case ev.Offset > r.last+1:
			c.n.lost.Add(int64(ev.Offset - r.last - 1))
		}
		r.last = ev.Offset
		r.lastA.Store(r.last)
		r.size = proto.Size(ev) + 4 // tag and length in the response
		c.n.delivered.Add(1)
	}
	if d := st.resp.GetDisconnected(); d != nil {
		if d.Reason == notifyv1.DisconnectReason_DISCONNECT_REASON_SLOW_CONSUMER {
			st.cut = true
		} else {
			st.ended = "Disconnected " + d.Reason.String()
		}
	}
	return nil
}

// connected checks each room's state against the client's position.
func (st *soakStream) connected(cn *notifyv1.Connected) {
	c := st.c
	c.n.connects.Add(1)
	if c.started {
		c.n.reconnects.Add(1)
	}
	c.started = true
	all := true
	for _, rs := range cn.Rooms {
		r := c.room(rs.Room)
		if r == nil {
			c.n.unknown.Add(1)
			continue
		}
		switch {
		case !st.resumed:
			// The first stream is live from the room's top.
			r.epoch, r.last = rs.Epoch, rs.Offset
		case rs.Recovered:
			if rs.StartOffset != r.last {
				c.fail("%s: recovered from offset %d, the client was at %d", r.name, rs.StartOffset, r.last)
			}
			if r.epoch == "" {
				r.epoch = rs.Epoch
			}
		default:
			all = false
			gap := int64(rs.Offset) - int64(r.last)
			switch {
			case r.epoch != "" && rs.Epoch != r.epoch:
				c.n.epochChanges.Add(1)
			case gap > int64(r.hist):
				// More was published since the client's position than the
				// room's history holds: the server could not cover it.
				c.n.beyond.Add(1)
				c.n.beyondMissed.Add(gap)
			default:
				c.n.unrecovered.Add(1)
				c.n.lost.Add(max(gap, 0))
			}
			r.epoch, r.last = rs.Epoch, rs.StartOffset
		}
		r.lastA.Store(r.last)
	}
	if st.resumed && all {
		c.n.resumes.Add(1)
	}
}

// afterMessage stalls a staller's stream once its time has come: it stops
// reading until the server has surely cut it (cutBytes outstanding), the
// room's history is nearly used up, --stall-max passes or the run drains.
func (st *soakStream) afterMessage(ctx context.Context) {
	if st.stalled || st.stallAt.IsZero() || time.Now().Before(st.stallAt) || st.env.draining.Load() {
		return
	}
	st.stalled = true
	c := st.c
	c.n.stalls.Add(1)
	start := time.Now()
	limit := st.env.o.Soak.StallMax
	for i := 0; i < 1_000_000 && ctx.Err() == nil && !st.env.draining.Load() && time.Since(start) < limit; i++ {
		b, use := c.outstanding(st.env)
		if b >= st.env.cutBytes || use >= stallGuard {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	c.n.stallNanos.Add(int64(time.Since(start)))
	st.drained = st.env.draining.Load()
	if st.arm != nil {
		st.arm()
	}
}

// readGRPC runs one stream over conn until it ends.
func (st *soakStream) readGRPC(ctx context.Context, conn *grpc.ClientConn, req *notifyv1.SubscribeRequest) error {
	cs, err := conn.NewStream(withToken(ctx, st.c.token), &notifyv1.NotificationService_ServiceDesc.Streams[0], subscribeMethod,
		grpc.ForceCodecV2(rawCodec{}))
	if err != nil {
		return err
	}
	if err := cs.SendMsg(req); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	_ = cs.CloseSend()
	var msg rawMsg
	for {
		if err := cs.RecvMsg(&msg); err != nil {
			if errors.Is(err, io.EOF) {
				return errNoStatus
			}
			return err
		}
		if err := st.handle(msg.b); err != nil {
			return err
		}
		st.afterMessage(ctx)
	}
}

// readWeb runs one stream over grpc-web (see fleet.readWeb).
func (st *soakStream) readWeb(ctx context.Context, req *notifyv1.SubscribeRequest) error {
	body, err := webFrame(req)
	if err != nil {
		return err
	}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+st.env.o.HTTPAddr+subscribeMethod, bytes.NewReader(body))
	if err != nil {
		return err
	}
	hreq.Header.Set("Content-Type", "application/grpc-web+proto")
	hreq.Header.Set("Accept", "application/grpc-web+proto")
	hreq.Header.Set("X-Grpc-Web", "1")
	hreq.Header.Set("Authorization", "Bearer "+st.c.token)
	resp, err := st.env.web.Do(hreq)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("grpc-web: HTTP %s", resp.Status)
	}
	if err := webStatus(resp.Header); err != nil {
		return err
	}
	br := bufio.NewReaderSize(resp.Body, 64<<10)
	var hdr [webFrameHeader]byte
	var buf []byte
	for {
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			if errors.Is(err, io.EOF) {
				return errors.New("grpc-web: stream ended without a trailer")
			}
			return err
		}
		n := binary.BigEndian.Uint32(hdr[1:])
		if n > 64<<20 {
			return fmt.Errorf("grpc-web: frame of %d bytes", n)
		}
		if cap(buf) < int(n) {
			buf = make([]byte, n)
		}
		buf = buf[:n]
		if _, err := io.ReadFull(br, buf); err != nil {
			return err
		}
		if hdr[0]&webTrailerFlag != 0 {
			h, err := textproto.NewReader(bufio.NewReader(bytes.NewReader(append(buf, "\r\n"...)))).ReadMIMEHeader()
			if err != nil && !errors.Is(err, io.EOF) {
				return fmt.Errorf("grpc-web trailer: %w", err)
			}
			if err := webStatus(http.Header(h)); err != nil {
				return err
			}
			return errNoStatus
		}
		if err := st.handle(buf); err != nil {
			return err
		}
	}
}

// isCut reports whether err is the status of a stream cut as a slow consumer.
func isCut(err error) bool {
	s, ok := status.FromError(err)
	if !ok || s.Code() != codes.ResourceExhausted {
		return false
	}
	for _, d := range s.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			return info.Reason == "SLOW_CONSUMER"
		}
	}
	// grpc-web trailers carry no details here: go by the message.
	return strings.Contains(s.Message(), "queue overflowed")
}

func randDur(r *rand.Rand, lo, hi time.Duration) time.Duration {
	if hi <= lo {
		return lo
	}
	return lo + time.Duration(r.Int64N(int64(hi-lo)))
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// cycle opens one stream and reads it until the client drops it, the
// server cuts it, it fails or the run ends. It reports whether to reconnect
// at once (after a cut or a replaced connection) and whether it failed.
func (c *soakClient) cycle(ctx context.Context, env *soakEnv) (again, failed bool) {
	so := env.o.Soak
	req := &notifyv1.SubscribeRequest{Rooms: c.names}
	st := &soakStream{c: c, env: env, resumed: c.started}
	if st.resumed {
		req.Positions = c.positions()
	}
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var churned atomic.Bool
	drop := func() {
		if env.draining.Load() {
			return // draining: keep reading until the end
		}
		churned.Store(true)
		cancel()
	}
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	if c.staller && !env.draining.Load() {
		st.stallAt = time.Now().Add(randDur(c.rng, so.ChurnMin, max(so.ChurnMin, so.ChurnMax/2)))
		// After the stall the server should cut the stream as soon as the
		// client reads what it buffered; if not, drop it a little later.
		st.arm = func() { timer = time.AfterFunc(randDur(c.rng, 2*time.Second, 4*time.Second), drop) }
	} else {
		timer = time.AfterFunc(randDur(c.rng, so.ChurnMin, so.ChurnMax), drop)
	}

	var err error
	var private *grpc.ClientConn
	var slot *poolConn
	slotIdx := 0
	switch {
	case c.web:
		err = st.readWeb(sctx, req)
	default:
		conn := (*grpc.ClientConn)(nil)
		if c.rng.Float64() < so.ConnDrop {
			private, err = dialGRPC(env.o.GRPCAddr, int32(env.o.Window), int32(env.o.ConnWindow))
			conn = private
		} else {
			slotIdx = c.id % len(env.pool)
			slot = env.pool[slotIdx].Load()
			conn = slot.conn
		}
		if err == nil {
			err = st.readGRPC(sctx, conn, req)
		}
	}
	cancel()
	if private != nil {
		_ = private.Close()
		c.n.connDrops.Add(1)
	}
	switch {
	case st.cut || isCut(err):
		c.n.cuts.Add(1)
		if !st.stalled {
			c.n.cutsReading.Add(1) // a client that was reading fell behind
		}
		return true, false
	case churned.Load():
		c.n.drops.Add(1)
		if st.stalled && !st.drained {
			// The stall ended and the client read on for seconds: the
			// server had not cut the stream.
			c.n.stallsUncut.Add(1)
		}
		return false, false
	case ctx.Err() != nil:
		return false, false
	case slot != nil && env.pool[slotIdx].Load() != slot:
		c.n.poolDrops.Add(1) // its connection was replaced under it
		return true, false
	}
	why := st.ended
	if why == "" && err != nil {
		why = err.Error()
	}
	c.fail("stream %d (%s, web=%v): %s", c.id, c.kind, c.web, why)
	return false, true
}

// run churns until ctx ends, at most maxCycles streams.
func (c *soakClient) run(ctx context.Context, env *soakEnv, delay time.Duration, maxCycles int) {
	defer close(c.done)
	if !sleepCtx(ctx, delay) {
		return
	}
	for range maxCycles {
		again, failed := c.cycle(ctx, env)
		if ctx.Err() != nil {
			return
		}
		pause := time.Duration(0)
		switch {
		case failed:
			pause = 200 * time.Millisecond
		case !again && !env.draining.Load():
			pause = randDur(c.rng, 0, env.o.Soak.ReconnectMax)
		}
		if !sleepCtx(ctx, pause) {
			return
		}
	}
}

// SoakResult is the soak mode's report.
type SoakResult struct {
	Mode            string         `json:"mode"`
	Seconds         float64        `json:"seconds"`
	WarmupSeconds   float64        `json:"warmup_seconds"`
	Subscribers     int            `json:"subscribers"`
	Kinds           [3]int         `json:"kinds_shared_personal_both"`
	Web             int            `json:"grpcweb_subscribers"`
	Stallers        int            `json:"stalling_subscribers"`
	Connections     int            `json:"grpc_connections"`
	SharedRoom      string         `json:"shared_room"`
	PersonalRooms   int            `json:"personal_rooms"`
	SharedRate      float64        `json:"shared_rate"`
	PersonalRate    float64        `json:"personal_rate"`
	SharedBytes     int            `json:"shared_payload_bytes"`
	PersonalBytes   int            `json:"personal_payload_bytes"`
	AchievedRate    float64        `json:"achieved_rate"`
	QueueBytes      int            `json:"server_queue_bytes"`
	CutBytes        int64          `json:"stall_until_bytes"`
	HistoryShared   int            `json:"history_shared"`
	HistoryPersonal int            `json:"history_personal"`
	Churn           string         `json:"churn"`
	Tolerance       string         `json:"tolerance"`
	Published       int64          `json:"published"`
	PublishErrors   int64          `json:"publish_errors"`
	PublishError    string         `json:"publish_error,omitempty"`
	Delivered       int64          `json:"delivered"`
	Connects        int64          `json:"connects"`
	Reconnects      int64          `json:"reconnects"`
	Resumes         int64          `json:"resumes"`
	Unrecovered     int64          `json:"unrecovered"`
	BeyondHistory   int64          `json:"beyond_history"`
	BeyondMissed    int64          `json:"beyond_history_missed"`
	Drops           int64          `json:"drops"`
	ConnDrops       int64          `json:"connections_closed"`
	PoolRotations   int64          `json:"pool_replacements"`
	PoolDrops       int64          `json:"streams_on_replaced_connections"`
	Stalls          int64          `json:"stalls"`
	Cuts            int64          `json:"cuts"`
	CutsReading     int64          `json:"cuts_not_stalled"`
	StallsUncut     int64          `json:"stalls_not_cut"`
	MeanStall       float64        `json:"mean_stall_seconds"`
	Lost            int64          `json:"lost"`
	Duplicated      int64          `json:"duplicated"`
	Unknown         int64          `json:"unknown"`
	EpochChanges    int64          `json:"epoch_changes"`
	StreamErrors    int64          `json:"stream_errors"`
	StreamError     string         `json:"stream_error,omitempty"`
	Behind          int            `json:"behind_after_drain"`
	DrainSeconds    float64        `json:"drain_seconds"`
	ServerPID       int            `json:"server_pid"`
	InProcess       bool           `json:"in_process,omitempty"`
	GoroutineSource string         `json:"goroutine_source"`
	JudgedSamples   int            `json:"judged_samples"`
	JudgedOver      int            `json:"judged_window"`
	Growth          []metricGrowth `json:"growth"`
	Samples         []soakSample   `json:"samples"`
	AfterStop       *soakSample    `json:"after_stop,omitempty"`
	Verdict         string         `json:"verdict"`
	Failures        []string       `json:"failures,omitempty"`
	Notes           []string       `json:"notes,omitempty"`
}

// runSoakCmd runs the soak, prints its report and returns an error when
// the verdict is FAIL.
func (b *bench) runSoakCmd(ctx context.Context, stdout io.Writer) error {
	r, err := b.runSoak(ctx)
	if r == nil {
		return err
	}
	var perr error
	if b.opts.JSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		perr = enc.Encode([]*SoakResult{r})
	} else {
		perr = printSoak(stdout, r)
	}
	if r.Verdict != "PASS" {
		err = errors.Join(err, fmt.Errorf("soak: FAIL: %s", strings.Join(r.Failures, "; ")))
	}
	return errors.Join(err, perr)
}

// soakCast is who subscribes to what in a soak.
type soakCast struct {
	clients  []*soakClient
	shared   string   // the fan-out room
	personal []string // the guest rooms, one per client that has one
	kinds    [3]int   // clients in the shared room only, a guest room only, both
	web      int
	stallers int
}

// soakClients builds the subscribers: i%5 in {0,1} the shared room only
// (cashiers of the restaurant), {2,3} a guest room each (the guests), 4
// both (admins). grpc-web clients and stallers are spread evenly; stallers
// need the shared room (the guest rooms are too slow to overflow a queue)
// and native gRPC (over HTTP/1.1 the kernels' socket buffers hold
// megabytes before the server sees a slow reader).
func (b *bench) soakClients(histOf func(string) int) (*soakCast, error) {
	o := b.opts
	if !strings.HasPrefix(o.RoomPrefix, "guest:") {
		return nil, fmt.Errorf("soak: --room-prefix %q must start with guest:", o.RoomPrefix)
	}
	n := o.Subscribers
	rid := "soak" + strconv.FormatUint(rand.Uint64()%(36*36*36*36*36), 36)
	cast := &soakCast{clients: make([]*soakClient, n), shared: room.RestaurantTransactions(rid).String()}
	rng := rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	for i := range cast.clients {
		c := &soakClient{id: i, rng: rand.New(rand.NewPCG(rng.Uint64(), uint64(i))), done: make(chan struct{})}
		guest := strings.TrimPrefix(o.RoomPrefix, "guest:") + strconv.Itoa(i)
		var claims auth.Claims
		switch i % 5 {
		case 0, 1:
			c.kind, c.names = "shared", []string{cast.shared}
			claims = auth.Claims{Subject: "nb-soak-cashier-" + strconv.Itoa(i), Role: notifyv1.Role_ROLE_CASHIER, RestaurantID: rid}
			cast.kinds[0]++
		case 2, 3:
			c.kind, c.names = "personal", []string{"guest:" + guest}
			claims = auth.Claims{Subject: guest, Role: notifyv1.Role_ROLE_GUEST}
			cast.kinds[1]++
		default:
			c.kind, c.names = "both", []string{cast.shared, "guest:" + guest}
			claims = auth.Claims{Subject: "nb-soak-admin-" + strconv.Itoa(i), Role: notifyv1.Role_ROLE_ADMIN}
			cast.kinds[2]++
		}
		for _, name := range c.names {
			if _, err := room.Parse(name); err != nil {
				return nil, fmt.Errorf("soak: %w", err)
			}
			c.rooms = append(c.rooms, &soakRoom{name: name, hist: histOf(name)})
			if name != cast.shared {
				cast.personal = append(cast.personal, name)
			}
		}
		tok, err := b.minter.mint(claims)
		if err != nil {
			return nil, err
		}
		c.token = tok
		cast.clients[i] = c
	}
	spread := func(j, count, of int) bool { return of > 0 && (j+1)*count/of > j*count/of }
	nWeb := int(math.Round(o.Soak.WebFraction * float64(n)))
	var eligible []*soakClient
	for i, c := range cast.clients {
		c.web = spread(i, nWeb, n)
		if c.web {
			cast.web++
		} else if c.kind != "personal" {
			eligible = append(eligible, c)
		}
	}
	nStall := min(len(eligible), int(math.Round(o.Soak.StallFraction*float64(n))))
	for j, c := range eligible {
		if c.staller = spread(j, nStall, len(eligible)); c.staller {
			cast.stallers++
		}
	}
	return cast, nil
}

// runSoak runs the soak and judges it. The error is for runs that could
// not be carried out; a run that failed its checks returns a result whose
// Verdict is FAIL.
func (b *bench) runSoak(ctx context.Context) (*SoakResult, error) {
	o := b.opts
	if err := o.checkSoak(); err != nil {
		return nil, err
	}
	so := o.Soak
	n := o.Subscribers
	conns := max(1, min(o.Conns, n))
	if err := b.checkFiles(conns + o.PubConns + n); err != nil {
		return nil, err
	}
	pid := 0
	if b.server != nil {
		pid = b.server.pid
	}
	// The server's history and queue: notifyd's defaults unless told.
	def := node.Config{}.Defaults()
	hist := def.History
	if so.History != "" {
		h, _ := node.ParseHistory(so.History)
		for k, l := range h {
			hist[k] = l
		}
	}
	queue := o.QueueBytes
	if queue <= 0 {
		queue = def.QueueBytes
	}
	histOf := func(name string) int {
		r, err := room.Parse(name)
		if err != nil {
			return 0
		}
		return hist[r.Kind()].Size
	}
	cast, err := b.soakClients(histOf)
	if err != nil {
		return nil, err
	}
	clients, shared, personal := cast.clients, cast.shared, cast.personal

	sharedT := newEventTemplate(so.SharedPayload)
	personalT := newEventTemplate(o.Payload)
	// An event's bytes on the wire beyond its PointsAdded (id, room, offset,
	// epoch, time, type): a first guess, replaced by what arrives.
	const envelope = 100
	env := &soakEnv{
		o:     o,
		tops:  newRoomTops(append([]string{shared}, personal...)),
		pool:  make([]atomic.Pointer[poolConn], conns),
		sizes: map[string]int{shared: sharedT.size + envelope},
		web: &http.Client{Transport: &http.Transport{
			DialContext:         (&net.Dialer{Timeout: 10 * time.Second}).DialContext,
			MaxIdleConnsPerHost: 64,
			DisableCompression:  true,
			ReadBufferSize:      64 << 10,
		}},
	}
	defer env.web.CloseIdleConnections()
	for _, p := range personal {
		env.sizes[p] = personalT.size + envelope
	}
	// The server cuts a stalled stream once its queue overflows; before
	// that the client's stream window, gRPC's 64 KiB write quota and the
	// writes the stream's goroutine holds (64 KiB each) are in flight.
	env.cutBytes = int64(float64(queue)*1.1) + int64(o.Window) + 3*(64<<10)
	for i := range env.pool {
		c, err := dialGRPC(o.GRPCAddr, int32(o.Window), int32(o.ConnWindow))
		if err != nil {
			return nil, err
		}
		env.pool[i].Store(&poolConn{conn: c})
	}
	defer func() {
		for i := range env.pool {
			_ = env.pool[i].Load().conn.Close()
		}
	}()

	sharedRate := so.SharedRate
	personalRate := o.Rate - so.SharedRate
	if len(personal) == 0 {
		sharedRate, personalRate = o.Rate, 0
	}
	warmup := so.warmup(o.Duration)
	r := &SoakResult{
		Mode:            "soak",
		Seconds:         seconds(o.Duration),
		WarmupSeconds:   seconds(warmup),
		Subscribers:     n,
		Kinds:           cast.kinds,
		Web:             cast.web,
		Stallers:        cast.stallers,
		Connections:     conns,
		SharedRoom:      shared,
		PersonalRooms:   len(personal),
		SharedRate:      sharedRate,
		PersonalRate:    personalRate,
		SharedBytes:     sharedT.size,
		PersonalBytes:   personalT.size,
		QueueBytes:      queue,
		CutBytes:        env.cutBytes,
		HistoryShared:   histOf(shared),
		HistoryPersonal: hist[room.KindGuest].Size,
		ServerPID:       pid,
		InProcess:       pid == os.Getpid(),
		Churn: fmt.Sprintf("streams live %v-%v, reconnect within %v; %.0f%% of gRPC streams on a connection of their own closed with them; one of %d shared connections replaced every %v",
			so.ChurnMin, so.ChurnMax, so.ReconnectMax, so.ConnDrop*100, conns, so.PoolRotate),
	}
	lim := growthLimits{RSSPct: so.RSSGrowthPct, RSSMB: so.RSSGrowthMB, GoroutinePct: so.GoroutineGrowthPct, GoroutineSlack: so.GoroutineSlack, FDSlack: so.FDSlack}
	r.Tolerance = lim.String()
	// Is the history deep enough for what the soak does?
	if cutEvents := float64(env.cutBytes) / float64(env.sizes[shared]); cast.stallers > 0 && cutEvents > stallGuard*float64(r.HistoryShared) {
		r.Notes = append(r.Notes, fmt.Sprintf("a stall needs about %.0f unread events of the shared room to be cut, more than %.0f%% of its history (%d): stalls will end before the cut; raise --shared-payload or lower the server's --queue-bytes",
			cutEvents, stallGuard*100, r.HistoryShared))
	}
	if len(personal) > 0 {
		perRoom := personalRate / float64(len(personal))
		if gap := perRoom * (so.ReconnectMax + so.StallMax).Seconds(); gap > float64(r.HistoryPersonal) {
			r.Notes = append(r.Notes, fmt.Sprintf("a guest room gets %.1f events/s: a gap of --reconnect-max + --stall-max may exceed its history (%d)", perRoom, r.HistoryPersonal))
		}
	}

	// The sampler.
	var smp *sampler
	if pid > 0 {
		smp = &sampler{pid: pid, metrics: "http://" + o.HTTPAddr + "/metrics", client: &http.Client{Timeout: 5 * time.Second}}
	} else {
		r.Failures = append(r.Failures, "no server process to sample: give --server-pid, --spawn or --inprocess")
	}
	start := time.Now()
	var samples []soakSample
	takeSample := func() *soakSample {
		if smp == nil {
			return nil
		}
		s, err := smp.sample(time.Since(start).Seconds())
		if err != nil {
			b.progress("soak: sampling pid %d: %v", pid, err)
			return nil
		}
		return &s
	}
	if s := takeSample(); s != nil {
		samples = append(samples, *s)
	}
	b.progress("soak: %d subscribers (%d shared, %d personal, %d both; %d grpc-web, %d stalling) over %d gRPC connections for %v (warm-up %v); publishing %.0f/s shared + %.0f/s personal",
		n, cast.kinds[0], cast.kinds[1], cast.kinds[2], cast.web, cast.stallers, conns, o.Duration, warmup, sharedRate, personalRate)

	// Clients, staggered over the first second.
	cctx, stopClients := context.WithCancel(ctx)
	defer stopClients()
	maxCycles := int((o.Duration+o.Drain+time.Minute)/(50*time.Millisecond)) + 10
	for i, c := range clients {
		go c.run(cctx, env, time.Duration(i)*time.Second/time.Duration(n), maxCycles)
	}

	// Publishers.
	svc, err := b.minter.service()
	if err != nil {
		return nil, err
	}
	pubConns := make([]*grpc.ClientConn, o.PubConns)
	for i := range pubConns {
		if pubConns[i], err = dialGRPC(o.GRPCAddr, 1<<20, 8<<20); err != nil {
			return nil, err
		}
		defer pubConns[i].Close()
	}
	publish := grpcPublisher(pubConns, svc)
	pctx, stopPub := context.WithCancel(ctx)
	defer stopPub()
	var pubWG sync.WaitGroup
	var stShared, stPersonal *pubStats
	sharedRooms := []string{shared}
	if sharedRate > 0 {
		pubWG.Go(func() {
			stShared = runPublish(pctx, pubPlan{
				rate: sharedRate, duration: o.Duration, batch: 1, workers: max(2, o.Publishers/2), maxEvents: o.MaxEvents,
				build: func(_ int64, sent time.Time) *notifyv1.PublishRequest {
					return sharedT.request(sharedRooms, sent, "")
				},
				publish: publish, onResult: env.tops.record,
			})
		})
	}
	if personalRate > 0 {
		one := make([][]string, len(personal))
		for i, p := range personal {
			one[i] = []string{p}
		}
		pubWG.Go(func() {
			stPersonal = runPublish(pctx, pubPlan{
				rate: personalRate, duration: o.Duration, batch: 1, workers: max(2, o.Publishers), maxEvents: o.MaxEvents,
				build: func(i int64, sent time.Time) *notifyv1.PublishRequest {
					return personalT.request(one[i%int64(len(one))], sent, "")
				},
				publish: publish, onResult: env.tops.record,
			})
		})
	}

	// Sample, replace pooled connections and report progress until the
	// publishers are done (the run's duration).
	pubDone := make(chan struct{})
	go func() { pubWG.Wait(); close(pubDone) }()
	sampleTick := time.NewTicker(so.SampleEvery)
	defer sampleTick.Stop()
	var rotate <-chan time.Time
	if so.PoolRotate > 0 {
		t := time.NewTicker(so.PoolRotate)
		defer t.Stop()
		rotate = t.C
	}
	var rotations int64
	interrupted := false
loop:
	for {
		select {
		case <-ctx.Done():
			interrupted = true
			stopPub()
			<-pubDone
			break loop
		case <-pubDone:
			break loop
		case <-rotate:
			k := int(rotations % int64(len(env.pool)))
			c, err := dialGRPC(o.GRPCAddr, int32(o.Window), int32(o.ConnWindow))
			if err != nil {
				b.progress("soak: replacing a connection: %v", err)
				continue
			}
			old := env.pool[k].Swap(&poolConn{conn: c})
			_ = old.conn.Close()
			rotations++
		case <-sampleTick.C:
			s := takeSample()
			if s == nil {
				continue
			}
			samples = append(samples, *s)
			t := sumSoak(clients)
			b.progress("soak: %3.0fs  RSS %s MB, goroutines %d, threads %d, open files %d; delivered %d, reconnects %d, cuts %d, lost %d, dup %d, errors %d",
				s.At, mb(s.RSS), s.Goroutines, s.Threads, s.FDs, t.delivered, t.reconnects, t.cuts, t.lost, t.duplicated, t.errors)
		}
	}
	end := time.Since(start)
	if s := takeSample(); s != nil {
		samples = append(samples, *s)
	}

	// Drain: no more churn or stalls; every client reconnects if it must
	// and reads up to the last offset published in each of its rooms.
	env.draining.Store(true)
	b.progress("soak: publishing done after %v; draining (up to %v)", end.Round(time.Millisecond), o.Drain)
	drainStart := time.Now()
	r.Behind = waitDrained(ctx, clients, env.tops, o.Drain)
	r.DrainSeconds = round3(time.Since(drainStart).Seconds())
	stopClients()
	for _, c := range clients {
		select {
		case <-c.done:
		case <-time.After(stopTimeout):
			r.Failures = append(r.Failures, fmt.Sprintf("client %d did not stop within %v", c.id, stopTimeout))
		}
	}
	for i := range env.pool {
		_ = env.pool[i].Load().conn.Close()
	}
	env.web.CloseIdleConnections()
	if so.Settle > 0 {
		sleepCtx(ctx, so.Settle)
	}
	r.AfterStop = takeSample()
	r.Samples = samples
	r.PoolRotations = rotations

	r.account(sumSoak(clients), clients, env.tops, stShared, stPersonal)
	r.judge(o, smp != nil, interrupted, warmup, end, lim)
	return r, nil
}

// waitDrained waits until every client has read up to the top of each of
// its rooms, or limit passes; it returns how many are still behind.
func waitDrained(ctx context.Context, clients []*soakClient, tops *roomTops, limit time.Duration) int {
	deadline := time.Now().Add(limit)
	for i := 0; ; i++ {
		behind := 0
		for _, c := range clients {
			for _, rm := range c.rooms {
				if rm.lastA.Load() < tops.top(rm.name) {
					behind++
					break
				}
			}
		}
		if behind == 0 || time.Now().After(deadline) || ctx.Err() != nil || i > 1_000_000 {
			return behind
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// account fills r's counts from the clients' totals and the publishers'.
// What a client is missing at the end of the drain counts as lost.
func (r *SoakResult) account(t *soakTotals, clients []*soakClient, tops *roomTops, pubs ...*pubStats) {
	for _, st := range pubs {
		if st == nil {
			continue
		}
		r.Published += st.Published
		r.PublishErrors += st.Errors
		if r.PublishError == "" {
			r.PublishError = st.FirstError
		}
		r.AchievedRate += st.rate()
	}
	r.AchievedRate = round3(r.AchievedRate)
	r.Delivered, r.Connects, r.Reconnects, r.Resumes = t.delivered, t.connects, t.reconnects, t.resumes
	r.Unrecovered, r.BeyondHistory, r.BeyondMissed = t.unrecovered, t.beyond, t.beyondMissed
	r.Drops, r.ConnDrops, r.PoolDrops = t.drops, t.connDrops, t.poolDrops
	r.Stalls, r.Cuts, r.CutsReading, r.StallsUncut = t.stalls, t.cuts, t.cutsReading, t.stallsUncut
	if t.stalls > 0 {
		r.MeanStall = round3(time.Duration(t.stallNanos / t.stalls).Seconds())
	}
	r.Duplicated, r.Unknown, r.EpochChanges = t.duplicated, t.unknown, t.epochChanges
	r.StreamErrors, r.StreamError = t.errors, t.firstErr
	r.Lost = t.lost
	for _, c := range clients {
		for _, rm := range c.rooms {
			if top, last := tops.top(rm.name), rm.lastA.Load(); last < top {
				r.Lost += int64(top - last)
			}
		}
	}
}

// judge sets r's verdict: growth after the warm-up beyond lim, any event
// lost or duplicated, any resume the history covered but the server did
// not recover, a drain that did not catch up, or any error fails the run.
func (r *SoakResult) judge(o options, sampled, interrupted bool, warmup, end time.Duration, lim growthLimits) {
	threads := false
	for _, s := range r.Samples {
		if s.Goroutines < 0 {
			threads = true
		}
	}
	r.GoroutineSource = "go_goroutines at /metrics"
	if threads {
		r.GoroutineSource = "threads (the server's /metrics has no go_goroutines)"
	}
	if r.InProcess {
		r.Notes = append(r.Notes, "the server runs in this process: RSS, goroutines and open files include the load generator's")
	}
	if sampled {
		for _, s := range r.Samples {
			if s.At >= warmup.Seconds() && s.At <= end.Seconds() {
				r.JudgedSamples++
			}
		}
		r.JudgedOver = judgeWindow(r.JudgedSamples)
		growth, fails := judgeGrowth(r.Samples, r.AfterStop, warmup.Seconds(), end.Seconds(), lim, threads)
		r.Growth = growth
		r.Failures = append(r.Failures, fails...)
	}
	check := func(bad bool, format string, args ...any) {
		if bad {
			r.Failures = append(r.Failures, fmt.Sprintf(format, args...))
		}
	}
	check(interrupted, "interrupted")
	check(r.Lost > 0, "%d events lost", r.Lost)
	check(r.Duplicated > 0, "%d events duplicated", r.Duplicated)
	check(r.Unrecovered > 0, "%d resumes not recovered although the history covered them", r.Unrecovered)
	check(r.EpochChanges > 0, "%d epoch changes", r.EpochChanges)
	check(r.Unknown > 0, "%d events or rooms the streams did not ask for", r.Unknown)
	check(r.Behind > 0, "%d subscribers still behind after the %v drain", r.Behind, o.Drain)
	check(r.StreamErrors > 0, "%d unexpected stream ends; first: %s", r.StreamErrors, r.StreamError)
	check(r.PublishErrors > 0, "%d publish errors; first: %s", r.PublishErrors, r.PublishError)
	check(r.Published == 0, "nothing was published")
	if r.BeyondHistory > 0 {
		r.Notes = append(r.Notes, fmt.Sprintf("%d resumes came after more events than the history holds (%d events missed, reported apart from lost): lower the rates or the stalls", r.BeyondHistory, r.BeyondMissed))
	}
	if r.StallsUncut > 0 {
		r.Notes = append(r.Notes, fmt.Sprintf("%d of %d stalls ended without a cut", r.StallsUncut, r.Stalls))
	}
	if r.AchievedRate < 0.95*o.Rate {
		r.Notes = append(r.Notes, fmt.Sprintf("publishers reached only %.0f of %.0f events/s", r.AchievedRate, o.Rate))
	}
	r.Verdict = "PASS"
	if len(r.Failures) > 0 {
		r.Verdict = "FAIL"
	}
}

// soakTotals sums the clients' counts.
type soakTotals struct {
	connects, reconnects, resumes, unrecovered, beyond, beyondMissed                int64
	drops, connDrops, poolDrops, cuts, cutsReading, stalls, stallsUncut, stallNanos int64
	delivered, lost, duplicated, unknown, epochChanges, errors                      int64
	firstErr                                                                        string
}

func sumSoak(clients []*soakClient) *soakTotals {
	t := &soakTotals{}
	for _, c := range clients {
		n := &c.n
		t.connects += n.connects.Load()
		t.reconnects += n.reconnects.Load()
		t.resumes += n.resumes.Load()
		t.unrecovered += n.unrecovered.Load()
		t.beyond += n.beyond.Load()
		t.beyondMissed += n.beyondMissed.Load()
		t.drops += n.drops.Load()
		t.connDrops += n.connDrops.Load()
		t.poolDrops += n.poolDrops.Load()
		t.cuts += n.cuts.Load()
		t.cutsReading += n.cutsReading.Load()
		t.stalls += n.stalls.Load()
		t.stallsUncut += n.stallsUncut.Load()
		t.stallNanos += n.stallNanos.Load()
		t.delivered += n.delivered.Load()
		t.lost += n.lost.Load()
		t.duplicated += n.duplicated.Load()
		t.unknown += n.unknown.Load()
		t.epochChanges += n.epochChanges.Load()
		t.errors += n.errors.Load()
		if t.firstErr == "" {
			c.errMu.Lock()
			t.firstErr = c.err
			c.errMu.Unlock()
		}
	}
	return t
}

// printSoak writes the soak report as text.
func printSoak(w io.Writer, r *SoakResult) error {
	p := func(format string, args ...any) { fmt.Fprintf(w, format+"\n", args...) }
	p("soak       %gs (warm-up %gs): %d subscribers (%d in the shared room, %d in a guest room, %d in both; %d over grpc-web, %d stalling) over %d gRPC connections",
		r.Seconds, r.WarmupSeconds, r.Subscribers, r.Kinds[0], r.Kinds[1], r.Kinds[2], r.Web, r.Stallers, r.Connections)
	p("publish    %.0f/s in %s (%d B events) + %.0f/s over %d guest rooms (%d B); achieved %.1f/s",
		r.SharedRate, r.SharedRoom, r.SharedBytes, r.PersonalRate, r.PersonalRooms, r.PersonalBytes, r.AchievedRate)
	p("churn      %s", r.Churn)
	p("stalls     until %.2f MiB unread (server queue %.2f MiB); history %d shared / %d personal events",
		float64(r.CutBytes)/(1<<20), float64(r.QueueBytes)/(1<<20), r.HistoryShared, r.HistoryPersonal)
	p("")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "server pid %d\tstart\tafter warm-up\tend\tmax\tgrowth\tallowed\tafter stop\t\n", r.ServerPID)
	for _, g := range r.Growth {
		label := map[string]string{"rss_bytes": "RSS", "goroutines": "goroutines", "threads": "threads", "open_files": "open files"}[g.Name]
		ok := ""
		if !g.OK {
			ok = "  TOO MUCH"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", label, fmtMetric(g.Name, g.Start), fmtMetric(g.Name, g.Base), fmtMetric(g.Name, g.End),
			fmtMetric(g.Name, g.Max), signed(g.Name, g.Growth), "+"+fmtMetric(g.Name, g.Allowed), fmtMetric(g.Name, g.AfterStop), ok)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	p("goroutines from %s; after warm-up and end: medians of the first and last %d of the %d samples after the warm-up", r.GoroutineSource, r.JudgedOver, r.JudgedSamples)
	p("tolerance: %s", r.Tolerance)
	p("")
	p("events     published %d (%d errors), delivered %d", r.Published, r.PublishErrors, r.Delivered)
	p("streams    connects %d, reconnects %d, resumes %d (all rooms recovered), not recovered %d, beyond history %d",
		r.Connects, r.Reconnects, r.Resumes, r.Unrecovered, r.BeyondHistory)
	p("churn      drops %d, own connections closed %d, shared connections replaced %d (streams on them %d)",
		r.Drops, r.ConnDrops, r.PoolRotations, r.PoolDrops)
	p("slow       stalls %d (mean %.1fs), cuts %d (%d of them of streams that had not stalled), stalls not cut %d",
		r.Stalls, r.MeanStall, r.Cuts, r.CutsReading, r.StallsUncut)
	p("checks     lost %d, duplicated %d, unknown %d, epoch changes %d, stream errors %d, behind after drain %d (drain %.1fs)",
		r.Lost, r.Duplicated, r.Unknown, r.EpochChanges, r.StreamErrors, r.Behind, r.DrainSeconds)
	for _, n := range r.Notes {
		p("note       %s", n)
	}
	for _, f := range r.Failures {
		p("failure    %s", f)
	}
	p("verdict    %s", r.Verdict)
	return nil
}

func signed(name string, v float64) string {
	if name != "rss_bytes" {
		v = math.Round(v)
	}
	if v < 0 {
		return "-" + fmtMetric(name, -v)
	}
	return "+" + fmtMetric(name, v)
}
