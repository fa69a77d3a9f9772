package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync"

	"google.golang.org/protobuf/encoding/protojson"

	notify "github.com/maxloyalty/notify/clients/go"
	notifyv1 "github.com/maxloyalty/notify/gen/notify/v1"
)

type multi []string

func (m *multi) String() string     { return strings.Join(*m, ",") }
func (m *multi) Set(s string) error { *m = append(*m, s); return nil }

// subscribeCmd prints each event as a JSON line on out, and the stream's
// Connected messages, gaps and reconnections as JSON lines on status. It
// reconnects and resumes by itself until interrupted or a permanent error.
func subscribeCmd(ctx context.Context, args []string, out, status io.Writer) error {
	fs := flag.NewFlagSet("subscribe", flag.ContinueOnError)
	cf := bindConn(fs)
	var rooms, from multi
	fs.Var(&rooms, "room", "room to join (repeatable; none: the token's default rooms)")
	fs.Var(&from, "from", "resume position room=offset@epoch (repeatable)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var positions map[string]notify.Position
	for _, f := range from {
		p, err := parsePosition(f)
		if err != nil {
			return err
		}
		if positions == nil {
			positions = map[string]notify.Position{}
		}
		positions[p.Room] = notify.Position{Offset: p.Offset, Epoch: p.Epoch}
	}

	// Everything below writes from the subscription's goroutine, except the
	// logger: share one lock for the status stream.
	var mu sync.Mutex
	status = &lockedWriter{mu: &mu, w: status}
	log := slog.New(slog.NewJSONHandler(status, &slog.HandlerOptions{Level: slog.LevelInfo}))
	c, err := cf.dial(log)
	if err != nil {
		return err
	}
	defer c.Close()

	enc := protojson.MarshalOptions{}
	line := func(w io.Writer, b []byte, err error) {
		if err != nil {
			fmt.Fprintln(status, `{"error":`+strconv.Quote(err.Error())+`}`)
			return
		}
		fmt.Fprintln(w, string(b))
	}
	sub := c.Subscribe(ctx, notify.SubscribeOptions{
		Rooms:     rooms,
		Positions: positions,
		Handler: func(ev *notifyv1.Event) {
			b, err := enc.Marshal(ev)
			line(out, b, err)
		},
		OnConnected: func(cn *notifyv1.Connected) {
			b, err := enc.Marshal(&notifyv1.SubscribeResponse{Control: &notifyv1.SubscribeResponse_Connected{Connected: cn}})
			line(status, b, err)
		},
		OnGap: func(room string, st *notifyv1.RoomState) {
			b, err := enc.Marshal(st)
			if err == nil {
				b = []byte(`{"gap":` + string(b) + `}`)
			}
			line(status, b, err)
		},
	})
	<-sub.Done()
	return sub.Err()
}

// lockedWriter serializes writes to w.
type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
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
