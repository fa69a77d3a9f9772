package stack

import (
	"context"
	"sync/atomic"

	"google.golang.org/grpc/metadata"
)

// Incoming is a call's context below the request's metadata, for a call
// that may detach. The metadata is a map and the header values, the token
// among them: most of what an idle stream's request would keep. A
// detached call's handler has returned and its interceptors have read what
// they needed (the token, at the call's start), so once the handler
// returns ErrDetached the transport calls Drop and the context answers as
// if it had no metadata.
//
// The metadata is held in a context made by metadata.NewIncomingContext,
// whose key is grpc's own, and asked first.
type Incoming struct {
	context.Context // the call's context below the metadata
	md              atomic.Pointer[mdContext]
}

// mdContext holds the context made by metadata.NewIncomingContext.
type mdContext struct{ ctx context.Context }

// NewIncoming returns parent with md as its incoming metadata.
func NewIncoming(parent context.Context, md metadata.MD) *Incoming {
	in := &Incoming{Context: parent}
	in.md.Store(&mdContext{ctx: metadata.NewIncomingContext(context.Background(), md)})
	return in
}

// Value is the metadata's value for grpc's key, until Drop, and parent's
// value for any other.
func (in *Incoming) Value(key any) any {
	if m := in.md.Load(); m != nil {
		if v := m.ctx.Value(key); v != nil {
			return v
		}
	}
	return in.Context.Value(key)
}

// Drop lets the metadata go; on nil it does nothing.
func (in *Incoming) Drop() {
	if in != nil {
		in.md.Store(nil)
	}
}
