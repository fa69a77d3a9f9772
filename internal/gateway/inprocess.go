package gateway

import (
	"context"
	"fmt"
	"reflect"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/maxloyalty/notify/internal/intercept"
)

// InProcess is the channel the REST gateway calls the services through. A
// unary call to a service registered with it (RegisterService, as on a
// grpc.Server) runs in the calling goroutine: the request is checked
// against the same size bound as the gRPC server's and copied, the call
// goes through the same unary interceptors as native gRPC calls
// (authentication, metrics, logging, recovery: the same codes, the same
// counts and log lines), and the response is copied back. There is no
// HTTP/2 encoding, decoding or second transport. Everything else (streams,
// and methods not registered here) goes through conn, a real client
// connection to the gRPC server.
//
// InProcess implements grpc.ClientConnInterface and grpc.ServiceRegistrar.
// Register every service before the first call; it is then safe for
// concurrent use.
type InProcess struct {
	conn        grpc.ClientConnInterface
	maxRecv     int
	interceptor grpc.UnaryServerInterceptor
	methods     map[string]localMethod
	streams     map[string]*streamMethod // server-streaming methods, for grpc-web
	web         *webStreams              // set by ServeStreams
}

// localMethod is one unary method of a registered service.
type localMethod struct {
	impl    any
	handler grpc.MethodHandler
}

// NewInProcess returns a channel running unary calls through interceptors
// (chained in order, as grpc.ChainUnaryInterceptor does) and refusing
// requests above maxRecv bytes (the gRPC server's MaxRecvMsgSize) with
// the error the gRPC server gives; streams go through conn.
func NewInProcess(conn grpc.ClientConnInterface, maxRecv int, interceptors ...grpc.UnaryServerInterceptor) *InProcess {
	return &InProcess{
		conn:        conn,
		maxRecv:     maxRecv,
		interceptor: intercept.Unary(interceptors),
		methods:     make(map[string]localMethod),
		streams:     make(map[string]*streamMethod),
	}
}

// RegisterService makes the unary methods of desc, implemented by impl,
// run in process, and its server-streaming methods too for grpc-web once
// ServeStreams is called. It panics if impl does not implement desc's handler type,
// as grpc.Server does.
func (c *InProcess) RegisterService(desc *grpc.ServiceDesc, impl any) {
	if desc.HandlerType != nil {
		ht := reflect.TypeOf(desc.HandlerType).Elem()
		if !reflect.TypeOf(impl).Implements(ht) {
			panic(fmt.Sprintf("gateway: %T does not implement %v", impl, ht))
		}
	}
	for _, m := range desc.Methods {
		c.methods["/"+desc.ServiceName+"/"+m.MethodName] = localMethod{impl: impl, handler: m.Handler}
	}
	for _, m := range desc.Streams {
		if m.ServerStreams && !m.ClientStreams {
			name := "/" + desc.ServiceName + "/" + m.StreamName
			c.streams[name] = &streamMethod{
				name: name, impl: impl, handler: m.Handler,
				info: &grpc.StreamServerInfo{FullMethod: name, IsServerStream: true},
			}
		}
	}
}

// Invoke runs a unary call: in process when its method is registered,
// otherwise over conn.
func (c *InProcess) Invoke(ctx context.Context, method string, args, reply any, opts ...grpc.CallOption) error {
	m, ok := c.methods[method]
	if !ok {
		return c.conn.Invoke(ctx, method, args, reply, opts...)
	}
	if err := ctx.Err(); err != nil {
		// A gRPC client does not start a call whose context is done.
		return status.FromContextError(err).Err()
	}
	in, ok1 := args.(proto.Message)
	out, ok2 := reply.(proto.Message)
	if !ok1 || !ok2 {
		return status.Errorf(codes.Internal, "gateway: %s: messages are not protobuf", method)
	}
	// What the caller put in the outgoing metadata is what a server would
	// receive.
	md, _ := metadata.FromOutgoingContext(ctx)
	ctx = metadata.NewIncomingContext(ctx, md)
	st := &transportStream{method: method}
	ctx = grpc.NewContextWithServerTransportStream(ctx, st)

	dec := func(req any) error {
		if n := proto.Size(in); n > c.maxRecv {
			return status.Errorf(codes.ResourceExhausted, "grpc: received message larger than max (%d vs. %d)", n, c.maxRecv)
		}
		proto.Merge(req.(proto.Message), in)
		return nil
	}
	resp, err := m.handler(m.impl, ctx, dec, c.interceptor)
	header, trailer := st.sent()
	for _, o := range opts {
		switch o := o.(type) {
		case grpc.HeaderCallOption:
			*o.HeaderAddr = header
		case grpc.TrailerCallOption:
			*o.TrailerAddr = trailer
		}
	}
	if err != nil {
		if cerr := ctx.Err(); cerr != nil {
			// A gRPC client whose context ends first reports that.
			return status.FromContextError(cerr).Err()
		}
		if _, ok := status.FromError(err); !ok {
			// As the gRPC server reports a handler's plain error.
			err = status.FromContextError(err).Err()
		}
		return err
	}
	r, ok := resp.(proto.Message)
	if !ok {
		return status.Errorf(codes.Internal, "gateway: %s: response is not protobuf", method)
	}
	proto.Merge(out, r)
	return nil
}

// NewStream opens a stream over conn.
func (c *InProcess) NewStream(ctx context.Context, desc *grpc.StreamDesc, method string, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	return c.conn.NewStream(ctx, desc, method, opts...)
}

// transportStream is the grpc.ServerTransportStream of an in-process call:
// it keeps what the handler sets with grpc.SetHeader and grpc.SetTrailer.
type transportStream struct {
	method string

	mu      sync.Mutex
	header  metadata.MD
	trailer metadata.MD
}

func (s *transportStream) Method() string { return s.method }

func (s *transportStream) SetHeader(md metadata.MD) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.header = metadata.Join(s.header, md)
	return nil
}

func (s *transportStream) SendHeader(md metadata.MD) error { return s.SetHeader(md) }

func (s *transportStream) SetTrailer(md metadata.MD) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.trailer = metadata.Join(s.trailer, md)
	return nil
}

func (s *transportStream) sent() (header, trailer metadata.MD) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.header, s.trailer
}
