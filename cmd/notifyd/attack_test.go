package main

// The HTTP/2 attack suite: TestAttack, its bounds and its case table. The
// cases are in attack_floods_test.go and attack_malformed_test.go, the
// raw-frame client in attack_client_test.go, the checks and measurements
// in attack_checks_test.go.

import (
	"testing"
	"time"
)

const (
	// reactTimeout bounds how long a server may take to answer a protocol
	// violation (close the connection, reset the stream, answer a call).
	reactTimeout = 5 * time.Second
	// stallTimeout: a write that makes no progress for this long means the
	// server stopped reading the connection.
	stallTimeout = time.Second
	// floodTime bounds each flood's duration.
	floodTime = 5 * time.Second
	// maxMessageBytes is notifyd's default --max-message-bytes.
	maxMessageBytes = 256 << 10

	// defaultGrowth bounds the RSS growth of notifyd during a case that
	// must leave memory flat: well above what a race-enabled notifyd grows
	// by while it serves these loads (the race detector multiplies the
	// heap), well below what the failures it catches grow it by (replies
	// or output queued without bound, a body buffered whole, a frame loop).
	defaultGrowth = 96 << 20
	// manyStreamsGrowth bounds the growth during the cases that hold up to
	// the stream limit's worth of calls open (each a handler goroutine
	// and its buffers, several times their size under the race detector).
	manyStreamsGrowth = 160 << 20
	// grpcGoUnreadGrowth bounds grpc-go's growth during the unread
	// responses: its server throttles its reader on queued control replies
	// only, so every unary response to a peer that never reads stays
	// queued, and its memory follows the calls (unreadCalls of them), by
	// 3 to 9 KiB each under the race detector depending on how far
	// collection lags on a busy machine.
	grpcGoUnreadGrowth = 320 << 20

	// continuationFloodBytes bounds the CONTINUATION flood; the server must
	// close before continuationMaxBytes were sent (its header list limit,
	// at most a few MiB, plus the sockets' buffers).
	continuationFloodBytes = 64 << 20
	continuationMaxBytes   = 24 << 20
	// endlessBodyBytes bounds the endless request body; endlessMaxWindow
	// bounds the stream window the server may grant it: one message of
	// the largest size and a window or two more.
	endlessBodyBytes = 64 << 20
	endlessMaxWindow = maxMessageBytes + 4<<20
	// controlFloodBytes bounds a flood of frames that each need a reply
	// of their size, never read: the replies to that many bytes of frames
	// are more than the sockets' buffers hold (a server whose writes block
	// and that goes on reading has queued the rest). controlFloodTime
	// bounds its duration.
	controlFloodBytes = 16 << 20
	controlFloodTime  = 15 * time.Second
	// unreadCalls bounds the calls sent on a connection that never reads.
	unreadCalls = 25600
	// rapidResetPairs bounds the HEADERS+RST_STREAM pairs.
	rapidResetPairs = 20000
	// readFloodFrames bounds each flood of case 8 (the client reads).
	readFloodFrames = 200000
	// maxAdvertisedStreams is the most SETTINGS_MAX_CONCURRENT_STREAMS
	// the suite accepts as a bound.
	maxAdvertisedStreams = 10000
	// zeroWindowStreams is the number of Subscribe streams that never
	// open their window; zeroWindowEvents the events published to them.
	zeroWindowStreams = 100
	zeroWindowEvents  = 300
	// slowlorisConns is the number of connections of each kind that stop
	// mid-handshake; slowlorisGrowth bounds the memory they may hold.
	slowlorisConns  = 50
	slowlorisGrowth = 64 << 20
	// bigHeader is the size of the one oversized header value of case 12.
	bigHeader = 100 << 10
)

// attackEnv is what a case attacks.
type attackEnv struct {
	d   *daemon
	svc string // a service token
}

// dial opens a raw connection to the native port.
func (e *attackEnv) dial(t *testing.T, o dialOpts) *rawConn {
	t.Helper()
	return dialRaw(t, e.d.grpcAddr, o)
}

// open dials and completes the handshake with default settings.
func (e *attackEnv) open(t *testing.T) *rawConn {
	t.Helper()
	c := e.dial(t, dialOpts{})
	c.handshake()
	return c
}

// attackCase is one attack, run on each transport.
type attackCase struct {
	name      string
	args      []string // extra notifyd flags
	maxGrowth int64    // bound on notifyd's RSS growth during the case
	// grpcGoGrowth, when set, replaces maxGrowth on grpc-go's server,
	// where it does not defend against the case.
	grpcGoGrowth int64
	run          func(t *testing.T, e *attackEnv)
}

// TestAttack runs the known HTTP/2 attacks (floods, unbounded buffers,
// malformed frames, the published CVE patterns) against a real notifyd on
// each transport of the native gRPC port, with a raw-frame client. Every
// case runs on a fresh notifyd and checks, besides its own expectation,
// that the server's memory stayed bounded, that a well-behaved client on
// another connection was served throughout, and that the process is still
// alive and SERVING at the end.
//
// The expectations are RFC 9113's and grpc-go's server's; where grpc-go
// does not defend against a pattern, the case asserts the bounds only and
// says what each transport does. One transport:
//
//	go test -race -run 'TestAttack/wire/' ./cmd/notifyd/
func TestAttack(t *testing.T) {
	for _, transport := range []string{"grpc-go", "wire"} {
		for _, c := range attackCases {
			t.Run(transport+"/"+c.name, func(t *testing.T) { runAttack(t, transport, c) })
		}
	}
}

// runAttack starts a notifyd on transport, a well-behaved client, runs the
// case, and checks the bounds common to every case.
func runAttack(t *testing.T, transport string, c attackCase) {
	// A soft limit on notifyd's heap, well below the growth bounds, makes
	// its collector keep up when the machine is busy (tests of other
	// packages run beside this one), so that RSS follows what the attack
	// makes the server keep, not how far collection lags. What a case
	// keeps without bound still grows past it, and past the bound.
	t.Setenv("GOMEMLIMIT", "48MiB")
	args := append([]string{"--grpc-transport", transport,
		// Go's own garbage collection pacing, so that RSS follows the live heap.
		"--gc-floor", "-1",
		"--log-level", "warn"}, c.args...)
	d := startDaemon(t, t.TempDir(), args...)
	e := &attackEnv{d: d, svc: token(t, serviceClaims)}
	mon := startMonitor(t, d, e.svc)
	mem := watchMem(t, d.cmd.Process.Pid)

	c.run(t, e)

	growth, base := mem.growth()
	t.Logf("notifyd RSS %s at the start, grew by at most %s", mib(base), mib(growth))
	bound := c.maxGrowth
	if transport == "grpc-go" && c.grpcGoGrowth != 0 {
		bound = c.grpcGoGrowth
	}
	if growth > bound {
		t.Errorf("notifyd RSS grew by %s during the attack, want at most %s", mib(growth), mib(bound))
	}
	mon.check(t)
	checkServing(t, d)
}

var attackCases = []attackCase{
	{name: "invalid-settings", maxGrowth: defaultGrowth, run: attackInvalidSettings},
	{name: "continuation-flood", maxGrowth: defaultGrowth, run: attackContinuationFlood},
	{name: "endless-body", maxGrowth: defaultGrowth, run: attackEndlessBody},
	{name: "unread-control-replies", maxGrowth: defaultGrowth, run: attackUnreadControlReplies},
	{name: "unread-responses", maxGrowth: manyStreamsGrowth, grpcGoGrowth: grpcGoUnreadGrowth, run: attackUnreadResponses},
	{name: "rapid-reset", maxGrowth: defaultGrowth, run: attackRapidReset},
	{name: "streams-past-limit", maxGrowth: manyStreamsGrowth, run: attackStreamsPastLimit},
	{name: "floods", maxGrowth: defaultGrowth, run: attackFloods},
	{
		name: "zero-window-subscribers",
		// Small queues so that slow consumers are cut early, room for the
		// streams, and a short history so that retained events do not
		// count as growth.
		args:      []string{"--queue-bytes", "16384", "--max-streams-per-user", "1000", "--history", "restaurant=10/1m"},
		maxGrowth: manyStreamsGrowth,
		run:       attackZeroWindowSubscribers,
	},
	{
		name:      "slowloris",
		args:      []string{"--keepalive-time", "1s", "--keepalive-timeout", "1s", "--min-ping-interval", "500ms"},
		maxGrowth: slowlorisGrowth,
		run:       attackSlowloris,
	},
	{name: "malformed-frames", maxGrowth: defaultGrowth, run: attackMalformedFrames},
	{name: "big-header", maxGrowth: defaultGrowth, run: attackBigHeader},
	{name: "non-grpc-requests", maxGrowth: defaultGrowth, run: attackNonGRPC},
}
