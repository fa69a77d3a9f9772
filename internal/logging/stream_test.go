package logging

import (
	"context"
	"errors"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	notifyv1 "github.com/maxloyalty/notify/gen/notify/v1"
	"github.com/maxloyalty/notify/internal/auth"
	"github.com/maxloyalty/notify/internal/intercept"
	"github.com/maxloyalty/notify/internal/stack"
)

// fakeStream is a server stream with a context and nothing else.
type fakeStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *fakeStream) Context() context.Context { return s.ctx }

// recorder is a Recorder that keeps what it was told.
type recorder struct {
	mu    sync.Mutex
	open  int
	ended []string // method and code
}

func (r *recorder) StreamStarted() { r.mu.Lock(); r.open++; r.mu.Unlock() }
func (r *recorder) StreamEnded(method string, err error, _ time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.open--
	r.ended = append(r.ended, method+" "+status.Code(err).String())
}

// chainRecorder is the metrics interceptor's part of the chain the merged
// interceptor replaces, over a recorder.
func chainRecorder(r Recorder) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		start := time.Now()
		r.StreamStarted()
		err := handler(srv, ss)
		r.StreamEnded(info.FullMethod, err, time.Since(start))
		return err
	}
}

// logFields returns the log output without its time and took fields.
func logFields(out string) string {
	var lines []string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var keep []string
		for _, f := range strings.Fields(line) {
			if strings.HasPrefix(f, "time=") || strings.HasPrefix(f, "took=") {
				continue
			}
			keep = append(keep, f)
		}
		lines = append(lines, strings.Join(keep, " "))
	}
	return strings.Join(lines, "\n")
}

// TestStreamInterceptorAsChain: the merged interceptor gives the calls the
// codes, log lines and metrics of the five interceptors chained.
func TestStreamInterceptorAsChain(t *testing.T) {
	secret := []byte("logging-test-secret-0123456789abcdef")
	v, err := auth.NewVerifier(auth.Config{HMACSecret: secret})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := auth.NewSigner(secret).Mint(auth.Claims{Subject: "g1", Role: notifyv1.Role_ROLE_GUEST}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	skip := func(m string) bool { return strings.HasPrefix(m, "/grpc.health.v1.") }
	cases := []struct {
		name    string
		method  string
		token   string
		handler grpc.StreamHandler
	}{
		{name: "ok", method: "/notify.v1.NotificationService/Subscribe", token: tok,
			handler: func(any, grpc.ServerStream) error { return nil }},
		{name: "handler error", method: "/notify.v1.NotificationService/Subscribe", token: tok,
			handler: func(any, grpc.ServerStream) error { return status.Error(codes.ResourceExhausted, "slow\nconsumer") }},
		{name: "no token", method: "/notify.v1.NotificationService/Subscribe",
			handler: func(any, grpc.ServerStream) error { t.Error("handler ran without a token"); return nil }},
		{name: "bad token", method: "/notify.v1.NotificationService/Subscribe", token: tok + "x",
			handler: func(any, grpc.ServerStream) error { t.Error("handler ran with a bad token"); return nil }},
		{name: "skipped", method: "/grpc.health.v1.Health/Watch",
			handler: func(any, grpc.ServerStream) error { return nil }},
		{name: "panic", method: "/notify.v1.NotificationService/Subscribe", token: tok,
			handler: func(any, grpc.ServerStream) error { panic("handler bug") }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			run := func(ic grpc.StreamServerInterceptor) error {
				ctx := context.Background()
				if c.token != "" {
					ctx = metadata.NewIncomingContext(ctx, metadata.Pairs("authorization", "Bearer "+c.token))
				}
				return ic(nil, &fakeStream{ctx: ctx}, &grpc.StreamServerInfo{FullMethod: c.method, IsServerStream: true}, c.handler)
			}
			var mergedOut, chainOut syncBuffer
			mergedRec, chainRec := &recorder{}, &recorder{}
			mergedLog := slog.New(slog.NewTextHandler(&mergedOut, nil))
			chainLog := slog.New(slog.NewTextHandler(&chainOut, nil))
			merged := StreamInterceptor(mergedLog, mergedRec, v.StreamInterceptor(skip))
			chain := intercept.Stream([]grpc.StreamServerInterceptor{
				chainRecorder(chainRec), StreamServerInterceptor(chainLog), v.StreamInterceptor(skip), StreamTag(), StreamRecovery(chainLog),
			})
			mergedErr := run(merged)
			chainErr := run(chain)
			if status.Code(mergedErr) != status.Code(chainErr) || status.Convert(mergedErr).Message() != status.Convert(chainErr).Message() {
				t.Errorf("merged: %v, chained: %v", mergedErr, chainErr)
			}
			// The panic's log line holds a stack trace, which differs.
			m, ch := logFields(mergedOut.String()), logFields(chainOut.String())
			if c.name == "panic" {
				m, ch = m[:strings.Index(m, "stack=")], ch[:strings.Index(ch, "stack=")]
			}
			if m != ch {
				t.Errorf("merged logged\n%s\nchained logged\n%s", m, ch)
			}
			if mergedRec.open != 0 || strings.Join(mergedRec.ended, ",") != strings.Join(chainRec.ended, ",") {
				t.Errorf("merged recorded %v (open %d), chained %v (open %d)", mergedRec.ended, mergedRec.open, chainRec.ended, chainRec.open)
			}
		})
	}
}

// TestStreamInterceptorHandlerUnderIt: the handler runs on the call's own
// goroutine, under the interceptor's frame (a stream interceptor sees the
// stream end when its handler returns), with the stream auth passed on;
// only authentication runs aside.
func TestStreamInterceptorHandlerUnderIt(t *testing.T) {
	type key struct{}
	var authGoroutine, handlerStack string
	authIc := func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		authGoroutine = stackOf()
		return handler(srv, &fakeStream{ctx: context.WithValue(ss.Context(), key{}, "authed")})
	}
	var got any
	handler := func(_ any, ss grpc.ServerStream) error {
		handlerStack = stackOf()
		got = ss.Context().Value(key{})
		return nil
	}
	ic := StreamInterceptor(slog.New(slog.DiscardHandler), &recorder{}, authIc)
	if err := ic(nil, &fakeStream{ctx: context.Background()}, &grpc.StreamServerInfo{FullMethod: "/s/m"}, handler); err != nil {
		t.Fatal(err)
	}
	if got != "authed" {
		t.Errorf("handler's stream context has %v, want the stream auth passed on", got)
	}
	if !strings.Contains(handlerStack, "logging.(*call).serve") || !strings.Contains(handlerStack, "created by testing.(*T).Run") {
		t.Errorf("handler did not run under the interceptor on the call's goroutine:\n%s", handlerStack)
	}
	if !strings.Contains(authGoroutine, "created by github.com/maxloyalty/notify/internal/stack.Aside") {
		t.Errorf("authentication ran on the call's goroutine:\n%s", authGoroutine)
	}
}

// TestStreamInterceptorAuthPassesNothing: an authentication that neither
// refuses nor passes a stream on ends the call with Internal, counted and
// logged.
func TestStreamInterceptorAuthPassesNothing(t *testing.T) {
	var out syncBuffer
	rec := &recorder{}
	authIc := func(any, grpc.ServerStream, *grpc.StreamServerInfo, grpc.StreamHandler) error { return nil }
	ic := StreamInterceptor(slog.New(slog.NewTextHandler(&out, nil)), rec, authIc)
	err := ic(nil, &fakeStream{ctx: context.Background()}, &grpc.StreamServerInfo{FullMethod: "/s/m"},
		func(any, grpc.ServerStream) error { return errors.New("handler ran") })
	if status.Code(err) != codes.Internal {
		t.Errorf("got %v, want Internal", err)
	}
	if rec.open != 0 || len(rec.ended) != 1 || rec.ended[0] != "/s/m Internal" {
		t.Errorf("recorded %v (open %d), want one Internal", rec.ended, rec.open)
	}
	if !strings.Contains(out.String(), "code=Internal") {
		t.Errorf("log: %q, want the call's line with code=Internal", out.String())
	}
}

func stackOf() string {
	b := make([]byte, 16<<10)
	return string(b[:runtime.Stack(b, false)])
}

// detachingStream is a transport stream whose call is detached: what the
// interceptor registers with OnEnd runs when the test ends the call.
type detachingStream struct {
	grpc.ServerTransportStream
	d *stack.Detached
}

func (s *detachingStream) OnEnd(fn func(error)) bool { return s.d.OnEnd(fn) }

// TestStreamInterceptorDetached: a handler that returns stack.ErrDetached
// is counted and logged when its call ends, with the call's end, not when
// it returned.
func TestStreamInterceptorDetached(t *testing.T) {
	var out syncBuffer
	rec := &recorder{}
	authIc := func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		return h(srv, ss)
	}
	ic := StreamInterceptor(slog.New(slog.NewTextHandler(&out, nil)), rec, authIc)
	var closed error
	ts := &detachingStream{d: stack.NewDetached(func(err error) { closed = err })}
	ctx := grpc.NewContextWithServerTransportStream(context.Background(), ts)
	err := ic(nil, &fakeStream{ctx: ctx}, &grpc.StreamServerInfo{FullMethod: "/s/m"},
		func(any, grpc.ServerStream) error { return stack.ErrDetached })
	if !errors.Is(err, stack.ErrDetached) {
		t.Fatalf("interceptor returned %v, want stack.ErrDetached", err)
	}
	ts.d.Returned(err)
	if rec.open != 1 || len(rec.ended) != 0 || out.String() != "" {
		t.Fatalf("a detached call was counted or logged as ended: %v (open %d), log %q", rec.ended, rec.open, out.String())
	}
	ts.d.End(status.Error(codes.Unavailable, "server shutting down"))
	if rec.open != 0 || len(rec.ended) != 1 || rec.ended[0] != "/s/m Unavailable" || status.Code(closed) != codes.Unavailable {
		t.Errorf("at its end: recorded %v (open %d), transport ended with %v", rec.ended, rec.open, closed)
	}
	if !strings.Contains(out.String(), "code=Unavailable") {
		t.Errorf("log: %q, want the call's line with code=Unavailable", out.String())
	}
}
