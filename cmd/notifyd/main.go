// Command notifyd is the notify server: native gRPC on one port; grpc-web,
// REST and the OpenAPI document on another.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/maxloyalty/notify/server/node"
)

func main() {
	var cfg node.Config
	fs := flag.NewFlagSet("notifyd", flag.ExitOnError)
	envErr := cfg.BindFlags(fs)
	_ = fs.Parse(os.Args[1:])
	if envErr != nil {
		fmt.Fprintln(os.Stderr, "notifyd: config:", envErr)
		os.Exit(2)
	}
	log := node.NewLogger(cfg)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	n, err := node.New(ctx, cfg, log)
	if err != nil {
		fmt.Fprintln(os.Stderr, "notifyd:", err)
		os.Exit(2)
	}
	if err := n.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "notifyd:", err)
		os.Exit(1)
	}
}
