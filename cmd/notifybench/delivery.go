package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"time"

	"google.golang.org/grpc"

	notifyv1 "github.com/maxloyalty/notify/gen/notify/v1"
)

// deliveryRun is a benchmark of streams receiving what a paced publisher
// sends: fanout (every stream in one room) and personal (a room each).
type deliveryRun struct {
	mode     string
	subRooms []string // the room of each subscriber
	pubRooms []string // the distinct rooms published in
	// rooms returns the rooms of event i.
	rooms func(i int64) []string
}

// stopTimeout bounds waiting for stream goroutines after cancelling them.
const stopTimeout = 20 * time.Second

// runDelivery opens the streams, publishes for the configured duration,
// waits for the subscribers to catch up, and accounts for every event.
func (b *bench) runDelivery(ctx context.Context, d deliveryRun) (*Result, error) {
	o := b.opts
	if tlsTransport(o.Transport) {
		return nil, fmt.Errorf("--transport %s is for idle runs only", o.Transport)
	}
	n := len(d.subRooms)
	conns := o.Conns
	if webTransport(o.Transport) {
		conns = n
	}
	if err := b.checkFiles(conns + o.PubConns); err != nil {
		return nil, err
	}
	tokens := make([]string, n)
	for i, room := range d.subRooms {
		t, err := b.minter.subscriberToken(room, i)
		if err != nil {
			return nil, err
		}
		tokens[i] = t
	}
	svc, err := b.minter.service()
	if err != nil {
		return nil, err
	}

	b.progress("%s: opening %d streams over %d %s connections", d.mode, n, conns, o.Transport)
	openCtx, cancelOpen := context.WithTimeout(ctx, o.ConnectTimeout)
	opened := time.Now()
	f, err := openFleet(openCtx, b.fleetConfig(), d.subRooms, tokens, func(s string) { b.progress("%s: %s", d.mode, s) })
	cancelOpen()
	if err != nil {
		return nil, err
	}
	defer f.stop(stopTimeout)
	b.progress("%s: %d streams open in %v; publishing for %v", d.mode, n, time.Since(opened).Round(time.Millisecond), o.Duration)

	pubConns := make([]*grpc.ClientConn, o.PubConns)
	for i := range pubConns {
		if pubConns[i], err = dialGRPC(o.GRPCAddr, 1<<20, 8<<20, nil); err != nil {
			return nil, err
		}
		defer pubConns[i].Close()
	}
	tops := newRoomTops(d.pubRooms)
	tmpl := newEventTemplate(o.Payload)
	run := strconv.FormatUint(rand.Uint64(), 36)
	plan := pubPlan{
		rate:      o.Rate,
		duration:  o.Duration,
		batch:     o.Batch,
		workers:   o.Publishers,
		maxEvents: o.MaxEvents,
		build: func(i int64, sent time.Time) *notifyv1.PublishRequest {
			key := ""
			if o.Idempotency {
				key = "nb-" + run + "-" + strconv.FormatInt(i, 10)
			}
			return tmpl.request(d.rooms(i), sent, key)
		},
		publish:  grpcPublisher(pubConns, svc),
		onResult: tops.record,
	}

	b.server.begin()
	st := runPublish(ctx, plan)
	b.progress("%s: published %d events (%d errors) at %.0f/s; waiting for subscribers", d.mode, st.Published, st.Errors, st.rate())
	behind := f.waitCaughtUp(tops.top, o.Drain)
	caughtUp := time.Now()
	r := &Result{
		Mode:          d.mode,
		Transport:     o.Transport,
		Subscribers:   n,
		Connections:   conns,
		Rooms:         len(d.pubRooms),
		Concurrency:   o.Publishers,
		Batch:         o.Batch,
		TargetRate:    o.Rate,
		AchievedRate:  round3(st.rate()),
		PayloadBytes:  tmpl.size,
		Seconds:       seconds(o.Duration),
		Published:     st.Published,
		PublishErrors: st.Errors,
		PublishError:  st.FirstError,
		Behind:        behind,
	}
	r.RSSAfter = b.server.rss()
	b.server.end(r)
	f.stop(stopTimeout)

	t := f.totals(tops.top)
	r.Delivered = t.Delivered
	r.perEvent(t.Delivered)
	if el := caughtUp.Sub(st.Start).Seconds(); el > 0 {
		r.DeliveriesPerSec = round3(float64(t.Delivered) / el)
	}
	r.Latency = f.hist.Merged().Summary()
	r.Lost, r.Duplicated, r.Unknown, r.EpochChanges = t.Lost, t.Duplicated, t.Unknown, t.EpochChanges
	r.Cut, r.CutMissed = t.Cut, t.CutMissed
	r.StreamErrors, r.StreamError = t.Errors, t.FirstError
	calls := st.Calls.Summary()
	r.Notes = append(r.Notes, fmt.Sprintf("publish calls: %d events in %d calls, call p50 %.2f ms p99 %.2f ms max %.2f ms",
		st.Published, calls.Count, calls.P50, calls.P99, calls.Max))
	if st.FirstError != "" {
		r.Notes = append(r.Notes, "first publish error: "+st.FirstError)
	}
	if t.FirstError != "" {
		r.Notes = append(r.Notes, fmt.Sprintf("%d streams ended early; first: %s", t.Errors, t.FirstError))
	}
	if t.Cut > 0 {
		r.Notes = append(r.Notes, fmt.Sprintf("%d subscribers cut as slow consumers, missing %d events (not counted as lost)", t.Cut, t.CutMissed))
	}
	if behind > 0 {
		r.Notes = append(r.Notes, fmt.Sprintf("%d subscribers still behind after the %v drain (their missing events count as lost)", behind, o.Drain))
	}
	if t.Unfinished > 0 {
		r.Notes = append(r.Notes, fmt.Sprintf("%d stream goroutines did not end within %v (not accounted)", t.Unfinished, stopTimeout))
	}
	if o.Rate > 0 && st.rate() < 0.95*o.Rate {
		r.Notes = append(r.Notes, fmt.Sprintf("publishers reached only %.0f of %.0f events/s", st.rate(), o.Rate))
	}
	return r, nil
}

// checkFiles raises this process's open-file limit and fails early when it
// cannot hold need sockets; it warns when the server's limit looks short.
func (b *bench) checkFiles(need int) error {
	limit, _ := raiseFileLimit(uint64(need + 256))
	if uint64(need+64) > limit {
		return fmt.Errorf("need about %d open files but the limit is %d: raise it (ulimit -n) for notifybench and notifyd", need+64, limit)
	}
	if b.server != nil && b.server.pid > 0 && b.server.pid != os.Getpid() {
		if sl, err := fileLimit(b.server.pid); err == nil && uint64(need+32) > sl {
			b.progress("warning: notifyd's open-file limit is %d, below the %d connections of this run: raise it (ulimit -n) before starting notifyd", sl, need)
		}
	}
	return nil
}
