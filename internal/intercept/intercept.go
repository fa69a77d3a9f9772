// Package intercept chains grpc-go server interceptors into one, as
// grpc.ChainUnaryInterceptor and grpc.ChainStreamInterceptor do for a
// grpc.Server, for the servers that are not one: the wire transport and
// the REST gateway's in-process calls. It has no state; the chained
// interceptors run on the caller's goroutine.
package intercept

import (
	"context"

	"google.golang.org/grpc"
)

// Unary chains interceptors into one, the first outermost, as
// grpc.ChainUnaryInterceptor does; nil for none.
func Unary(is []grpc.UnaryServerInterceptor) grpc.UnaryServerInterceptor {
	switch len(is) {
	case 0:
		return nil
	case 1:
		return is[0]
	}
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		return is[0](ctx, req, info, unaryAt(is, 1, info, handler))
	}
}

func unaryAt(is []grpc.UnaryServerInterceptor, i int, info *grpc.UnaryServerInfo, final grpc.UnaryHandler) grpc.UnaryHandler {
	if i == len(is) {
		return final
	}
	return func(ctx context.Context, req any) (any, error) {
		return is[i](ctx, req, info, unaryAt(is, i+1, info, final))
	}
}

// Stream chains interceptors into one, the first outermost, as
// grpc.ChainStreamInterceptor does; nil for none.
func Stream(is []grpc.StreamServerInterceptor) grpc.StreamServerInterceptor {
	switch len(is) {
	case 0:
		return nil
	case 1:
		return is[0]
	}
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		return is[0](srv, ss, info, streamAt(is, 1, info, handler))
	}
}

func streamAt(is []grpc.StreamServerInterceptor, i int, info *grpc.StreamServerInfo, final grpc.StreamHandler) grpc.StreamHandler {
	if i == len(is) {
		return final
	}
	return func(srv any, ss grpc.ServerStream) error {
		return is[i](srv, ss, info, streamAt(is, i+1, info, final))
	}
}
