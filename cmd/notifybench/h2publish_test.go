package main

import (
	"context"
	"math/rand/v2"
	"net"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	notifyv1 "github.com/maxloyalty/notify/gen/notify/v1"
	"github.com/maxloyalty/notify/server/node"
)

// checkOffsets fails unless offsets are n distinct, consecutive values.
// publishMany publishes n events to room, one per call with workers
// callers, and checks every call succeeded with a position in room and an
// event id, and that the offsets are 1..n.
func publishMany(t *testing.T, ctx context.Context, publish publishFunc, tmpl eventTemplate, room string, workers, n int) {
	t.Helper()
	var mu sync.Mutex
	var offsets []uint64
	st := runPublish(ctx, pubPlan{
		duration:  time.Minute,
		batch:     1,
		workers:   workers,
		maxEvents: int64(n),
		build: func(i int64, sent time.Time) *notifyv1.PublishRequest {
			return tmpl.request([]string{room}, sent, "")
		},
		publish: publish,
		onResult: func(rs []*notifyv1.PublishResponse) {
			mu.Lock()
			defer mu.Unlock()
			for _, r := range rs {
				if len(r.Positions) != 1 || r.Positions[0].Room != room || r.EventId == "" || r.Positions[0].Epoch == "" {
					t.Errorf("response %v", r)
					continue
				}
				offsets = append(offsets, r.Positions[0].Offset)
			}
		},
	})
	if st.Published != int64(n) || st.Errors != 0 {
		t.Fatalf("published %d, %d errors (%s)", st.Published, st.Errors, st.FirstError)
	}
	checkOffsets(t, offsets, n)
}

func checkOffsets(t *testing.T, offsets []uint64, n int) {
	t.Helper()
	if len(offsets) != n {
		t.Fatalf("%d offsets, want %d", len(offsets), n)
	}
	s := slices.Clone(offsets)
	slices.Sort(s)
	for i := 1; i < len(s); i++ {
		if s[i] != s[i-1]+1 {
			t.Fatalf("offsets not distinct and consecutive: %d then %d (sorted)", s[i-1], s[i])
		}
	}
}

// TestH2PublishAgainstNode publishes through a real node, with each of its
// gRPC transports, over the h2 client: unary calls with many in flight,
// PublishBatch (one large enough to need several frames and window
// updates), and errors that must match what grpc-go's client reports.
func TestH2PublishAgainstNode(t *testing.T) {
	for _, transport := range []string{"wire", "grpc-go"} {
		t.Run(transport, func(t *testing.T) {
			testH2PublishAgainstNode(t, startTestNodeWith(t, func(c *node.Config) { c.GRPCTransport = transport }))
		})
	}
}

func testH2PublishAgainstNode(t *testing.T, n *node.Node) {
	m := newMinter(node.DevSecret)
	svc, err := m.service()
	if err != nil {
		t.Fatal(err)
	}
	publish, closeConns, err := dialH2Publisher(n.GRPCAddr(), svc, 2, 1<<20, 8<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer closeConns()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	tmpl := newEventTemplate(128)
	run := strconv.FormatUint(rand.Uint64(), 36)

	t.Run("unary 2000 over 2 connections, 64 in flight", func(t *testing.T) {
		room := "restaurant:h2u" + run + ":transactions"
		publishMany(t, ctx, publish, tmpl, room, 64, 2000)
	})

	t.Run("PublishBatch", func(t *testing.T) {
		room := "restaurant:h2b" + run + ":transactions"
		var wg sync.WaitGroup
		var mu sync.Mutex
		var offsets []uint64
		for range 10 {
			wg.Go(func() {
				reqs := make([]*notifyv1.PublishRequest, 50)
				for i := range reqs {
					reqs[i] = tmpl.request([]string{room}, time.Now(), "")
				}
				rs, err := publish(ctx, reqs)
				if err != nil || len(rs) != len(reqs) {
					t.Errorf("batch: %d results, %v", len(rs), err)
					return
				}
				mu.Lock()
				defer mu.Unlock()
				for _, r := range rs {
					offsets = append(offsets, r.Positions[0].Offset)
				}
			})
		}
		wg.Wait()
		checkOffsets(t, offsets, 500)

		// About 200 KB: more than the server's first windows (64 KiB) and
		// frames (16 KiB).
		big := newEventTemplate(1000)
		reqs := make([]*notifyv1.PublishRequest, 200)
		for i := range reqs {
			reqs[i] = big.request([]string{room}, time.Now(), "")
		}
		rs, err := publish(ctx, reqs)
		if err != nil || len(rs) != 200 {
			t.Fatalf("large batch: %d results, %v", len(rs), err)
		}
		offsets = offsets[:0]
		for _, r := range rs {
			offsets = append(offsets, r.Positions[0].Offset)
		}
		checkOffsets(t, offsets, 200)
	})

	t.Run("errors as grpc-go reports them", func(t *testing.T) {
		gc, err := dialGRPC(n.GRPCAddr(), 1<<20, 8<<20)
		if err != nil {
			t.Fatal(err)
		}
		defer gc.Close()
		h2bad, closeBad, err := dialH2Publisher(n.GRPCAddr(), "not-a-token", 1, 1<<20, 8<<20)
		if err != nil {
			t.Fatal(err)
		}
		defer closeBad()
		good := tmpl.request([]string{"restaurant:r1:transactions"}, time.Now(), "")
		cases := []struct {
			name    string
			h2, ref publishFunc
			reqs    []*notifyv1.PublishRequest
			code    codes.Code
		}{
			// The message quotes the room: non-ASCII goes percent-encoded.
			{"invalid room", publish, grpcPublisher([]*grpc.ClientConn{gc}, svc),
				[]*notifyv1.PublishRequest{tmpl.request([]string{"nowhere:é"}, time.Now(), "")}, codes.InvalidArgument},
			{"invalid room in a batch", publish, grpcPublisher([]*grpc.ClientConn{gc}, svc),
				[]*notifyv1.PublishRequest{good, tmpl.request([]string{"restaurant:r1:nothing"}, time.Now(), "")}, codes.InvalidArgument},
			{"empty batch", publish, grpcPublisher([]*grpc.ClientConn{gc}, svc), nil, codes.InvalidArgument},
			{"bad token", h2bad, grpcPublisher([]*grpc.ClientConn{gc}, "not-a-token"),
				[]*notifyv1.PublishRequest{good}, codes.Unauthenticated},
		}
		for _, c := range cases {
			_, herr := c.h2(ctx, c.reqs)
			_, gerr := c.ref(ctx, c.reqs)
			hs, gs := status.Convert(herr), status.Convert(gerr)
			if gs.Code() != c.code {
				t.Errorf("%s: grpc-go got %v, the test expects %v", c.name, gerr, c.code)
			}
			if !proto.Equal(hs.Proto(), gs.Proto()) {
				t.Errorf("%s: h2 status\n%v\ngrpc-go status\n%v", c.name, hs.Proto(), gs.Proto())
			}
		}
		// The connection still works after the errors.
		if _, err := publish(ctx, []*notifyv1.PublishRequest{good}); err != nil {
			t.Fatal(err)
		}
	})
}

// TestH2PublishMode runs the publish mode's gRPC variants with --transport
// h2 against an in-process node.
func TestH2PublishMode(t *testing.T) {
	n := startTestNode(t)
	o := defaultOptions()
	o.GRPCAddr, o.HTTPAddr = n.GRPCAddr(), n.HTTPAddr()
	o.Duration, o.Quiet, o.Transport = 500*time.Millisecond, true, "h2"
	o.Rate, o.Batch, o.Concurrency, o.Publish = 0, 20, 8, "unary,batch"
	if err := o.validate(); err != nil {
		t.Fatal(err)
	}
	b := &bench{opts: o, minter: newMinter(node.DevSecret), server: &serverMeter{pid: os.Getpid()}}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rs, err := b.runMode(ctx, "publish")
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 2 {
		t.Fatalf("%d rows", len(rs))
	}
	for _, r := range rs {
		if r.Transport != "h2" || r.Published == 0 || r.PublishErrors != 0 || r.Latency.Count == 0 {
			t.Errorf("%s: %+v", r.Mode, r)
		}
	}
}

// fakeNotify is a NotificationService whose Publish counts the calls in
// progress; room "hold" waits for release or the call's end, room "slow"
// takes a millisecond.
type fakeNotify struct {
	notifyv1.UnimplementedNotificationServiceServer
	inflight, most atomic.Int32
	offset         atomic.Uint64
	entered        chan struct{}
	release        chan struct{}
}

func (f *fakeNotify) Publish(ctx context.Context, req *notifyv1.PublishRequest) (*notifyv1.PublishResponse, error) {
	n := f.inflight.Add(1)
	defer f.inflight.Add(-1)
	for {
		m := f.most.Load()
		if n <= m || f.most.CompareAndSwap(m, n) {
			break
		}
	}
	if slices.Contains(req.Rooms, "hold") {
		f.entered <- struct{}{}
		select {
		case <-f.release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	} else if slices.Contains(req.Rooms, "slow") {
		time.Sleep(time.Millisecond)
	}
	return &notifyv1.PublishResponse{Positions: []*notifyv1.StreamPosition{{Room: "r", Offset: f.offset.Add(1)}}}, nil
}

func startFake(t *testing.T, opts ...grpc.ServerOption) (*grpc.Server, *fakeNotify, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeNotify{entered: make(chan struct{}, 1), release: make(chan struct{})}
	s := grpc.NewServer(opts...)
	notifyv1.RegisterNotificationServiceServer(s, f)
	go s.Serve(ln)
	t.Cleanup(s.Stop)
	return s, f, ln.Addr().String()
}

// TestH2PublishProtocol checks the client against a plain grpc-go server:
// MAX_CONCURRENT_STREAMS, small windows, deadlines, GOAWAY and the loss of
// the connection.
func TestH2PublishProtocol(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	one := func(room string) []*notifyv1.PublishRequest {
		return []*notifyv1.PublishRequest{{Rooms: []string{room}}}
	}

	t.Run("max concurrent streams and small windows", func(t *testing.T) {
		_, f, addr := startFake(t, grpc.MaxConcurrentStreams(3), grpc.InitialWindowSize(64<<10),
			grpc.InitialConnWindowSize(64<<10), grpc.MaxRecvMsgSize(4<<20))
		publish, closeConns, err := dialH2Publisher(addr, "t", 1, 64<<10, 64<<10)
		if err != nil {
			t.Fatal(err)
		}
		defer closeConns()
		var wg sync.WaitGroup
		var failed atomic.Int32
		var offsets sync.Map
		for range 32 {
			wg.Go(func() {
				for range 10 {
					rs, err := publish(ctx, one("slow"))
					if err != nil {
						t.Error(err)
						failed.Add(1)
						return
					}
					if _, dup := offsets.LoadOrStore(rs[0].Positions[0].Offset, true); dup {
						t.Errorf("offset %d twice", rs[0].Positions[0].Offset)
					}
				}
			})
		}
		// Requests of 1 MB beside them: many frames, each waiting for
		// WINDOW_UPDATEs.
		for range 2 {
			wg.Go(func() {
				req := &notifyv1.PublishRequest{Rooms: []string{"r"}, IdempotencyKey: string(make([]byte, 1<<20))}
				if _, err := publish(ctx, []*notifyv1.PublishRequest{req}); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		if most := f.most.Load(); most > 3 {
			t.Errorf("%d calls at once, the server allows 3", most)
		}
		if got := f.offset.Load(); got != 322 || failed.Load() != 0 {
			t.Errorf("%d calls served, %d failed", got, failed.Load())
		}
	})

	t.Run("deadline", func(t *testing.T) {
		_, f, addr := startFake(t)
		publish, closeConns, err := dialH2Publisher(addr, "t", 1, 1<<20, 8<<20)
		if err != nil {
			t.Fatal(err)
		}
		defer closeConns()
		dctx, dcancel := context.WithTimeout(ctx, 200*time.Millisecond)
		defer dcancel()
		go func() { <-f.entered }()
		_, err = publish(dctx, one("hold"))
		if status.Code(err) != codes.DeadlineExceeded {
			t.Fatalf("got %v, want DeadlineExceeded", err)
		}
		if _, err := publish(ctx, one("r")); err != nil {
			t.Fatalf("after a deadline: %v", err)
		}
	})

	t.Run("GOAWAY", func(t *testing.T) {
		s, f, addr := startFake(t)
		publish, closeConns, err := dialH2Publisher(addr, "t", 1, 1<<20, 8<<20)
		if err != nil {
			t.Fatal(err)
		}
		defer closeConns()
		held := make(chan error, 1)
		go func() {
			_, err := publish(ctx, one("hold"))
			held <- err
		}()
		<-f.entered
		stopped := make(chan struct{})
		go func() { s.GracefulStop(); close(stopped) }()
		// New calls fail once the GOAWAY is in; the call in progress ends
		// normally.
		deadline := time.Now().Add(10 * time.Second)
		for {
			_, err := publish(ctx, one("r"))
			if err != nil {
				if status.Code(err) != codes.Unavailable {
					t.Fatalf("after GOAWAY: %v, want Unavailable", err)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("calls still succeed 10s after GracefulStop")
			}
			time.Sleep(5 * time.Millisecond)
		}
		close(f.release)
		if err := <-held; err != nil {
			t.Errorf("the call in progress at GOAWAY: %v", err)
		}
		<-stopped
	})

	t.Run("connection lost", func(t *testing.T) {
		s, f, addr := startFake(t)
		publish, closeConns, err := dialH2Publisher(addr, "t", 1, 1<<20, 8<<20)
		if err != nil {
			t.Fatal(err)
		}
		defer closeConns()
		held := make(chan error, 1)
		go func() {
			_, err := publish(ctx, one("hold"))
			held <- err
		}()
		<-f.entered
		s.Stop()
		if err := <-held; status.Code(err) != codes.Unavailable {
			t.Fatalf("call on a lost connection: %v, want Unavailable", err)
		}
		if _, err := publish(ctx, one("r")); status.Code(err) != codes.Unavailable {
			t.Fatalf("call after the loss: %v, want Unavailable", err)
		}
	})

	t.Run("dial failure", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		if _, _, err := dialH2Publisher(addr, "t", 1, 1<<20, 8<<20); err == nil {
			t.Fatal("dial of a closed port succeeded")
		}
	})
}

func TestH2Helpers(t *testing.T) {
	for _, c := range []struct {
		d    time.Duration
		want string
	}{{0, "1n"}, {50 * time.Millisecond, "50000000n"}, {200 * time.Millisecond, "200000u"}, {time.Hour, "3600000m"}, {1000 * time.Hour, "3600000S"}} {
		if got := grpcTimeout(c.d); got != c.want {
			t.Errorf("grpcTimeout(%v) = %q, want %q", c.d, got, c.want)
		}
	}
	if got := decodeGrpcMessage("a%20b%C3%A9%zz%2"); got != "a bé%zz%2" {
		t.Errorf("decodeGrpcMessage = %q", got)
	}
	for ct, want := range map[string]bool{"application/grpc": true, "application/grpc+proto": true, "application/grpc;x=1": true,
		"application/grpcx": false, "text/html": false, "": false} {
		if grpcContentType(ct) != want {
			t.Errorf("grpcContentType(%q) = %v", ct, !want)
		}
	}
	if err := decodeUnary([]byte{0, 0, 0, 0, 3, 1}, &notifyv1.PublishResponse{}); status.Code(err) != codes.Internal {
		t.Errorf("short message: %v", err)
	}
	if c, _ := httpStatus("404", "text/plain"); c != codes.Unimplemented {
		t.Errorf("HTTP 404 gives %v", c)
	}
	if err := rstStatus(0x7, time.Time{}); status.Code(err) != codes.Unavailable {
		t.Errorf("REFUSED_STREAM gives %v", err)
	}
	if err := rstStatus(0x8, time.Now().Add(-time.Millisecond)); status.Code(err) != codes.DeadlineExceeded {
		t.Errorf("CANCEL after the deadline gives %v", err)
	}
	if err := rstStatus(0x8, time.Now().Add(time.Hour)); status.Code(err) != codes.Canceled {
		t.Errorf("CANCEL before the deadline gives %v", err)
	}
}

// BenchmarkUnaryPublish compares the h2 client with grpc-go's on Publish
// calls to a plain grpc-go server, 16 in flight over one connection: the
// ns/op and allocs/op cover both ends, which share the process.
func BenchmarkUnaryPublish(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	s := grpc.NewServer()
	notifyv1.RegisterNotificationServiceServer(s, &fakeNotify{})
	go s.Serve(ln)
	defer s.Stop()
	addr := ln.Addr().String()
	tmpl := newEventTemplate(128)
	req := []*notifyv1.PublishRequest{tmpl.request([]string{"r"}, time.Now(), "")}
	for _, name := range []string{"h2", "grpc"} {
		b.Run(name, func(b *testing.B) {
			var publish publishFunc
			if name == "h2" {
				p, closeConns, err := dialH2Publisher(addr, "t", 1, 1<<20, 8<<20)
				if err != nil {
					b.Fatal(err)
				}
				defer closeConns()
				publish = p
			} else {
				gc, err := dialGRPC(addr, 1<<20, 8<<20)
				if err != nil {
					b.Fatal(err)
				}
				defer gc.Close()
				publish = grpcPublisher([]*grpc.ClientConn{gc}, "t")
			}
			ctx := context.Background()
			b.ReportAllocs()
			b.SetParallelism(8) // 16 goroutines on 2 cores
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := publish(ctx, req); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
