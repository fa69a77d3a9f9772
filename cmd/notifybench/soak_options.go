package main

import (
	"errors"
	"flag"
	"fmt"
	"math"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/maxloyalty/notify/internal/node"
)

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
