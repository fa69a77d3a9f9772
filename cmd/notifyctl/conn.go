package main

import (
	"context"
	"flag"
	"fmt"
	"os"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
)

// connFlags are the flags every networked command shares.
type connFlags struct {
	addr  *string
	token *string
}

func bindConn(fs *flag.FlagSet) connFlags {
	addr := os.Getenv("NOTIFY_ADDR")
	if addr == "" {
		addr = "127.0.0.1:9090"
	}
	return connFlags{
		addr:  fs.String("addr", addr, "notifyd gRPC address (NOTIFY_ADDR)"),
		token: fs.String("token", os.Getenv("NOTIFY_TOKEN"), "bearer token (NOTIFY_TOKEN)"),
	}
}

func (c connFlags) dial(ctx context.Context) (*grpc.ClientConn, context.Context, error) {
	if *c.token == "" {
		return nil, nil, fmt.Errorf("--token is required (mint one with: notifyctl token)")
	}
	conn, err := grpc.NewClient(*c.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, nil, err
	}
	return conn, metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+*c.token), nil
}
