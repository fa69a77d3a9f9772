package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	// gzip for calls that compress their messages: grpc-go's server, and
	// the wire transport, find compressors in grpc-go's registry by name.
	_ "google.golang.org/grpc/encoding/gzip"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/test/bufconn"

	notifyv1 "github.com/maxloyalty/notify/gen/notify/v1"
	"github.com/maxloyalty/notify/internal/auth"
	"github.com/maxloyalty/notify/internal/broker"
	"github.com/maxloyalty/notify/internal/certs"
	"github.com/maxloyalty/notify/internal/gateway"
	"github.com/maxloyalty/notify/internal/hub"
	"github.com/maxloyalty/notify/internal/limit"
	"github.com/maxloyalty/notify/internal/logging"
	"github.com/maxloyalty/notify/internal/metrics"
	"github.com/maxloyalty/notify/internal/service"
	"github.com/maxloyalty/notify/internal/store"
	"github.com/maxloyalty/notify/internal/tracing"
	"github.com/maxloyalty/notify/internal/wire"
)

// nodeBroker is what a node needs of its broker.
type nodeBroker interface {
	service.Broker
	Close() error
}

// pinger is a broker whose reachability readiness checks.
type pinger interface {
	Ping(ctx context.Context) error
}

// grpcReadBuffer is the per-connection read buffer of the gRPC server.
const grpcReadBuffer = 4 << 10

// grpcStreamWorkers is how many goroutines the gRPC server keeps for running
// calls. A call that finds one idle runs on it, on a stack that earlier calls
// already grew, instead of on a new goroutine whose stack grows (copied
// twice or more) on every call (docs/PERFORMANCE.md has what it saved). A
// stream holds its worker while it lasts; a call that finds no idle worker
// gets a goroutine of its own, as without workers.
const grpcStreamWorkers = 64

// Node is one running notifyd.
type Node struct {
	cfg     Config
	log     *slog.Logger
	grpcLn  net.Listener
	httpLn  net.Listener
	debugLn net.Listener // nil: no debug address
	debug   *http.Server
	inner   *bufconn.Listener
	grpc    *grpc.Server // grpc-web and the in-process connection of REST streams
	native  *grpc.Server // the native port's server on grpc-go; nil: wire serves it
	wire    *wire.Server // the native port's server on wire; nil: native serves it
	http    *http.Server
	conn    *grpc.ClientConn
	health  *health.Server
	hub     *hub.Hub
	broker  nodeBroker
	store   store.Store
	svc     *service.Service
	metrics *metrics.Metrics
	certs   *certs.Reloader // nil: plaintext
	local   *gateway.InProcess
	// deliveries is the delivery queue (web push, FCM, APNs, email,
	// webhooks) and its senders.
	deliveries *deliveries
}

// Version is notifyd's version, set at build time with
// -ldflags "-X github.com/maxloyalty/notify/internal/node.Version=...".
var Version = "dev"

// New validates cfg, builds a node and binds its listeners.
func New(ctx context.Context, cfg Config, log *slog.Logger) (*Node, error) {
	cfg = cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	verifier, err := newVerifier(cfg, log)
	if err != nil {
		return nil, err
	}
	n := &Node{cfg: cfg, log: log, hub: hub.New(), health: health.NewServer(), metrics: metrics.New(Version, "")}
	if cfg.TLSCertFile != "" {
		if n.certs, err = certs.New(cfg.TLSCertFile, cfg.TLSKeyFile, log); err != nil {
			return nil, fmt.Errorf("config: tls: %w", err)
		}
	}
	if err := n.openBackends(ctx); err != nil {
		return nil, err
	}
	unary, stream := n.interceptors(verifier)
	registrars := n.newServers(unary, stream)
	n.newService()
	if err := n.dialInner(); err != nil {
		n.close()
		return nil, err
	}
	n.local = gateway.NewInProcess(n.conn, cfg.MaxMessageBytes, unary...)
	// grpc-web's server-streaming calls run in process too, with the stream
	// chain and stats handlers of the server behind grpc-web.
	n.local.ServeStreams(gateway.Streams{Interceptors: stream, StatsHandlers: n.cfg.StatsHandlers, Codec: service.NewCodec(),
		Detach: len(n.cfg.StreamInterceptors) == 0})
	n.register(append(registrars, n.local), registrars)
	n.observe()
	if err := n.newHTTP(ctx); err != nil {
		n.close()
		return nil, err
	}
	if err := n.listenAll(); err != nil {
		n.close()
		return nil, err
	}
	return n, nil
}

// newVerifier builds the JWT verifier of cfg; in dev mode it accepts the
// dev secret only.
func newVerifier(cfg Config, log *slog.Logger) (*auth.Verifier, error) {
	noExpiry, _ := cfg.noExpiryRoles() // valid: checked by Validate
	vcfg := auth.Config{
		HMACSecret:    []byte(cfg.JWTSecret),
		PublicKeyFile: cfg.JWTPublicKeyFile,
		JWKSFile:      cfg.JWTJWKSFile,
		Issuer:        cfg.JWTIssuer,
		Audience:      cfg.JWTAudience,
		Leeway:        cfg.JWTLeeway,
		RequireExpiry: true,
		NoExpiryRoles: noExpiry,
	}
	if cfg.JWTSecret == "" {
		vcfg.HMACSecret = nil
	}
	if cfg.Dev {
		// Validate refused dev mode with a configured key: the dev secret
		// is the only one.
		vcfg.HMACSecret = []byte(DevSecret)
		log.Warn("dev mode: tokens signed with the public dev secret are accepted, and POST /dev/token mints them for any role, admin and service included; never expose this node")
	}
	v, err := auth.NewVerifier(vcfg)
	if err != nil {
		return nil, fmt.Errorf("config: jwt: %w", err)
	}
	return v, nil
}

// openBackends opens the store, the delivery queue on it, and the broker;
// on error, what was opened is closed.
func (n *Node) openBackends(ctx context.Context) error {
	cfg := n.cfg
	var err error
	if n.store, err = store.Open(ctx, cfg.Store); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	if n.deliveries, err = newDeliveries(ctx, cfg, n.store, n.hub, n.log); err != nil {
		n.store.Close()
		return err
	}
	if cfg.Broker != "redis" {
		n.broker = broker.NewMemory(broker.MemoryConfig{
			Limits:            cfg.historyLimits(),
			IdempotencyWindow: cfg.IdempotencyWindow,
		}, n.deliver)
		return nil
	}
	n.broker, err = broker.NewRedis(ctx, broker.RedisConfig{
		URL:               cfg.RedisURL,
		Prefix:            cfg.RedisPrefix,
		Limits:            cfg.historyLimits(),
		IdempotencyWindow: cfg.IdempotencyWindow,
		Log:               n.log,
	}, n.deliver, func(err error) {
		// Messages may have been missed: streams end and resume from
		// the shared history.
		n.hub.CloseCurrent(err)
	})
	if err != nil {
		n.deliveries.close()
		n.store.Close()
		return fmt.Errorf("broker: %w", err)
	}
	return nil
}

// interceptors returns the node's unary and stream chains, the configured
// interceptors outside the node's own.
func (n *Node) interceptors(verifier *auth.Verifier) (unary []grpc.UnaryServerInterceptor, stream []grpc.StreamServerInterceptor) {
	skip := func(method string) bool {
		return strings.HasPrefix(method, "/grpc.health.v1.") || strings.HasPrefix(method, "/grpc.reflection.")
	}
	// Interceptors in the conventional order: metrics, logging, auth (health
	// and reflection skipped), then panic recovery innermost so that a panic
	// is counted and logged as the Internal it becomes. Per-caller limits
	// are applied by the service, which knows the caller and the batch size.
	// REST's unary calls run through the same unary chain (gateway.InProcess).
	unary = append(slices.Clip(n.cfg.UnaryInterceptors),
		n.metrics.UnaryServerInterceptor(),
		logging.UnaryServerInterceptor(n.log),
		verifier.UnaryInterceptor(skip),
		logging.UnaryTag(),
		logging.UnaryRecovery(n.log),
	)
	// The stream chain is the same five as one interceptor: a live stream's
	// goroutine stays parked under the chain, and one frame keeps its stack
	// at the smallest size.
	stream = append(slices.Clip(n.cfg.StreamInterceptors),
		logging.StreamInterceptor(n.log, n.metrics, verifier.StreamInterceptor(skip)),
	)
	return unary, stream
}

// newServers builds the gRPC server behind grpc-web and REST streams, and
// the native port's server on the configured transport; it returns both
// as the registrars of the node's services.
func (n *Node) newServers(unary []grpc.UnaryServerInterceptor, stream []grpc.StreamServerInterceptor) []grpc.ServiceRegistrar {
	cfg := n.cfg
	opts := []grpc.ServerOption{
		grpc.ForceServerCodecV2(service.NewCodec()),
		grpc.ChainUnaryInterceptor(unary...),
		grpc.ChainStreamInterceptor(stream...),
		grpc.MaxRecvMsgSize(cfg.MaxMessageBytes),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: cfg.MinPingInterval, PermitWithoutStream: true}),
		// Memory per connection: the write buffer is pooled and released
		// between flushes, and the read buffer is small (the default 32 KiB
		// per connection dominated an idle stream's cost on its own
		// connection); messages here are small.
		grpc.SharedWriteBuffer(true),
		grpc.ReadBufferSize(grpcReadBuffer),
		grpc.NumStreamWorkers(grpcStreamWorkers),
	}
	if cfg.Tracing != nil {
		n.cfg.StatsHandlers = append(slices.Clip(cfg.StatsHandlers), cfg.Tracing.ServerHandler())
	}
	for _, h := range n.cfg.StatsHandlers {
		opts = append(opts, grpc.StatsHandler(h))
	}
	// One server for grpc-web and for the in-process connection that
	// carries every REST stream of the node, without the native port's
	// per-connection limits (a stream limit there would bound all REST
	// streams together); the native port has a server of its own.
	n.grpc = grpc.NewServer(append(slices.Clip(opts),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: cfg.KeepaliveTime, Timeout: cfg.KeepaliveTimeout}),
		// Innermost: a client stream over a websocket reads its next
		// message only once the handler has read the last (HTTP/2 flow
		// control does this on the other doors).
		grpc.ChainStreamInterceptor(gateway.WebsocketStreamInterceptor()),
	)...)
	if cfg.GRPCTransport != "wire" {
		n.native = grpc.NewServer(append(opts, nativeOptions(cfg)...)...)
		return []grpc.ServiceRegistrar{n.grpc, n.native}
	}
	n.wire = wire.NewServer(wire.Config{
		Codec:                 service.NewCodec(),
		UnaryInterceptors:     unary,
		StreamInterceptors:    stream,
		MaxRecvMsgSize:        cfg.MaxMessageBytes,
		MaxConcurrentStreams:  cfg.MaxConcurrentStreams,
		InitialWindowSize:     int32(cfg.InitialWindowSize),
		InitialConnWindowSize: int32(cfg.InitialConnWindowSize),
		MaxHeaderListSize:     uint32(cfg.MaxHeaderListSize),
		MaxConnectionIdle:     cfg.MaxConnectionIdle,
		MaxConnectionAge:      cfg.MaxConnectionAge,
		MaxConnectionAgeGrace: cfg.MaxConnectionAgeGrace,
		KeepaliveTime:         cfg.KeepaliveTime,
		KeepaliveTimeout:      cfg.KeepaliveTimeout,
		MinPingInterval:       cfg.MinPingInterval,
		Workers:               grpcStreamWorkers,
		StatsHandlers:         n.cfg.StatsHandlers,
		// Browsers reach this port over TLS with grpc-web too.
		WebOrigin: gateway.NativeWebOrigin(cfg.AllowedOrigins),
		// The node's own stream interceptor knows of detached calls;
		// interceptors set in code may not.
		Detach: len(n.cfg.StreamInterceptors) == 0,
		Log:    n.log,
	})
	return []grpc.ServiceRegistrar{n.grpc, n.wire}
}

// newService builds the notification service on the node's backends.
func (n *Node) newService() {
	cfg := n.cfg
	n.svc = service.New(service.Config{
		ServerID:          cfg.ServerID,
		HeartbeatInterval: cfg.HeartbeatInterval,
		QueueBytes:        cfg.QueueBytes,
		MaxRoomsPerStream: cfg.MaxRoomsPerStream,
		MaxBatch:          cfg.MaxBatch,
		ReconnectDelayMin: cfg.ReconnectDelayMin,
		ReconnectDelayMax: cfg.ReconnectDelayMax,
		TokenLeeway:       cfg.JWTLeeway,
		Metrics:           n.metrics,
		Tracer:            tracer(cfg.Tracing),
		Limits: service.Limits{
			Publish: limit.NewPublishRate(cfg.PublishRate, cfg.PublishBurst),
			Streams: limit.NewStreams(cfg.MaxStreamsPerUser),
		},
		Deliveries: n.deliveries.queue,
	}, n.broker, n.hub, n.store, n.log)
}

// dialInner connects to the grpc-web server over an in-process listener:
// the REST gateway's streams (GET /v1/subscribe) take this connection,
// its unary calls run in process (gateway.InProcess).
func (n *Node) dialInner() error {
	n.inner = bufconn.Listen(1 << 20)
	copts := []grpc.DialOption{
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return n.inner.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
	}
	if n.cfg.Tracing != nil {
		// A REST stream's gRPC call continues its HTTP request's trace.
		copts = append(copts, grpc.WithStatsHandler(n.cfg.Tracing.ClientHandler()))
	}
	var err error
	n.conn, err = grpc.NewClient("passthrough:///notifyd", copts...)
	return err
}

// register registers the node's services on every registrar, and health
// and reflection on the gRPC servers.
func (n *Node) register(all, servers []grpc.ServiceRegistrar) {
	deliveries := service.NewDeliveryService(n.store, n.deliveries.info)
	for _, r := range all {
		notifyv1.RegisterNotificationServiceServer(r, n.svc)
		notifyv1.RegisterInboxServiceServer(r, n.svc.Inbox())
		notifyv1.RegisterDeliveryServiceServer(r, deliveries)
		notifyv1.RegisterScheduleServiceServer(r, n.svc.Schedules())
	}
	for _, r := range servers {
		healthpb.RegisterHealthServer(r, n.health)
		reflection.Register(r.(reflection.GRPCServer))
	}
}

// observe registers the node's metrics that are read when scraped.
func (n *Node) observe() {
	n.metrics.InitGRPC(n.grpc)
	if n.deliveries.queue.Enabled() {
		n.metrics.Registry().MustRegister(n.deliveries.queue.Metrics())
	}
	n.metrics.Observe("notify_hub_rooms", "Rooms with at least one subscriber on this node.", func() float64 { return float64(n.hub.Stats().Rooms) })
	n.metrics.Observe("notify_connected_users", "Users with at least one open stream on this node.", func() float64 { return float64(n.hub.Stats().Users) })
}

// newHTTP builds the HTTP port's server: REST, grpc-web, the demo app,
// health and metrics.
func (n *Node) newHTTP(ctx context.Context) error {
	cfg := n.cfg
	gwcfg := gateway.Config{
		AllowedOrigins: cfg.AllowedOrigins,
		WebDir:         cfg.WebDir,
		AppGRPCWebURL:  cfg.AppGRPCWebURL,
		Metrics:        n.metrics.Handler(),
		// REST JSON is wordier than protobuf: allow it twice the bytes.
		MaxBodyBytes: 2 * int64(cfg.MaxMessageBytes),
	}
	if cfg.Dev {
		// POST /dev/token for the demo app, signed with the dev secret:
		// never with a configured one.
		gwcfg.DevToken = devTokenMinter([]byte(DevSecret))
	}
	handler, err := gateway.New(ctx, gwcfg, n.grpc, n.local, n.ready)
	if err != nil {
		return err
	}
	n.http = &http.Server{
		Handler:           cfg.Tracing.Handler(handler),
		ReadHeaderTimeout: cfg.HTTPReadHeaderTimeout,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(n.log.Handler(), slog.LevelWarn),
		ConnContext:       gateway.ConnContext,
	}
	return nil
}

// listenAll binds the native port, the debug address if set, and the HTTP
// port; on error, those bound are closed.
func (n *Node) listenAll() error {
	var err error
	// Each port's open connections are counted by its connection limiter,
	// from accept to close: on the HTTP port, that includes the
	// connections a grpc-web stream or a websocket takes over, which the
	// HTTP server no longer sees.
	if n.grpcLn, err = n.listen(n.cfg.GRPCAddr, limit.OnOpen(n.metrics.OpenConns(metrics.TransportGRPC))); err != nil {
		return fmt.Errorf("grpc-addr: %w", err)
	}
	if err = n.listenDebug(); err != nil {
		n.grpcLn.Close()
		return fmt.Errorf("debug-addr: %w", err)
	}
	if n.httpLn, err = n.listen(n.cfg.HTTPAddr, limit.OnOpen(n.metrics.OpenConns(metrics.TransportHTTP))); err != nil {
		if n.debugLn != nil {
			n.debugLn.Close()
		}
		n.grpcLn.Close()
		return fmt.Errorf("http-addr: %w", err)
	}
	return nil
}

// tracer is the service's tracer: nil when tracing is off.
func tracer(t *tracing.Tracing) trace.Tracer {
	if t == nil {
		return nil
	}
	return t.Tracer()
}

// nativeOptions are the native port's per-connection settings on grpc-go's
// server; Validate has checked their ranges.
func nativeOptions(cfg Config) []grpc.ServerOption {
	opts := []grpc.ServerOption{
		grpc.KeepaliveParams(keepalive.ServerParameters{
			MaxConnectionIdle:     cfg.MaxConnectionIdle,
			MaxConnectionAge:      cfg.MaxConnectionAge,
			MaxConnectionAgeGrace: cfg.MaxConnectionAgeGrace,
			Time:                  cfg.KeepaliveTime,
			Timeout:               cfg.KeepaliveTimeout,
		}),
		grpc.MaxConcurrentStreams(uint32(cfg.MaxConcurrentStreams)),
		grpc.MaxHeaderListSize(uint32(cfg.MaxHeaderListSize)),
	}
	// Either window given fixes both (no bandwidth-delay estimation).
	if cfg.InitialWindowSize > 0 {
		opts = append(opts, grpc.InitialWindowSize(int32(cfg.InitialWindowSize)))
	}
	if cfg.InitialConnWindowSize > 0 {
		opts = append(opts, grpc.InitialConnWindowSize(int32(cfg.InitialConnWindowSize)))
	}
	return opts
}

// tlsHandshakeTimeout bounds a TLS handshake on either port.
const tlsHandshakeTimeout = 10 * time.Second

// listen binds addr with the connection limits (and extra, more limiter
// options) and, when configured, TLS. Each port has limits of its own.
func (n *Node) listen(addr string, extra ...limit.Option) (net.Listener, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	opts := []limit.Option{limit.OnReject(func(reason string) {
		if reason == limit.ReasonTooManyConnections {
			n.metrics.LimitRejected("max_connections")
		} else {
			n.metrics.LimitRejected("conn_rate")
		}
	}), limit.LogRefused(n.log)}
	if n.cfg.MaxConnections > 0 {
		opts = append(opts, limit.MaxConns(n.cfg.MaxConnections))
	}
	opts = append(opts, extra...)
	l = limit.NewConnRate(n.cfg.ConnRate, n.cfg.ConnBurst, opts...).WrapListener(l)
	if n.certs != nil {
		// Handshakes complete on goroutines of their own, within the
		// transports' 10 s: a server that goes on serving a connection on
		// the goroutine that ran its handshake would keep that stack.
		l = gateway.TLSListener(l, n.certs.TLSConfig(), tlsHandshakeTimeout)
	}
	return l, nil
}

func (n *Node) close() {
	if n.conn != nil {
		n.conn.Close()
	}
	n.broker.Close()
	n.deliveries.close()
	n.store.Close()
}

// GRPCAddr is the bound native gRPC address.
func (n *Node) GRPCAddr() string { return n.grpcLn.Addr().String() }

// HTTPAddr is the bound HTTP address.
func (n *Node) HTTPAddr() string { return n.httpLn.Addr().String() }

// Hub exposes the node's hub, for statistics.
func (n *Node) Hub() *hub.Hub { return n.hub }

func (n *Node) ready(ctx context.Context) error {
	if err := n.store.Ping(ctx); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	if p, ok := n.broker.(pinger); ok {
		if err := p.Ping(ctx); err != nil {
			return fmt.Errorf("broker: %w", err)
		}
	}
	resp, err := n.health.Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		return err
	}
	if resp.Status != healthpb.HealthCheckResponse_SERVING {
		return errors.New(resp.Status.String())
	}
	return nil
}

// Run serves until ctx ends, then shuts down within the drain time.
func (n *Node) Run(ctx context.Context) error {
	errc := make(chan error, 3)
	if n.wire != nil {
		go func() {
			if err := n.wire.Serve(n.grpcLn); !errors.Is(err, wire.ErrServerStopped) {
				errc <- err
			}
		}()
	} else {
		go func() { errc <- n.native.Serve(n.grpcLn) }()
	}
	go func() { errc <- n.grpc.Serve(n.inner) }()
	go func() {
		if err := n.http.Serve(n.httpLn); !errors.Is(err, http.ErrServerClosed) {
			errc <- err
		}
	}()
	if n.debug != nil {
		go func() { _ = n.debug.Serve(n.debugLn) }()
	}
	bg, stopBG := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { n.startDeliveries(bg) })
	wg.Go(func() { n.svc.Run(bg) })
	wg.Go(func() { n.prune(bg) })
	wg.Go(func() { n.announce(bg) })
	if n.certs != nil {
		wg.Go(func() { n.certs.Run(bg) })
	}

	n.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	n.health.SetServingStatus(notifyv1.NotificationService_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	n.log.Info("notifyd serving", "grpc", n.GRPCAddr(), "http", n.HTTPAddr(), "server_id", n.cfg.ServerID, "dev", n.cfg.Dev)

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
	}
	stopBG()
	wg.Wait()
	n.shutdown()
	return runErr
}

// shutdown: health NOT_SERVING, every stream told to reconnect after a
// jittered delay, the HTTP port drained (grpc-web and REST streams finish
// their goodbyes), GracefulStop of the native port's server then of the
// in-process one, all bounded by the drain time, then Stop.
func (n *Node) shutdown() {
	start := time.Now()
	n.health.Shutdown()
	n.hub.CloseAll(hub.ErrShutdown)

	drain, cancel := context.WithTimeout(context.Background(), n.cfg.ShutdownDrain)
	defer cancel()
	// Deliveries in progress finish within the drain; those left are
	// cancelled and run again later, on this node or another.
	queueStopped := make(chan struct{})
	go func() {
		defer close(queueStopped)
		if err := n.deliveries.queue.Stop(drain); err != nil {
			n.log.Warn("delivery queue stop", "err", err)
		}
	}()
	// grpc-web streams ride on HTTP requests that GracefulStop would close
	// at once; let them end by themselves first.
	_ = n.http.Shutdown(drain)
	_ = n.local.Shutdown(drain) // grpc-web streams that own their connections
	done := make(chan struct{})
	go func() {
		if n.wire != nil {
			n.wire.GracefulStop()
		} else {
			n.native.GracefulStop()
		}
		n.grpc.GracefulStop()
		close(done)
	}()
	select {
	case <-done:
	case <-drain.Done():
		n.log.Warn("drain time exceeded, stopping", "drain", n.cfg.ShutdownDrain)
		if n.wire != nil {
			n.wire.Stop()
		} else {
			n.native.Stop()
		}
		n.grpc.Stop()
		<-done
	}
	if n.debug != nil {
		n.debug.Close()
	}
	<-queueStopped
	n.close()
	n.log.Info("notifyd stopped", "took", time.Since(start).Round(time.Millisecond))
}

// announce reports this node's stats to the cluster every few seconds.
func (n *Node) announce(ctx context.Context) {
	const period = 5 * time.Second
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		if err := n.svc.Announce(ctx, 3*period); err != nil && ctx.Err() == nil {
			n.log.Debug("announce failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// prune applies the inbox retention every minute until ctx ends.
func (n *Node) prune(ctx context.Context) {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		removed, err := n.store.Prune(ctx, n.cfg.InboxMaxPerUser, n.cfg.InboxMaxAge, time.Now())
		switch {
		case err != nil && ctx.Err() == nil:
			n.log.Warn("inbox prune failed", "err", err)
		case removed > 0:
			n.log.Info("inbox pruned", "removed", removed)
		}
	}
}

// NewLogger builds the node's logger from its config.
func NewLogger(cfg Config) *slog.Logger {
	cfg = cfg.Defaults()
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(cfg.LogLevel))
	opts := &slog.HandlerOptions{Level: lvl}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, opts))
}
