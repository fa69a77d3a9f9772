package main

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	notifyv1 "github.com/maxloyalty/notify/gen/notify/v1"
	"github.com/maxloyalty/notify/internal/node"
)

func TestBuildPublishAndPayload(t *testing.T) {
	req, err := buildPublish("", []string{"pointsAdded", "guestId=g1", "restaurantId=r1", "amount=100", "newBalance=600"})
	if err != nil {
		t.Fatal(err)
	}
	p, err := payloadOf(req)
	if err != nil {
		t.Fatal(err)
	}
	pa, ok := p.(*notifyv1.PointsAdded)
	if !ok || pa.GuestId != "g1" || pa.Amount != 100 || pa.NewBalance != 600 {
		t.Fatalf("payload = %T %v", p, p)
	}
	req, err = buildPublish(`{"room":"admin","systemAlert":{"title":"x","level":"ALERT_LEVEL_INFO"}}`, nil)
	if err != nil {
		t.Fatal(err)
	}
	if p, err := payloadOf(req); err != nil || p.(*notifyv1.SystemAlert).Title != "x" || req.Room != "admin" {
		t.Fatalf("payload = %v, %v", p, err)
	}
	if _, err := payloadOf(&notifyv1.PublishRequest{}); err == nil {
		t.Error("a request without an event was accepted")
	}
	if _, err := buildPublish("", []string{"pointsAdded", "nope"}); err == nil {
		t.Error("a field without = was accepted")
	}
	pos, err := parsePosition("guest:g1=7@abc")
	if err != nil || pos.Room != "guest:g1" || pos.Offset != 7 || pos.Epoch != "abc" {
		t.Fatalf("parsePosition = %v, %v", pos, err)
	}
	if _, err := parsePosition("guest:g1=x@abc"); err == nil {
		t.Error("a bad offset was accepted")
	}
}

// lineWriter hands every complete line written to it to a channel.
type lineWriter struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	lines chan string
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	for {
		line, err := w.buf.ReadString('\n')
		if err != nil {
			w.buf.WriteString(line)
			return len(p), nil
		}
		select {
		case w.lines <- strings.TrimSuffix(line, "\n"):
		default: // nobody reads status lines past the buffer
		}
	}
}

func next(t *testing.T, lines <-chan string, what string) string {
	t.Helper()
	select {
	case l := <-lines:
		return l
	case <-time.After(10 * time.Second):
		t.Fatalf("no %s within 10s", what)
		return ""
	}
}

// TestSubscribeAndPublish runs both commands against an in-process dev node.
func TestSubscribeAndPublish(t *testing.T) {
	t.Chdir(t.TempDir()) // the node's data directory is relative
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n, err := node.New(ctx, node.Config{GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", Dev: true, LogLevel: "error"},
		slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ran := make(chan error, 1)
	go func() { ran <- n.Run(ctx) }()
	defer func() {
		cancel()
		<-ran
	}()

	token := func(role, sub string) string {
		var b bytes.Buffer
		if err := tokenCmd([]string{"--role", role, "--sub", sub}, &b); err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(b.String())
	}
	guest, service := token("guest", "g1"), token("service", "backend")

	out := &lineWriter{lines: make(chan string, 16)}
	status := &lineWriter{lines: make(chan string, 16)}
	subCtx, stopSub := context.WithCancel(ctx)
	subscribed := make(chan error, 1)
	go func() {
		subscribed <- subscribeCmd(subCtx, []string{"--addr", n.GRPCAddr(), "--token", guest, "--room", "guest:g1"}, out, status)
	}()
	if l := next(t, status.lines, "connected line"); !strings.Contains(l, `"connected"`) {
		t.Fatalf("first status line = %s", l)
	}

	var pub bytes.Buffer
	args := []string{"--addr", n.GRPCAddr(), "--token", service, "--key", "k1", "pointsAdded", "guestId=g1", "restaurantId=r1", "amount=50", "newBalance=650"}
	for range 2 {
		if err := publishCmd(ctx, args, &pub); err != nil {
			t.Fatal(err)
		}
	}
	sc := bufio.NewScanner(&pub)
	var resps []*notifyv1.PublishResponse
	for sc.Scan() {
		r := &notifyv1.PublishResponse{}
		if err := protojson.Unmarshal(sc.Bytes(), r); err != nil {
			t.Fatal(err)
		}
		resps = append(resps, r)
	}
	if len(resps) != 2 || resps[0].Duplicate || !resps[1].Duplicate {
		t.Fatalf("publish responses = %v", resps)
	}

	ev := &notifyv1.Event{}
	if err := protojson.Unmarshal([]byte(next(t, out.lines, "event")), ev); err != nil {
		t.Fatal(err)
	}
	if ev.Room != "guest:g1" || ev.Offset != 1 || ev.IdempotencyKey != "k1" || ev.GetPointsAdded().GetAmount() != 50 {
		t.Fatalf("event = %v", ev)
	}
	stopSub()
	select {
	case err := <-subscribed:
		if err != nil {
			t.Fatalf("subscribe returned %v after an interrupt, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("subscribe did not return after an interrupt")
	}
	select {
	case l := <-out.lines:
		t.Errorf("the duplicate publish was delivered: %s", l)
	default:
	}

	if err := subscribeCmd(ctx, []string{"--addr", n.GRPCAddr(), "--token", guest, "--room", "restaurant:r1"}, io.Discard, io.Discard); err == nil ||
		!strings.Contains(err.Error(), "PermissionDenied") {
		t.Errorf("subscribing to a forbidden room = %v, want PermissionDenied", err)
	}
}
