package node_test

import (
	"context"
	"fmt"
	"net"
	"runtime/pprof"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding/gzip"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"

	notifyv1 "github.com/maxloyalty/notify/gen/notify/v1"
	"github.com/maxloyalty/notify/internal/node"
	"github.com/maxloyalty/notify/internal/testenv"
)

// The native port's per-connection settings, on both of its transports:
// what an operator configures is what a client of the port sees, and the
// in-process connection of REST streams is not bound by them.

// opTransports are the transports of the native port.
var opTransports = []string{"grpc-go", "wire"}

// forTransports runs fn as a parallel subtest per transport.
func forTransports(t *testing.T, fn func(t *testing.T, transport string)) {
	for _, tr := range opTransports {
		t.Run(tr, func(t *testing.T) {
			t.Parallel()
			fn(t, tr)
		})
	}
}

// opNode starts a node serving the native port on transport.
func opNode(t *testing.T, transport string, mutate func(*node.Config)) *testNode {
	t.Helper()
	return startNode(t, func(c *node.Config) {
		c.GRPCTransport = transport
		if mutate != nil {
			mutate(c)
		}
	})
}

// opDial connects a grpc-go client to addr, counting the TCP connections
// it opens; the connection is closed when the test ends.
func opDial(t *testing.T, addr string, opts ...grpc.DialOption) (*grpc.ClientConn, *atomic.Int32) {
	t.Helper()
	dials := new(atomic.Int32)
	var d net.Dialer
	opts = append([]grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, a string) (net.Conn, error) {
			dials.Add(1)
			return d.DialContext(ctx, "tcp", a)
		}),
	}, opts...)
	conn, err := grpc.NewClient("passthrough:///"+addr, opts...)
	if err != nil {
		t.Fatalf("grpc.NewClient(%s): %v", addr, err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn, dials
}

// TestNativeSettingsAdvertised: the native port's SETTINGS carry the
// configured stream limit, header list bound and stream window, and the
// connection window is raised to the configured size at once.
func TestNativeSettingsAdvertised(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name       string
		mutate     func(*node.Config)
		want       map[http2.SettingID]uint32
		connWindow int64 // 0: not checked
	}{
		{
			name: "defaults",
			want: map[http2.SettingID]uint32{
				http2.SettingMaxConcurrentStreams: 1000,
				http2.SettingMaxHeaderListSize:    1 << 20,
			},
		},
		{
			name: "configured",
			mutate: func(c *node.Config) {
				c.MaxConcurrentStreams = 4
				c.InitialWindowSize = 1 << 20
				c.InitialConnWindowSize = 4 << 20
				c.MaxHeaderListSize = 16 << 10
			},
			want: map[http2.SettingID]uint32{
				http2.SettingMaxConcurrentStreams: 4,
				http2.SettingInitialWindowSize:    1 << 20,
				http2.SettingMaxHeaderListSize:    16 << 10,
			},
			connWindow: 4 << 20,
		},
	}
	forTransports(t, func(t *testing.T, transport string) {
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				n := opNode(t, transport, tc.mutate)
				p := dialH2Probe(t, n.GRPCAddr())
				p.settled()
				for id, want := range tc.want {
					if got, ok := p.settings[id]; !ok || got != want {
						t.Errorf("SETTINGS %v = %d (sent: %v), want %d", id, got, ok, want)
					}
				}
				if tc.connWindow != 0 && p.connWindow != tc.connWindow {
					t.Errorf("connection window = %d after the server's WINDOW_UPDATEs, want %d", p.connWindow, tc.connWindow)
				}
			})
		}
	})
}

// TestNativeMaxConcurrentStreams: with a limit of 4, a raw client's fifth
// call on one connection is refused (REFUSED_STREAM) and a call opened
// after one ended is served; grpc-go's client waits for a free stream
// instead, and its fifth stream opens when one of the four ends.
func TestNativeMaxConcurrentStreams(t *testing.T) {
	t.Parallel()
	const limit = 4
	forTransports(t, func(t *testing.T, transport string) {
		n := opNode(t, transport, func(c *node.Config) { c.MaxConcurrentStreams = limit })
		tok := mint(t, guestClaims)

		t.Run("raw client refused", func(t *testing.T) {
			p := dialH2Probe(t, n.GRPCAddr())
			p.settled()
			var open []uint32
			for range limit {
				id := p.subscribe(tok)
				p.await(fmt.Sprintf("Connected on stream %d", id), func() bool { return p.connected(id) || p.calls[id].ended })
				if p.calls[id].ended {
					t.Fatalf("stream %d of %d ended: %s", id, limit, p)
				}
				open = append(open, id)
			}
			extra := p.subscribe(tok)
			p.await("the call beyond the limit refused", func() bool { return p.calls[extra].ended || len(p.calls[extra].data) > 0 })
			if c := p.calls[extra]; !c.reset || c.resetCode != http2.ErrCodeRefusedStream {
				t.Fatalf("call %d beyond the limit of %d: want RST_STREAM REFUSED_STREAM; %s", extra, limit, p)
			}

			// One call ends: a new one is served (the transport may count
			// the ended call until its handler has returned).
			p.cancel(open[0])
			testenv.Eventually(t, testTimeout, fmt.Sprintf("a call served after one of %d ended", limit), func() bool {
				id := p.subscribe(tok)
				p.await(fmt.Sprintf("an answer on stream %d", id), func() bool { return p.connected(id) || p.calls[id].ended })
				if p.connected(id) {
					return true
				}
				if c := p.calls[id]; !c.reset || c.resetCode != http2.ErrCodeRefusedStream {
					t.Fatalf("call after one of %d ended: %s", limit, p)
				}
				return false
			})
		})

		t.Run("grpc-go client waits", func(t *testing.T) {
			conn, _ := opDial(t, n.GRPCAddr())
			c := notifyv1.NewNotificationServiceClient(conn)
			var cancels []context.CancelFunc
			for range limit {
				ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
				t.Cleanup(cancel)
				cancels = append(cancels, cancel)
				subscribe(t, ctx, c, tok, &notifyv1.SubscribeRequest{})
			}
			ctx := testCtx(t)
			got := make(chan error, 1)
			fifth := "fifth stream on " + transport
			go pprof.Do(ctx, pprof.Labels("stream", fifth), func(ctx context.Context) {
				s, err := openStream(ctx, c, tok, &notifyv1.SubscribeRequest{})
				if err == nil {
					var m *notifyv1.SubscribeResponse
					if m, err = s.Recv(); err == nil && m.GetConnected() == nil {
						err = fmt.Errorf("first message %v, want Connected", m)
					}
				}
				got <- err
			})
			// Not a speed check: the fifth stream must not be served while
			// four are open, however long one waits. Once the client waits
			// for a stream of the connection's quota, it cannot have sent it.
			testenv.Eventually(t, testTimeout, "the grpc-go client to wait for a free stream", func() bool {
				return grpcClientWaits(fifth)
			})
			select {
			case err := <-got:
				t.Fatalf("fifth stream answered (err %v) while %d were open on the connection", err, limit)
			default:
			}
			cancels[0]()
			select {
			case err := <-got:
				if err != nil {
					t.Fatalf("fifth stream after one ended: %v", err)
				}
			case <-ctx.Done():
				t.Fatal("fifth stream not served after one of the four ended")
			}
		})
	})
}

// TestNativeLimitsSkipInProcess: the native port's stream limit does not
// bound REST and grpc-web streams, which share one in-process connection
// (REST) or ride HTTP requests (grpc-web): twice the limit of each connect
// and receive an event.
func TestNativeLimitsSkipInProcess(t *testing.T) {
	t.Parallel()
	const limit, streams = 4, 8
	forTransports(t, func(t *testing.T, transport string) {
		n := opNode(t, transport, func(c *node.Config) {
			c.MaxConcurrentStreams = limit
			c.MaxStreamsPerUser = 4 * streams
		})
		ctx := testCtx(t)
		tok := mint(t, guestClaims)
		var rest []*restStream
		for i := range streams {
			s := restSubscribe(t, ctx, n.HTTPAddr(), "rooms=guest:g1", tok)
			if m := s.next(t); m.GetConnected() == nil {
				t.Fatalf("REST stream %d: first line %v, want Connected", i, m)
			}
			rest = append(rest, s)
		}
		var web []*webStream
		for i := range streams {
			resp := webCall(t, ctx, n.HTTPAddr(), "Subscribe", tok, &notifyv1.SubscribeRequest{Rooms: []string{"guest:g1"}})
			s := &webStream{body: resp.Body}
			if m := s.next(t); m.GetConnected() == nil {
				t.Fatalf("grpc-web stream %d: first message %v, want Connected", i, m)
			}
			web = append(web, s)
		}

		resp := publish(t, ctx, dial(t, n.GRPCAddr()), pointsReq(pointsAdded("g1", "r1", 7), "guest:g1"))
		for i, s := range rest {
			if m := opSkipHeartbeats(t, s.next); len(m.Events) != 1 || m.Events[0].Id != resp.EventId {
				t.Errorf("REST stream %d: %v, want event %s", i, m, resp.EventId)
			}
		}
		for i, s := range web {
			if m := opSkipHeartbeats(t, s.next); len(m.Events) != 1 || m.Events[0].Id != resp.EventId {
				t.Errorf("grpc-web stream %d: %v, want event %s", i, m, resp.EventId)
			}
		}
	})
}

// opSkipHeartbeats returns the first message of next that is no heartbeat.
func opSkipHeartbeats(t *testing.T, next func(*testing.T) *notifyv1.SubscribeResponse) *notifyv1.SubscribeResponse {
	t.Helper()
	for range 100 {
		if m := next(t); m.GetHeartbeat() == nil {
			return m
		}
	}
	t.Fatal("only heartbeats")
	return nil
}

// TestNativeMaxConnectionAge: a connection gets GOAWAY once it is
// max-connection-age old; its open call goes on (and receives events)
// through the grace and the connection closes when the grace is over, or
// when its last call ends with no grace configured; grpc-go's client
// reconnects without failing a call.
func TestNativeMaxConnectionAge(t *testing.T) {
	t.Parallel()
	const age = 500 * time.Millisecond
	forTransports(t, func(t *testing.T, transport string) {
		t.Run("grace", func(t *testing.T) {
			t.Parallel()
			n := opNode(t, transport, func(c *node.Config) {
				c.MaxConnectionAge = age
				c.MaxConnectionAgeGrace = 2 * time.Second
			})
			ctx := testCtx(t)
			p := dialH2Probe(t, n.GRPCAddr())
			id := p.subscribe(mint(t, guestClaims))
			p.await("Connected", func() bool { return p.connected(id) })
			p.await("GOAWAY once the connection is old", func() bool { return len(p.goaways) > 0 })

			resp := publish(t, ctx, dial(t, n.GRPCAddr()), pointsReq(pointsAdded("g1", "r1", 1), "guest:g1"))
			p.await("the event on the call opened before GOAWAY", func() bool { return len(p.events(id)) > 0 || p.calls[id].ended })
			if evs := p.events(id); len(evs) != 1 || evs[0].Id != resp.EventId {
				t.Fatalf("after GOAWAY the open call got %v, want event %s; %s", evs, resp.EventId, p)
			}
			p.awaitClosed("the grace over")
			opCheckGoAways(t, p, id)
		})

		t.Run("no grace: until calls end", func(t *testing.T) {
			t.Parallel()
			n := opNode(t, transport, func(c *node.Config) { c.MaxConnectionAge = age })
			ctx := testCtx(t)
			p := dialH2Probe(t, n.GRPCAddr())
			id := p.subscribe(mint(t, guestClaims))
			p.await("Connected", func() bool { return p.connected(id) })
			p.await("GOAWAY once the connection is old", func() bool { return len(p.goaways) > 0 })
			p.quiet(3*age, "the open call ended", func() bool { return p.calls[id].ended })

			resp := publish(t, ctx, dial(t, n.GRPCAddr()), pointsReq(pointsAdded("g1", "r1", 2), "guest:g1"))
			p.await("the event on the call opened before GOAWAY", func() bool { return len(p.events(id)) > 0 || p.calls[id].ended })
			if evs := p.events(id); len(evs) != 1 || evs[0].Id != resp.EventId {
				t.Fatalf("after GOAWAY the open call got %v, want event %s; %s", evs, resp.EventId, p)
			}
			p.cancel(id)
			p.awaitClosed("the last call ended")
			opCheckGoAways(t, p, id)
		})

		t.Run("grpc-go client reconnects", func(t *testing.T) {
			t.Parallel()
			n := opNode(t, transport, func(c *node.Config) {
				c.MaxConnectionAge = age
				c.MaxConnectionAgeGrace = time.Second
			})
			ctx := testCtx(t)
			conn, dials := opDial(t, n.GRPCAddr())
			c := notifyv1.NewNotificationServiceClient(conn)
			tok := mint(t, serviceClaims)
			calls := 0
			for dials.Load() < 3 {
				if ctx.Err() != nil {
					t.Fatalf("%d connections after %d calls in %v, want a new one every %v", dials.Load(), calls, testTimeout, age)
				}
				calls++
				if _, err := c.Publish(withToken(ctx, tok), pointsReq(pointsAdded("g1", "r1", int64(calls)), "guest:g1")); err != nil {
					t.Fatalf("call %d (connection %d): %v", calls, dials.Load(), err)
				}
				time.Sleep(20 * time.Millisecond) // pacing: calls spread over the connection's age
			}
		})
	})
}

// grpcClientWaits reports whether the goroutine labelled stream=label
// waits in grpc-go's client transport for a stream of its connection's
// quota.
func grpcClientWaits(label string) bool {
	var b strings.Builder
	_ = pprof.Lookup("goroutine").WriteTo(&b, 1)
	for _, g := range strings.Split(b.String(), "\n\n") {
		if strings.Contains(g, `"stream":"`+label+`"`) && strings.Contains(g, "transport.(*http2Client).NewStream") {
			return true
		}
	}
	return false
}

// opCheckGoAways: every GOAWAY said NO_ERROR and the last kept call id.
func opCheckGoAways(t *testing.T, p *h2Probe, id uint32) {
	t.Helper()
	for _, g := range p.goaways {
		if g.code != http2.ErrCodeNo {
			t.Errorf("GOAWAY %v, want NO_ERROR", g)
		}
	}
	if last := p.goaways[len(p.goaways)-1]; last.lastStreamID < id {
		t.Errorf("last GOAWAY %v drops stream %d, which was open", last, id)
	}
}

// TestNativeMaxConnectionIdle: a connection with no call open for
// max-connection-idle gets GOAWAY and is closed; one with a call open is
// not, however long the call lasts; grpc-go's client reconnects for its
// next call.
func TestNativeMaxConnectionIdle(t *testing.T) {
	t.Parallel()
	const idle = 500 * time.Millisecond
	forTransports(t, func(t *testing.T, transport string) {
		n := opNode(t, transport, func(c *node.Config) { c.MaxConnectionIdle = idle })

		t.Run("no call", func(t *testing.T) {
			t.Parallel()
			p := dialH2Probe(t, n.GRPCAddr())
			p.await("GOAWAY on an idle connection", func() bool { return len(p.goaways) > 0 })
			p.awaitClosed("idle connection")
		})

		t.Run("open call", func(t *testing.T) {
			t.Parallel()
			p := dialH2Probe(t, n.GRPCAddr())
			id := p.subscribe(mint(t, guestClaims))
			p.await("Connected", func() bool { return p.connected(id) })
			p.quiet(3*idle, "GOAWAY with a call open", func() bool { return len(p.goaways) > 0 || p.calls[id].ended })
			p.cancel(id)
			p.await("GOAWAY once the call ended", func() bool { return len(p.goaways) > 0 })
			p.awaitClosed("idle connection")
		})

		t.Run("grpc-go client reconnects", func(t *testing.T) {
			t.Parallel()
			ctx := testCtx(t)
			conn, dials := opDial(t, n.GRPCAddr())
			c := notifyv1.NewNotificationServiceClient(conn)
			publish(t, ctx, c, pointsReq(pointsAdded("g1", "r1", 1), "guest:g1"))
			for conn.GetState() == connectivity.Ready {
				if !conn.WaitForStateChange(ctx, connectivity.Ready) {
					t.Fatalf("connection still ready after %v idle", testTimeout)
				}
			}
			publish(t, ctx, c, pointsReq(pointsAdded("g1", "r1", 2), "guest:g1"))
			if d := dials.Load(); d != 2 {
				t.Errorf("%d connections, want 2 (the idle one closed, then a new one)", d)
			}
		})
	})
}

// TestNativeMaxHeaderListSize: request headers over max-header-list-size
// are refused, whether the client honours the advertised bound (grpc-go's
// fails the call itself) or not (the server refuses the stream, or ends
// the connection), and a connection whose stream was refused goes on
// serving calls under the bound.
func TestNativeMaxHeaderListSize(t *testing.T) {
	t.Parallel()
	const bound = 8 << 10
	small, big := strings.Repeat("s", 1<<10), strings.Repeat("b", 12<<10)
	// Over the bound in fields each under it: a single field longer than
	// the whole bound is an HPACK decoding error for grpc-go (the
	// connection ends), not a refused stream.
	var overFields []hpack.HeaderField
	for i := range 4 {
		overFields = append(overFields, hpack.HeaderField{Name: fmt.Sprintf("x-pad-%d", i), Value: strings.Repeat("o", 3<<10)})
	}
	forTransports(t, func(t *testing.T, transport string) {
		n := opNode(t, transport, func(c *node.Config) { c.MaxHeaderListSize = bound })

		t.Run("grpc-go client", func(t *testing.T) {
			ctx := testCtx(t)
			c := dial(t, n.GRPCAddr())
			tok := mint(t, serviceClaims)
			req := pointsReq(pointsAdded("g1", "r1", 1), "guest:g1")
			if _, err := c.Publish(metadata.AppendToOutgoingContext(withToken(ctx, tok), "x-pad", big), req); status.Code(err) == codes.OK {
				t.Errorf("a call with %d bytes of headers succeeded, bound %d", len(big), bound)
			}
			if _, err := c.Publish(metadata.AppendToOutgoingContext(withToken(ctx, tok), "x-pad", small), req); err != nil {
				t.Errorf("a call with %d bytes of headers: %v", len(small), err)
			}
		})

		t.Run("raw client", func(t *testing.T) {
			p := dialH2Probe(t, n.GRPCAddr())
			p.settled()
			tok := mint(t, serviceClaims)
			req := pointsReq(pointsAdded("g1", "r1", 2), "guest:g1")
			const publishPath = "/notify.v1.NotificationService/Publish"
			over := p.call(publishPath, tok, req, overFields...)
			p.await("the oversized call answered", func() bool { return p.calls[over].ended || p.closed != nil || len(p.goaways) > 0 })
			if c := p.calls[over]; p.field(over, "grpc-status") == "0" || len(c.data) > 0 {
				t.Fatalf("a call with 12 KiB of headers was served, bound %d: %s", bound, p)
			}
			if p.closed != nil || len(p.goaways) > 0 {
				t.Logf("the server ended the connection for the oversized headers: %s", p)
				return
			}
			under := p.call(publishPath, tok, req, hpack.HeaderField{Name: "x-pad", Value: small})
			p.await("the call under the bound answered", func() bool { return p.calls[under].ended })
			if got := p.field(under, "grpc-status"); got != "0" {
				t.Fatalf("a call with %d bytes of headers after a refused one: grpc-status %q: %s", len(small), got, p)
			}
		})
	})
}

// opPayloads records the size of every message a client receives, on the
// wire and decompressed.
type opPayloads struct {
	mu   sync.Mutex
	seen []*stats.InPayload
}

func (r *opPayloads) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context { return ctx }
func (r *opPayloads) HandleRPC(_ context.Context, s stats.RPCStats) {
	if in, ok := s.(*stats.InPayload); ok {
		r.mu.Lock()
		r.seen = append(r.seen, in)
		r.mu.Unlock()
	}
}
func (r *opPayloads) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context {
	return ctx
}
func (r *opPayloads) HandleConn(context.Context, stats.ConnStats) {}

// atLeast returns the payloads of at least size bytes decompressed.
func (r *opPayloads) atLeast(size int) []*stats.InPayload {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*stats.InPayload
	for _, p := range r.seen {
		if p.Length >= size {
			out = append(out, p)
		}
	}
	return out
}

// opWantCompressed fails unless there are payloads and each came
// compressed (fewer bytes on the wire than decompressed: the messages are
// made compressible, so gzip shrinks them).
func opWantCompressed(t *testing.T, what string, ps []*stats.InPayload) {
	t.Helper()
	if len(ps) == 0 {
		t.Errorf("%s: no message received", what)
	}
	for _, p := range ps {
		if p.CompressedLength >= p.Length {
			t.Errorf("%s: a message of %d bytes came as %d bytes: not compressed", what, p.Length, p.CompressedLength)
		}
	}
}

// TestNativeGzip: a client that compresses its calls with gzip is served,
// and gets its responses compressed with gzip, unary and streaming. The
// sizes of the messages received tell (grpc-go's client keeps the
// grpc-encoding header from the metadata it returns).
func TestNativeGzip(t *testing.T) {
	t.Parallel()
	forTransports(t, func(t *testing.T, transport string) {
		n := opNode(t, transport, nil)
		ctx := testCtx(t)
		svc := mint(t, serviceClaims)

		t.Run("unary", func(t *testing.T) {
			var rec opPayloads
			conn, _ := opDial(t, n.GRPCAddr(), grpc.WithStatsHandler(&rec))
			c := notifyv1.NewNotificationServiceClient(conn)
			var rooms []string
			for i := range 30 {
				rooms = append(rooms, fmt.Sprintf("guest:gzip%02d", i))
			}
			resp, err := c.Publish(withToken(ctx, svc), pointsReq(pointsAdded("g1", "r1", 3), rooms...), grpc.UseCompressor(gzip.Name))
			if err != nil {
				t.Fatalf("Publish with gzip: %v", err)
			}
			if len(resp.Positions) != len(rooms) {
				t.Fatalf("%d positions, want %d", len(resp.Positions), len(rooms))
			}
			opWantCompressed(t, "PublishResponse", rec.atLeast(1))
		})

		t.Run("subscribe", func(t *testing.T) {
			var rec opPayloads
			conn, _ := opDial(t, n.GRPCAddr(), grpc.WithStatsHandler(&rec))
			c := notifyv1.NewNotificationServiceClient(conn)
			st, err := c.Subscribe(withToken(ctx, mint(t, guestClaims)), &notifyv1.SubscribeRequest{}, grpc.UseCompressor(gzip.Name))
			if err != nil {
				t.Fatalf("Subscribe with gzip: %v", err)
			}
			s := &stream{ServerStreamingClient: st}
			s.connected(t)

			const events = 3
			description := strings.Repeat("compressible ", 100)
			pub := dial(t, n.GRPCAddr())
			for i := range events {
				p := pointsAdded("g1", "r1", int64(10+i))
				p.Description = description
				publish(t, ctx, pub, pointsReq(p, "guest:g1"))
			}
			for i, ev := range s.nextN(t, events) {
				if ev.GetPointsAdded().GetDescription() != description {
					t.Fatalf("event %d arrived altered: %v", i, ev)
				}
			}
			opWantCompressed(t, "events", rec.atLeast(len(description)))
		})
	})
}
