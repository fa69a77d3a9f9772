package node

import (
	"errors"
	"fmt"
	"math"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/stats"

	notifyv1 "github.com/maxloyalty/notify/gen/notify/v1"
	"github.com/maxloyalty/notify/internal/auth"
	"github.com/maxloyalty/notify/internal/broker"
	"github.com/maxloyalty/notify/internal/gcfloor"
	"github.com/maxloyalty/notify/internal/room"
	"github.com/maxloyalty/notify/internal/tracing"
)

// DevSecret is the public HS256 secret of dev mode, its only key (dev mode
// refuses a configured one). Dev mode is for a laptop: never expose a
// dev-mode node.
const DevSecret = auth.DevSecret

// Config is every setting of a node. Zero values take the defaults given
// in each comment (Defaults returns them filled in).
type Config struct {
	// GRPCAddr is the native gRPC listen address. Default 127.0.0.1:9090.
	GRPCAddr string
	// HTTPAddr is the grpc-web, REST and OpenAPI listen address. Default 127.0.0.1:8080.
	HTTPAddr string
	// ServerID names the node in Connected messages. Default: the host name.
	ServerID string
	// Dev enables dev mode, for a laptop: tokens signed with the public
	// DevSecret are accepted, and POST /dev/token mints them for any role.
	// It cannot be combined with a configured key (JWTSecret,
	// JWTPublicKeyFile, JWTJWKSFile). Default false.
	Dev bool

	// JWTSecret enables HS256 tokens signed with this secret.
	JWTSecret string
	// JWTPublicKeyFile is a PEM file of RSA/EC public keys (RS256/ES256).
	JWTPublicKeyFile string
	// JWTJWKSFile is a JWKS file of RSA/EC public keys (RS256/ES256).
	JWTJWKSFile string
	// JWTIssuer, when set, must match the tokens' iss.
	JWTIssuer string
	// JWTAudience, when set, must be among the tokens' aud.
	JWTAudience string
	// JWTLeeway is the clock skew allowed on exp, nbf and iat (a token
	// issued further in the future is refused); a stream ends that long
	// after its token's exp. Default 5s; negative: none.
	JWTLeeway time.Duration
	// JWTAllowNoExpiryRoles names the roles (lowercase, as in tokens:
	// "service") whose tokens may omit exp; comma-separated in flags.
	// Default: none, every token must carry exp.
	JWTAllowNoExpiryRoles []string

	// HeartbeatInterval: idle time before a stream gets a heartbeat. Default 25s.
	HeartbeatInterval time.Duration
	// QueueBytes bounds each stream's queue, in bytes. Default 1 MiB.
	QueueBytes int
	// MaxRoomsPerStream bounds the rooms of one stream. Default 32.
	MaxRoomsPerStream int
	// MaxBatch bounds the events of one PublishBatch. Default 500.
	MaxBatch int
	// MaxMessageBytes bounds one incoming message. Default 256 KiB.
	MaxMessageBytes int

	// History bounds each room's resume history by room kind. Missing kinds
	// take DefaultHistory's bounds: personal rooms (guest, user) 100 events,
	// restaurant and admin rooms 1000 events, all for at most 10 minutes.
	History map[room.Kind]broker.Limits
	// IdempotencyWindow is how long idempotency keys are remembered. Default 5m.
	IdempotencyWindow time.Duration

	// GRPCTransport serves the native gRPC port: "wire" (the default: the
	// internal/wire transport, where a connection has one reader goroutine
	// and its streams are written by one writer goroutine) or "grpc-go"
	// (grpc-go's server, a goroutine per stream and per sender). Both pass
	// the same conformance and attack suites (docs/SECURITY.md). grpc-web
	// and REST are served by grpc-go's server in either case.
	GRPCTransport string

	// GCFloor is the least heap size, in bytes, at which a garbage
	// collection starts (internal/gcfloor): a busy node with a small live
	// heap otherwise collects every 4 MB. Only notifyd applies it (it is the
	// process's setting). Default 64 MiB; negative: Go's default pacing.
	// GOGC in the environment turns it off.
	GCFloor int

	// Broker is "memory" (one node, the default) or "redis" (several nodes
	// sharing rooms, offsets and history through Redis).
	Broker string
	// RedisURL locates Redis for the redis broker. Default redis://127.0.0.1:6379/0.
	RedisURL string
	// RedisPrefix starts every Redis key and channel, so that several
	// clusters can share one Redis. Default "notify".
	RedisPrefix string

	// DataDir holds the embedded SQLite inbox. Default "data".
	DataDir string
	// Store is the inbox database: a postgres:// DSN, or a SQLite file path.
	// Default: notify.db in DataDir.
	Store string
	// InboxMaxPerUser keeps at most this many notifications per inbox
	// owner, pruned in the background. Default 1000.
	InboxMaxPerUser int
	// InboxMaxAge prunes notifications older than this. Default 720h (30 days).
	InboxMaxAge time.Duration

	// ShutdownDrain bounds a graceful shutdown. Default 10s.
	ShutdownDrain time.Duration
	// ReconnectDelayMin and ReconnectDelayMax bound the jittered reconnect
	// delay given to streams at shutdown. Defaults 500ms and 5s.
	ReconnectDelayMin, ReconnectDelayMax time.Duration

	// KeepaliveTime: idle time after which the server pings a connection. Default 30s.
	KeepaliveTime time.Duration
	// KeepaliveTimeout: how long a ping may go unanswered. Default 10s.
	KeepaliveTimeout time.Duration
	// MinPingInterval: clients pinging more often are disconnected. Default 10s.
	MinPingInterval time.Duration

	// MaxConnectionIdle closes, with GOAWAY, a native-port connection that
	// has had no call open for this long. Default 0: never.
	MaxConnectionIdle time.Duration
	// MaxConnectionAge sends GOAWAY to a native-port connection this long
	// after it opened, give or take 10% of random jitter (as grpc-go
	// applies it), so that clients reconnect and spread over the nodes
	// behind a load balancer. Default 0: never.
	MaxConnectionAge time.Duration
	// MaxConnectionAgeGrace is how long the calls of a connection aged out
	// may go on after its GOAWAY before the connection is closed. Default
	// 0: until they end.
	MaxConnectionAgeGrace time.Duration
	// MaxConcurrentStreams bounds the calls open at once on one native-port
	// connection, advertised in SETTINGS: a client waits for one to end
	// (grpc-go's) or has the stream refused (REFUSED_STREAM). REST and
	// grpc-web streams do not count. Default 1000; at least 1.
	MaxConcurrentStreams int
	// InitialWindowSize and InitialConnWindowSize are the HTTP/2 receive
	// windows, in bytes, of each call and of each connection on the native
	// port. Setting either turns grpc-go's bandwidth-delay estimation off
	// (both windows are then fixed: set both). Default 0: the transport's
	// own (grpc-go: 64 KiB grown by its estimation; wire: 64 KiB per call,
	// 1 MiB per connection). Otherwise from 65535 (HTTP/2's initial window,
	// grpc-go's least) to 2^31-1.
	InitialWindowSize, InitialConnWindowSize int
	// MaxHeaderListSize bounds, in bytes, the header list of a request on
	// the native port as HTTP/2 counts it (names, values and 32 per field),
	// advertised in SETTINGS. Default 1 MiB; at least 4 KiB.
	MaxHeaderListSize int

	// PublishRate bounds the events one publisher (token subject) may
	// publish per second, batches counted per event; negative disables.
	// Default 100000.
	PublishRate float64
	// PublishBurst is the publish rate's bucket size. Default 2 × PublishRate.
	PublishBurst int
	// MaxStreamsPerUser bounds one user's open streams on a node; negative
	// disables. Default 20.
	MaxStreamsPerUser int
	// ConnRate bounds new connections per second on each port; negative
	// disables. Default 2000.
	ConnRate float64
	// ConnBurst is the connection rate's bucket size. Default 2 × ConnRate.
	ConnBurst int
	// MaxConnections bounds open connections on each port; 0 disables.
	// Default 0.
	MaxConnections int

	// TLSCertFile and TLSKeyFile, both set, serve TLS on both ports,
	// reloading the pair when the files change. Default: plaintext.
	TLSCertFile, TLSKeyFile string

	// HTTPReadHeaderTimeout bounds how long an HTTP client may take to send
	// its request headers, so slow clients cannot hold sockets. Default 10s.
	HTTPReadHeaderTimeout time.Duration

	// AllowedOrigins lists browser origins allowed for grpc-web and REST,
	// comma-separated in flags ("*": any). Default: none (same origin only;
	// grpc-web on the native port also grants https pages of the host the
	// call was made to, on any port).
	AllowedOrigins []string
	// WebDir is the built web app (clients/web/dist) served at "/" of the
	// HTTP port; when it has no index.html, "/" says how to build it.
	// Default "clients/web/dist".
	WebDir string
	// AppGRPCWebURL is where the web app served on the HTTP port sends its
	// grpc-web calls (GET /app.json tells it): a base URL such as the
	// native port's, https://notify.example.com:9090, where a browser's
	// stream costs the server a third of what it costs on the HTTP port's
	// HTTP/2 (docs/PERFORMANCE.md). Empty (the default): the page's own
	// origin.
	AppGRPCWebURL string

	// UnaryInterceptors and StreamInterceptors wrap every call to the
	// node's services outside its own chain (metrics, logging, auth,
	// recovery): on the native port whichever transport serves it, on
	// grpc-web and on REST. Set in code only (no flag).
	UnaryInterceptors  []grpc.UnaryServerInterceptor
	StreamInterceptors []grpc.StreamServerInterceptor
	// StatsHandlers see every connection and call of the gRPC servers (the
	// native port on either transport, and grpc-web), as grpc.StatsHandler
	// does: otelgrpc.NewServerHandler() for OpenTelemetry. Set in code only.
	StatsHandlers []stats.Handler
	// Tracing, when set, traces the node's calls with OpenTelemetry: a
	// stats handler on the gRPC servers (after StatsHandlers), otelhttp on
	// the HTTP port, the in-process connection of REST streams, and the
	// service's own spans. notifyd builds it from the OTEL_* environment
	// (tracing.FromEnv) and shuts it down; the node does not. Set in code
	// only. Default nil: off.
	Tracing *tracing.Tracing

	// DebugAddr serves Go's profiles (net/http/pprof, /debug/pprof/) on
	// this address; a bare port (":6060") binds 127.0.0.1. Profiles show
	// memory contents: keep it on a loopback or private address. Default
	// "": off.
	DebugAddr string

	// Delivery configures web push, FCM, APNs, email and the operator's
	// webhooks on the durable delivery queue (docs/CHANNELS.md). Default:
	// none configured.
	Delivery DeliveryConfig
	// Timing configures scheduled publishes, digests and throttles
	// (docs/SCHEDULING.md).
	Timing TimingConfig

	// LogFormat is "text" or "json". Default text.
	LogFormat string
	// LogLevel is debug, info, warn or error. Default info.
	LogLevel string
}

// Defaults returns c with every zero field set to its default.
func (c Config) Defaults() Config {
	setStr(&c.GRPCAddr, "127.0.0.1:9090")
	setStr(&c.HTTPAddr, "127.0.0.1:8080")
	if c.ServerID == "" {
		h, _ := os.Hostname()
		setStr(&h, "notifyd")
		c.ServerID = h
	}
	if c.JWTLeeway == 0 {
		c.JWTLeeway = 5 * time.Second
	}
	c.JWTLeeway = max(c.JWTLeeway, 0)
	setDur(&c.HeartbeatInterval, 25*time.Second)
	setInt(&c.QueueBytes, 1<<20)
	setInt(&c.MaxRoomsPerStream, 32)
	setInt(&c.MaxBatch, 500)
	setInt(&c.MaxMessageBytes, 256<<10)
	h := DefaultHistory()
	for k, l := range c.History {
		h[k] = l
	}
	c.History = h
	setDur(&c.IdempotencyWindow, 5*time.Minute)
	setStr(&c.GRPCTransport, "wire")
	if c.GCFloor == 0 {
		c.GCFloor = gcfloor.DefaultFloor
	}
	setStr(&c.Broker, "memory")
	setStr(&c.RedisURL, "redis://127.0.0.1:6379/0")
	setStr(&c.RedisPrefix, "notify")
	setStr(&c.DataDir, "data")
	setStr(&c.WebDir, "clients/web/dist")
	if c.Store == "" {
		c.Store = filepath.Join(c.DataDir, "notify.db")
	}
	setInt(&c.InboxMaxPerUser, 1000)
	setDur(&c.InboxMaxAge, 720*time.Hour)
	setDur(&c.ShutdownDrain, 10*time.Second)
	setDur(&c.ReconnectDelayMin, 500*time.Millisecond)
	setDur(&c.ReconnectDelayMax, 5*time.Second)
	setDur(&c.HTTPReadHeaderTimeout, 10*time.Second)
	setDur(&c.KeepaliveTime, 30*time.Second)
	setDur(&c.KeepaliveTimeout, 10*time.Second)
	setDur(&c.MinPingInterval, 10*time.Second)
	if c.MaxConcurrentStreams == 0 {
		c.MaxConcurrentStreams = 1000
	}
	if c.MaxHeaderListSize == 0 {
		c.MaxHeaderListSize = 1 << 20
	}
	if c.PublishRate == 0 {
		c.PublishRate = 100000
	}
	if c.PublishBurst <= 0 {
		c.PublishBurst = int(2 * c.PublishRate)
	}
	if c.MaxStreamsPerUser == 0 {
		c.MaxStreamsPerUser = 20
	}
	if c.ConnRate == 0 {
		c.ConnRate = 2000
	}
	if c.ConnBurst <= 0 {
		c.ConnBurst = int(2 * c.ConnRate)
	}
	c.Delivery = c.Delivery.defaults()
	c.Timing = c.Timing.defaults()
	setStr(&c.LogFormat, "text")
	setStr(&c.LogLevel, "info")
	return c
}

// Validate reports the first bad field by name.
func (c Config) Validate() error {
	var errs []error
	if c.JWTSecret == "" && c.JWTPublicKeyFile == "" && c.JWTJWKSFile == "" && !c.Dev {
		errs = append(errs, errors.New("jwt: one of jwt-secret, jwt-public-key-file, jwt-jwks-file is required (or dev mode)"))
	}
	if c.JWTSecret != "" && len(c.JWTSecret) < 32 {
		errs = append(errs, errors.New("jwt-secret: must be at least 32 bytes"))
	}
	if c.Dev {
		// Dev mode mints tokens for any role (POST /dev/token): with a
		// real key that would be an open mint for every node sharing it.
		for _, k := range []struct{ flag, value string }{
			{"jwt-secret", c.JWTSecret}, {"jwt-public-key-file", c.JWTPublicKeyFile}, {"jwt-jwks-file", c.JWTJWKSFile},
		} {
			if k.value != "" {
				errs = append(errs, fmt.Errorf("dev, %s: dev mode accepts and mints tokens signed with the public dev secret and cannot be combined with a configured key; give one or the other", k.flag))
			}
		}
	}
	if _, err := c.noExpiryRoles(); err != nil {
		errs = append(errs, err)
	}
	if c.ReconnectDelayMax < c.ReconnectDelayMin {
		errs = append(errs, errors.New("reconnect-delay-max: must not be below reconnect-delay-min"))
	}
	if c.MinPingInterval > c.KeepaliveTime {
		errs = append(errs, errors.New("min-ping-interval: must not exceed keepalive-time"))
	}
	if err := checkBaseURL(c.AppGRPCWebURL); err != nil {
		errs = append(errs, fmt.Errorf("app-grpc-web-url: %w", err))
	}
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		errs = append(errs, errors.New("tls-cert-file, tls-key-file: give both or neither"))
	}
	if c.QueueBytes < 4<<10 {
		errs = append(errs, errors.New("queue-bytes: must be at least 4096"))
	}
	errs = append(errs, c.validateNative()...)
	errs = append(errs, c.Delivery.validate()...)
	errs = append(errs, c.Timing.validate()...)
	switch c.GRPCTransport {
	case "wire", "grpc-go":
	default:
		errs = append(errs, fmt.Errorf("grpc-transport: %q is not wire or grpc-go", c.GRPCTransport))
	}
	switch c.Broker {
	case "memory", "redis":
	default:
		errs = append(errs, fmt.Errorf("broker: %q is not memory or redis", c.Broker))
	}
	switch c.LogFormat {
	case "text", "json":
	default:
		errs = append(errs, fmt.Errorf("log-format: %q is not text or json", c.LogFormat))
	}
	switch strings.ToLower(c.LogLevel) {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("log-level: %q is not debug, info, warn or error", c.LogLevel))
	}
	return errors.Join(errs...)
}

// noExpiryRoles parses JWTAllowNoExpiryRoles.
func (c Config) noExpiryRoles() ([]notifyv1.Role, error) {
	var out []notifyv1.Role
	for _, name := range c.JWTAllowNoExpiryRoles {
		r, err := auth.ParseRole(name)
		if err != nil {
			return nil, fmt.Errorf("jwt-allow-no-expiry-roles: %q is not admin, restaurant, cashier, guest or service", name)
		}
		out = append(out, r)
	}
	return out, nil
}

// Bounds of the native port's settings: receive windows as HTTP/2 allows
// them (RFC 9113 section 6.9.2) and grpc-go applies them, and a header list
// that any real request (a bearer token, a few metadata fields) fits in.
const (
	minWindow     = 65535 // HTTP/2's initial window; grpc-go ignores less
	maxWindow     = 1<<31 - 1
	minHeaderList = 4 << 10
)

// validateNative checks the native port's per-connection settings.
func (c Config) validateNative() []error {
	var errs []error
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"max-connection-idle", c.MaxConnectionIdle},
		{"max-connection-age", c.MaxConnectionAge},
		{"max-connection-age-grace", c.MaxConnectionAgeGrace},
	} {
		if d.v < 0 {
			errs = append(errs, fmt.Errorf("%s: must not be negative (0: never)", d.name))
		}
	}
	if c.MaxConcurrentStreams < 1 || int64(c.MaxConcurrentStreams) > math.MaxUint32 {
		errs = append(errs, fmt.Errorf("max-concurrent-streams: %d is not between 1 and %d", c.MaxConcurrentStreams, uint32(math.MaxUint32)))
	}
	for _, w := range []struct {
		name string
		v    int
	}{
		{"initial-window-size", c.InitialWindowSize},
		{"initial-conn-window-size", c.InitialConnWindowSize},
	} {
		if w.v != 0 && (w.v < minWindow || w.v > maxWindow) {
			errs = append(errs, fmt.Errorf("%s: %d is not 0 (the transport's default) or between %d and %d", w.name, w.v, minWindow, maxWindow))
		}
	}
	if c.MaxHeaderListSize < minHeaderList || int64(c.MaxHeaderListSize) > math.MaxUint32 {
		errs = append(errs, fmt.Errorf("max-header-list-size: %d is not between %d and %d", c.MaxHeaderListSize, minHeaderList, uint32(math.MaxUint32)))
	}
	return errs
}

// DefaultHistory returns the default history bounds per room kind.
func DefaultHistory() map[room.Kind]broker.Limits {
	personal := broker.Limits{Size: 100, TTL: 10 * time.Minute}
	shared := broker.Limits{Size: 1000, TTL: 10 * time.Minute}
	return map[room.Kind]broker.Limits{
		room.KindGuest:                  personal,
		room.KindUser:                   personal,
		room.KindRestaurant:             shared,
		room.KindRestaurantPoints:       shared,
		room.KindRestaurantTransactions: shared,
		room.KindAdmin:                  shared,
	}
}

// historyLimits returns the broker's per-room bounds from the per-kind table.
func (c Config) historyLimits() func(string) broker.Limits {
	return func(name string) broker.Limits {
		r, err := room.Parse(name)
		if err != nil {
			return broker.Limits{}
		}
		return c.History[r.Kind()]
	}
}

// ParseHistory reads per-kind bounds written kind=size/ttl, comma-separated,
// for example "guest=50/5m,admin=5000/1h".
func ParseHistory(s string) (map[room.Kind]broker.Limits, error) {
	out := map[room.Kind]broker.Limits{}
	for _, part := range splitList(s) {
		name, spec, ok := strings.Cut(part, "=")
		size, ttl, ok2 := strings.Cut(spec, "/")
		if !ok || !ok2 {
			return nil, fmt.Errorf("history: %q: want kind=size/ttl", part)
		}
		k, found := room.KindByName(name)
		if !found {
			return nil, fmt.Errorf("history: unknown room kind %q", name)
		}
		n, err := strconv.Atoi(size)
		if err != nil || n < 0 {
			return nil, fmt.Errorf("history: %q: size must be a whole number", part)
		}
		d, err := time.ParseDuration(ttl)
		if err != nil || d < 0 {
			return nil, fmt.Errorf("history: %q: ttl must be a duration such as 10m", part)
		}
		out[k] = broker.Limits{Size: n, TTL: d}
	}
	return out, nil
}

func setStr(p *string, v string) {
	if *p == "" {
		*p = v
	}
}

func setInt(p *int, v int) {
	if *p <= 0 {
		*p = v
	}
}

func setDur(p *time.Duration, v time.Duration) {
	if *p <= 0 {
		*p = v
	}
}

// checkBaseURL accepts "" or an absolute http or https URL with a host and
// nothing after it but "/": the base a client appends method paths to.
func checkBaseURL(raw string) error {
	if raw == "" {
		return nil
	}
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return err
	case u.Scheme != "http" && u.Scheme != "https":
		return fmt.Errorf("%q: want an http or https URL", raw)
	case u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" || (u.Path != "" && u.Path != "/"):
		return fmt.Errorf("%q: want scheme, host and port only, as https://notify.example.com:9090", raw)
	}
	return nil
}
