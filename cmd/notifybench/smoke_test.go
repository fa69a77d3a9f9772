package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/maxloyalty/notify/internal/certs"
	"github.com/maxloyalty/notify/internal/node"
)

// startTestNode runs a dev node in this process on free ports until the
// test ends.
func startTestNode(t *testing.T) *node.Node {
	t.Helper()
	return startTestNodeWith(t, nil)
}

// startTestNodeWith is startTestNode with mutate applied to the config.
func startTestNodeWith(t *testing.T, mutate func(*node.Config)) *node.Node {
	t.Helper()
	return startNode(t, mutate, nil)
}

// startTLSTestNode starts a node serving TLS on both ports with a
// self-signed certificate, and returns it with the certificate's pool.
func startTLSTestNode(t *testing.T) (*node.Node, *x509.CertPool) {
	t.Helper()
	certFile, keyFile, pool, err := certs.SelfSigned(t.TempDir(), "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	return startNode(t, func(c *node.Config) { c.TLSCertFile, c.TLSKeyFile = certFile, keyFile }, pool), pool
}

// startNode starts a node with mutate applied to its config, and waits
// for it to be ready (over TLS trusting roots, when roots is not nil).
func startNode(t *testing.T, mutate func(*node.Config), roots *x509.CertPool) *node.Node {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg := node.Config{GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", Dev: true, DataDir: t.TempDir(), LogLevel: "error",
		GRPCTransport: os.Getenv("NOTIFY_TEST_GRPC_TRANSPORT")} // empty: the default
	if mutate != nil {
		mutate(&cfg)
	}
	n, err := node.New(ctx, cfg, log)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			t.Error("node did not stop")
		}
	})
	if err := waitReady(ctx, n.HTTPAddr(), roots, nil); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestModesEndToEnd runs every mode for about a second with small sizes
// against an in-process node: events must arrive, none lost or repeated.
func TestModesEndToEnd(t *testing.T) {
	n := startTestNode(t)
	base := defaultOptions()
	base.GRPCAddr, base.HTTPAddr = n.GRPCAddr(), n.HTTPAddr()
	base.Duration, base.Drain, base.Hold = time.Second, 10*time.Second, 500*time.Millisecond
	base.ConnectTimeout = 30 * time.Second
	base.Quiet = true
	if err := base.validate(); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		mode string
		set  func(*options)
		rows int
	}{
		{"fanout grpc", "fanout", func(o *options) { o.Subscribers, o.Conns, o.Rate = 40, 3, 100 }, 1},
		{"fanout grpc wire batched", "fanout", func(o *options) { o.Subscribers, o.Conns, o.Rate, o.Batch, o.Decode = 20, 2, 200, 10, "wire" }, 1},
		{"fanout grpcweb", "fanout", func(o *options) { o.Subscribers, o.Rate, o.Transport = 10, 100, "grpcweb" }, 1},
		{"fanout h2", "fanout", func(o *options) { o.Subscribers, o.Conns, o.Rate, o.Transport = 40, 3, 100, "h2" }, 1},
		{"fanout h2 wire batched", "fanout", func(o *options) {
			o.Subscribers, o.Conns, o.Rate, o.Batch, o.Decode, o.Transport = 20, 2, 200, 10, "wire", "h2"
		}, 1},
		{"fanout as fast as possible", "fanout", func(o *options) { o.Subscribers, o.Conns, o.Rate, o.Publishers = 10, 2, 0, 2 }, 1},
		{"personal grpc", "personal", func(o *options) { o.Subscribers, o.Conns, o.Rate = 30, 3, 150 }, 1},
		{"personal grpcweb", "personal", func(o *options) { o.Subscribers, o.Rate, o.Transport = 10, 50, "grpcweb" }, 1},
		{"personal h2", "personal", func(o *options) { o.Subscribers, o.Conns, o.Rate, o.Transport = 30, 3, 150, "h2" }, 1},
		{"idle", "idle", func(o *options) { o.Subscribers, o.Conns = 50, 5 }, 1},
		{"idle grpcweb-h2c", "idle", func(o *options) { o.Subscribers, o.Transport = 10, "grpcweb-h2c" }, 1},
		{"publish", "publish", func(o *options) { o.Rate, o.Batch, o.Concurrency = 0, 20, 4 }, 3},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.mode == "publish" {
				needTools(t, h2loadTool, wrkTool)
			}
			o := base
			c.set(&o)
			b := &bench{opts: o, minter: newMinter(node.DevSecret), server: &serverMeter{pid: os.Getpid()}}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			rs, err := b.runMode(ctx, c.mode)
			if err != nil {
				t.Fatal(err)
			}
			if len(rs) != c.rows {
				t.Fatalf("%d rows, want %d", len(rs), c.rows)
			}
			for _, r := range rs {
				if !r.Clean() || r.Cut != 0 || r.Unknown != 0 || r.Behind != 0 {
					t.Errorf("%s: %+v", r.Mode, r)
				}
				switch c.mode {
				case "fanout", "personal":
					want := r.Published * int64(r.Subscribers) / int64(r.Rooms)
					if r.Published == 0 || r.Delivered != want || r.DeliveriesPerSec <= 0 || r.Latency.Count != r.Delivered {
						t.Errorf("%s: published %d, delivered %d (want %d), %.0f/s, %d latencies",
							r.Mode, r.Published, r.Delivered, want, r.DeliveriesPerSec, r.Latency.Count)
					}
				case "publish":
					if r.Published == 0 || r.AchievedRate <= 0 || r.Latency.Count == 0 {
						t.Errorf("%s: published %d at %.0f/s", r.Mode, r.Published, r.AchievedRate)
					}
				case "idle":
					if r.RSSAfter == 0 || r.StreamErrors != 0 {
						t.Errorf("idle: %+v", r)
					}
				}
			}
		})
	}
}

// TestIdleOverTLS: idle runs whose streams each have a TLS connection of
// their own, native (grpc-tls) and grpc-web over HTTP/1.1 (grpcweb-tls)
// and HTTP/2 (grpcweb-h2, grpcweb-native), against a node serving TLS on
// both ports.
func TestIdleOverTLS(t *testing.T) {
	n, pool := startTLSTestNode(t)
	for _, transport := range []string{"grpc-tls", "grpcweb-tls", "grpcweb-h2", "grpcweb-native"} {
		t.Run(transport, func(t *testing.T) {
			o := defaultOptions()
			o.GRPCAddr, o.HTTPAddr = n.GRPCAddr(), n.HTTPAddr()
			o.Subscribers, o.Conns, o.Hold, o.Transport = 10, 10, 200*time.Millisecond, transport
			o.ConnectTimeout, o.Quiet = 30*time.Second, true
			if err := o.validate(); err != nil {
				t.Fatal(err)
			}
			b := &bench{opts: o, minter: newMinter(node.DevSecret), server: &serverMeter{pid: os.Getpid()}, tlsRoots: pool}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			rs, err := b.runMode(ctx, "idle")
			if err != nil {
				t.Fatal(err)
			}
			if len(rs) != 1 || rs[0].Subscribers != 10 || rs[0].StreamErrors != 0 || !rs[0].Clean() {
				t.Fatalf("%+v", rs)
			}
		})
	}
}

// TestCommandLine runs the command as a user would, against the same kind
// of node, and checks the table and the JSON.
func TestCommandLine(t *testing.T) {
	n := startTestNode(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	args := []string{"fanout", "--grpc", n.GRPCAddr(), "--http", n.HTTPAddr(), "--server-pid", strconv.Itoa(os.Getpid()),
		"--subscribers", "5", "--conns", "1", "--rate", "50", "--duration", "500ms", "--quiet"}
	var out, errw bytes.Buffer
	if err := run(ctx, args, &out, &errw); err != nil {
		t.Fatalf("run: %v\n%s", err, errw.String())
	}
	if !strings.Contains(out.String(), "deliv/s") || !strings.Contains(out.String(), "fanout") {
		t.Errorf("table:\n%s", out.String())
	}
	out.Reset()
	if err := run(ctx, append(args, "--json"), &out, &errw); err != nil {
		t.Fatalf("run --json: %v", err)
	}
	var rs []Result
	if err := json.Unmarshal(out.Bytes(), &rs); err != nil || len(rs) != 1 || rs[0].Delivered == 0 || rs[0].Lost != 0 {
		t.Errorf("JSON %s: %v", out.String(), err)
	}
	if err := run(ctx, []string{"nosuchmode"}, &out, &errw); err == nil {
		t.Error("unknown mode accepted")
	}
	if err := run(ctx, []string{"fanout", "--transport", "carrier-pigeon"}, &out, &errw); err == nil {
		t.Error("unknown transport accepted")
	}
}
