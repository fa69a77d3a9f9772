package wire

import (
	"context"
	"net"
	"runtime"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
)

type ctxKey struct{}

func testCall(md metadata.MD) (context.Context, context.CancelFunc) {
	p := &peer.Peer{Addr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 4242}}
	st := &stream{c: &conn{peer: p}, m: &method{name: "/s.S/M"}}
	parent, cancel := context.WithCancel(context.WithValue(context.Background(), ctxKey{}, "v"))
	st.cctx = callContext{Context: parent, st: st, md: md}
	return &st.cctx, cancel
}

func TestCallContextValues(t *testing.T) {
	ctx, cancel := testCall(metadata.Pairs("a", "1"))
	defer cancel()
	if md, ok := metadata.FromIncomingContext(ctx); !ok || md.Get("a")[0] != "1" {
		t.Errorf("metadata %v %v", md, ok)
	}
	if v := metadata.ValueFromIncomingContext(ctx, "a"); len(v) != 1 || v[0] != "1" {
		t.Errorf("metadata value %v", v)
	}
	if p, ok := peer.FromContext(ctx); !ok || p.Addr.String() != "127.0.0.1:4242" {
		t.Errorf("peer %v %v", p, ok)
	}
	if m, ok := grpc.Method(ctx); !ok || m != "/s.S/M" {
		t.Errorf("method %q %v", m, ok)
	}
	if v := ctx.Value(ctxKey{}); v != "v" {
		t.Errorf("a parent's value: %v", v)
	}
	// A value set on top still finds the call's.
	if p, ok := peer.FromContext(context.WithValue(ctx, ctxKey{}, "w")); !ok || p == nil {
		t.Error("peer lost under a child value")
	}

	none, cancel2 := testCall(nil)
	defer cancel2()
	if md, ok := metadata.FromIncomingContext(none); ok {
		t.Errorf("a call without metadata has %v", md)
	}
}

func TestCallContextCancelsChildrenWithoutGoroutines(t *testing.T) {
	ctx, cancel := testCall(nil)
	before := runtime.NumGoroutine()
	const n = 100
	children := make([]context.Context, n)
	fired := make(chan struct{}, n)
	for i := range children {
		var stop context.CancelFunc
		children[i], stop = context.WithTimeout(ctx, time.Hour)
		defer stop()
		context.AfterFunc(ctx, func() { fired <- struct{}{} })
	}
	if grew := runtime.NumGoroutine() - before; grew >= n {
		t.Errorf("%d children started %d goroutines", n, grew)
	}
	cancel()
	for i, c := range children {
		select {
		case <-c.Done():
		case <-time.After(5 * time.Second):
			t.Fatalf("child %d not cancelled", i)
		}
	}
	for i := 0; i < n; i++ {
		select {
		case <-fired:
		case <-time.After(5 * time.Second):
			t.Fatalf("%d of %d AfterFuncs ran", i, n)
		}
	}
	if ctx.Err() != context.Canceled {
		t.Errorf("Err %v", ctx.Err())
	}
}
