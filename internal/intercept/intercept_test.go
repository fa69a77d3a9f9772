package intercept_test

import (
	"context"
	"slices"
	"testing"

	"google.golang.org/grpc"

	"github.com/maxloyalty/notify/internal/intercept"
)

// TestOrder: the first interceptor is outermost, each sees the next, and
// the handler runs last, for unary and stream chains of every length.
func TestOrder(t *testing.T) {
	for n := 0; n <= 3; n++ {
		var got []string
		var us []grpc.UnaryServerInterceptor
		var ss []grpc.StreamServerInterceptor
		for i := range n {
			name := string(rune('a' + i))
			us = append(us, func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
				got = append(got, name)
				return h(ctx, req)
			})
			ss = append(ss, func(srv any, s grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
				got = append(got, name)
				return h(srv, s)
			})
		}
		want := append([]string{"a", "b", "c"}[:n], "handler")

		u := intercept.Unary(us)
		if (u == nil) != (n == 0) {
			t.Fatalf("%d interceptors: Unary returned nil: %v", n, u == nil)
		}
		got = nil
		handler := func(ctx context.Context, req any) (any, error) { got = append(got, "handler"); return req, nil }
		if u == nil {
			_, _ = handler(context.Background(), 1)
		} else if resp, err := u(context.Background(), 1, &grpc.UnaryServerInfo{}, handler); resp != 1 || err != nil {
			t.Errorf("unary chain returned %v, %v", resp, err)
		}
		if !slices.Equal(got, want) {
			t.Errorf("unary, %d interceptors: ran %v, want %v", n, got, want)
		}

		s := intercept.Stream(ss)
		if (s == nil) != (n == 0) {
			t.Fatalf("%d interceptors: Stream returned nil: %v", n, s == nil)
		}
		got = nil
		sh := func(srv any, st grpc.ServerStream) error { got = append(got, "handler"); return nil }
		if s == nil {
			_ = sh(nil, nil)
		} else if err := s(nil, nil, &grpc.StreamServerInfo{}, sh); err != nil {
			t.Errorf("stream chain returned %v", err)
		}
		if !slices.Equal(got, want) {
			t.Errorf("stream, %d interceptors: ran %v, want %v", n, got, want)
		}
	}
}
