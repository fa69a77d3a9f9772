package node_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/textproto"
	"os"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	notifyv1 "github.com/maxloyalty/notify/gen/notify/v1"
	"github.com/maxloyalty/notify/internal/auth"
	"github.com/maxloyalty/notify/internal/node"
	"github.com/maxloyalty/notify/internal/testenv"
)

// testSecret is the HS256 secret of every test node (at least 32 bytes).
const testSecret = "node-e2e-test-secret-0123456789-abcdefghijklmnopqrstuvwxyz"

// otherSecret signs tokens that a test node must refuse.
const otherSecret = "a-different-secret-that-the-node-never-saw-0123456789"

// testTimeout bounds every blocking step of a test.
const testTimeout = 10 * time.Second

// Identities used across the tests.
var (
	adminClaims      = auth.Claims{Subject: "adm1", Role: notifyv1.Role_ROLE_ADMIN}
	serviceClaims    = auth.Claims{Subject: "svc1", Role: notifyv1.Role_ROLE_SERVICE}
	restaurantClaims = auth.Claims{Subject: "rest1", Role: notifyv1.Role_ROLE_RESTAURANT, RestaurantID: "r1"}
	cashierClaims    = auth.Claims{Subject: "cash1", Role: notifyv1.Role_ROLE_CASHIER, RestaurantID: "r1"}
	guestClaims      = auth.Claims{Subject: "g1", Role: notifyv1.Role_ROLE_GUEST}
)

// testNode is a running node and the means to stop it.
type testNode struct {
	*node.Node
	cfg    node.Config
	cancel context.CancelFunc
	done   chan struct{} // closed when Run has returned
	runErr error         // Run's result, valid once done is closed
}

// startNode builds and runs a node on 127.0.0.1 port 0, after letting
// mutate adjust the config; the node is stopped when the test ends.
func startNode(t *testing.T, mutate func(*node.Config)) *testNode {
	t.Helper()
	tn := launchNode(t, mutate)
	waitReady(t, tn)
	return tn
}

// launchNode is startNode without waiting for the node to be ready.
func launchNode(t *testing.T, mutate func(*node.Config)) *testNode {
	t.Helper()
	cfg := node.Config{
		GRPCAddr:      "127.0.0.1:0",
		HTTPAddr:      "127.0.0.1:0",
		ServerID:      "test-node",
		JWTSecret:     testSecret,
		LogLevel:      "error",
		DataDir:       t.TempDir(),
		GRPCTransport: testGRPCTransport(),
	}
	if mutate != nil {
		mutate(&cfg)
	}
	ctx, cancel := context.WithCancel(context.Background())
	n, err := node.New(ctx, cfg, testLogger())
	if err != nil {
		cancel()
		t.Fatalf("node.New: %v", err)
	}
	tn := &testNode{Node: n, cfg: cfg, cancel: cancel, done: make(chan struct{})}
	go func() {
		tn.runErr = n.Run(ctx)
		close(tn.done)
	}()
	t.Cleanup(func() {
		if err := tn.stop(); err != nil {
			t.Errorf("stopping node: %v", err)
		}
	})
	return tn
}

// testGRPCTransport is the native gRPC transport of the nodes the tests
// start, from NOTIFY_TEST_GRPC_TRANSPORT ("grpc-go" or "wire"; empty: the
// node's default), so that `make test` runs the suite on both. A test that
// needs one transport sets Config.GRPCTransport itself.
func testGRPCTransport() string { return os.Getenv("NOTIFY_TEST_GRPC_TRANSPORT") }

// stop cancels the node's context and waits for Run to return. It may be
// called more than once.
func (tn *testNode) stop() error {
	tn.cancel()
	select {
	case <-tn.done:
		return tn.runErr
	case <-time.After(20 * time.Second):
		return errors.New("Run did not return within 20s of cancel")
	}
}

// waitReady polls /readyz until the node serves.
func waitReady(t *testing.T, tn *testNode) {
	t.Helper()
	// Without keep-alive: a probe leaves no idle connection open on the
	// node, which tests counting its connections would see.
	waitReadyWith(t, tn, &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}, "http")
}

// waitReadyWith polls scheme://HTTPAddr/readyz with client until the node
// serves.
func waitReadyWith(t *testing.T, tn *testNode, client *http.Client, scheme string) {
	t.Helper()
	var (
		ready bool
		last  error
	)
	defer func() {
		if !ready { // Eventually failed the test
			t.Logf("last /readyz error: %v", last)
		}
	}()
	testenv.Eventually(t, testTimeout, "the node to be ready", func() bool {
		resp, err := client.Get(scheme + "://" + tn.HTTPAddr() + "/readyz")
		if err != nil {
			last = err
			return false
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		ready = resp.StatusCode == http.StatusOK
		return ready
	})
}

func testLogger() *slog.Logger {
	if os.Getenv("NOTIFY_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// mint returns a one-hour token for c signed with the test secret.
func mint(t *testing.T, c auth.Claims, opts ...auth.MintOption) string {
	t.Helper()
	return mintWith(t, testSecret, c, time.Hour, opts...)
}

func mintWith(t *testing.T, secret string, c auth.Claims, ttl time.Duration, opts ...auth.MintOption) string {
	t.Helper()
	tok, err := auth.NewSigner([]byte(secret)).Mint(c, ttl, opts...)
	if err != nil {
		t.Fatalf("Mint(%+v): %v", c, err)
	}
	return tok
}

// dial opens a gRPC client connection to addr, closed when the test ends.
func dial(t *testing.T, addr string, opts ...grpc.DialOption) notifyv1.NotificationServiceClient {
	t.Helper()
	opts = append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, opts...)
	conn, err := grpc.NewClient("passthrough:///"+addr, opts...)
	if err != nil {
		t.Fatalf("grpc.NewClient(%s): %v", addr, err)
	}
	t.Cleanup(func() { conn.Close() })
	return notifyv1.NewNotificationServiceClient(conn)
}

// withToken returns ctx carrying "authorization: Bearer tok" (none if tok is empty).
func withToken(ctx context.Context, tok string) context.Context {
	if tok == "" {
		return ctx
	}
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok)
}

// testCtx returns a context bounded by testTimeout, cancelled when the test ends.
func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// wantCode fails unless err carries code.
func wantCode(t *testing.T, err error, code codes.Code, what string) {
	t.Helper()
	if got := status.Code(err); got != code {
		t.Fatalf("%s: code %v (err %v), want %v", what, got, err, code)
	}
}

// stream reads a subscription one event at a time.
type stream struct {
	grpc.ServerStreamingClient[notifyv1.SubscribeResponse]
	pending []*notifyv1.Event
	// heartbeats counts the heartbeats skipped while reading events.
	heartbeats int
	// unread is the last unread count the stream carried.
	unread int64
}

// Recv returns the next message, with inbox unread counts taken off it
// (recorded in s.unread); messages that carried only a count are skipped.
func (s *stream) Recv() (*notifyv1.SubscribeResponse, error) {
	for {
		m, err := s.ServerStreamingClient.Recv()
		if err != nil {
			return nil, err
		}
		if !stripUnread(m, &s.unread) {
			return m, nil
		}
	}
}

// stripUnread records and removes an unread count from m and reports
// whether nothing else is left in it.
func stripUnread(m *notifyv1.SubscribeResponse, into *int64) (empty bool) {
	u := m.GetUnread()
	if u == nil {
		return false
	}
	*into = u.Count
	m.Control = nil
	return len(m.Events) == 0
}

// subscribe opens a stream with tok and requires Connected as its first message.
func subscribe(t *testing.T, ctx context.Context, c notifyv1.NotificationServiceClient, tok string, req *notifyv1.SubscribeRequest) (*stream, *notifyv1.Connected) {
	t.Helper()
	s, err := openStream(ctx, c, tok, req)
	if err != nil {
		t.Fatalf("Subscribe(%v): %v", req, err)
	}
	return s, s.connected(t)
}

// openStream opens a stream without reading from it. A refused stream
// reports its error on the first Recv.
func openStream(ctx context.Context, c notifyv1.NotificationServiceClient, tok string, req *notifyv1.SubscribeRequest) (*stream, error) {
	st, err := c.Subscribe(withToken(ctx, tok), req)
	if err != nil {
		return nil, err
	}
	return &stream{ServerStreamingClient: st}, nil
}

// connected reads the first message and requires it to be Connected without events.
func (s *stream) connected(t *testing.T) *notifyv1.Connected {
	t.Helper()
	m, err := s.Recv()
	if err != nil {
		t.Fatalf("first Recv: %v", err)
	}
	c := m.GetConnected()
	if c == nil || len(m.Events) != 0 {
		t.Fatalf("first message = %v, want connected only", m)
	}
	return c
}

// next returns the next event, skipping heartbeats; any other control
// message or an error fails the test.
func (s *stream) next(t *testing.T) *notifyv1.Event {
	t.Helper()
	for range 10000 {
		if len(s.pending) > 0 {
			ev := s.pending[0]
			s.pending = s.pending[1:]
			return ev
		}
		m, err := s.Recv()
		if err != nil {
			t.Fatalf("Recv while waiting for an event: %v", err)
		}
		switch {
		case m.GetHeartbeat() != nil:
			s.heartbeats++
		case m.GetControl() != nil:
			t.Fatalf("unexpected control message while waiting for an event: %v", m)
		}
		s.pending = append(s.pending, m.Events...)
	}
	t.Fatal("no event in 10000 messages")
	return nil
}

// nextN returns the next n events.
func (s *stream) nextN(t *testing.T, n int) []*notifyv1.Event {
	t.Helper()
	out := make([]*notifyv1.Event, 0, n)
	for range n {
		out = append(out, s.next(t))
	}
	return out
}

// offsets lists the events' offsets.
func offsets(evs []*notifyv1.Event) []uint64 {
	out := make([]uint64, len(evs))
	for i, e := range evs {
		out[i] = e.Offset
	}
	return out
}

// publish publishes req with a service token and fails on error.
func publish(t *testing.T, ctx context.Context, c notifyv1.NotificationServiceClient, req *notifyv1.PublishRequest) *notifyv1.PublishResponse {
	t.Helper()
	resp, err := c.Publish(withToken(ctx, mint(t, serviceClaims)), req)
	if err != nil {
		t.Fatalf("Publish(%v): %v", req, err)
	}
	return resp
}

// position returns resp's position in room, failing if there is none.
func position(t *testing.T, resp *notifyv1.PublishResponse, room string) *notifyv1.StreamPosition {
	t.Helper()
	for _, p := range resp.Positions {
		if p.Room == room {
			return p
		}
	}
	t.Fatalf("publish response %v has no position in %s", resp, room)
	return nil
}

// pointsAdded returns a PointsAdded for guest gid at restaurant rid.
func pointsAdded(gid, rid string, amount int64) *notifyv1.PointsAdded {
	return &notifyv1.PointsAdded{
		GuestId: gid, CardId: "card-" + gid, Amount: amount, NewBalance: 1000 + amount,
		RestaurantId: rid, RestaurantName: "Chez " + rid, TransactionId: fmt.Sprintf("tx-%s-%d", gid, amount),
		Description: "test points",
	}
}

// pointsReq is a PublishRequest of a PointsAdded in rooms (none: routed).
func pointsReq(p *notifyv1.PointsAdded, rooms ...string) *notifyv1.PublishRequest {
	return &notifyv1.PublishRequest{Rooms: rooms, Payload: &notifyv1.PublishRequest_PointsAdded{PointsAdded: p}}
}

// ---- REST ----

// restResult is one HTTP exchange.
type restResult struct {
	status int
	body   []byte
}

// restDo sends an HTTP request with an optional bearer token and reads the whole response.
func restDo(t *testing.T, ctx context.Context, method, url, tok, body string) restResult {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		t.Fatalf("NewRequest: %v", err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", method, url, err)
	}
	return restResult{status: resp.StatusCode, body: b}
}

// restError is the gateway's JSON error body.
type restError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

// parseRestError decodes an error body: a status object for unary calls, or
// {"error": status} for a streaming call that failed.
func parseRestError(t *testing.T, b []byte) restError {
	t.Helper()
	var e struct {
		restError
		Error *restError `json:"error"`
	}
	if err := json.Unmarshal(b, &e); err != nil {
		t.Fatalf("error body %q: %v", b, err)
	}
	if e.Error != nil {
		return *e.Error
	}
	return e.restError
}

// unmarshalJSON decodes protojson b into m.
func unmarshalJSON(t *testing.T, b []byte, m proto.Message) {
	t.Helper()
	if err := protojson.Unmarshal(b, m); err != nil {
		t.Fatalf("protojson %q: %v", b, err)
	}
}

// restStream is a REST subscription: newline-delimited {"result": ...} lines.
type restStream struct {
	resp *http.Response
	rd   *bufio.Reader
}

// restSubscribe opens GET /v1/subscribe?query and returns the response.
func restSubscribe(t *testing.T, ctx context.Context, httpAddr, query, tok string) *restStream {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+httpAddr+"/v1/subscribe?"+query, nil)
	if err != nil {
		t.Fatalf("NewRequest: %v", err)
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET /v1/subscribe: %v", err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return &restStream{resp: resp, rd: bufio.NewReader(resp.Body)}
}

// next reads one line and decodes its result.
func (s *restStream) next(t *testing.T) *notifyv1.SubscribeResponse {
	t.Helper()
	line, err := s.rd.ReadBytes('\n')
	if err != nil {
		t.Fatalf("reading subscribe line (got %q): %v", line, err)
	}
	var env struct {
		Result json.RawMessage `json:"result"`
		Error  json.RawMessage `json:"error"`
	}
	if err := json.Unmarshal(line, &env); err != nil {
		t.Fatalf("subscribe line %q: %v", line, err)
	}
	if env.Result == nil {
		t.Fatalf("subscribe line %q has no result", line)
	}
	var m notifyv1.SubscribeResponse
	unmarshalJSON(t, env.Result, &m)
	var unread int64
	if stripUnread(&m, &unread) {
		return s.next(t)
	}
	return &m
}

// ---- grpc-web ----

// webFrame encodes msg as one grpc-web data frame.
func webFrame(t *testing.T, msg proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(msg)
	if err != nil {
		t.Fatalf("marshal: %v", err)
	}
	out := make([]byte, 5, 5+len(b))
	binary.BigEndian.PutUint32(out[1:], uint32(len(b)))
	return append(out, b...)
}

// webCall POSTs a grpc-web request for method with a framed msg and returns
// the response, whose body the caller reads.
func webCall(t *testing.T, ctx context.Context, httpAddr, method, tok string, msg proto.Message) *http.Response {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost,
		"http://"+httpAddr+"/notify.v1.NotificationService/"+method, bytes.NewReader(webFrame(t, msg)))
	if err != nil {
		t.Fatalf("NewRequest: %v", err)
	}
	req.Header.Set("Content-Type", "application/grpc-web+proto")
	req.Header.Set("X-Grpc-Web", "1")
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("grpc-web %s: %v", method, err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// grpcWebFrame is one frame of a grpc-web response body.
type grpcWebFrame struct {
	flag byte
	data []byte
}

func (f grpcWebFrame) isTrailer() bool { return f.flag&0x80 != 0 }

// readWebFrame reads one length-prefixed grpc-web frame.
func readWebFrame(r io.Reader) (grpcWebFrame, error) {
	var hdr [5]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return grpcWebFrame{}, err
	}
	n := binary.BigEndian.Uint32(hdr[1:])
	if n > 16<<20 {
		return grpcWebFrame{}, fmt.Errorf("frame of %d bytes", n)
	}
	data := make([]byte, n)
	if _, err := io.ReadFull(r, data); err != nil {
		return grpcWebFrame{}, err
	}
	return grpcWebFrame{flag: hdr[0], data: data}, nil
}

// webTrailers parses a trailer frame's "key: value\r\n" lines.
func webTrailers(t *testing.T, data []byte) http.Header {
	t.Helper()
	h, err := textproto.NewReader(bufio.NewReader(io.MultiReader(bytes.NewReader(data), strings.NewReader("\r\n")))).ReadMIMEHeader()
	if err != nil {
		t.Fatalf("trailer frame %q: %v", data, err)
	}
	return http.Header(h)
}

// webStream reads a grpc-web Subscribe response one SubscribeResponse at a time.
type webStream struct {
	body io.Reader
}

// next returns the next data frame's message, failing on a trailer frame or error.
func (s *webStream) next(t *testing.T) *notifyv1.SubscribeResponse {
	t.Helper()
	f, err := readWebFrame(s.body)
	if err != nil {
		t.Fatalf("grpc-web frame: %v", err)
	}
	if f.isTrailer() {
		t.Fatalf("grpc-web trailer frame %q while waiting for a message", f.data)
	}
	var m notifyv1.SubscribeResponse
	if err := proto.Unmarshal(f.data, &m); err != nil {
		t.Fatalf("grpc-web frame: %v", err)
	}
	var unread int64
	if stripUnread(&m, &unread) {
		return s.next(t)
	}
	return &m
}
