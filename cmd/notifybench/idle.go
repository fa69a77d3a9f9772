package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/maxloyalty/notify/internal/certs"
)

// withTLSServer runs fn against a notifyd of its own (--spawn) serving TLS
// with a self-signed certificate, then stops it.
func (b *bench) withTLSServer(ctx context.Context, fn func(*bench, context.Context) (*Result, error)) (*Result, error) {
	dir, err := os.MkdirTemp("", "notifybench-tls-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	certFile, keyFile, roots, err := certs.SelfSigned(dir, "127.0.0.1")
	if err != nil {
		return nil, err
	}
	o := b.opts
	srv, err := spawnNotifyd(ctx, o.Spawn, o.SpawnArgs+" --tls-cert-file "+certFile+" --tls-key-file "+keyFile, b.log, roots)
	if err != nil {
		return nil, fmt.Errorf("starting notifyd with TLS: %w", err)
	}
	defer func() {
		if err := srv.stop(); err != nil {
			b.progress("stopping notifyd with TLS: %v", err)
		}
	}()
	o.GRPCAddr, o.HTTPAddr, o.ServerDebug = srv.grpcAddr, srv.httpAddr, srv.debugAddr
	b.progress("notifyd with TLS at gRPC %s, HTTPS %s (pid %d)", o.GRPCAddr, o.HTTPAddr, srv.pid)
	step := &bench{opts: o, minter: b.minter, server: &serverMeter{pid: srv.pid}, log: b.log, tlsRoots: roots}
	return fn(step, ctx)
}

// runIdle opens --subscribers streams, each in a room of its own, over
// --conns connections (grpc-web: one each), holds them for --hold, and
// reports the server's RSS growth per stream. The baseline is read before
// the first stream opens, so it should be a freshly started notifyd.
func (b *bench) runIdle(ctx context.Context) (*Result, error) {
	o := b.opts
	if tlsTransport(o.Transport) && b.tlsRoots == nil {
		if o.Spawn == "" {
			return nil, fmt.Errorf("idle --transport %s needs a notifyd with TLS on its ports: use --spawn", o.Transport)
		}
		return b.withTLSServer(ctx, (*bench).runIdle)
	}
	n := o.Subscribers
	if n < 1 {
		return nil, fmt.Errorf("idle: --subscribers must be at least 1")
	}
	conns := min(o.Conns, n)
	if webTransport(o.Transport) {
		conns = n
	}
	if err := b.checkFiles(conns); err != nil {
		return nil, err
	}
	rooms := personalRooms(o.RoomPrefix, n)
	tokens := make([]string, n)
	for i, room := range rooms {
		t, err := b.minter.subscriberToken(room, i)
		if err != nil {
			return nil, err
		}
		tokens[i] = t
	}
	before := b.server.rss()
	var memBefore memStats
	if o.ServerDebug != "" {
		m, err := readMemStats(o.ServerDebug)
		if err != nil {
			return nil, fmt.Errorf("idle: the server's memory figures: %w", err)
		}
		memBefore = m
	}
	b.progress("idle: server RSS %s MB before; opening %d streams over %d %s connections", mb(before), n, conns, o.Transport)
	openCtx, cancelOpen := context.WithTimeout(ctx, o.ConnectTimeout)
	opened := time.Now()
	cfg := b.fleetConfig()
	cfg.conns = conns
	f, err := openFleet(openCtx, cfg, rooms, tokens, func(s string) { b.progress("idle: %s", s) })
	cancelOpen()
	if err != nil {
		return nil, err
	}
	defer f.stop(stopTimeout)
	openTime := time.Since(opened)
	b.progress("idle: %d streams open in %v; holding %v", n, openTime.Round(time.Millisecond), o.Hold)

	b.server.begin()
	var after int64
	hold := time.NewTimer(o.Hold)
	defer hold.Stop()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var samples []string
wait:
	for {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-tick.C:
			after = b.server.rss()
			samples = append(samples, mb(after))
		case <-hold.C:
			break wait
		}
	}
	after = b.server.rss()
	alive := 0
	for _, s := range f.subs {
		if !s.ended.Load() {
			alive++
		}
	}
	r := &Result{
		Mode:        "idle",
		Transport:   o.Transport,
		Subscribers: n,
		Connections: conns,
		Rooms:       n,
		Seconds:     seconds(o.Hold),
		RSSBefore:   before,
		RSSAfter:    after,
	}
	b.server.end(r)
	if before > 0 && after > 0 {
		r.BytesPerStream = round3(float64(after-before) / float64(n))
	}
	if o.ServerDebug != "" {
		m, err := readMemStats(o.ServerDebug)
		if err != nil {
			return nil, fmt.Errorf("idle: the server's memory figures: %w", err)
		}
		r.HeapPerStream = round3(float64(m.HeapAlloc-memBefore.HeapAlloc) / float64(n))
		r.StackPerStream = round3(float64(m.Stack-memBefore.Stack) / float64(n))
		r.GoroutinesPerStream = round3(float64(m.Goroutines-memBefore.Goroutines) / float64(n))
		r.Notes = append(r.Notes, fmt.Sprintf("after a forced collection: live heap %s MB (%s MB before), %.0f B per stream; stacks %s MB (%s MB before), %.0f B per stream; %.2f goroutines per stream",
			mb(m.HeapAlloc), mb(memBefore.HeapAlloc), r.HeapPerStream, mb(m.Stack), mb(memBefore.Stack), r.StackPerStream, r.GoroutinesPerStream))
	}
	f.stop(stopTimeout)
	t := f.totals(func(string) uint64 { return 0 })
	r.Lost, r.Duplicated, r.Cut = t.Lost, t.Duplicated, t.Cut
	r.StreamErrors, r.StreamError = t.Errors, t.FirstError
	r.Notes = append(r.Notes,
		fmt.Sprintf("%d streams opened in %v (%.0f/s); %d alive after the hold", n, openTime.Round(time.Millisecond), float64(n)/openTime.Seconds(), alive),
		fmt.Sprintf("server RSS %s MB before, %s MB after (samples each second: %v)", mb(before), mb(after), samples))
	if t.FirstError != "" {
		r.Notes = append(r.Notes, fmt.Sprintf("%d streams ended early; first: %s", t.Errors, t.FirstError))
	}
	return r, nil
}
