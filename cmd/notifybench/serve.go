package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	"github.com/maxloyalty/notify/server/gcfloor"
	"github.com/maxloyalty/notify/server/node"
)

// serveCmd runs a node like notifyd (same flags and NOTIFY_* variables)
// with profiling: notifyd has no pprof endpoint, so `notifybench serve
// --cpuprofile cpu.pprof --dev ...` stands in for it during a benchmark
// (the load generator stays in its own process) and writes the profile
// when stopped with SIGINT or SIGTERM.
func serveCmd(ctx context.Context, args []string, stderr io.Writer) error {
	var cfg node.Config
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	envErr := cfg.BindFlags(fs)
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	memProfile := fs.String("memprofile", "", "write a heap profile to this file on SIGUSR1 and when stopping")
	onSignal := fs.Bool("cpuprofile-on-signal", false, "profile only between two SIGUSR2 (notifybench --profile-signal sends them around its measured phase)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if envErr != nil {
		return fmt.Errorf("config: %w", envErr)
	}
	if _, err := raiseFileLimit(1 << 20); err != nil {
		return err
	}
	defer gcfloor.Start(int64(cfg.Defaults().GCFloor))() // as notifyd
	n, err := node.New(ctx, cfg, node.NewLogger(cfg))
	if err != nil {
		return err
	}
	switch {
	case *cpuProfile != "" && *onSignal:
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		stop := profileOnSignal(f, stderr)
		defer stop()
	case *cpuProfile != "":
		signal.Ignore(syscall.SIGUSR2)
		stop, err := startCPUProfile(*cpuProfile)
		if err != nil {
			return err
		}
		defer stop()
	}
	// SIGUSR1: a heap profile and the runtime's memory figures now, for
	// example while an idle benchmark holds its streams.
	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	defer signal.Stop(usr1)
	runDone := make(chan struct{})
	defer close(runDone)
	go func() {
		for {
			select {
			case <-runDone:
				return
			case <-usr1:
				if err := writeHeap(*memProfile, stderr); err != nil {
					fmt.Fprintln(stderr, "notifybench serve: heap profile:", err)
				}
			}
		}
	}()
	runErr := n.Run(ctx)
	if *memProfile != "" {
		if err := writeHeap(*memProfile, stderr); err != nil {
			return errors.Join(runErr, err)
		}
	}
	return runErr
}

// profileOnSignal starts a CPU profile into f at the first SIGUSR2 and
// stops it at the second; the returned func stops it if still running.
func profileOnSignal(f *os.File, stderr io.Writer) func() {
	usr2 := make(chan os.Signal, 2)
	signal.Notify(usr2, syscall.SIGUSR2)
	quit := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		running := false
		for {
			select {
			case <-quit:
				if running {
					pprof.StopCPUProfile()
				}
				return
			case <-usr2:
				if running {
					pprof.StopCPUProfile()
					fmt.Fprintln(stderr, "notifybench serve: CPU profile stopped")
					// Later signals must not end the process (SIGUSR2's default).
					signal.Ignore(syscall.SIGUSR2)
					return
				}
				if err := pprof.StartCPUProfile(f); err != nil {
					fmt.Fprintln(stderr, "notifybench serve: CPU profile:", err)
					return
				}
				running = true
				fmt.Fprintln(stderr, "notifybench serve: CPU profile started")
			}
		}
	}()
	return func() {
		close(quit)
		<-stopped
		signal.Ignore(syscall.SIGUSR2)
	}
}

// writeHeap writes a heap profile to path (when set) after a GC, and the
// runtime's memory figures to w.
func writeHeap(path string, w io.Writer) error {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	fmt.Fprintf(w, "notifybench serve: goroutines %d, heap in use %d, stacks in use %d, sys %d, heap released %d\n",
		runtime.NumGoroutine(), ms.HeapInuse, ms.StackInuse, ms.Sys, ms.HeapReleased)
	if path == "" {
		return nil
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return pprof.WriteHeapProfile(f)
}

// readyTimeout bounds waiting for a node to serve.
const readyTimeout = 30 * time.Second

// waitReady polls http://addr/readyz until it answers 200, alive reports
// false (the process died) or the timeout passes.
func waitReady(ctx context.Context, httpAddr string, alive func() bool) error {
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(readyTimeout)
	for {
		resp, err := client.Get("http://" + httpAddr + "/readyz")
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if alive != nil && !alive() {
			return errors.New("notifyd exited before it was ready")
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready after %v", httpAddr, readyTimeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// server is a node started for a run: in this process or a child.
type server struct {
	grpcAddr, httpAddr string
	pid                int
	stop               func() error
}

// startInProcess runs a dev node in this process on free ports, with its
// inbox in a temporary directory.
func startInProcess(ctx context.Context, queueBytes int) (*server, error) {
	dir, err := os.MkdirTemp("", "notifybench-")
	if err != nil {
		return nil, err
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	runCtx, cancel := context.WithCancel(context.Background())
	n, err := node.New(runCtx, node.Config{
		GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", Dev: true, DataDir: dir,
		QueueBytes: queueBytes, LogLevel: "error", ShutdownDrain: 5 * time.Second,
	}, log)
	if err != nil {
		cancel()
		os.RemoveAll(dir)
		return nil, err
	}
	done := make(chan error, 1)
	go func() { done <- n.Run(runCtx) }()
	stop := func() error {
		cancel()
		defer os.RemoveAll(dir)
		select {
		case err := <-done:
			return err
		case <-time.After(20 * time.Second):
			return errors.New("in-process node did not stop within 20s")
		}
	}
	alive := func() bool {
		select {
		case err := <-done:
			done <- err
			return false
		default:
			return true
		}
	}
	if err := waitReady(ctx, n.HTTPAddr(), alive); err != nil {
		return nil, errors.Join(err, stop())
	}
	return &server{grpcAddr: n.GRPCAddr(), httpAddr: n.HTTPAddr(), pid: os.Getpid(), stop: stop}, nil
}

// freeAddr returns a 127.0.0.1 address with a port free at the moment.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// spawnNotifyd starts the notifyd binary at path in dev mode on free ports
// with a temporary data directory, plus extra flags, and waits until it is
// ready. Its output goes to logw. stop sends SIGTERM and waits (then kills
// it after 20s).
func spawnNotifyd(ctx context.Context, path, extra string, logw io.Writer) (*server, error) {
	grpcAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	httpAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "notifybench-")
	if err != nil {
		return nil, err
	}
	args := append([]string{"--dev", "--grpc-addr", grpcAddr, "--http-addr", httpAddr, "--data-dir", dir, "--log-level", "warn"},
		strings.Fields(extra)...)
	cmd := exec.Command(path, args...)
	cmd.Stdout, cmd.Stderr = logw, logw
	if err := cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stop := func() error {
		defer os.RemoveAll(dir)
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-exited:
			return err
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
			return errors.New("notifyd did not stop within 20s of SIGTERM; killed")
		}
	}
	alive := func() bool {
		select {
		case err := <-exited:
			exited <- err
			return false
		default:
			return true
		}
	}
	if err := waitReady(ctx, httpAddr, alive); err != nil {
		return nil, errors.Join(err, stop())
	}
	return &server{grpcAddr: grpcAddr, httpAddr: httpAddr, pid: cmd.Process.Pid, stop: stop}, nil
}

// startCPUProfile profiles this process into path until the returned
// function is called.
func startCPUProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}
