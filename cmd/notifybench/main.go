// Command notifybench is the load and benchmark tool of notifyd. It drives
// a running notifyd over real sockets (or one it starts) and prints one
// table, or JSON:
//
//	notifybench fanout   --subscribers 10000 --conns 100 --rate 30 --duration 30s
//	notifybench personal --subscribers 10000 --rate 5000 --duration 30s
//	notifybench idle     --subscribers 100000 --conns 1000 --hold 10s
//	notifybench publish  --concurrency 16 --batch 100 --duration 10s   (unary: h2load, batch: grpc-go, REST: wrk)
//	notifybench suite    --spawn ./bin/notifyd
//	notifybench soak     --spawn ./bin/notifyd --duration 10m   (churn, resume, cuts; leak check)
//
// See docs/PERFORMANCE.md for the measured figures and how they were taken.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "notifybench:", err)
		os.Exit(1)
	}
}
