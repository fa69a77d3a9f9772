package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"

	"google.golang.org/protobuf/encoding/protojson"

	notifyv1 "github.com/maxloyalty/notify/gen/notify/v1"
)

type multi []string

func (m *multi) String() string     { return strings.Join(*m, ",") }
func (m *multi) Set(s string) error { *m = append(*m, s); return nil }

func subscribeCmd(ctx context.Context, args []string, out, status io.Writer) error {
	fs := flag.NewFlagSet("subscribe", flag.ContinueOnError)
	cf := bindConn(fs)
	var rooms, from multi
	fs.Var(&rooms, "room", "room to join (repeatable; none: the token's default rooms)")
	fs.Var(&from, "from", "resume position room=offset@epoch (repeatable)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	req := &notifyv1.SubscribeRequest{Rooms: rooms}
	for _, f := range from {
		p, err := parsePosition(f)
		if err != nil {
			return err
		}
		req.Positions = append(req.Positions, p)
	}
	conn, ctx, err := cf.dial(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	stream, err := notifyv1.NewNotificationServiceClient(conn).Subscribe(ctx, req)
	if err != nil {
		return err
	}
	enc := protojson.MarshalOptions{}
	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) || ctx.Err() != nil {
			return nil
		}
		if err != nil {
			return err
		}
		for _, ev := range msg.Events {
			b, err := enc.Marshal(ev)
			if err != nil {
				return err
			}
			fmt.Fprintln(out, string(b))
		}
		if msg.Control != nil {
			b, _ := enc.Marshal(msg)
			if msg.GetHeartbeat() == nil {
				fmt.Fprintln(status, string(b))
			}
		}
	}
}

// parsePosition reads room=offset@epoch.
func parsePosition(s string) (*notifyv1.StreamPosition, error) {
	room, rest, ok := strings.Cut(s, "=")
	off, epoch, ok2 := strings.Cut(rest, "@")
	if !ok || !ok2 {
		return nil, fmt.Errorf("--from %q: want room=offset@epoch", s)
	}
	n, err := strconv.ParseUint(off, 10, 64)
	if err != nil {
		return nil, fmt.Errorf("--from %q: offset: %w", s, err)
	}
	return &notifyv1.StreamPosition{Room: room, Offset: n, Epoch: epoch}, nil
}
