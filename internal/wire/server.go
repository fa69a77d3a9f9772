package wire

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"reflect"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/stats"

	"github.com/maxloyalty/notify/internal/intercept"
	"github.com/maxloyalty/notify/internal/poll"
	"github.com/maxloyalty/notify/internal/sched"
)

// Config configures a Server. Zero fields take the defaults documented.
type Config struct {
	// Codec encodes and decodes messages. Required.
	Codec encoding.CodecV2
	// UnaryInterceptors wrap every unary call, the first outermost.
	UnaryInterceptors []grpc.UnaryServerInterceptor
	// StreamInterceptors wrap every streaming call, the first outermost.
	StreamInterceptors []grpc.StreamServerInterceptor
	// MaxRecvMsgSize bounds a received message. Default 4 MiB.
	MaxRecvMsgSize int
	// MaxConcurrentStreams bounds the calls open on one connection,
	// counted until their handlers return, and is advertised in SETTINGS;
	// more are refused (REFUSED_STREAM). Default 1000.
	MaxConcurrentStreams int
	// InitialWindowSize is the receive window of each stream, advertised
	// in SETTINGS. Default 64 KiB.
	InitialWindowSize int32
	// InitialConnWindowSize is the receive window of a connection.
	// Default 1 MiB.
	InitialConnWindowSize int32
	// MaxHeaderListSize bounds a request's header list (as HTTP/2 counts:
	// name, value and 32 per field), advertised in SETTINGS. Default 1 MiB.
	MaxHeaderListSize uint32
	// MaxConnectionIdle closes a connection that has had no call for this
	// long, with GOAWAY. Default 0: never.
	MaxConnectionIdle time.Duration
	// MaxConnectionAge sends GOAWAY to a connection this long (with up to
	// 10% of random jitter) after it opened, so that clients reconnect and
	// load balancers see them. Default 0: never.
	MaxConnectionAge time.Duration
	// MaxConnectionAgeGrace is how long the calls of an aged connection may
	// go on after its GOAWAY before it is closed. Default 0: until they end.
	MaxConnectionAgeGrace time.Duration
	// Detach lets streaming handlers end their goroutine while their call
	// goes on (the transport stream's Detach). Only for interceptor chains
	// that know of stack.ErrDetached (they register their end with OnEnd):
	// any other interceptor would take the handler's return for the call's
	// end. Default false.
	Detach bool
	// WebOrigin, when set, serves grpc-web calls (binary,
	// application/grpc-web+proto) beside gRPC ones, and answers their CORS
	// preflights: a browser's response is readable by a page whose origin
	// WebOrigin grants, given the request's :authority. Default nil:
	// grpc-web is refused as another content-type is (415).
	WebOrigin func(origin, authority string) bool
	// StatsHandlers see every connection and call, as grpc.StatsHandler
	// options do on grpc-go's server (otelgrpc.NewServerHandler).
	StatsHandlers []stats.Handler
	// KeepaliveTime is how long a connection may stay silent before the
	// server pings it. Default 2 hours.
	KeepaliveTime time.Duration
	// KeepaliveTimeout is how long the server waits for any frame after
	// such a ping before it closes the connection. Default 20 seconds.
	KeepaliveTimeout time.Duration
	// MinPingInterval is the shortest interval between a client's pings
	// that the server tolerates; after three pings sooner than that (with
	// no data sent in between) it sends GOAWAY "too_many_pings" and closes
	// the connection. Default 5 minutes.
	MinPingInterval time.Duration
	// HandshakeTimeout bounds the TLS handshake and the client preface.
	// Default 10 seconds.
	HandshakeTimeout time.Duration
	// Workers is how many goroutines the server keeps for unary calls, so
	// that a call runs on a stack earlier calls already grew. A call that
	// finds none idle gets a goroutine of its own. Default 64.
	Workers int
	// Log receives connection errors at debug level. Default slog.Default().
	Log *slog.Logger
}

func (c Config) withDefaults() Config {
	if c.MaxRecvMsgSize <= 0 {
		c.MaxRecvMsgSize = 4 << 20
	}
	if c.MaxConcurrentStreams <= 0 {
		c.MaxConcurrentStreams = 1000
	}
	if c.InitialWindowSize < defaultWindow {
		c.InitialWindowSize = 64 << 10
	}
	if c.InitialConnWindowSize < defaultWindow {
		c.InitialConnWindowSize = 1 << 20
	}
	if c.MaxHeaderListSize == 0 {
		c.MaxHeaderListSize = 1 << 20
	}
	if c.KeepaliveTime <= 0 {
		c.KeepaliveTime = 2 * time.Hour
	}
	if c.KeepaliveTimeout <= 0 {
		c.KeepaliveTimeout = 20 * time.Second
	}
	if c.MinPingInterval <= 0 {
		c.MinPingInterval = 5 * time.Minute
	}
	if c.HandshakeTimeout <= 0 {
		c.HandshakeTimeout = 10 * time.Second
	}
	if c.Workers <= 0 {
		c.Workers = 64
	}
	if c.Log == nil {
		c.Log = slog.Default()
	}
	return c
}

// The interfaces a Server implements.
var (
	_ grpc.ServiceRegistrar = (*Server)(nil)
	_ interface {
		GetServiceInfo() map[string]grpc.ServiceInfo
	} = (*Server)(nil)
)

// ErrServerStopped is returned by Serve once the server is stopped.
var ErrServerStopped = errors.New("wire: server stopped")

// Server serves registered gRPC services over HTTP/2.
type Server struct {
	cfg     Config
	unary   grpc.UnaryServerInterceptor
	stream  grpc.StreamServerInterceptor
	methods map[string]*method // by full method name, "/service/method"
	info    map[string]grpc.ServiceInfo
	work    chan *stream
	budget  int // request bytes a connection may buffer for calls not yet started
	writers writers
	poll    *poll.Poller // idle connections' readers, parked
	// keepalive runs the connections' keepalive (conn.keepalive) on one
	// timer.
	keepalive sched.Schedule

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	conns     map[*conn]struct{}
	draining  bool
	stopped   bool
	idle      chan struct{} // closed when draining and no connection is left
	workers   int
	quit      chan struct{} // closed by Stop: idle workers exit
}

// method is one registered method.
type method struct {
	impl   any
	name   string // full name
	unary  grpc.MethodHandler
	stream *grpc.StreamDesc
}

// NewServer returns a server; register services before Serve.
func NewServer(cfg Config) *Server {
	if cfg.Codec == nil {
		panic("wire: Config.Codec is required")
	}
	cfg = cfg.withDefaults()
	return &Server{
		cfg:       cfg,
		budget:    max(int(cfg.InitialConnWindowSize), 2*(cfg.MaxRecvMsgSize+5)),
		unary:     intercept.Unary(cfg.UnaryInterceptors),
		stream:    intercept.Stream(cfg.StreamInterceptors),
		methods:   make(map[string]*method),
		info:      make(map[string]grpc.ServiceInfo),
		work:      make(chan *stream),
		poll:      poll.New(),
		listeners: make(map[net.Listener]struct{}),
		conns:     make(map[*conn]struct{}),
		quit:      make(chan struct{}),
	}
}

// RegisterService implements grpc.ServiceRegistrar. It panics if impl does
// not implement desc's handler type or the service is registered twice, as
// grpc.Server does.
func (s *Server) RegisterService(desc *grpc.ServiceDesc, impl any) {
	if desc.HandlerType != nil && impl != nil {
		ht := reflect.TypeOf(desc.HandlerType).Elem()
		if !reflect.TypeOf(impl).Implements(ht) {
			panic(fmt.Sprintf("wire: %T does not implement %v", impl, ht))
		}
	}
	if _, dup := s.info[desc.ServiceName]; dup {
		panic(fmt.Sprintf("wire: service %s registered twice", desc.ServiceName))
	}
	info := grpc.ServiceInfo{Metadata: desc.Metadata}
	for _, m := range desc.Methods {
		name := "/" + desc.ServiceName + "/" + m.MethodName
		s.methods[name] = &method{impl: impl, name: name, unary: m.Handler}
		info.Methods = append(info.Methods, grpc.MethodInfo{Name: m.MethodName})
	}
	for i := range desc.Streams {
		sd := &desc.Streams[i]
		name := "/" + desc.ServiceName + "/" + sd.StreamName
		s.methods[name] = &method{impl: impl, name: name, stream: sd}
		info.Methods = append(info.Methods, grpc.MethodInfo{Name: sd.StreamName, IsClientStream: sd.ClientStreams, IsServerStream: sd.ServerStreams})
	}
	s.info[desc.ServiceName] = info
}

// GetServiceInfo returns the registered services, as grpc.Server does (the
// reflection service uses it).
func (s *Server) GetServiceInfo() map[string]grpc.ServiceInfo { return s.info }

// Serve accepts connections on l until the server stops; it then returns
// ErrServerStopped. l is closed when Serve returns.
func (s *Server) Serve(l net.Listener) error {
	s.mu.Lock()
	if s.stopped || s.draining {
		s.mu.Unlock()
		l.Close()
		return ErrServerStopped
	}
	s.listeners[l] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, l)
		s.mu.Unlock()
		l.Close()
	}()

	var delay time.Duration
	for {
		nc, err := l.Accept()
		if err != nil {
			s.mu.Lock()
			done := s.stopped || s.draining
			s.mu.Unlock()
			if done {
				return ErrServerStopped
			}
			if retryAccept(err) {
				// Out of descriptors and the like: back off and go on.
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				time.Sleep(delay)
				continue
			}
			return err
		}
		delay = 0
		c := newConn(s, nc)
		s.mu.Lock()
		if s.stopped || s.draining {
			s.mu.Unlock()
			nc.Close()
			return ErrServerStopped
		}
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		go c.serve()
	}
}

// removeConn forgets a closed connection.
func (s *Server) removeConn(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	if s.draining && len(s.conns) == 0 && s.idle != nil {
		close(s.idle)
		s.idle = nil
	}
	s.mu.Unlock()
}

// GracefulStop stops accepting connections, tells every connection with
// GOAWAY that it takes no new streams, and waits until the streams in
// progress have ended and their connections closed.
func (s *Server) GracefulStop() {
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return
	}
	s.draining = true
	for l := range s.listeners {
		l.Close()
	}
	idle := make(chan struct{})
	if len(s.conns) == 0 {
		close(idle)
	} else {
		s.idle = idle
	}
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.drain()
	}
	<-idle
	s.stopWorkers()
	s.poll.Stop()
}

// Stop closes every listener and connection at once; handlers see their
// contexts cancelled.
func (s *Server) Stop() {
	s.mu.Lock()
	s.stopped = true
	s.draining = true
	for l := range s.listeners {
		l.Close()
	}
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.close(ErrServerStopped)
	}
	s.stopWorkers()
	s.poll.Stop()
}

func (s *Server) stopWorkers() {
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case <-s.quit:
	default:
		close(s.quit)
	}
}

// run runs fn on an idle worker, a new worker while there are fewer than
// Config.Workers, or a goroutine of its own.
func (s *Server) run(st *stream) {
	select {
	case s.work <- st:
		return
	default:
	}
	s.mu.Lock()
	spawn := s.workers < s.cfg.Workers
	if spawn {
		s.workers++
	}
	s.mu.Unlock()
	if spawn {
		go s.worker(st)
		return
	}
	go st.runUnary()
}

func (s *Server) worker(st *stream) {
	defer func() {
		s.mu.Lock()
		s.workers--
		s.mu.Unlock()
	}()
	for {
		st.runUnary()
		select {
		case st = <-s.work:
		case <-s.quit:
			return
		}
	}
}

// retryAccept reports whether an Accept error passes: the process or the
// system is out of descriptors or memory for now, or the listener timed
// out. Serving ends on any other error; on these, a flood of connections
// would otherwise stop the server.
func retryAccept(err error) bool {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	for _, e := range []error{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}
