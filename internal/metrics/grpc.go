package metrics

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// unknownMethod labels a call to a method InitGRPC did not find.
const unknownMethod = "unknown"

// maxCode is the highest gRPC code; anything above is counted as Unknown.
const maxCode = codes.Unauthenticated

// methodSet holds the full method names InitGRPC found, each with its
// series by code, made on first use; nil until then, when every method
// name is used as is.
type methodSet struct {
	known atomic.Pointer[map[string]*methodSeries]
}

// methodSeries are one method's series, by code.
type methodSeries [maxCode + 1]atomic.Pointer[callSeries]

type callSeries struct {
	requests prometheus.Counter
	duration prometheus.Observer
}

// series returns the series of a call to method that ended with code.
func (m *Metrics) series(method string, code codes.Code) *callSeries {
	known := m.methods.known.Load()
	if known == nil {
		return m.newSeries(method, code)
	}
	ms, ok := (*known)[method]
	if !ok {
		return m.newSeries(unknownMethod, code)
	}
	s := ms[code].Load()
	if s == nil {
		// Racing first calls make the same series: the vectors return
		// one child for one set of labels.
		s = m.newSeries(method, code)
		ms[code].Store(s)
	}
	return s
}

func (m *Metrics) newSeries(method string, code codes.Code) *callSeries {
	c := code.String()
	return &callSeries{requests: m.grpcRequests.WithLabelValues(method, c), duration: m.grpcDuration.WithLabelValues(method, c)}
}

// serviceInfoProvider is what InitGRPC reads: a *grpc.Server.
type serviceInfoProvider interface {
	GetServiceInfo() map[string]grpc.ServiceInfo
}

// InitGRPC records the methods registered on srv: each gets its
// notify_grpc_requests_total{code="OK"} series at zero, so rates exist
// before the first call, and from then on a method srv does not know is
// counted as "unknown". Call it after registering every service. Without
// it, interceptors label calls with their method as is, which stays
// bounded as long as the server has no UnknownServiceHandler (grpc-go only
// runs interceptors for registered methods then).
func (m *Metrics) InitGRPC(srv serviceInfoProvider) {
	known := make(map[string]*methodSeries)
	for svc, info := range srv.GetServiceInfo() {
		for _, mi := range info.Methods {
			method := "/" + svc + "/" + mi.Name
			ms := new(methodSeries)
			ms[codes.OK].Store(m.newSeries(method, codes.OK))
			known[method] = ms
		}
	}
	m.methods.known.Store(&known)
}

// UnaryServerInterceptor counts and times unary calls. Put it first in the
// chain, so calls refused by later interceptors (authentication) count too.
func (m *Metrics) UnaryServerInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		start := time.Now()
		resp, err := handler(ctx, req)
		m.record(info.FullMethod, err, time.Since(start))
		return resp, err
	}
}

// StreamServerInterceptor counts streams in progress, and counts and times
// each stream when it ends. Put it first in the chain.
func (m *Metrics) StreamServerInterceptor() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		start := time.Now()
		m.StreamStarted()
		err := handler(srv, ss)
		m.StreamEnded(info.FullMethod, err, time.Since(start))
		return err
	}
}

func (m *Metrics) record(method string, err error, took time.Duration) {
	code := status.Code(err)
	if code > maxCode {
		code = codes.Unknown
	}
	s := m.series(method, code)
	s.requests.Inc()
	s.duration.Observe(took.Seconds())
}

// OpenConns returns a function that adds delta to
// notify_connections_open{transport}, for limit.OnOpen on a listener.
// transport is a constant: TransportGRPC for the native port, TransportHTTP
// for the HTTP port, where the count includes the connections handlers take
// over (grpc-web streams over HTTP/1.1, websockets) until they close them. (A grpc
// stats.Handler could count connections too, but installing one makes
// gRPC build and report per-message statistics for every message sent, a
// cost paid on each delivery.)
func (m *Metrics) OpenConns(transport string) func(delta int) {
	open := m.connections.WithLabelValues(transport)
	return func(delta int) { open.Add(float64(delta)) }
}

// StreamStarted counts a stream in progress, until StreamEnded.
func (m *Metrics) StreamStarted() { m.streamsOpen.Inc() }

// StreamEnded ends a stream StreamStarted counted, and counts and times it
// by its code, as StreamServerInterceptor does.
func (m *Metrics) StreamEnded(method string, err error, took time.Duration) {
	m.streamsOpen.Dec()
	m.record(method, err, took)
}
