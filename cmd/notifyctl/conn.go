package main

import (
	"flag"
	"fmt"
	"log/slog"
	"os"

	notify "github.com/maxloyalty/notify/clients/go"
)

// connFlags are the flags every networked command shares.
type connFlags struct {
	addr  *string
	token *string
	tls   *bool
}

func bindConn(fs *flag.FlagSet) connFlags {
	addr := os.Getenv("NOTIFY_ADDR")
	if addr == "" {
		addr = "127.0.0.1:9090"
	}
	return connFlags{
		addr:  fs.String("addr", addr, "notifyd gRPC address (NOTIFY_ADDR)"),
		token: fs.String("token", os.Getenv("NOTIFY_TOKEN"), "bearer token (NOTIFY_TOKEN)"),
		tls:   fs.Bool("tls", os.Getenv("NOTIFY_TLS") == "true", "connect with TLS and the system's roots instead of plaintext (NOTIFY_TLS=true)"),
	}
}

// dial returns an SDK client of the address, sending the token with every
// call; log receives its reconnection messages (nil: none).
func (c connFlags) dial(log *slog.Logger) (*notify.Client, error) {
	if *c.token == "" {
		return nil, fmt.Errorf("--token is required (mint one with: notifyctl token)")
	}
	opts := []notify.Option{notify.WithToken(*c.token)}
	if !*c.tls {
		opts = append(opts, notify.WithInsecure())
	}
	if log != nil {
		opts = append(opts, notify.WithLogger(log))
	}
	return notify.Dial(*c.addr, opts...)
}
