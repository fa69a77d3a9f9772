package main

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// suiteStep is one short run of the suite.
type suiteStep struct {
	mode string
	set  func(o *options)
}

// suiteSteps are small versions of every benchmark: a few seconds each,
// small enough for any laptop and for `make bench`. Idle runs first, while
// the server's memory baseline is fresh.
var suiteSteps = []suiteStep{
	{"idle", func(o *options) { o.Subscribers, o.Conns, o.Hold = 1000, 10, 2*time.Second }},
	// Browsers and phones: each stream on a connection of its own, native
	// (grpc-go's own client), plain and over TLS, and grpc-web over
	// HTTP/1.1 and over HTTP/2, plain (as behind a proxy that ends TLS) and
	// over TLS, to the HTTP port and to the native one (the TLS runs on a
	// notifyd with TLS of its own).
	{"idle", func(o *options) { o.Subscribers, o.Conns, o.Hold = 500, 500, 2*time.Second }},
	{"idle", func(o *options) { o.Subscribers, o.Conns, o.Hold, o.Transport = 200, 200, 2*time.Second, "grpc-tls" }},
	{"idle", func(o *options) { o.Subscribers, o.Hold, o.Transport = 500, 2*time.Second, "grpcweb" }},
	{"idle", func(o *options) { o.Subscribers, o.Hold, o.Transport = 500, 2*time.Second, "grpcweb-h2c" }},
	{"idle", func(o *options) { o.Subscribers, o.Hold, o.Transport = 200, 2*time.Second, "grpcweb-tls" }},
	{"idle", func(o *options) { o.Subscribers, o.Hold, o.Transport = 200, 2*time.Second, "grpcweb-h2" }},
	{"idle", func(o *options) { o.Subscribers, o.Hold, o.Transport = 200, 2*time.Second, "grpcweb-native" }},
	{"fanout", func(o *options) { o.Subscribers, o.Conns, o.Rate = 500, 5, 200 }},
	{"fanout", func(o *options) { o.Subscribers, o.Conns, o.Rate = 500, 500, 40 }},
	{"fanout", func(o *options) { o.Subscribers, o.Rate, o.Transport = 200, 100, "grpcweb" }},
	{"personal", func(o *options) { o.Subscribers, o.Conns, o.Rate = 500, 5, 500 }},
	{"publish", func(o *options) { o.Rate, o.Batch, o.Concurrency = 0, 100, 8 }},
}

// runSuite runs every step with the invocation's flags as the base.
func (b *bench) runSuite(ctx context.Context) ([]*Result, error) {
	base := b.opts
	var out []*Result
	var errs []error
	for _, s := range suiteSteps {
		if ctx.Err() != nil {
			break
		}
		o := base
		s.set(&o)
		step := &bench{opts: o, minter: b.minter, server: b.server, log: b.log}
		rs, err := step.runMode(ctx, s.mode)
		out = append(out, rs...)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", s.mode, err))
		}
	}
	for _, r := range out {
		if !r.Clean() || r.Cut > 0 {
			errs = append(errs, fmt.Errorf("%s: lost %d, duplicated %d, cut %d, errors %d", r.Mode, r.Lost, r.Duplicated, r.Cut, r.PublishErrors+int64(r.StreamErrors)))
		}
	}
	return out, errors.Join(errs...)
}
