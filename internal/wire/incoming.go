package wire

import (
	"context"
	"sync/atomic"

	"google.golang.org/grpc/metadata"
)

// incoming is the context that carries a call's request metadata. The
// metadata is a map and the header values, the token among them: most of
// what an idle stream's request would keep. A detached call's handler has
// returned and its interceptors have read what they needed (the token, at
// the call's start), so once the handler returns stack.ErrDetached the
// context lets the metadata go (drop) and answers as if it had none.
//
// The metadata is held in a context made by metadata.NewIncomingContext,
// whose key is grpc's own, and asked first.
type incoming struct {
	context.Context // the call's context below the metadata
	md              atomic.Pointer[mdContext]
}

// mdContext holds the context made by metadata.NewIncomingContext.
type mdContext struct{ ctx context.Context }

func newIncoming(parent context.Context, md metadata.MD) *incoming {
	in := &incoming{Context: parent}
	in.md.Store(&mdContext{ctx: metadata.NewIncomingContext(context.Background(), md)})
	return in
}

func (in *incoming) Value(key any) any {
	if m := in.md.Load(); m != nil {
		if v := m.ctx.Value(key); v != nil {
			return v
		}
	}
	return in.Context.Value(key)
}

// drop lets the metadata go; nil does nothing.
func (in *incoming) drop() {
	if in != nil {
		in.md.Store(nil)
	}
}
