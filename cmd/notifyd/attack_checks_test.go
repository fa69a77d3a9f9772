package main

// The attack suite's checks: of what a raw connection's reader recorded
// (the outcomes RFC 9113 requires of the server), of notifyd's memory read
// from /proc, of a well-behaved grpc-go client that must be served during
// an attack, and of notifyd's health after it. The raw HTTP/2 client is in
// attack_client_test.go; TestAttack and its cases in attack_test.go.

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"

	notifyv1 "github.com/maxloyalty/notify/gen/notify/v1"
)

// --- Outcome checks -------------------------------------------------------

// expectConnError checks that the server treats what was sent as a
// connection error of type code (RFC 9113 §5.4.1): it closes the
// connection within d, after a GOAWAY that, when it could be read (a
// server may close without one, or the close may discard it), carries
// code.
func expectConnError(t *testing.T, r *reader, code http2.ErrCode, d time.Duration) {
	t.Helper()
	if !r.waitClosed(d) {
		t.Errorf("connection still open %v later, want a connection error %v: %s", d, code, r.describe())
		return
	}
	snapshotOf(r, func(s *seen) bool {
		if !s.serverClosed() {
			t.Errorf("reading stopped (%v) before the server closed, want a connection error %v: %s", s.closed, code, s)
		}
		if g, ok := s.lastGoAway(); ok && g.code != code {
			t.Errorf("GOAWAY %v, want %v: %s", g.code, code, s)
		}
		return true
	})
}

// expectStreamError checks that the server treats what was sent on stream
// id as a stream error of type code (RFC 9113 §5.4.2): RST_STREAM with
// code within d, or, as the RFC allows, a connection error of that type.
func expectStreamError(t *testing.T, r *reader, id uint32, code http2.ErrCode, d time.Duration) {
	t.Helper()
	r.wait(d, func(s *seen) bool { _, ok := s.rst[id]; return ok })
	snapshotOf(r, func(s *seen) bool {
		if got, ok := s.rst[id]; ok {
			if got != code {
				t.Errorf("RST_STREAM %d %v, want %v: %s", id, got, code, s)
			}
			return true
		}
		if s.serverClosed() {
			if g, ok := s.lastGoAway(); ok && g.code != code {
				t.Errorf("connection closed with GOAWAY %v, want RST_STREAM %d %v (or GOAWAY %v): %s", g.code, id, code, code, s)
			}
			return true
		}
		t.Errorf("no RST_STREAM %d %v within %v: %s", id, code, d, s)
		return false
	})
}

// expectErrorOrServed accepts, besides the RFC's error of type code (a
// RST_STREAM of stream fault when it is not 0, or a connection error), a
// server that ignores the violation, as grpc-go's does for some, provided
// it goes on serving: the call on stream next succeeds. It reports whether
// the violation was ignored.
func expectErrorOrServed(t *testing.T, r *reader, code http2.ErrCode, fault, next uint32, d time.Duration) (ignored bool) {
	t.Helper()
	r.wait(d, func(s *seen) bool {
		_, rst := s.rst[fault]
		return (fault != 0 && rst) || streamDone(next)(s)
	})
	return snapshotOf(r, func(s *seen) bool {
		if got, ok := s.rst[fault]; ok && fault != 0 {
			if got != code {
				t.Errorf("RST_STREAM %d %v, want %v: %s", fault, got, code, s)
			}
			return false
		}
		if s.serverClosed() {
			if g, ok := s.lastGoAway(); ok && g.code != code {
				t.Errorf("GOAWAY %v, want %v: %s", g.code, code, s)
			}
			return false
		}
		if resp := s.resp[next]; resp == nil || !resp.ended || resp.grpcStatus != "0" {
			t.Errorf("neither %v within %v nor the connection serving the next call: %s", code, d, s)
			return false
		}
		return true
	})
}

// expectCallOK checks that stream id completes within d with grpc-status 0.
func expectCallOK(t *testing.T, r *reader, id uint32, d time.Duration) {
	t.Helper()
	if !r.wait(d, streamDone(id)) {
		t.Errorf("call on stream %d not answered within %v: %s", id, d, r.describe())
		return
	}
	snapshotOf(r, func(s *seen) bool {
		resp := s.resp[id]
		if resp == nil || resp.grpcStatus != "0" {
			t.Errorf("call on stream %d did not succeed: %s", id, s)
		}
		return true
	})
}

// --- Memory ---------------------------------------------------------------

// procMem returns a process's resident set size and its peak (VmRSS and
// VmHWM), in bytes.
func procMem(pid int) (rss, hwm int64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	field := func(name string) int64 {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, name+":"); ok {
				kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
				return kb << 10
			}
		}
		return 0
	}
	return field("VmRSS"), field("VmHWM"), nil
}

// memWatch samples a process's RSS from a baseline until stopped.
type memWatch struct {
	pid     int
	base    int64 // VmRSS at the start
	baseHWM int64 // VmHWM at the start
	peak    atomic.Int64
	stopc   chan struct{}
	done    chan struct{}
}

// watchMem starts sampling pid's RSS every few milliseconds.
func watchMem(t *testing.T, pid int) *memWatch {
	t.Helper()
	rss, hwm, err := procMem(pid)
	if err != nil {
		t.Fatalf("reading notifyd's memory: %v", err)
	}
	m := &memWatch{pid: pid, base: rss, baseHWM: hwm, stopc: make(chan struct{}), done: make(chan struct{})}
	m.peak.Store(rss)
	go func() {
		defer close(m.done)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-m.stopc:
				return
			case <-tick.C:
			}
			if rss, _, err := procMem(pid); err == nil && rss > m.peak.Load() {
				m.peak.Store(rss)
			}
		}
	}()
	t.Cleanup(m.stop)
	return m
}

func (m *memWatch) stop() {
	select {
	case <-m.stopc:
	default:
		close(m.stopc)
	}
	<-m.done
}

// growth stops sampling and returns the largest RSS growth over the
// baseline seen during the watch: sampled, or the process's peak when it
// rose during the watch (a spike between samples).
func (m *memWatch) growth() (growth, base int64) {
	m.stop()
	peak := m.peak.Load()
	if rss, hwm, err := procMem(m.pid); err == nil {
		peak = max(peak, rss)
		if hwm > m.baseHWM {
			peak = max(peak, hwm)
		}
	}
	return peak - m.base, m.base
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// --- A well-behaved client ------------------------------------------------

const (
	// monitorRoom is the room the well-behaved client publishes to and
	// subscribes to.
	monitorRoom = "restaurant:monitor"
	// monitorCallTimeout bounds each of its calls: a call the server does
	// not answer within it counts as failed.
	monitorCallTimeout = 5 * time.Second
	// monitorPace is the pause between its publishes.
	monitorPace = 20 * time.Millisecond
	// monitorMinSuccess is the share of its calls that must succeed.
	monitorMinSuccess = 0.99
)

// monitor is a well-behaved grpc-go client on a connection of its own: a
// goroutine publishing unary calls in a loop, and one Subscribe stream to
// the room it publishes to, for the whole of an attack.
type monitor struct {
	conn   *grpc.ClientConn
	client notifyv1.NotificationServiceClient
	ctx    context.Context // carries the service token

	calls, fails atomic.Int64
	mu           sync.Mutex
	firstErr     error
	received     map[string]bool // event ids delivered on the stream
	streamErr    error           // why the stream ended, if it did
	gotEvent     chan struct{}   // a token after each delivery

	stopc     chan struct{}
	pubDone   chan struct{}
	subDone   chan struct{}
	cancelSub context.CancelFunc
}

// startMonitor connects a well-behaved client to d, opens its Subscribe
// stream (waiting for its Connected message) and starts publishing.
func startMonitor(t *testing.T, d *daemon, svc string) *monitor {
	t.Helper()
	conn, err := grpc.NewClient("passthrough:///"+d.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("grpc.NewClient: %v", err)
	}
	m := &monitor{
		conn:     conn,
		client:   notifyv1.NewNotificationServiceClient(conn),
		ctx:      metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+svc),
		received: map[string]bool{},
		gotEvent: make(chan struct{}, 1),
		stopc:    make(chan struct{}),
		pubDone:  make(chan struct{}),
		subDone:  make(chan struct{}),
	}
	subCtx, cancel := context.WithCancel(m.ctx)
	m.cancelSub = cancel
	t.Cleanup(func() {
		m.stopPublishing()
		cancel()
		<-m.subDone
		conn.Close()
	})
	openCtx, openCancel := context.WithTimeout(subCtx, startTimeout)
	defer openCancel()
	st, err := m.client.Subscribe(subCtx, &notifyv1.SubscribeRequest{Rooms: []string{monitorRoom}})
	if err != nil {
		close(m.subDone)
		close(m.pubDone)
		t.Fatalf("monitor Subscribe: %v", err)
	}
	first := make(chan error, 1)
	go func() {
		defer close(m.subDone)
		msg, err := st.Recv()
		if err == nil && msg.GetConnected() == nil {
			err = fmt.Errorf("first message %v, want Connected", msg)
		}
		first <- err
		for err == nil {
			msg, err = st.Recv()
			if err != nil {
				break
			}
			m.mu.Lock()
			for _, ev := range msg.Events {
				m.received[ev.Id] = true
			}
			m.mu.Unlock()
			select {
			case m.gotEvent <- struct{}{}:
			default:
			}
		}
		m.mu.Lock()
		m.streamErr = err
		m.mu.Unlock()
	}()
	select {
	case err := <-first:
		if err != nil {
			close(m.pubDone)
			t.Fatalf("monitor Subscribe: %v", err)
		}
	case <-openCtx.Done():
		close(m.pubDone)
		t.Fatalf("monitor Subscribe: no Connected within %v", startTimeout)
	}
	go m.publishLoop()
	return m
}

func (m *monitor) publishLoop() {
	defer close(m.pubDone)
	for i := 0; ; i++ {
		select {
		case <-m.stopc:
			return
		case <-time.After(monitorPace):
		}
		ctx, cancel := context.WithTimeout(m.ctx, monitorCallTimeout)
		_, err := m.client.Publish(ctx, publishRequest(monitorRoom, fmt.Sprintf("mon-%d", i)))
		cancel()
		m.calls.Add(1)
		if err != nil {
			m.fails.Add(1)
			m.mu.Lock()
			if m.firstErr == nil {
				m.firstErr = err
			}
			m.mu.Unlock()
		}
	}
}

// stopPublishing ends the publishing loop; a call in flight is finished
// (it is bounded by monitorCallTimeout), so a server that stopped
// answering shows as a failed call.
func (m *monitor) stopPublishing() {
	select {
	case <-m.stopc:
	default:
		close(m.stopc)
	}
	<-m.pubDone
}

// check stops publishing and checks that the client was served through
// the attack: enough of its calls succeeded, its stream is still open, and
// one more publish is delivered on that stream.
func (m *monitor) check(t *testing.T) {
	t.Helper()
	m.stopPublishing()
	calls, fails := m.calls.Load(), m.fails.Load()
	m.mu.Lock()
	firstErr := m.firstErr
	m.mu.Unlock()
	if calls > 0 && float64(calls-fails) < monitorMinSuccess*float64(calls) {
		t.Errorf("well-behaved client: %d of %d publishes failed during the attack (first: %v), want at least %.0f%% to succeed",
			fails, calls, firstErr, 100*monitorMinSuccess)
	}
	t.Logf("well-behaved client: %d publishes during the attack, %d failed", calls, fails)

	ctx, cancel := context.WithTimeout(m.ctx, monitorCallTimeout)
	defer cancel()
	resp, err := m.client.Publish(ctx, publishRequest(monitorRoom, "mon-final"))
	if err != nil {
		t.Errorf("well-behaved client: publish after the attack: %v", err)
		return
	}
	for {
		m.mu.Lock()
		got, streamErr := m.received[resp.EventId], m.streamErr
		m.mu.Unlock()
		if got {
			return
		}
		if streamErr != nil {
			t.Errorf("well-behaved client: its Subscribe stream ended: %v", streamErr)
			return
		}
		select {
		case <-m.gotEvent:
		case <-ctx.Done():
			t.Errorf("well-behaved client: event %s published after the attack not delivered on its stream within %v", resp.EventId, monitorCallTimeout)
			return
		}
	}
}

// checkServing checks that d is still running and reports SERVING on its
// native port's health service.
func checkServing(t *testing.T, d *daemon) {
	t.Helper()
	select {
	case <-d.done:
		t.Errorf("notifyd exited during the attack: %v", d.waitErr)
		return
	default:
	}
	conn, err := grpc.NewClient("passthrough:///"+d.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("grpc.NewClient: %v", err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), monitorCallTimeout)
	defer cancel()
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil || resp.Status != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("health after the attack: %v, %v; want SERVING", resp, err)
	}
}
