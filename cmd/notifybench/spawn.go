package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	"github.com/maxloyalty/notify/internal/node"
)

// readyTimeout bounds waiting for a node to serve.
const readyTimeout = 30 * time.Second

// waitReady polls http://addr/readyz (https with roots) until it answers
// 200, alive reports false (the process died) or the timeout passes.
func waitReady(ctx context.Context, httpAddr string, roots *x509.CertPool, alive func() bool) error {
	client := &http.Client{Timeout: time.Second}
	scheme := "http://"
	if roots != nil {
		client.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}
		scheme = "https://"
	}
	deadline := time.Now().Add(readyTimeout)
	for {
		resp, err := client.Get(scheme + httpAddr + "/readyz")
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
	debugAddr          string // its --debug-addr (profiles); "" in process
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
	if err := waitReady(ctx, n.HTTPAddr(), nil, alive); err != nil {
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
// (its debug address included, for --server-profile) with a temporary data
// directory, plus extra flags, and waits until it is ready. Its output goes to logw. stop sends SIGTERM and waits (then kills
// it after 20s). roots, when set, verifies a notifyd started with TLS.
func spawnNotifyd(ctx context.Context, path, extra string, logw io.Writer, roots *x509.CertPool) (*server, error) {
	grpcAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	httpAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	debugAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "notifybench-")
	if err != nil {
		return nil, err
	}
	args := append([]string{"--dev", "--grpc-addr", grpcAddr, "--http-addr", httpAddr, "--debug-addr", debugAddr, "--data-dir", dir, "--log-level", "warn"},
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
	if err := waitReady(ctx, httpAddr, roots, alive); err != nil {
		return nil, errors.Join(err, stop())
	}
	return &server{grpcAddr: grpcAddr, httpAddr: httpAddr, debugAddr: debugAddr, pid: cmd.Process.Pid, stop: stop}, nil
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

// fetchProfile writes the CPU profile of seconds that the server at
// debugAddr (notifyd --debug-addr) takes from now into path; wait returns
// its error once it is written.
func fetchProfile(debugAddr, path string, seconds int) (wait func() error) {
	done := make(chan error, 1)
	go func() {
		url := fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", debugAddr, seconds)
		client := &http.Client{Timeout: time.Duration(seconds)*time.Second + 30*time.Second}
		resp, err := client.Get(url)
		if err != nil {
			done <- err
			return
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			done <- fmt.Errorf("%s: %s", url, resp.Status)
			return
		}
		f, err := os.Create(path)
		if err != nil {
			done <- err
			return
		}
		_, err = io.Copy(f, resp.Body)
		done <- errors.Join(err, f.Close())
	}()
	return func() error { return <-done }
}
