package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc"

	notifyv1 "github.com/maxloyalty/notify/gen/notify/v1"
)

// runPublishModes measures publishing alone (nobody subscribed to --room),
// each variant with its own load generator: unary gRPC Publish from h2load,
// PublishBatch of --batch events from grpc-go's client, and REST POST
// /v1/events from wrk.
func (b *bench) runPublishModes(ctx context.Context) ([]*Result, error) {
	var out []*Result
	for _, v := range strings.Split(b.opts.Publish, ",") {
		v = strings.TrimSpace(v)
		if v == "" {
			continue
		}
		var r *Result
		var err error
		switch v {
		case "unary", "rest":
			r, err = b.runDriverVariant(ctx, v)
		case "batch":
			r, err = b.runBatchVariant(ctx)
		default:
			err = errors.New("unknown variant (unary, batch, rest)")
		}
		if err != nil {
			return out, fmt.Errorf("publish %s: %w", v, err)
		}
		out = append(out, r)
	}
	return out, nil
}

// runBatchVariant publishes --batch events per PublishBatch call from
// grpc-go's client, --concurrency calls in flight over --pub-conns
// connections.
func (b *bench) runBatchVariant(ctx context.Context) (*Result, error) {
	o := b.opts
	svc, err := b.minter.service()
	if err != nil {
		return nil, err
	}
	if err := b.checkFiles(o.PubConns); err != nil {
		return nil, err
	}
	conns := make([]*grpc.ClientConn, o.PubConns)
	for i := range conns {
		if conns[i], err = dialGRPC(o.GRPCAddr, 1<<20, 8<<20, nil); err != nil {
			return nil, err
		}
		defer conns[i].Close()
	}
	r := &Result{
		Mode:      modeName("publish", "batch", "b="+strconv.Itoa(o.Batch), "c="+strconv.Itoa(o.Concurrency)),
		Transport: "grpc-go", Connections: o.PubConns, Rooms: 1, Concurrency: o.Concurrency, Batch: o.Batch,
		TargetRate: o.Rate, Seconds: seconds(o.Duration),
	}
	tmpl := newEventTemplate(o.Payload)
	r.PayloadBytes = tmpl.size
	rooms := []string{o.Room}
	run := strconv.FormatUint(rand.Uint64(), 36)
	plan := pubPlan{
		rate:      o.Rate,
		duration:  o.Duration,
		batch:     o.Batch,
		workers:   o.Concurrency,
		maxEvents: o.MaxEvents,
		build: func(i int64, sent time.Time) *notifyv1.PublishRequest {
			key := ""
			if o.Idempotency {
				key = "nb-" + run + "-" + strconv.FormatInt(i, 10)
			}
			return tmpl.request(rooms, sent, key)
		},
		publish: grpcPublisher(conns, svc),
	}
	b.progress("publish batch: %d concurrent calls of %d events, grpc-go client, for %v", o.Concurrency, o.Batch, o.Duration)
	b.server.begin()
	st := runPublish(ctx, plan)
	b.server.end(r)
	r.Published, r.PublishErrors, r.PublishError = st.Published, st.Errors, st.FirstError
	r.AchievedRate = round3(st.rate())
	r.perEvent(st.Published)
	r.Latency = st.Calls.Summary()
	r.Notes = append(r.Notes, fmt.Sprintf("%d events in %d calls; latency columns are per call", st.Published, r.Latency.Count))
	if st.FirstError != "" {
		r.Notes = append(r.Notes, "first publish error: "+st.FirstError)
	}
	return r, nil
}

// runDriverVariant publishes one prepared event per call from an external
// load generator: h2load for "unary", wrk for "rest". The server's call
// counts before and after the run tell which responses were errors.
func (b *bench) runDriverVariant(ctx context.Context, variant string) (*Result, error) {
	o := b.opts
	if o.Idempotency {
		return nil, errors.New("--idempotency: h2load and wrk send one prepared body, which cannot carry a key per event (use the batch variant)")
	}
	svc, err := b.minter.service()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "notifybench-driver-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	tmpl := newEventTemplate(o.Payload)
	spec := driverSpec{
		token:    svc,
		req:      tmpl.request([]string{o.Room}, time.Now(), ""),
		duration: o.Duration,
		inFlight: o.Concurrency,
		threads:  o.DriverThreads,
		rate:     o.Rate,
		dir:      dir,
	}
	r := &Result{Rooms: 1, Batch: 1, TargetRate: o.Rate, Seconds: seconds(o.Duration), PayloadBytes: tmpl.size}
	drive := runH2load
	switch variant {
	case "unary":
		spec.addr, spec.conns = o.GRPCAddr, min(o.PubConns, o.Concurrency)
		streams := (o.Concurrency + spec.conns - 1) / spec.conns
		r.Transport, r.Connections, r.Concurrency = "h2load", spec.conns, spec.conns*streams
	case "rest":
		spec.addr, spec.conns = o.HTTPAddr, o.Concurrency
		r.Transport, r.Connections, r.Concurrency = "wrk", o.Concurrency, o.Concurrency
		drive = runWrk
	}
	r.Mode = modeName("publish", variant, "c="+strconv.Itoa(r.Concurrency))
	if err := b.checkFiles(spec.conns); err != nil {
		return nil, err
	}
	before, err := fetchCallCounts(ctx, o.HTTPAddr, publishMethod)
	if err != nil {
		return nil, fmt.Errorf("the server's call counts, needed to read gRPC statuses: %w", err)
	}
	b.progress("publish %s: %s, %d connections, %d requests in flight, for %v", variant, r.Transport, r.Connections, r.Concurrency, o.Duration)
	b.server.begin()
	run, err := drive(ctx, spec)
	if run != nil {
		b.server.addClient(run.CPU)
	}
	b.server.end(r)
	if err != nil {
		return nil, err
	}
	after, err := fetchCallCounts(ctx, o.HTTPAddr, publishMethod)
	if err != nil {
		return nil, fmt.Errorf("the server's call counts, needed to read gRPC statuses: %w", err)
	}
	accountDriver(r, run, after.sub(before), int64(r.Concurrency))
	r.perEvent(r.Published)
	return r, nil
}

// accountDriver fills r's counts from what the generator saw and what the
// server counted meanwhile (calls by code). A gRPC error travels in a 2xx
// response, a REST error in another status: the calls the server counted
// as failed beyond the non-2xx responses are errors among the 2xx ones.
// 2xx responses the server did not count as OK are errors too (the count
// after the run also holds the calls still in flight when the generator
// stopped, so a few such errors can go unseen). The generator stops by
// closing its connections under the calls in flight: the server counts
// those, up to inFlight of them, as Canceled, which is not an error.
func accountDriver(r *Result, run *driverRun, calls callCounts, inFlight int64) {
	if stopped := min(int64(calls["Canceled"]), inFlight); stopped > 0 {
		calls["Canceled"] -= float64(stopped)
		r.Notes = append(r.Notes, fmt.Sprintf("%d calls in flight when %s stopped were cancelled (not counted as errors)", stopped, r.Transport))
	}
	errIn2xx := min(run.Responses, max(0, calls.failed()-run.Non2xx))
	published := run.Responses - errIn2xx
	unconfirmed := max(0, published-calls.ok())
	published -= unconfirmed
	r.Published = published
	r.PublishErrors = run.Failed + errIn2xx + unconfirmed
	r.PublishError = run.FirstError
	if errIn2xx > 0 || unconfirmed > 0 {
		msg := fmt.Sprintf("server counted %s; %d 2xx responses were errors", calls, errIn2xx+unconfirmed)
		if r.PublishError == "" {
			r.PublishError = msg
		} else {
			r.PublishError += "; " + msg
		}
	}
	if r.PublishErrors > 0 && r.PublishError == "" {
		r.PublishError = fmt.Sprintf("%s: %d requests failed", r.Transport, run.Failed)
	}
	if run.Seconds > 0 {
		r.AchievedRate = round3(float64(published) / run.Seconds)
	}
	r.Latency = run.Latency
	r.Notes = append(r.Notes, fmt.Sprintf("%s: %d responses in %.2f s; server counted %d OK calls", r.Transport, run.Responses+run.Non2xx, run.Seconds, calls.ok()))
	if r.PublishError != "" {
		r.Notes = append(r.Notes, "errors: "+r.PublishError)
	}
}
