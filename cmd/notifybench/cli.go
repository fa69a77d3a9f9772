package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/maxloyalty/notify/internal/gcfloor"
)

const usage = `usage: notifybench <mode> [flags]

modes:
  fanout    one room, --subscribers streams over --conns connections, --rate events/s
  personal  --subscribers rooms guest:<i> with one stream each, --rate events/s spread over them
  idle      hold --subscribers streams over --conns connections; server RSS per stream
  publish   publish only: gRPC unary (h2load), PublishBatch of --batch (grpc-go) and REST (wrk)
  suite     a few seconds of each mode with small sizes (make bench)
  soak      churn --subscribers (reconnect, resume, slow-consumer cuts) for --duration while
            sampling the server's RSS, goroutines and open files; FAIL on growth or loss (make soak)

Run "notifybench <mode> -h" for the flags.
`

// run executes one command line and prints its results on stdout;
// progress goes to stderr.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errors.New("no mode given")
	}
	mode := args[0]
	switch mode {
	case "fanout", "personal", "idle", "publish", "suite", "soak":
	case "-h", "--help", "help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("unknown mode %q", mode)
	}
	o := defaultOptions()
	fs := flag.NewFlagSet(mode, flag.ContinueOnError)
	fs.SetOutput(stderr)
	o.bind(fs)
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	switch mode {
	case "publish":
		if !set["rate"] {
			o.Rate = 0
		}
		if !set["batch"] {
			o.Batch = 100
		}
	case "suite":
		if !set["duration"] {
			o.Duration = 3 * time.Second
		}
	case "soak":
		o.soakDefaults(set)
	}
	if err := o.validate(); err != nil {
		return err
	}

	// The load generator allocates per call over a small heap, as a node
	// does: the same floor keeps its collections from costing the server
	// CPU on a shared machine.
	defer gcfloor.Start(gcfloor.DefaultFloor)()
	if o.CPUProfile != "" {
		stop, err := startCPUProfile(o.CPUProfile)
		if err != nil {
			return err
		}
		defer stop()
	}
	b := &bench{opts: o, minter: newMinter(o.Secret), log: stderr}
	srv, err := b.startServer(ctx)
	if err != nil {
		if srv != nil {
			err = errors.Join(err, srv.stop())
		}
		return err
	}
	if srv != nil {
		defer func() {
			if err := srv.stop(); err != nil {
				b.progress("stopping the server: %v", err)
			}
		}()
	}
	if mode == "soak" {
		return b.runSoakCmd(ctx, stdout)
	}
	results, runErr := b.runMode(ctx, mode)
	var printErr error
	if len(results) > 0 {
		if o.JSON {
			printErr = printJSON(stdout, results)
		} else {
			printErr = printTable(stdout, results)
		}
	}
	return errors.Join(runErr, printErr)
}

// startServer starts the node the flags ask for (--inprocess or --spawn)
// and points the benchmark at it, or finds the running notifyd's process
// for the RSS and CPU columns.
func (b *bench) startServer(ctx context.Context) (*server, error) {
	o := &b.opts
	var srv *server
	var err error
	switch {
	case o.InProcess:
		srv, err = startInProcess(ctx, o.QueueBytes)
	case o.Spawn != "":
		srv, err = spawnNotifyd(ctx, o.Spawn, o.SpawnArgs, b.log, nil)
	}
	if err != nil {
		return nil, err
	}
	pid := o.ServerPID
	if srv != nil {
		o.GRPCAddr, o.HTTPAddr, pid = srv.grpcAddr, srv.httpAddr, srv.pid
		if srv.debugAddr != "" {
			o.ServerDebug = srv.debugAddr
		}
		b.progress("server at gRPC %s, HTTP %s (pid %d)", o.GRPCAddr, o.HTTPAddr, pid)
	} else if pid == 0 {
		if pid, err = findListener(o.GRPCAddr); err != nil {
			b.progress("no server RSS/CPU figures: %v (use --server-pid)", err)
		}
	}
	b.server = &serverMeter{pid: pid}
	if o.ServerProfile != "" {
		if o.ServerDebug == "" {
			return srv, errors.New("--server-profile needs the server's debug address: --server-debug, or --spawn")
		}
		b.server.profile = func() func() error {
			return fetchProfile(o.ServerDebug, o.ServerProfile, max(1, int(o.Duration.Seconds())))
		}
	}
	return srv, nil
}

// runMode runs one mode (suite: all of them) and returns its rows.
func (b *bench) runMode(ctx context.Context, mode string) ([]*Result, error) {
	one := func(r *Result, err error) ([]*Result, error) {
		if r == nil {
			return nil, err
		}
		return []*Result{r}, err
	}
	switch mode {
	case "fanout":
		return one(b.runFanout(ctx))
	case "personal":
		if b.opts.Subscribers < 1 {
			return nil, errors.New("personal: --subscribers must be at least 1")
		}
		return one(b.runPersonal(ctx))
	case "idle":
		return one(b.runIdle(ctx))
	case "publish":
		return b.runPublishModes(ctx)
	case "suite":
		return b.runSuite(ctx)
	}
	return nil, fmt.Errorf("unknown mode %q", mode)
}
