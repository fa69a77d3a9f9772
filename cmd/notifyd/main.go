// Command notifyd is the notify server: native gRPC on one port; grpc-web,
// REST and the OpenAPI document on another.
//
//	notifyd [flags]              serve
//	notifyd --version            print the version
//	notifyd config print [flags] print the effective configuration, secrets masked
//	notifyd healthcheck [flags]  GET /healthz of the notifyd these flags describe, on
//	                             this machine: exit 0 when it answers 200, 1 otherwise
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/maxloyalty/notify/internal/gcfloor"
	"github.com/maxloyalty/notify/internal/node"
	"github.com/maxloyalty/notify/internal/tracing"
)

func main() {
	args := os.Args[1:]
	printConfig := len(args) >= 2 && args[0] == "config" && args[1] == "print"
	if printConfig {
		args = args[2:]
	}
	health := len(args) >= 1 && args[0] == "healthcheck"
	if health {
		args = args[1:]
	}
	var cfg node.Config
	fs := flag.NewFlagSet("notifyd", flag.ExitOnError)
	envErr := cfg.BindFlags(fs)
	version := fs.Bool("version", false, "print the version and exit")
	file := fs.String("config", os.Getenv("NOTIFY_CONFIG"), "config file of name = value lines (NOTIFY_CONFIG); flags win over it")
	_ = fs.Parse(args)
	if fs.NArg() > 0 {
		fail(2, fmt.Errorf("unexpected argument %q (commands: config print, healthcheck)", fs.Arg(0)))
	}
	if *version {
		fmt.Println("notifyd", node.Version)
		return
	}
	err := envErr
	if *file != "" {
		err = errors.Join(err, node.ApplyFile(fs, *file))
	}
	if health {
		// A container runtime reads exit 1 as unhealthy and reserves 2.
		if err == nil {
			err = healthcheck(context.Background(), cfg)
		}
		if err != nil {
			fail(1, err)
		}
		return
	}
	if err != nil {
		fail(2, fmt.Errorf("config: %w", err))
	}
	if printConfig {
		node.PrintConfig(os.Stdout, fs)
		if err := cfg.Defaults().Validate(); err != nil {
			fail(2, fmt.Errorf("config: %w", err))
		}
		return
	}
	log := node.NewLogger(cfg)
	defer gcfloor.Start(int64(cfg.Defaults().GCFloor))()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// Tracing is configured by the standard OTEL_* variables, off unless
	// they name an exporter or an OTLP endpoint (docs/OPERATIONS.md).
	if cfg.Tracing, err = tracing.FromEnv(ctx, node.Version); err != nil {
		fail(2, fmt.Errorf("config: %w", err))
	}
	if cfg.Tracing != nil {
		tracing.LogErrors(log)
	}
	n, err := node.New(ctx, cfg, log)
	if err != nil {
		fail(2, err)
	}
	if cfg.Dev {
		fmt.Fprintf(os.Stderr, devHint, n.HTTPAddr(), n.GRPCAddr(), n.HTTPAddr())
	}
	err = n.Run(ctx)
	// The spans of the last calls are exported before exit.
	flush, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if terr := cfg.Tracing.Shutdown(flush); terr != nil {
		log.Warn("tracing shutdown", "err", terr)
	}
	if err != nil {
		fail(1, err)
	}
}

func fail(code int, err error) {
	fmt.Fprintln(os.Stderr, "notifyd:", err)
	os.Exit(code)
}

// devHint tells a developer how to watch and publish (dev mode only).
const devHint = `
notifyd is running in dev mode. Open http://%s/ for the demo app, or in other terminals:

  make build
  GUEST=$(./bin/notifyctl token --role guest --sub g1)
  SERVICE=$(./bin/notifyctl token --role service --sub backend)
  ./bin/notifyctl subscribe --addr %s --token "$GUEST"
  curl -s -X POST http://%s/v1/events -H "Authorization: Bearer $SERVICE" \
    -d '{"pointsAdded":{"guestId":"g1","restaurantId":"r1","amount":100,"newBalance":600}}'

`
