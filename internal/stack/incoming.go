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
// returns ErrDetached the transport calls DropIncoming and the context
// answers as if it had no metadata.
//
// The metadata is held in a context made by metadata.NewIncomingContext,
// whose key is grpc's own, and asked first.
type Incoming struct {
	context.Context // the call's context below the metadata
	md              atomic.Pointer[mdContext]
}

// mdContext holds the context made by metadata.NewIncomingContext.
type mdContext struct{ ctx context.Context }

// incomingKey finds the Incoming in a context: a transport keeps no field
// for it (a stream's struct would move to a larger size class).
type incomingKey struct{}

// NewIncoming returns parent with md as its incoming metadata.
func NewIncoming(parent context.Context, md metadata.MD) *Incoming {
	in := &Incoming{Context: parent}
	in.md.Store(&mdContext{ctx: metadata.NewIncomingContext(context.Background(), md)})
	return in
}

// Value is the metadata's value for grpc's key, until DropIncoming, and
// parent's value for any other.
func (in *Incoming) Value(key any) any {
	if key == (incomingKey{}) {
		return in
	}
	if m := in.md.Load(); m != nil {
		if v := m.ctx.Value(key); v != nil {
			return v
		}
	}
	return in.Context.Value(key)
}

// DropIncoming lets the metadata of the Incoming in ctx go; it does
// nothing when ctx has none.
func DropIncoming(ctx context.Context) {
	if in, ok := ctx.Value(incomingKey{}).(*Incoming); ok {
		in.md.Store(nil)
	}
}
