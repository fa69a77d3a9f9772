package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc"

	notifyv1 "github.com/maxloyalty/notify/gen/notify/v1"
)

// runPublishModes measures publishing alone (nobody subscribed to --room):
// gRPC Publish with --concurrency calls in flight, PublishBatch of --batch
// events, and REST POST /v1/events over keep-alive connections. With
// --transport h2 the gRPC calls go over the lighter h2 client
// (h2publish.go) instead of grpc-go's; with --transport h1 the REST calls
// go over the lean HTTP/1.1 client (h1publish.go) instead of net/http's.
func (b *bench) runPublishModes(ctx context.Context) ([]*Result, error) {
	var out []*Result
	for _, v := range strings.Split(b.opts.Publish, ",") {
		v = strings.TrimSpace(v)
		if v == "" {
			continue
		}
		r, err := b.runPublishVariant(ctx, v)
		if err != nil {
			return out, fmt.Errorf("publish %s: %w", v, err)
		}
		out = append(out, r)
	}
	return out, nil
}

func (b *bench) runPublishVariant(ctx context.Context, variant string) (*Result, error) {
	o := b.opts
	svc, err := b.minter.service()
	if err != nil {
		return nil, err
	}
	r := &Result{Transport: "grpc", Rooms: 1, Concurrency: o.Concurrency, Batch: 1, TargetRate: o.Rate, Seconds: seconds(o.Duration)}
	var publish publishFunc
	switch variant {
	case "unary", "batch":
		if err := b.checkFiles(o.PubConns); err != nil {
			return nil, err
		}
		if o.Transport == "h2" {
			var closeConns func()
			if publish, closeConns, err = dialH2Publisher(o.GRPCAddr, svc, o.PubConns, 1<<20, 8<<20); err != nil {
				return nil, err
			}
			defer closeConns()
			r.Transport = "h2"
		} else {
			conns := make([]*grpc.ClientConn, o.PubConns)
			for i := range conns {
				if conns[i], err = dialGRPC(o.GRPCAddr, 1<<20, 8<<20); err != nil {
					return nil, err
				}
				defer conns[i].Close()
			}
			publish = grpcPublisher(conns, svc)
		}
		r.Connections = o.PubConns
		if variant == "batch" {
			r.Batch = o.Batch
		}
	case "rest":
		if err := b.checkFiles(o.Concurrency); err != nil {
			return nil, err
		}
		var closeIdle func()
		r.Transport, r.Connections = "rest", o.Concurrency
		if o.Transport == "h1" {
			publish, closeIdle = h1RESTPublisher(o.HTTPAddr, svc, o.Concurrency)
			r.Transport = "rest-h1"
		} else {
			publish, closeIdle = restPublisher(o.HTTPAddr, svc, o.Concurrency)
		}
		defer closeIdle()
	default:
		return nil, fmt.Errorf("unknown variant %q (unary, batch, rest)", variant)
	}
	r.Mode = modeName("publish", variant, "c="+strconv.Itoa(o.Concurrency))
	if r.Batch > 1 {
		r.Mode = modeName("publish", variant, "b="+strconv.Itoa(r.Batch), "c="+strconv.Itoa(o.Concurrency))
	}
	tmpl := newEventTemplate(o.Payload)
	r.PayloadBytes = tmpl.size
	rooms := []string{o.Room}
	run := strconv.FormatUint(rand.Uint64(), 36)
	plan := pubPlan{
		rate:      o.Rate,
		duration:  o.Duration,
		batch:     r.Batch,
		workers:   o.Concurrency,
		maxEvents: o.MaxEvents,
		build: func(i int64, sent time.Time) *notifyv1.PublishRequest {
			key := ""
			if o.Idempotency {
				key = "nb-" + run + "-" + strconv.FormatInt(i, 10)
			}
			return tmpl.request(rooms, sent, key)
		},
		publish: publish,
	}
	b.progress("publish %s: %d concurrent calls, batch %d, for %v", variant, o.Concurrency, r.Batch, o.Duration)
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
