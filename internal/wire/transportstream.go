package wire

// The grpc.ServerTransportStream of a call, and what a handler finds
// on it: Attach, Detach, OnCancel, OnEnd.

import (
	"context"

	"google.golang.org/grpc/metadata"

	"github.com/maxloyalty/notify/internal/stack"
)

// transportStream is the grpc.ServerTransportStream in a call's context
// (grpc.SetHeader, grpc.SetTrailer and grpc.Method use it), and where a
// handler finds Attach. It is the stream itself, seen through other
// methods, so that putting it in the context allocates nothing.
type transportStream stream

func (t *transportStream) s() *stream                      { return (*stream)(t) }
func (t *transportStream) Method() string                  { return t.s().m.name }
func (t *transportStream) SetHeader(md metadata.MD) error  { return t.s().SetHeader(md) }
func (t *transportStream) SendHeader(md metadata.MD) error { return t.s().SendHeader(md) }
func (t *transportStream) SetTrailer(md metadata.MD) error { t.s().SetTrailer(md); return nil }

// SendMsg sends on the stream directly, as the handler's stream would.
func (t *transportStream) SendMsg(m any) error { return t.s().SendMsg(m) }

// SendParts sends one message made of parts already encoded, with no codec.
func (t *transportStream) SendParts(parts [][]byte) error { return t.s().sendParts(parts) }

// Attach hands the stream's sending to its connection's writer goroutine:
// after it, kick makes the writer call pump, at once or as soon as the
// stream's output waiting for flow control is out, and never twice at a
// time. pump's sends never block; a client that stops reading leaves the
// pump uncalled, and whatever feeds it must bound its own queue. The
// handler keeps the stream open until it returns, as always.
func (t *transportStream) Attach(pump func()) (kick func()) {
	st := t.s()
	st.c.mu.Lock()
	st.pumpFn = pump
	st.direct = true
	st.c.mu.Unlock()
	return st.kick
}

// Detach lets the handler's goroutine go while the call goes on, when the
// server allows it (Config.Detach) and the call is a server-streaming
// one: the handler then returns stack.ErrDetached, and the call ends when
// end is called (from any goroutine, once; later calls do nothing), with
// end's error as a handler's return. Until then the call counts as
// running, as its handler would: in the connection's quota and for a
// graceful stop. A handler that returns anything else after Detach ends
// the call with it. Once the handler has returned stack.ErrDetached, the
// call's context no longer carries the request's metadata (stack.Incoming).
func (t *transportStream) Detach() (end func(error), ok bool) {
	st := t.s()
	if !st.c.srv.cfg.Detach || st.m.stream == nil || st.m.stream.ClientStreams || st.det != nil {
		return nil, false
	}
	st.det = stack.NewDetached(st.streamDone)
	return st.det.End, true
}

// OnCancel runs f on a goroutine of its own once the call is interrupted:
// reset by the client, its connection closed, or past its deadline. It
// is context.AfterFunc on the call's context, less the map of children
// that costs the context, except that f does not run for a call that
// ended by its handler's or its detached end. A later call replaces what
// an earlier one registered (on a call with a deadline both run).
func (t *transportStream) OnCancel(f func()) {
	st := t.s()
	c := st.c
	c.mu.Lock()
	switch {
	case st.interrupted:
		go f()
	case hasDeadline(st.ctx):
		context.AfterFunc(st.ctx, f) // the deadline's timer cancels it
	default:
		st.onCancel = f
	}
	c.mu.Unlock()
}

func hasDeadline(ctx context.Context) bool {
	_, ok := ctx.Deadline()
	return ok
}

// OnEnd registers fn to run when a detached call ends, with its end, before
// its trailers are written; the last registered runs first, as deferred
// calls do. An interceptor that sees its handler return
// stack.ErrDetached registers here what it does when the call ends. It
// reports whether the call is detached (fn is not registered otherwise).
func (t *transportStream) OnEnd(fn func(error)) bool {
	return t.s().det.OnEnd(fn)
}
