package main

// Tests of the real notifyd process: the test binary re-executes itself as
// notifyd (TestMain), so that it can be SIGKILLed, restarted on the same data
// directory, and stopped with a signal.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/encoding/protojson"

	notifyv1 "github.com/maxloyalty/notify/gen/notify/v1"
	"github.com/maxloyalty/notify/internal/auth"
	"github.com/maxloyalty/notify/internal/node"
)

const (
	// childEnv marks the test binary started as notifyd.
	childEnv = "NOTIFYD_TEST_CHILD"
	// argsEnv carries notifyd's arguments, as a JSON array.
	argsEnv = "NOTIFYD_TEST_ARGS"
	// startTimeout bounds a notifyd start (a race-enabled binary, a new
	// SQLite database) and every other blocking step.
	startTimeout = 30 * time.Second
)

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		var args []string
		if err := json.Unmarshal([]byte(os.Getenv(argsEnv)), &args); err != nil {
			fmt.Fprintf(os.Stderr, "notifyd test child: %s: %v\n", argsEnv, err)
			os.Exit(3)
		}
		os.Args = append([]string{"notifyd"}, args...)
		main()
		return
	}
	os.Exit(m.Run())
}

// lockedBuffer collects a child's output.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// daemon is one notifyd process.
type daemon struct {
	cmd      *exec.Cmd
	out      *lockedBuffer // stdout and stderr
	grpcAddr string
	httpAddr string
	done     chan struct{} // closed when the process has been waited for
	waitErr  error         // valid once done is closed
}

// command returns an unstarted notifyd with args and extra environment,
// none of the parent's NOTIFY_* variables, and its output collected.
func command(t *testing.T, args []string, env ...string) (*exec.Cmd, *lockedBuffer) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatalf("os.Executable: %v", err)
	}
	enc, err := json.Marshal(args)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "NOTIFY_") && !strings.HasPrefix(kv, childEnv+"=") && !strings.HasPrefix(kv, argsEnv+"=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, childEnv+"=1", argsEnv+"="+string(enc))
	cmd.Env = append(cmd.Env, env...)
	out := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	return cmd, out
}

// freeAddr returns a 127.0.0.1 address with a port that was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startDaemon starts notifyd in dev mode on free ports with dataDir and
// extra arguments, and waits until /healthz answers. It is killed when the
// test ends if still running.
func startDaemon(t *testing.T, dataDir string, extra ...string) *daemon {
	t.Helper()
	for attempt := 1; ; attempt++ {
		d := tryStart(t, dataDir, extra)
		err := d.waitHealthy()
		if err == nil {
			return d
		}
		d.kill(t)
		// Another process may have taken a port between freeAddr and bind.
		if attempt < 3 && strings.Contains(d.out.String(), "address already in use") {
			continue
		}
		t.Fatalf("notifyd did not become healthy: %v\noutput:\n%s", err, d.out.String())
	}
}

func tryStart(t *testing.T, dataDir string, extra []string) *daemon {
	t.Helper()
	d := &daemon{grpcAddr: freeAddr(t), httpAddr: freeAddr(t), done: make(chan struct{})}
	args := []string{"--dev", "--grpc-addr", d.grpcAddr, "--http-addr", d.httpAddr, "--data-dir", dataDir, "--log-level", "info"}
	// command drops NOTIFY_* variables: the transport under test is passed
	// as a flag, before extra so that a test's own --grpc-transport wins.
	if tr := os.Getenv("NOTIFY_TEST_GRPC_TRANSPORT"); tr != "" {
		args = append(args, "--grpc-transport", tr)
	}
	args = append(args, extra...)
	d.cmd, d.out = command(t, args)
	if err := d.cmd.Start(); err != nil {
		t.Fatalf("starting notifyd: %v", err)
	}
	go func() {
		d.waitErr = d.cmd.Wait()
		close(d.done)
	}()
	t.Cleanup(func() {
		select {
		case <-d.done:
		default:
			d.kill(t)
		}
		if t.Failed() {
			t.Logf("notifyd %s output:\n%s", d.httpAddr, d.out.String())
		}
	})
	return d
}

// waitHealthy polls /healthz, then /readyz, until both answer 200, the
// process exits, or startTimeout passes.
func (d *daemon) waitHealthy() error {
	deadline := time.Now().Add(startTimeout)
	client := &http.Client{Timeout: time.Second}
	for _, path := range []string{"/healthz", "/readyz"} {
		for {
			resp, err := client.Get("http://" + d.httpAddr + path)
			if err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					break
				}
				err = fmt.Errorf("%s: HTTP %d", path, resp.StatusCode)
			}
			select {
			case <-d.done:
				return fmt.Errorf("notifyd exited (%v) before %s answered", d.waitErr, path)
			case <-time.After(20 * time.Millisecond):
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%s not OK after %v: %v", path, startTimeout, err)
			}
		}
	}
	return nil
}

// kill SIGKILLs the process and waits for it to be gone.
func (d *daemon) kill(t *testing.T) {
	t.Helper()
	_ = d.cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-d.done:
	case <-time.After(startTimeout):
		t.Fatalf("notifyd pid %d still running %v after SIGKILL", d.cmd.Process.Pid, startTimeout)
	}
}

// requireKilled checks the process died of SIGKILL, not of its own accord.
func (d *daemon) requireKilled(t *testing.T) {
	t.Helper()
	ws, ok := d.cmd.ProcessState.Sys().(syscall.WaitStatus)
	if !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("notifyd ended with %v, want death by SIGKILL", d.cmd.ProcessState)
	}
}

// token mints a one-hour token accepted by a dev-mode notifyd.
func token(t *testing.T, c auth.Claims) string {
	t.Helper()
	tok, err := auth.NewSigner([]byte(node.DevSecret)).Mint(c, time.Hour)
	if err != nil {
		t.Fatalf("Mint: %v", err)
	}
	return tok
}

var (
	serviceClaims = auth.Claims{Subject: "svc1", Role: notifyv1.Role_ROLE_SERVICE}
	guestClaims   = auth.Claims{Subject: "g1", Role: notifyv1.Role_ROLE_GUEST}
)

// pointsBody is the REST body of a PointsAdded for g1 tagged by tx.
func pointsBody(tx string, amount int64) string {
	b, err := protojson.Marshal(&notifyv1.PublishRequest{Payload: &notifyv1.PublishRequest_PointsAdded{PointsAdded: &notifyv1.PointsAdded{
		GuestId: "g1", CardId: "card-g1", Amount: amount, NewBalance: 100 + amount, RestaurantId: "r1", TransactionId: tx,
	}}})
	if err != nil {
		panic(err) // a fixed message always encodes
	}
	return string(b)
}

// restPublish POSTs body to /v1/events with tok; it returns the event id
// on a 200 and an error otherwise (including a broken connection).
func restPublish(ctx context.Context, client *http.Client, httpAddr, tok, body string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+httpAddr+"/v1/events", strings.NewReader(body))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("HTTP %d %s", resp.StatusCode, b)
	}
	var pr notifyv1.PublishResponse
	if err := protojson.Unmarshal(b, &pr); err != nil {
		return "", fmt.Errorf("publish response %q: %w", b, err)
	}
	if pr.EventId == "" {
		return "", fmt.Errorf("publish response %q has no event id", b)
	}
	return pr.EventId, nil
}

// inbox lists g1's whole inbox on d over gRPC.
func inbox(t *testing.T, ctx context.Context, d *daemon) []*notifyv1.Notification {
	t.Helper()
	conn, err := grpc.NewClient("passthrough:///"+d.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("grpc.NewClient: %v", err)
	}
	defer conn.Close()
	ib := notifyv1.NewInboxServiceClient(conn)
	tctx := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token(t, guestClaims))
	var out []*notifyv1.Notification
	pageToken := ""
	for range 100 {
		resp, err := ib.ListNotifications(tctx, &notifyv1.ListNotificationsRequest{PageSize: 200, PageToken: pageToken})
		if err != nil {
			t.Fatalf("ListNotifications: %v", err)
		}
		out = append(out, resp.Notifications...)
		if pageToken = resp.NextPageToken; pageToken == "" {
			return out
		}
	}
	t.Fatal("more than 100 pages")
	return nil
}

func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*startTimeout)
	t.Cleanup(cancel)
	return ctx
}

// TestSIGKILLAfterPublish: a publish that returned 200 is in the inbox of a
// notifyd restarted on the same data directory after a SIGKILL.
func TestSIGKILLAfterPublish(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	dir := t.TempDir()
	svc := token(t, serviceClaims)

	d := startDaemon(t, dir)
	id, err := restPublish(ctx, http.DefaultClient, d.httpAddr, svc, pointsBody("tx-kill", 42))
	if err != nil {
		t.Fatalf("publish: %v", err)
	}
	d.kill(t)
	d.requireKilled(t)

	d2 := startDaemon(t, dir)
	got := inbox(t, ctx, d2)
	if len(got) != 1 {
		t.Fatalf("inbox after SIGKILL and restart has %d notifications %v, want exactly the published one", len(got), got)
	}
	n := got[0]
	if n.GetEvent().GetId() != id || n.Read || n.GetEvent().GetRoom() != "guest:g1" ||
		n.EventType != notifyv1.EventType_EVENT_TYPE_POINTS_ADDED ||
		n.GetEvent().GetPointsAdded().GetAmount() != 42 || n.GetEvent().GetPointsAdded().GetTransactionId() != "tx-kill" {
		t.Errorf("notification after restart = %v, want the unread PointsAdded %s of 42 points in guest:g1", n, id)
	}
}

// TestSIGKILLAfterRapidPublishes: 20 publishes in a row, then a SIGKILL the
// moment the last returns: all 20 are listed after a restart.
func TestSIGKILLAfterRapidPublishes(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	dir := t.TempDir()
	svc := token(t, serviceClaims)

	d := startDaemon(t, dir)
	var acked []string
	for i := range 20 {
		id, err := restPublish(ctx, http.DefaultClient, d.httpAddr, svc, pointsBody(fmt.Sprintf("tx-%d", i), int64(i+1)))
		if err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
		acked = append(acked, id)
	}
	d.kill(t)
	d.requireKilled(t)

	d2 := startDaemon(t, dir)
	got := inbox(t, ctx, d2)
	ids := make([]string, len(got))
	for i, n := range got {
		ids[i] = n.GetEvent().GetId()
	}
	slices.Reverse(acked) // the inbox lists newest first
	if !slices.Equal(ids, acked) {
		t.Errorf("inbox after SIGKILL and restart lists events %v, want the 20 acknowledged %v", ids, acked)
	}
}

// TestSIGKILLDuringConcurrentPublishes: publishers keep publishing while
// notifyd is SIGKILLed mid-flight: every publish that returned 200 is
// listed after a restart, and nothing is listed twice or that was never
// sent.
func TestSIGKILLDuringConcurrentPublishes(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	dir := t.TempDir()
	svc := token(t, serviceClaims)
	const publishers = 8

	d := startDaemon(t, dir)
	var (
		mu      sync.Mutex
		acked   = map[string]string{} // transaction id → event id
		sent    = map[string]bool{}   // transaction ids attempted
		failed  int
		enough  = make(chan struct{})
		stopPub = make(chan struct{})
		wg      sync.WaitGroup
	)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: publishers}}
	for p := range publishers {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stopPub:
					return
				default:
				}
				tx := fmt.Sprintf("tx-%d-%d", p, i)
				mu.Lock()
				sent[tx] = true
				mu.Unlock()
				id, err := restPublish(ctx, client, d.httpAddr, svc, pointsBody(tx, int64(i+1)))
				mu.Lock()
				if err == nil {
					acked[tx] = id
					if len(acked) == 40 {
						close(enough)
					}
				} else {
					failed++
				}
				mu.Unlock()
				if err != nil {
					return // the server is gone
				}
			}
		})
	}
	select {
	case <-enough:
	case <-time.After(startTimeout):
		t.Fatalf("40 publishes not acknowledged within %v", startTimeout)
	}
	d.kill(t) // publishers are mid-request
	close(stopPub)
	wg.Wait()
	d.requireKilled(t)

	d2 := startDaemon(t, dir)
	got := inbox(t, ctx, d2)
	listed := map[string]string{}
	for _, n := range got {
		tx := n.GetEvent().GetPointsAdded().GetTransactionId()
		if _, dup := listed[tx]; dup {
			t.Errorf("transaction %s listed twice", tx)
		}
		listed[tx] = n.GetEvent().GetId()
		if !sent[tx] {
			t.Errorf("listed %s (%s), which was never sent", tx, n.GetEvent().GetId())
		}
	}
	for tx, id := range acked {
		if listed[tx] != id {
			t.Errorf("publish %s returned 200 with event %s but the inbox after restart has %q", tx, id, listed[tx])
		}
	}
	t.Logf("%d acknowledged, %d failed by the kill, %d listed after restart", len(acked), failed, len(got))
}

// TestBadConfig: a bad setting stops notifyd at once with a message naming
// it and a non-zero exit status, before it serves.
func TestBadConfig(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		args []string
		env  []string
		want string
	}{
		{"log format from the environment", nil, []string{"NOTIFY_LOG_FORMAT=xml"}, `log-format: "xml" is not text or json`},
		{"queue bytes flag", []string{"--queue-bytes", "1"}, nil, "queue-bytes: must be at least 4096"},
		{"log level flag", []string{"--log-level", "loud"}, nil, `log-level: "loud"`},
		{"integer from the environment", nil, []string{"NOTIFY_QUEUE_BYTES=lots"}, `NOTIFY_QUEUE_BYTES="lots": not a valid integer`},
		{"duration from the environment", nil, []string{"NOTIFY_SHUTDOWN_DRAIN=soon"}, "NOTIFY_SHUTDOWN_DRAIN"},
		{"short jwt secret", []string{"--jwt-secret", "short"}, nil, "jwt-secret: must be at least 32 bytes"},
		{"unknown flag", []string{"--no-such-flag"}, nil, "flag provided but not defined: -no-such-flag"},
		{"bad history", []string{"--history", "nope=1/1m"}, nil, `unknown room kind "nope"`},
		{"unknown trace exporter", nil, []string{"OTEL_TRACES_EXPORTER=zipkin"}, `OTEL_TRACES_EXPORTER "zipkin"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			args := append([]string{"--dev", "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--data-dir", t.TempDir()}, tc.args...)
			cmd, out := command(t, args, tc.env...)
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			var err error
			select {
			case err = <-done:
			case <-time.After(startTimeout):
				_ = cmd.Process.Kill()
				<-done
				t.Fatalf("notifyd still running %v after starting with a bad config; output:\n%s", startTimeout, out.String())
			}
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() <= 0 {
				t.Errorf("exit = %v, want a non-zero exit status", err)
			}
			if s := out.String(); !strings.Contains(s, tc.want) {
				t.Errorf("output %q does not name the problem (%q)", s, tc.want)
			}
			if s := out.String(); strings.Contains(s, "notifyd serving") {
				t.Errorf("notifyd served with a bad config: %s", s)
			}
		})
	}
}

// TestSIGTERM: SIGTERM tells open streams to reconnect elsewhere and makes
// notifyd exit 0 within the drain time.
func TestSIGTERM(t *testing.T) {
	t.Parallel()
	const drain = 2 * time.Second
	ctx := testCtx(t)
	d := startDaemon(t, t.TempDir(), "--shutdown-drain", drain.String(),
		"--reconnect-delay-min", "10ms", "--reconnect-delay-max", "20ms")

	conn, err := grpc.NewClient("passthrough:///"+d.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	st, err := notifyv1.NewNotificationServiceClient(conn).Subscribe(
		metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token(t, guestClaims)), &notifyv1.SubscribeRequest{})
	if err != nil {
		t.Fatalf("Subscribe: %v", err)
	}
	if m, err := st.Recv(); err != nil || m.GetConnected() == nil {
		t.Fatalf("first message %v, %v; want Connected", m, err)
	}

	start := time.Now()
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM: %v", err)
	}
	var disconnected *notifyv1.Disconnected
	for disconnected == nil {
		m, err := st.Recv() // bounded by ctx
		if err != nil {
			t.Fatalf("stream ended with %v before Disconnected", err)
		}
		disconnected = m.GetDisconnected()
	}
	if disconnected.Reason != notifyv1.DisconnectReason_DISCONNECT_REASON_SERVER_RESTART {
		t.Errorf("Disconnected reason %v, want SERVER_RESTART", disconnected.Reason)
	}
	select {
	case <-d.done:
	case <-time.After(drain + startTimeout):
		t.Fatalf("notifyd still running %v after SIGTERM", drain+startTimeout)
	}
	took := time.Since(start)
	if d.waitErr != nil {
		t.Errorf("notifyd exit after SIGTERM = %v, want status 0", d.waitErr)
	}
	// The drain bounds the shutdown; allow a little for the process to exit.
	if took > drain+time.Second {
		t.Errorf("notifyd took %v to exit after SIGTERM, want within the drain time %v", took, drain)
	}
	if s := d.out.String(); !strings.Contains(s, "notifyd stopped") {
		t.Errorf("output lacks the stop line:\n%s", s)
	}
}
