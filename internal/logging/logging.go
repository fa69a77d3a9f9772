package logging

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/maxloyalty/notify/internal/auth"
	"github.com/maxloyalty/notify/internal/stack"
)

// caller is filled in by the Tag interceptors, which run after
// authentication, for the log line written before it.
type caller struct {
	user, role string
}

type callerKey struct{}

// UnaryServerInterceptor logs each unary call. Chain it before the auth
// interceptor, and UnaryTag after it.
func UnaryServerInterceptor(log *slog.Logger) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		start := time.Now()
		who := &caller{}
		resp, err := handler(context.WithValue(ctx, callerKey{}, who), req)
		logCall(ctx, log, who, info.FullMethod, err, time.Since(start))
		return resp, err
	}
}

// StreamServerInterceptor logs each stream when it ends. Chain it before
// the auth interceptor, and StreamTag after it.
func StreamServerInterceptor(log *slog.Logger) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		start := time.Now()
		who := &caller{}
		err := handler(srv, &stream{ServerStream: ss, ctx: context.WithValue(ss.Context(), callerKey{}, who)})
		logCall(ss.Context(), log, who, info.FullMethod, err, time.Since(start))
		return err
	}
}

type stream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *stream) Context() context.Context { return s.ctx }

// UnaryTag records the authenticated caller for the log line.
func UnaryTag() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		tag(ctx)
		return handler(ctx, req)
	}
}

// StreamTag records the authenticated caller for the log line.
func StreamTag() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		tag(ss.Context())
		return handler(srv, ss)
	}
}

func tag(ctx context.Context) {
	who, _ := ctx.Value(callerKey{}).(*caller)
	c, ok := auth.FromContext(ctx)
	if who != nil && ok {
		who.user, who.role = c.Subject, auth.RoleName(c.Role)
	}
}

func logCall(ctx context.Context, log *slog.Logger, who *caller, method string, err error, took time.Duration) {
	code := status.Code(err)
	level := slog.LevelInfo
	switch code {
	case codes.Internal, codes.Unknown, codes.DataLoss:
		level = slog.LevelError
	case codes.Unavailable, codes.ResourceExhausted, codes.DeadlineExceeded:
		level = slog.LevelWarn
	}
	if !log.Enabled(ctx, level) {
		return
	}
	attrs := []slog.Attr{
		slog.String("method", method),
		slog.String("code", code.String()),
		slog.Duration("took", took),
	}
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		attrs = append(attrs, slog.String("peer", p.Addr.String()))
	}
	if who.user != "" {
		// The subject only: a token never reaches the log.
		attrs = append(attrs, slog.String("user", who.user), slog.String("role", who.role))
	}
	if err != nil && code != codes.OK {
		// Status messages are written by this server and quote caller
		// input with %q; strip line breaks anyway so one call is one line.
		attrs = append(attrs, slog.String("error", oneLine(status.Convert(err).Message())))
	}
	log.LogAttrs(ctx, level, "rpc", attrs...)
}

func oneLine(s string) string {
	s = strings.NewReplacer("\n", `\n`, "\r", `\r`).Replace(s)
	if len(s) > 512 {
		s = s[:512] + "..."
	}
	return s
}

// UnaryRecovery turns a panic in a unary handler into Internal.
func UnaryRecovery(log *slog.Logger) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
		defer func() {
			if r := recover(); r != nil {
				err = recovered(ctx, log, info.FullMethod, r)
			}
		}()
		return handler(ctx, req)
	}
}

// StreamRecovery turns a panic in a stream handler into Internal.
func StreamRecovery(log *slog.Logger) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) (err error) {
		defer func() {
			if r := recover(); r != nil {
				err = recovered(ss.Context(), log, info.FullMethod, r)
			}
		}()
		return handler(srv, ss)
	}
}

func recovered(ctx context.Context, log *slog.Logger, method string, r any) error {
	log.ErrorContext(ctx, "panic in handler", "method", method, "panic", oneLine(fmt.Sprint(r)), "stack", string(debug.Stack()))
	return status.Error(codes.Internal, "internal error")
}

// Recorder counts and times the streams StreamInterceptor sees: a
// *metrics.Metrics.
type Recorder interface {
	StreamStarted()
	StreamEnded(method string, err error, took time.Duration)
}

// StreamInterceptor is the node's stream interceptors in one: metrics
// (rec), the log line, authentication (auth), the caller's tag and panic
// recovery, in the order the separate interceptors run when chained
// (metrics, StreamServerInterceptor, auth, StreamTag, StreamRecovery), with
// the same counts, log lines and codes. A live stream's goroutine stays
// parked under every interceptor's frame for the stream's life: one small
// frame instead of five (and their chain's closures) lets its stack keep
// the smallest size.
//
// auth must only authenticate: refuse the call, or call its handler at
// once with the stream to use (internal/auth's interceptor adds the caller's
// claims to the stream's context). It runs aside, on a short-lived
// goroutine (token verification and its cache run deep), and the handler
// then runs on the call's own goroutine with the stream auth passed on.
func StreamInterceptor(log *slog.Logger, rec Recorder, auth grpc.StreamServerInterceptor) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		c := startCall(log, rec, info.FullMethod, handler)
		authed, err := c.authenticate(srv, ss, info, auth)
		if authed != nil {
			err = c.serve(srv, authed)
		}
		if errors.Is(err, stack.ErrDetached) && c.detached(ss) {
			return err
		}
		c.end(ss, err)
		return err
	}
}

// endNotifier is a transport stream whose handler may let its goroutine go
// before the call ends (internal/wire's Detach): OnEnd runs fn at the
// call's end.
type endNotifier interface {
	OnEnd(fn func(error)) bool
}

// detached registers the call's end with the transport when its handler
// let its goroutine go: the count and the log line come when the call
// ends, not when the handler returned.
//
//go:noinline
func (c *call) detached(ss grpc.ServerStream) bool {
	n, ok := grpc.ServerTransportStreamFromContext(ss.Context()).(endNotifier)
	return ok && n.OnEnd(func(err error) { c.end(ss, err) })
}

// call is one stream seen by StreamInterceptor. What it does before and
// after the handler is in functions of their own, so that the
// interceptor's frame, under the handler for the stream's life, is small.
type call struct {
	log     *slog.Logger
	rec     Recorder
	method  string
	handler grpc.StreamHandler
	start   time.Time
	who     caller
}

//go:noinline
func startCall(log *slog.Logger, rec Recorder, method string, handler grpc.StreamHandler) *call {
	rec.StreamStarted()
	return &call{log: log, rec: rec, method: method, handler: handler, start: time.Now()}
}

// authenticate runs auth aside and returns the stream it passed on, or its
// refusal.
//
//go:noinline
func (c *call) authenticate(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, auth grpc.StreamServerInterceptor) (authed grpc.ServerStream, err error) {
	stack.Aside(func() {
		err = auth(srv, ss, info, func(_ any, s grpc.ServerStream) error {
			authed = s
			return nil
		})
	})
	switch {
	case err != nil:
		return nil, err
	case authed == nil:
		return nil, status.Error(codes.Internal, "internal error: authentication passed no stream on")
	}
	return authed, nil
}

// serve runs the handler once authenticated: it tags the caller for the log
// line and turns a panic into Internal.
func (c *call) serve(srv any, ss grpc.ServerStream) (err error) {
	defer c.recover(ss, &err)
	c.tag(ss)
	return c.handler(srv, ss)
}

//go:noinline
func (c *call) tag(ss grpc.ServerStream) {
	if cl, ok := auth.FromContext(ss.Context()); ok {
		c.who = caller{user: cl.Subject, role: auth.RoleName(cl.Role)}
	}
}

// recover is deferred by serve: a panic of the handler becomes Internal.
func (c *call) recover(ss grpc.ServerStream, err *error) {
	if r := recover(); r != nil {
		*err = recovered(ss.Context(), c.log, c.method, r)
	}
}

//go:noinline
func (c *call) end(ss grpc.ServerStream, err error) {
	took := time.Since(c.start)
	c.rec.StreamEnded(c.method, err, took)
	logCall(ss.Context(), c.log, &c.who, c.method, err, took)
}
