package node

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/maxloyalty/notify/internal/broker"
	"github.com/maxloyalty/notify/internal/room"
)

// BindFlags registers every Config field on fs as a flag whose default
// comes from the NOTIFY_* environment variable of the same name (for
// example --grpc-addr and NOTIFY_GRPC_ADDR). Flags win over the environment.
// It returns the environment variables that did not parse.
func (c *Config) BindFlags(fs *flag.FlagSet) error {
	d := Config{}.Defaults()
	b := &binder{fs: fs}
	str, boolean, integer, dur, list := b.str, b.boolean, b.integer, b.dur, b.list
	str(&c.GRPCAddr, "grpc-addr", d.GRPCAddr, "native gRPC listen address")
	str(&c.HTTPAddr, "http-addr", d.HTTPAddr, "grpc-web, REST and OpenAPI listen address")
	str(&c.ServerID, "server-id", d.ServerID, "node name reported to clients")
	boolean(&c.Dev, "dev", false, "dev mode: accept tokens signed with the built-in dev secret and mint them at POST /dev/token (never in production; not with a jwt key)")
	str(&c.JWTSecret, "jwt-secret", "", "HS256 secret (at least 32 bytes)")
	str(&c.JWTPublicKeyFile, "jwt-public-key-file", "", "PEM file of RSA/EC public keys for RS256/ES256")
	str(&c.JWTJWKSFile, "jwt-jwks-file", "", "JWKS file of RSA/EC public keys for RS256/ES256")
	str(&c.JWTIssuer, "jwt-issuer", "", "required token issuer (iss)")
	str(&c.JWTAudience, "jwt-audience", "", "required token audience (aud)")
	dur(&c.JWTLeeway, "jwt-leeway", d.JWTLeeway, "clock skew allowed on exp, nbf and iat (negative: none)")
	list(&c.JWTAllowNoExpiryRoles, "jwt-allow-no-expiry-roles", "comma-separated roles whose tokens may omit exp, e.g. service (default: every token must carry exp)")
	dur(&c.HeartbeatInterval, "heartbeat-interval", d.HeartbeatInterval, "idle time before a stream heartbeat")
	integer(&c.QueueBytes, "queue-bytes", d.QueueBytes, "bytes a slow stream may have queued before it is cut")
	integer(&c.MaxRoomsPerStream, "max-rooms-per-stream", d.MaxRoomsPerStream, "rooms one stream may join")
	integer(&c.MaxBatch, "max-batch", d.MaxBatch, "events in one PublishBatch")
	integer(&c.MaxMessageBytes, "max-message-bytes", d.MaxMessageBytes, "largest incoming message")
	b.history(&c.History, "history", "resume history per room kind, kind=size/ttl,... (kinds: guest, user, restaurant, restaurant_points, restaurant_transactions, admin; defaults 100/10m personal, 1000/10m shared)")
	dur(&c.IdempotencyWindow, "idempotency-window", d.IdempotencyWindow, "how long idempotency keys are remembered")
	str(&c.GRPCTransport, "grpc-transport", d.GRPCTransport, "native gRPC port served by wire (own HTTP/2 transport) or grpc-go (grpc-go's server)")
	integer(&c.GCFloor, "gc-floor", d.GCFloor, "least heap size in bytes at which a garbage collection starts (negative: Go's default; GOGC set: off)")
	str(&c.Broker, "broker", d.Broker, "memory (single node) or redis (several nodes)")
	str(&c.RedisURL, "redis-url", d.RedisURL, "Redis URL for --broker=redis")
	str(&c.RedisPrefix, "redis-prefix", d.RedisPrefix, "prefix of every Redis key and channel")
	str(&c.DataDir, "data-dir", d.DataDir, "directory of the embedded SQLite inbox")
	str(&c.Store, "store", "", "inbox database: postgres://... DSN or SQLite file (default: notify.db in --data-dir)")
	integer(&c.InboxMaxPerUser, "inbox-max-per-user", d.InboxMaxPerUser, "notifications kept per inbox")
	dur(&c.InboxMaxAge, "inbox-max-age", d.InboxMaxAge, "notifications older than this are pruned")
	dur(&c.ShutdownDrain, "shutdown-drain", d.ShutdownDrain, "longest graceful shutdown")
	dur(&c.ReconnectDelayMin, "reconnect-delay-min", d.ReconnectDelayMin, "shortest reconnect delay given at shutdown")
	dur(&c.ReconnectDelayMax, "reconnect-delay-max", d.ReconnectDelayMax, "longest reconnect delay given at shutdown")
	dur(&c.KeepaliveTime, "keepalive-time", d.KeepaliveTime, "idle time before the server pings a connection")
	dur(&c.KeepaliveTimeout, "keepalive-timeout", d.KeepaliveTimeout, "how long a ping may go unanswered")
	dur(&c.MinPingInterval, "min-ping-interval", d.MinPingInterval, "clients pinging more often are disconnected")
	dur(&c.MaxConnectionIdle, "max-connection-idle", 0, "native port: close a connection with no call open this long (0: never)")
	dur(&c.MaxConnectionAge, "max-connection-age", 0, "native port: send GOAWAY to a connection this long after it opened, ±10% jitter (0: never)")
	dur(&c.MaxConnectionAgeGrace, "max-connection-age-grace", 0, "native port: how long an aged connection's calls may go on after its GOAWAY (0: until they end)")
	integer(&c.MaxConcurrentStreams, "max-concurrent-streams", d.MaxConcurrentStreams, "native port: calls open at once per connection, advertised in SETTINGS")
	integer(&c.InitialWindowSize, "initial-window-size", 0, "native port: HTTP/2 receive window of each call in bytes, 65535 to 2^31-1 (0: the transport's)")
	integer(&c.InitialConnWindowSize, "initial-conn-window-size", 0, "native port: HTTP/2 receive window of each connection in bytes, 65535 to 2^31-1 (0: the transport's)")
	integer(&c.MaxHeaderListSize, "max-header-list-size", d.MaxHeaderListSize, "native port: largest request header list in bytes, advertised in SETTINGS")
	b.float(&c.PublishRate, "publish-rate", d.PublishRate, "events per second one publisher may publish (negative: no bound)")
	integer(&c.PublishBurst, "publish-burst", d.PublishBurst, "publish rate bucket size")
	integer(&c.MaxStreamsPerUser, "max-streams-per-user", d.MaxStreamsPerUser, "open streams one user may hold on a node (negative: no bound)")
	b.float(&c.ConnRate, "conn-rate", d.ConnRate, "new connections per second on each port (negative: no bound)")
	integer(&c.ConnBurst, "conn-burst", d.ConnBurst, "connection rate bucket size")
	integer(&c.MaxConnections, "max-connections", 0, "open connections on each port (0: no bound)")
	str(&c.TLSCertFile, "tls-cert-file", "", "TLS certificate (PEM) for both ports, reloaded on change")
	str(&c.TLSKeyFile, "tls-key-file", "", "TLS private key (PEM) for both ports")
	dur(&c.HTTPReadHeaderTimeout, "http-read-header-timeout", d.HTTPReadHeaderTimeout, "longest an HTTP client may take to send its headers")
	list(&c.AllowedOrigins, "allowed-origins", "comma-separated browser origins allowed for grpc-web and REST (* for any); the native port's grpc-web also grants https pages of its own host")
	str(&c.WebDir, "web-dir", d.WebDir, "directory of the built web app served at / on the HTTP port")
	str(&c.AppGRPCWebURL, "app-grpc-web-url", d.AppGRPCWebURL, "base URL the web app sends its grpc-web calls to, such as the native port's (https://host:9090); empty: the page's own origin")
	str(&c.DebugAddr, "debug-addr", d.DebugAddr, "serve Go's profiles (/debug/pprof/) on this address, a bare port on 127.0.0.1; off when empty")
	str(&c.LogFormat, "log-format", d.LogFormat, "text or json")
	str(&c.LogLevel, "log-level", d.LogLevel, "debug, info, warn or error")
	c.Delivery.bindFlags(b)
	c.Timing.bindFlags(b)
	return errors.Join(b.errs...)
}

// binder registers flags with environment defaults, collecting bad values.
type binder struct {
	fs   *flag.FlagSet
	errs []error
}

func envName(flagName string) string {
	return "NOTIFY_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// badEnv is an environment value that does not parse.
type badEnv struct{ name, value, want string }

func (b badEnv) Error() string {
	return fmt.Sprintf("%s=%q: not a valid %s", b.name, b.value, b.want)
}

func (b *binder) str(p *string, name, def, usage string) {
	if v, ok := os.LookupEnv(envName(name)); ok {
		def = v
	}
	b.fs.StringVar(p, name, def, usage+" ("+envName(name)+")")
}

func (b *binder) boolean(p *bool, name string, def bool, usage string) {
	if v, ok := os.LookupEnv(envName(name)); ok {
		parsed, err := strconv.ParseBool(v)
		if err != nil {
			b.errs = append(b.errs, badEnv{envName(name), v, "boolean"})
		}
		def = parsed
	}
	b.fs.BoolVar(p, name, def, usage+" ("+envName(name)+")")
}

func (b *binder) integer(p *int, name string, def int, usage string) {
	if v, ok := os.LookupEnv(envName(name)); ok {
		i, err := strconv.Atoi(v)
		if err != nil {
			b.errs = append(b.errs, badEnv{envName(name), v, "integer"})
		}
		def = i
	}
	b.fs.IntVar(p, name, def, usage+" ("+envName(name)+")")
}

func (b *binder) dur(p *time.Duration, name string, def time.Duration, usage string) {
	if v, ok := os.LookupEnv(envName(name)); ok {
		d, err := time.ParseDuration(v)
		if err != nil {
			b.errs = append(b.errs, badEnv{envName(name), v, "duration (e.g. 30s)"})
		}
		def = d
	}
	b.fs.DurationVar(p, name, def, usage+" ("+envName(name)+")")
}

func (b *binder) list(p *[]string, name, usage string) {
	if v, ok := os.LookupEnv(envName(name)); ok {
		*p = splitList(v)
	}
	b.fs.Func(name, usage+" ("+envName(name)+")", func(s string) error {
		*p = splitList(s)
		return nil
	})
}

func (b *binder) float(p *float64, name string, def float64, usage string) {
	if v, ok := os.LookupEnv(envName(name)); ok {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil {
			b.errs = append(b.errs, badEnv{envName(name), v, "number"})
		}
		def = f
	}
	b.fs.Float64Var(p, name, def, usage+" ("+envName(name)+")")
}

func (b *binder) history(p *map[room.Kind]broker.Limits, name, usage string) {
	set := func(s string) error {
		h, err := ParseHistory(s)
		if err != nil {
			return err
		}
		*p = h
		return nil
	}
	if v, ok := os.LookupEnv(envName(name)); ok {
		if err := set(v); err != nil {
			b.errs = append(b.errs, fmt.Errorf("%s: %w", envName(name), err))
		}
	}
	b.fs.Func(name, usage+" ("+envName(name)+")", set)
}

func splitList(s string) []string {
	var out []string
	for _, part := range strings.Split(s, ",") {
		if part = strings.TrimSpace(part); part != "" {
			out = append(out, part)
		}
	}
	return out
}

// ApplyFile sets, from a config file, every flag not given on the command
// line. The file has one `name = value` per line, names as the flags'
// (without dashes before them), `#` starting a comment. Unknown names and
// bad values are errors naming the line.
func ApplyFile(fs *flag.FlagSet, path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config file: %w", err)
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, value, ok := strings.Cut(line, "=")
		name, value = strings.TrimSpace(name), strings.TrimSpace(value)
		if !ok || name == "" {
			return fmt.Errorf("config file %s:%d: want name = value", path, i+1)
		}
		value = strings.Trim(value, `"`)
		if fs.Lookup(name) == nil || name == "config" {
			return fmt.Errorf("config file %s:%d: unknown setting %q", path, i+1, name)
		}
		if given[name] {
			continue // the command line wins
		}
		if err := fs.Set(name, value); err != nil {
			return fmt.Errorf("config file %s:%d: %s: %w", path, i+1, name, err)
		}
	}
	return nil
}

// secretFlags hold secrets, or URLs and DSNs that may embed a password.
var secretFlags = map[string]bool{
	"jwt-secret": true, "webpush-vapid-private-key": true, "fcm-credentials": true,
	"apns-key": true, "smtp-password": true, "webhook-secrets": true,
}

// PrintConfig writes the effective value of every flag, one `name = value`
// per line (the config file format), with secrets masked.
func PrintConfig(w io.Writer, fs *flag.FlagSet) {
	fs.VisitAll(func(f *flag.Flag) {
		if f.Name == "config" {
			return
		}
		v := f.Value.String()
		switch {
		case secretFlags[f.Name] && v != "":
			v = "********"
		case strings.Contains(v, "://"):
			v = maskURL(v)
		}
		fmt.Fprintf(w, "%s = %s\n", f.Name, v)
	})
}

// maskURL hides the password of a URL such as postgres://u:p@h/db.
func maskURL(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.User == nil {
		return s
	}
	if _, has := u.User.Password(); has {
		u.User = url.UserPassword(u.User.Username(), "xxxxx")
	}
	return u.String()
}
