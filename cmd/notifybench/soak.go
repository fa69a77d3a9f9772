package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"google.golang.org/grpc"

	notifyv1 "github.com/maxloyalty/notify/gen/notify/v1"
	"github.com/maxloyalty/notify/internal/auth"
	"github.com/maxloyalty/notify/internal/node"
	"github.com/maxloyalty/notify/internal/room"
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
		c, err := dialGRPC(o.GRPCAddr, int32(o.Window), int32(o.ConnWindow), nil)
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
		if pubConns[i], err = dialGRPC(o.GRPCAddr, 1<<20, 8<<20, nil); err != nil {
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
			c, err := dialGRPC(o.GRPCAddr, int32(o.Window), int32(o.ConnWindow), nil)
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
