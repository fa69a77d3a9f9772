package wire

import (
	"context"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
)

// callContext is a call's context: the call's cancel context (the
// connection's, with the call's deadline) that also answers the three
// values every grpc-go handler may look up, the incoming metadata, the
// peer and the grpc.ServerTransportStream, from the stream. grpc-go sets
// them with three context.WithValue a call; here they cost nothing, and
// the lookups of other values (claims, a logger's fields) walk a shorter
// chain. It lives in its stream, so it is not allocated either.
//
// Cancellation is the embedded context's: context.WithCancel and
// context.AfterFunc of a callContext find the cancel context through
// Value, as for any context.WithValue, and start no goroutine.
type callContext struct {
	context.Context
	st *stream
	md metadata.MD
}

func (c *callContext) Value(key any) any {
	switch key {
	case mdKey:
		if c.md != nil {
			return c.md
		}
	case peerKey:
		return c.st.c.peer
	case streamKey:
		return transportStream{c.st}
	}
	return c.Context.Value(key)
}

// The context keys of grpc-go's metadata, peer and grpc packages are
// unexported; each is learnt once by watching the package's own lookup.
var (
	mdKey     = probeKey(func(ctx context.Context) { metadata.FromIncomingContext(ctx) })
	peerKey   = probeKey(func(ctx context.Context) { peer.FromContext(ctx) })
	streamKey = probeKey(func(ctx context.Context) { grpc.ServerTransportStreamFromContext(ctx) })
)

// keyProbe records the key of the first value looked up in it.
type keyProbe struct {
	context.Context
	key any
}

func (p *keyProbe) Value(key any) any {
	if p.key == nil {
		p.key = key
	}
	return nil
}

func probeKey(lookup func(context.Context)) any {
	p := &keyProbe{Context: context.Background()}
	lookup(p)
	if p.key == nil {
		panic("wire: a grpc-go context key cannot be found")
	}
	return p.key
}
