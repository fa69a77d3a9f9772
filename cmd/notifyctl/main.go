// Command notifyctl is the command-line client of notifyd: it mints local
// tokens, watches rooms and publishes events.
//
//	notifyctl token --role guest --sub g1
//	notifyctl subscribe --token $T [--room guest:g1] [--from guest:g1=7@epoch]
//	notifyctl publish --token $T pointsAdded guestId=g1 restaurantId=r1 amount=100 newBalance=600
//	notifyctl publish --token $T --json '{"pointsAdded":{"guestId":"g1",...}}'
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

const usage = `usage: notifyctl <command> [flags]

commands:
  token      mint a token for local use (HS256; dev secret unless --secret)
  subscribe  stream a room's events as JSON lines
  publish    publish one typed event
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch os.Args[1] {
	case "token":
		err = tokenCmd(os.Args[2:], os.Stdout)
	case "subscribe":
		err = subscribeCmd(ctx, os.Args[2:], os.Stdout, os.Stderr)
	case "publish":
		err = publishCmd(ctx, os.Args[2:], os.Stdout)
	case "-h", "--help", "help":
		fmt.Fprint(os.Stdout, usage)
		return
	default:
		err = fmt.Errorf("unknown command %q\n%s", os.Args[1], usage)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "notifyctl:", err)
		os.Exit(1)
	}
}
