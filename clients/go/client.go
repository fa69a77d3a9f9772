package notify

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"google.golang.org/grpc"
	grpcbackoff "google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"

	notifyv1 "github.com/maxloyalty/notify/gen/notify/v1"
)

// Defaults of the Dial options.
const (
	DefaultKeepaliveTime    = 30 * time.Second
	DefaultKeepaliveTimeout = 10 * time.Second
	DefaultBackoffMin       = 250 * time.Millisecond
	DefaultBackoffMax       = 30 * time.Second
)

// retryServiceConfig makes gRPC retry the unary calls on UNAVAILABLE, up to
// four attempts. It is safe: Publish and PublishBatch always carry
// idempotency keys, and ConfirmAction is keyed by its action id on the
// server.
const retryServiceConfig = `{
  "methodConfig": [{
    "name": [
      {"service": "notify.v1.NotificationService", "method": "Publish"},
      {"service": "notify.v1.NotificationService", "method": "PublishBatch"},
      {"service": "notify.v1.NotificationService", "method": "ConfirmAction"}
    ],
    "retryPolicy": {
      "maxAttempts": 4,
      "initialBackoff": "0.1s",
      "maxBackoff": "2s",
      "backoffMultiplier": 2,
      "retryableStatusCodes": ["UNAVAILABLE"]
    }
  }]
}`

// Option configures Dial.
type Option func(*config)

type config struct {
	insecure         bool
	tls              *tls.Config
	tokens           TokenSource
	keepaliveTime    time.Duration
	keepaliveTimeout time.Duration
	backoff          Backoff
	dialOptions      []grpc.DialOption
	log              *slog.Logger
}

// WithInsecure connects in plaintext, without TLS. Meant for loopback (a
// local notifyd, tests); tokens then travel in clear.
func WithInsecure() Option {
	return func(c *config) { c.insecure, c.tls = true, nil }
}

// WithTLS connects over TLS with cfg. Without WithTLS or WithInsecure, the
// client uses TLS with the system's root certificates.
func WithTLS(cfg *tls.Config) Option {
	return func(c *config) { c.insecure, c.tls = false, cfg }
}

// WithToken sends a fixed bearer token with every call.
func WithToken(token string) Option {
	return WithTokenSource(staticToken(token))
}

// WithTokenSource asks src for the bearer token before every call and every
// (re)connection of a subscription, so a refreshing source keeps long-lived
// subscriptions going past the expiry of each token.
func WithTokenSource(src TokenSource) Option {
	return func(c *config) { c.tokens = src }
}

// WithKeepalive sets how long a connection may be idle before the client
// pings the server (interval) and how long it waits for the answer (timeout).
// Default 30s and 10s, pinging even without an active call. The server
// refuses pings more frequent than its --min-ping-interval (default 10s).
func WithKeepalive(interval, timeout time.Duration) Option {
	return func(c *config) { c.keepaliveTime, c.keepaliveTimeout = interval, timeout }
}

// WithBackoff bounds the delays between reconnections of subscriptions (and
// between connection attempts of the underlying gRPC channel): the first
// delay is at most min, each further one at most twice the previous bound,
// never more than max, with full jitter. Default 250ms and 30s.
func WithBackoff(min, max time.Duration) Option {
	return func(c *config) { c.backoff = Backoff{Min: min, Max: max} }
}

// WithDialOptions adds gRPC dial options, applied after the client's own.
func WithDialOptions(opts ...grpc.DialOption) Option {
	return func(c *config) { c.dialOptions = append(c.dialOptions, opts...) }
}

// WithLogger logs reconnections and dropped duplicates to log. Default:
// nothing is logged.
func WithLogger(log *slog.Logger) Option {
	return func(c *config) { c.log = log }
}

// Client is a connection to notifyd. It is safe for concurrent use; Close it
// when done.
type Client struct {
	conn    *grpc.ClientConn
	rpc     notifyv1.NotificationServiceClient
	tokens  TokenSource
	backoff Backoff
	log     *slog.Logger
}

// Dial creates a client for target, a gRPC target such as "host:port" or
// "dns:///host:port". It does not wait for the connection: calls connect as
// needed.
func Dial(target string, opts ...Option) (*Client, error) {
	cfg := config{
		keepaliveTime:    DefaultKeepaliveTime,
		keepaliveTimeout: DefaultKeepaliveTimeout,
		backoff:          Backoff{Min: DefaultBackoffMin, Max: DefaultBackoffMax},
	}
	for _, o := range opts {
		o(&cfg)
	}
	if err := cfg.backoff.validate(); err != nil {
		return nil, err
	}
	if cfg.keepaliveTime <= 0 || cfg.keepaliveTimeout <= 0 {
		return nil, errors.New("notify: keepalive time and timeout must be positive")
	}
	if cfg.log == nil {
		cfg.log = slog.New(slog.DiscardHandler)
	}

	var creds credentials.TransportCredentials
	if cfg.insecure {
		creds = insecure.NewCredentials()
	} else {
		t := cfg.tls
		if t == nil {
			t = &tls.Config{MinVersion: tls.VersionTLS12}
		}
		creds = credentials.NewTLS(t)
	}
	dopts := []grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		grpc.WithDefaultServiceConfig(retryServiceConfig),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{
			Time:                cfg.keepaliveTime,
			Timeout:             cfg.keepaliveTimeout,
			PermitWithoutStream: true,
		}),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff: grpcbackoff.Config{
				BaseDelay:  cfg.backoff.Min,
				Multiplier: 1.6,
				Jitter:     0.2,
				MaxDelay:   cfg.backoff.Max,
			},
			MinConnectTimeout: 20 * time.Second,
		}),
	}
	if cfg.tokens != nil {
		dopts = append(dopts, grpc.WithPerRPCCredentials(tokenCredentials{src: cfg.tokens, secure: !cfg.insecure}))
	}
	dopts = append(dopts, cfg.dialOptions...)
	conn, err := grpc.NewClient(target, dopts...)
	if err != nil {
		return nil, fmt.Errorf("notify: dial %s: %w", target, err)
	}
	return &Client{
		conn:    conn,
		rpc:     notifyv1.NewNotificationServiceClient(conn),
		tokens:  cfg.tokens,
		backoff: cfg.backoff,
		log:     cfg.log,
	}, nil
}

// Conn returns the client's gRPC connection, for the server's other
// services, such as notify.v1.InboxService (notifyv1.NewInboxServiceClient)
// or grpc.health.v1. Calls on it carry the client's token.
func (c *Client) Conn() *grpc.ClientConn { return c.conn }

// Service returns the generated stub over the client's connection, with the
// client's token and retry policy, for calls the Client does not wrap.
func (c *Client) Service() notifyv1.NotificationServiceClient { return c.rpc }

// Close closes the connection. Subscriptions still running end with
// ErrClientClosed.
func (c *Client) Close() error { return c.conn.Close() }

// ConfirmAction lets a guest confirm an action such as a redemption. The
// server keys it by its action id, so retrying it is safe.
func (c *Client) ConfirmAction(ctx context.Context, req *notifyv1.ConfirmActionRequest) (*notifyv1.ConfirmActionResponse, error) {
	return c.rpc.ConfirmAction(ctx, req)
}
