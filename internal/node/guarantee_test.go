package node_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	notifyv1 "github.com/maxloyalty/notify/gen/notify/v1"
	"github.com/maxloyalty/notify/internal/auth"
	"github.com/maxloyalty/notify/internal/broker"
	"github.com/maxloyalty/notify/internal/node"
	"github.com/maxloyalty/notify/internal/room"
	"github.com/maxloyalty/notify/internal/testenv"
)

// The guarantee test drives subscribers through random disconnects,
// reconnects with their last positions, slow phases (queue overflow) and
// server restarts while publishers keep publishing. It then checks, for
// every subscriber and room, that what arrived is exactly what was
// published: contiguous offsets per epoch, nothing doubled or out of order,
// event ids matching the publisher's records, and recovered=false exactly
// when the history could not cover the gap. NOTIFY_GUARANTEE_SEED replays a
// run; the seed is logged.

const (
	gtSecret      = "guarantee-test-secret-0123456789abcdef"
	gtHistory     = 40
	gtRooms       = 4
	gtSubscribers = 6
)

var gtRoomNames = func() []string {
	out := make([]string, gtRooms)
	for i := range out {
		out[i] = fmt.Sprintf("restaurant:r%d:points", i)
	}
	return out
}()

// gtServer is a node that can be restarted on the same addresses.
type gtServer struct {
	grpcAddr, httpAddr string
	dataDir            string
	broker, redisURL   string
	redisPrefix        string
	mu                 sync.Mutex
	cancel             context.CancelFunc
	done               chan error
}

func gtFreeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func (s *gtServer) start(t *testing.T) {
	t.Helper()
	cfg := node.Config{
		GRPCAddr:          s.grpcAddr,
		HTTPAddr:          s.httpAddr,
		DataDir:           s.dataDir,
		Broker:            s.broker,
		RedisURL:          s.redisURL,
		RedisPrefix:       s.redisPrefix,
		JWTSecret:         gtSecret,
		GRPCTransport:     testGRPCTransport(),
		QueueBytes:        8 << 10,
		HeartbeatInterval: 200 * time.Millisecond,
		ShutdownDrain:     2 * time.Second,
		ReconnectDelayMin: 10 * time.Millisecond,
		ReconnectDelayMax: 50 * time.Millisecond,
		History:           map[room.Kind]broker.Limits{room.KindRestaurantPoints: {Size: gtHistory, TTL: time.Hour}},
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	var n *node.Node
	err := errors.New("not built yet")
	defer func() {
		if n == nil { // Eventually failed the test
			t.Logf("node.New: %v", err)
		}
	}()
	// The kernel releases the previous node's ports: there is no event to
	// wait on.
	testenv.Eventually(t, 5*time.Second, "node.New on the previous node's ports", func() bool {
		n, err = node.New(context.Background(), cfg, log)
		return err == nil
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	s.mu.Lock()
	s.cancel, s.done = cancel, done
	s.mu.Unlock()
}

func (s *gtServer) stop() {
	s.mu.Lock()
	cancel, done := s.cancel, s.done
	s.mu.Unlock()
	cancel()
	<-done
}

// gtRecord is what the publishers know: per room and epoch, offset -> event id.
type gtRecord struct {
	mu   sync.Mutex
	ids  map[string]string // room/epoch/offset -> event id
	tops map[string]broker.Position
}

func gtKey(room, epoch string, off uint64) string {
	return room + "/" + epoch + "/" + strconv.FormatUint(off, 10)
}

// gtSub is one subscriber's view: what it expects next per room, and the
// violations it saw.
type gtSub struct {
	id       int
	rooms    []string
	pos      map[string]broker.Position // last seen per room
	expect   map[string]broker.Position // next offset expected is expect.Offset+1 in expect.Epoch
	got      int
	gaps     int
	slowCuts int
	problems []string
	lastIDs  map[string]string
}

func (s *gtSub) problem(format string, args ...any) {
	if len(s.problems) < 20 {
		s.problems = append(s.problems, fmt.Sprintf("subscriber %d: ", s.id)+fmt.Sprintf(format, args...))
	}
}

func TestGuaranteesRandomized(t *testing.T) {
	t.Run("memory", func(t *testing.T) {
		gtRun(t, &gtServer{grpcAddr: gtFreeAddr(t), httpAddr: gtFreeAddr(t), dataDir: t.TempDir(), broker: "memory"})
	})
	t.Run("redis", func(t *testing.T) {
		url := testenv.Service(t, testenv.RedisURL)
		gtRun(t, &gtServer{grpcAddr: gtFreeAddr(t), httpAddr: gtFreeAddr(t), dataDir: t.TempDir(),
			broker: "redis", redisURL: url, redisPrefix: fmt.Sprintf("notify-gt-%d", time.Now().UnixNano())})
	})
}

func gtRun(t *testing.T, srv *gtServer) {
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv("NOTIFY_GUARANTEE_SEED"); v != "" {
		seed, _ = strconv.ParseUint(v, 10, 64)
	}
	t.Logf("seed %d (set NOTIFY_GUARANTEE_SEED to replay)", seed)
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))

	srv.start(t)
	defer func() { srv.stop() }()

	signer := auth.NewSigner([]byte(gtSecret))
	tok, err := signer.Mint(auth.Claims{Subject: "guarantee", Role: notifyv1.Role_ROLE_SERVICE}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	// A fixed 64 KiB stream window (no BDP growth) makes a stalled reader
	// back up into its server queue within a few hundred milliseconds.
	conn, err := grpc.NewClient(srv.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithInitialWindowSize(64<<10), grpc.WithInitialConnWindowSize(8<<20))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := notifyv1.NewNotificationServiceClient(conn)
	authed := func(ctx context.Context) context.Context {
		return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok)
	}

	began := time.Now()
	rec := &gtRecord{ids: map[string]string{}, tops: map[string]broker.Position{}}
	runCtx, stopRun := context.WithTimeout(context.Background(), 8*time.Second)
	defer stopRun()

	// Publishers: bounded count, random rooms, random pace; a publish that
	// fails is retried with the same key until it lands.
	var pubWG sync.WaitGroup
	var published, failed int64
	var pubMu sync.Mutex
	for p := range 2 {
		prng := rand.New(rand.NewPCG(seed+uint64(p)+1, 7))
		pubWG.Go(func() {
			for i := 0; i < 1500 && runCtx.Err() == nil; i++ {
				r := gtRoomNames[prng.IntN(gtRooms)]
				req := &notifyv1.PublishRequest{
					Rooms:          []string{r},
					IdempotencyKey: fmt.Sprintf("p%d-%d", p, i),
					Payload: &notifyv1.PublishRequest_PointsAdded{PointsAdded: &notifyv1.PointsAdded{
						GuestId: "g", RestaurantId: "r", Amount: int64(i), Description: fmt.Sprintf("%01500d", i),
					}},
				}
				for attempt := 0; attempt < 200 && runCtx.Err() == nil; attempt++ {
					ctx, cancel := context.WithTimeout(authed(runCtx), 2*time.Second)
					resp, err := client.Publish(ctx, req)
					cancel()
					if err != nil {
						pubMu.Lock()
						failed++
						pubMu.Unlock()
						time.Sleep(10 * time.Millisecond) // pacing: a publisher retries a failed publish after a breath, as a client would
						continue
					}
					pos := resp.Positions[0]
					rec.mu.Lock()
					rec.ids[gtKey(pos.Room, pos.Epoch, pos.Offset)] = resp.EventId
					if top := rec.tops[pos.Room]; top.Epoch != pos.Epoch || pos.Offset > top.Offset {
						rec.tops[pos.Room] = broker.Position{Offset: pos.Offset, Epoch: pos.Epoch}
					}
					rec.mu.Unlock()
					pubMu.Lock()
					published++
					pubMu.Unlock()
					break
				}
				if prng.IntN(10) == 0 {
					time.Sleep(time.Duration(prng.IntN(3)) * time.Millisecond) // pacing: publishers' rates vary at random
				}
			}
		})
	}

	// Subscribers: random room sets, random behaviour.
	subs := make([]*gtSub, gtSubscribers)
	var subWG sync.WaitGroup
	for i := range subs {
		s := &gtSub{id: i, pos: map[string]broker.Position{}, expect: map[string]broker.Position{}, lastIDs: map[string]string{}}
		for _, r := range gtRoomNames {
			if rng.IntN(2) == 0 || len(s.rooms) == 0 && r == gtRoomNames[gtRooms-1] {
				s.rooms = append(s.rooms, r)
			}
		}
		subs[i] = s
		srng := rand.New(rand.NewPCG(seed+uint64(100+i), 11))
		subWG.Go(func() { gtRunSubscriber(runCtx, client, authed, s, srng, rec) })
	}

	// Restarts while everything runs.
	restarts := 0
	for restarts < 2 && runCtx.Err() == nil {
		time.Sleep(time.Duration(1500+rng.IntN(1000)) * time.Millisecond) // pacing: the node restarts at random times while traffic runs
		if runCtx.Err() != nil {
			break
		}
		srv.stop()
		srv.start(t)
		restarts++
	}
	pubWG.Wait()
	<-runCtx.Done()
	subWG.Wait()

	// Final catch-up: every subscriber reconnects with its positions and
	// reads until it reaches each room's final top.
	rec.mu.Lock()
	tops := make(map[string]broker.Position, len(rec.tops))
	for k, v := range rec.tops {
		tops[k] = v
	}
	rec.mu.Unlock()
	for _, s := range subs {
		gtCatchUp(t, client, authed, s, tops, rec)
	}

	t.Logf("published %d (failed attempts %d), restarts %d, run took %v", published, failed, restarts, time.Since(began).Round(time.Millisecond))
	totalGot, totalSlow, totalGaps := 0, 0, 0
	for _, s := range subs {
		totalGot += s.got
		totalSlow += s.slowCuts
		totalGaps += s.gaps
		for _, p := range s.problems {
			t.Error(p)
		}
	}
	t.Logf("received %d events; %d slow-consumer cuts; %d declared gaps", totalGot, totalSlow, totalGaps)
	if published < 200 || totalGot == 0 {
		t.Fatalf("the run did too little to prove anything: %d published, %d received", published, totalGot)
	}
	// With the memory broker a restart loses history, so gaps must have
	// been declared; with Redis, history survives node restarts.
	if restarts == 0 || totalSlow == 0 || (srv.broker == "memory" && totalGaps == 0) {
		t.Fatalf("the run missed a scenario: %d restarts, %d slow-consumer cuts, %d declared gaps", restarts, totalSlow, totalGaps)
	}
}

// gtRunSubscriber loops: connect with positions, read for a while (or stall),
// disconnect; until ctx ends.
func gtRunSubscriber(ctx context.Context, client notifyv1.NotificationServiceClient, authed func(context.Context) context.Context, s *gtSub, rng *rand.Rand, rec *gtRecord) {
	for ctx.Err() == nil {
		sctx, cancel := context.WithCancel(authed(ctx))
		stream, err := client.Subscribe(sctx, gtRequest(s))
		if err != nil {
			cancel()
			time.Sleep(20 * time.Millisecond) // pacing: a subscriber reconnects after a breath, as a client would
			continue
		}
		mode := rng.IntN(3)
		readFor := time.Duration(50+rng.IntN(400)) * time.Millisecond
		stallAfter := time.Duration(rng.IntN(100)) * time.Millisecond
		deadline := time.Now().Add(readFor)
		first := true
		for {
			if mode == 0 && !first && time.Now().After(deadline.Add(-readFor+stallAfter)) {
				// Slow phase (pacing): stop reading long enough to overflow the queue.
				time.Sleep(time.Duration(400+rng.IntN(400)) * time.Millisecond)
				mode = 1
				deadline = time.Now().Add(readFor) // then read what piled up
			}
			if time.Now().After(deadline) && mode != 0 {
				break
			}
			msg, err := stream.Recv()
			if err != nil {
				if status.Code(err) == codes.ResourceExhausted {
					s.slowCuts++
				}
				break
			}
			if first {
				first = false
				if c := msg.GetConnected(); c != nil {
					gtConnected(s, c)
					continue
				}
				s.problem("first message is not Connected: %v", msg)
				break
			}
			gtEvents(s, msg.Events, rec)
		}
		cancel()
		time.Sleep(time.Duration(rng.IntN(30)) * time.Millisecond) // pacing: a random pause between a subscriber's sessions
	}
}

func gtRequest(s *gtSub) *notifyv1.SubscribeRequest {
	req := &notifyv1.SubscribeRequest{Rooms: s.rooms}
	for r, p := range s.pos {
		req.Positions = append(req.Positions, &notifyv1.StreamPosition{Room: r, Offset: p.Offset, Epoch: p.Epoch})
	}
	return req
}

// gtConnected checks recovered against what the history could cover and
// sets what comes next per room.
func gtConnected(s *gtSub, c *notifyv1.Connected) {
	for _, st := range c.Rooms {
		last, had := s.pos[st.Room]
		if !had {
			if st.Recovered || st.StartOffset != st.Offset {
				s.problem("%s without a position: recovered=%v start %d, top %d", st.Room, st.Recovered, st.StartOffset, st.Offset)
			}
			s.expect[st.Room] = broker.Position{Offset: st.Offset, Epoch: st.Epoch}
			continue
		}
		// The memory broker keeps the last gtHistory events: a position is
		// coverable iff same epoch and last >= top - gtHistory.
		coverable := last.Epoch == st.Epoch && last.Offset <= st.Offset &&
			(st.Offset < gtHistory || last.Offset >= st.Offset-gtHistory)
		if st.Recovered != coverable {
			s.problem("%s recovered=%v, but from %d@%s to top %d@%s the history %s cover it",
				st.Room, st.Recovered, last.Offset, last.Epoch, st.Offset, st.Epoch, map[bool]string{true: "could", false: "could not"}[coverable])
		}
		var want uint64
		switch {
		case st.Recovered:
			want = last.Offset
		case last.Epoch != st.Epoch && st.Offset > 0 && st.Offset <= gtHistory:
			// A lost epoch, but the new one is whole: it is replayed.
			s.gaps++
		default:
			s.gaps++
			want = st.Offset
		}
		if st.StartOffset != want {
			s.problem("%s start_offset %d, want %d", st.Room, st.StartOffset, want)
		}
		s.expect[st.Room] = broker.Position{Offset: st.StartOffset, Epoch: st.Epoch}
	}
}

// gtEvents checks each event is the next one expected in its room.
func gtEvents(s *gtSub, evs []*notifyv1.Event, rec *gtRecord) {
	for _, ev := range evs {
		exp, ok := s.expect[ev.Room]
		if !ok {
			s.problem("event from room %s not subscribed", ev.Room)
			continue
		}
		okNext := ev.Offset == exp.Offset+1 && (ev.Epoch == exp.Epoch || exp.Epoch == "" && exp.Offset == 0)
		if !okNext {
			s.problem("%s: got %d@%s, want %d@%s (missing, doubled or out of order)", ev.Room, ev.Offset, ev.Epoch, exp.Offset+1, exp.Epoch)
		}
		rec.mu.Lock()
		id, known := rec.ids[gtKey(ev.Room, ev.Epoch, ev.Offset)]
		rec.mu.Unlock()
		if known && id != ev.Id {
			s.problem("%s %d@%s: event id %s, publisher recorded %s", ev.Room, ev.Offset, ev.Epoch, ev.Id, id)
		}
		p := broker.Position{Offset: ev.Offset, Epoch: ev.Epoch}
		s.expect[ev.Room] = p
		s.pos[ev.Room] = p
		s.got++
	}
}

// gtCatchUp reconnects once more and reads until every room reaches its top.
func gtCatchUp(t *testing.T, client notifyv1.NotificationServiceClient, authed func(context.Context) context.Context, s *gtSub, tops map[string]broker.Position, rec *gtRecord) {
	t.Helper()
	ctx, cancel := context.WithTimeout(authed(context.Background()), 10*time.Second)
	defer cancel()
	stream, err := client.Subscribe(ctx, gtRequest(s))
	if err != nil {
		t.Fatalf("catch-up subscribe: %v", err)
	}
	msg, err := stream.Recv()
	if err != nil || msg.GetConnected() == nil {
		t.Fatalf("catch-up: want Connected, got %v %v", msg, err)
	}
	gtConnected(s, msg.GetConnected())
	// Publishing has stopped: each room's top now is final. Where it is in
	// the epoch the publishers last saw, it must be their last event.
	final := map[string]broker.Position{}
	for _, st := range msg.GetConnected().Rooms {
		final[st.Room] = broker.Position{Offset: st.Offset, Epoch: st.Epoch}
		// A publish whose call failed after it was committed (a timeout
		// during a restart) may sit above the publishers' last record.
		if top, ok := tops[st.Room]; ok && top.Epoch == st.Epoch && top.Offset > st.Offset {
			s.problem("%s: server top %d@%s, below the publishers' last %d@%s", st.Room, st.Offset, st.Epoch, top.Offset, top.Epoch)
		}
	}
	done := func() bool {
		for _, r := range s.rooms {
			if s.expect[r] != final[r] {
				return false
			}
		}
		return true
	}
	for !done() {
		msg, err := stream.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) || ctx.Err() != nil {
				break
			}
			t.Fatalf("catch-up of subscriber %d: %v", s.id, err)
		}
		gtEvents(s, msg.Events, rec)
	}
	for _, r := range s.rooms {
		if s.expect[r] != final[r] {
			s.problem("%s ended at %v, the room's last event is %v", r, s.expect[r], final[r])
		}
	}
}
