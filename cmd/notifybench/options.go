package main

import (
	"crypto/x509"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/maxloyalty/notify/internal/node"
)

// options are the flags of every mode.
type options struct {
	GRPCAddr      string
	HTTPAddr      string
	Secret        string
	ServerPID     int
	ServerProfile string // a CPU profile of the server's measured phase, written here
	ServerDebug   string // the server's --debug-addr
	// CPUProfile is where the load generator's own CPU profile goes.
	CPUProfile string
	JSON       bool
	Quiet      bool

	Duration    time.Duration
	Subscribers int
	Conns       int
	Rate        float64
	Payload     int
	Batch       int
	Publishers  int
	PubConns    int
	Transport   string
	Decode      string
	Room        string
	RoomPrefix  string
	Idempotency bool
	MaxEvents   int64

	Hold        time.Duration
	Concurrency int
	Publish     string
	// DriverThreads is h2load's and wrk's -t.
	DriverThreads int

	ConnectParallel int
	ConnectTimeout  time.Duration
	Drain           time.Duration
	Window          int
	ConnWindow      int

	InProcess  bool
	QueueBytes int
	Spawn      string
	SpawnArgs  string

	Soak soakOptions
}

func defaultOptions() options {
	return options{
		GRPCAddr:        "127.0.0.1:9090",
		HTTPAddr:        "127.0.0.1:8080",
		Secret:          node.DevSecret,
		Duration:        10 * time.Second,
		Subscribers:     1000,
		Conns:           10,
		Rate:            100,
		Payload:         128,
		Batch:           1,
		Publishers:      4,
		PubConns:        2,
		Transport:       "grpc",
		Decode:          "full",
		Room:            "restaurant:r1:transactions",
		Hold:            5 * time.Second,
		Concurrency:     16,
		Publish:         "unary,batch,rest",
		DriverThreads:   1,
		ConnectParallel: 128,
		ConnectTimeout:  3 * time.Minute,
		Drain:           10 * time.Second,
		Window:          1 << 20,
		ConnWindow:      16 << 20,
		MaxEvents:       50_000_000,
		SpawnArgs:       "--queue-bytes 4194304 --publish-rate -1 --conn-rate -1 --max-streams-per-user -1",
		Soak:            defaultSoakOptions(),
	}
}

// bind registers the flags on fs, with o's values as defaults.
func (o *options) bind(fs *flag.FlagSet) {
	fs.StringVar(&o.GRPCAddr, "grpc", o.GRPCAddr, "notifyd native gRPC address")
	fs.StringVar(&o.HTTPAddr, "http", o.HTTPAddr, "notifyd HTTP address (grpc-web, REST)")
	fs.StringVar(&o.Secret, "secret", o.Secret, "HS256 secret the tokens are minted with (default: the dev secret)")
	fs.IntVar(&o.ServerPID, "server-pid", o.ServerPID, "notifyd's process id for RSS and CPU (default: found by the gRPC port)")
	fs.StringVar(&o.ServerProfile, "server-profile", o.ServerProfile, "write a CPU profile of the server, taken from the start of the measured phase for --duration, to this file (needs --server-debug, or --spawn)")
	fs.StringVar(&o.ServerDebug, "server-debug", o.ServerDebug, "the server's debug address (notifyd --debug-addr), for --server-profile; --spawn sets it")
	fs.StringVar(&o.CPUProfile, "cpuprofile", o.CPUProfile, "write a CPU profile of this load generator (not the server) to this file")
	fs.BoolVar(&o.JSON, "json", o.JSON, "print the results as JSON instead of a table")
	fs.BoolVar(&o.Quiet, "quiet", o.Quiet, "no progress lines on stderr")

	fs.DurationVar(&o.Duration, "duration", o.Duration, "publishing time of fanout, personal and each publish variant")
	fs.IntVar(&o.Subscribers, "subscribers", o.Subscribers, "streams (fanout: in one room; personal: one room each; idle: held)")
	fs.IntVar(&o.Conns, "conns", o.Conns, "gRPC connections the streams are spread over (grpc-web: one per stream)")
	fs.Float64Var(&o.Rate, "rate", o.Rate, "target events published per second (0: as fast as possible)")
	fs.IntVar(&o.Payload, "payload", o.Payload, "encoded PointsAdded bytes per event (padded description)")
	fs.IntVar(&o.Batch, "batch", o.Batch, "events per publish call (>1: PublishBatch); publish: the batch variant's")
	fs.IntVar(&o.Publishers, "publishers", o.Publishers, "concurrent publish calls in fanout and personal")
	fs.IntVar(&o.PubConns, "pub-conns", o.PubConns, "gRPC connections of the publishers (publish: of grpc-go's client and h2load's -c)")
	fs.StringVar(&o.Transport, "transport", o.Transport, "subscriber transport: grpc (grpc-go client streams), h2 (gRPC over HTTP/2 frames read by one goroutine per connection: a lighter load generator), grpcweb (HTTP/1.1, a connection per stream), grpcweb-h2c (HTTP/2 without TLS to the native gRPC port, as from a proxy that ends the browser's TLS), grpcweb-tls (HTTP/1.1 over TLS), grpcweb-h2 (HTTP/2 over TLS), grpcweb-native (the same to the native gRPC port) or grpc-tls (grpc-go client streams over TLS); the last four in idle mode only, against a notifyd with TLS on its ports, which --spawn starts")
	fs.StringVar(&o.Decode, "decode", o.Decode, "subscriber decoding: full (generated types) or wire (scan only the needed fields)")
	fs.StringVar(&o.Room, "room", o.Room, "fanout and publish room")
	fs.StringVar(&o.RoomPrefix, "room-prefix", o.RoomPrefix, "personal and idle rooms are <prefix><i> (default guest:nb<random>-)")
	fs.BoolVar(&o.Idempotency, "idempotency", o.Idempotency, "give every published event a unique idempotency key (as the Go SDK does)")
	fs.Int64Var(&o.MaxEvents, "max-events", o.MaxEvents, "upper bound on the events of one publishing run")

	fs.DurationVar(&o.Hold, "hold", o.Hold, "idle: how long streams are held before RSS is read")
	fs.IntVar(&o.Concurrency, "concurrency", o.Concurrency, "publish: calls in flight (unary: h2load's -c --pub-conns times -m streams per connection; rest: wrk's -c connections)")
	fs.StringVar(&o.Publish, "variants", o.Publish, "publish: comma-separated variants among unary (gRPC Publish from h2load), batch (PublishBatch from grpc-go's client) and rest (POST /v1/events from wrk)")
	fs.IntVar(&o.DriverThreads, "driver-threads", o.DriverThreads, "publish: threads of h2load and wrk (-t)")

	fs.IntVar(&o.ConnectParallel, "connect-parallel", o.ConnectParallel, "streams being opened at once")
	fs.DurationVar(&o.ConnectTimeout, "connect-timeout", o.ConnectTimeout, "limit on opening every stream")
	fs.DurationVar(&o.Drain, "drain", o.Drain, "limit on waiting for subscribers to catch up after publishing")
	fs.IntVar(&o.Window, "window", o.Window, "client HTTP/2 stream receive window, bytes")
	fs.IntVar(&o.ConnWindow, "conn-window", o.ConnWindow, "client HTTP/2 connection receive window, bytes")

	fs.BoolVar(&o.InProcess, "inprocess", o.InProcess, "run a dev node inside this process (127.0.0.1, random ports) instead of using --grpc/--http")
	fs.IntVar(&o.QueueBytes, "queue-bytes", o.QueueBytes, "--inprocess node (soak: also --spawn, and the size of a stall): per-stream queue bound (0: notifyd's default, 1 MiB)")
	fs.StringVar(&o.Spawn, "spawn", o.Spawn, "start this notifyd binary in dev mode on free ports for the run, and stop it afterwards")
	fs.StringVar(&o.SpawnArgs, "spawn-args", o.SpawnArgs, "notifyd flags for --spawn besides --dev, addresses and data dir, space-separated (the default lifts the per-publisher, connection-rate and streams-per-user limits, which are policies, not capacity; soak: notifyd's defaults)")
	o.Soak.bind(fs)
}

func (o *options) validate() error {
	switch {
	case o.Duration <= 0 || o.Duration > o.maxDuration():
		return fmt.Errorf("--duration: %v is not in (0, %v]", o.Duration, o.maxDuration())
	case o.Subscribers < 0 || o.Subscribers > 1_000_000:
		return fmt.Errorf("--subscribers: %d is not in [0, 1000000]", o.Subscribers)
	case o.Conns < 1:
		return fmt.Errorf("--conns: must be at least 1")
	case o.Rate < 0:
		return fmt.Errorf("--rate: must not be negative")
	case o.Batch < 1 || o.Batch > 10_000:
		return fmt.Errorf("--batch: %d is not in [1, 10000]", o.Batch)
	case o.Publishers < 1 || o.Concurrency < 1 || o.PubConns < 1 || o.DriverThreads < 1:
		return fmt.Errorf("--publishers, --concurrency, --pub-conns and --driver-threads must be at least 1")
	case o.Window < 64<<10 || o.ConnWindow < 64<<10:
		return fmt.Errorf("--window and --conn-window must be at least 65536")
	case !slices.Contains(transports, o.Transport):
		return fmt.Errorf("--transport: %q is not %s", o.Transport, strings.Join(transports, ", "))
	}
	if _, err := newDecoder(o.Decode); err != nil {
		return err
	}
	if o.RoomPrefix == "" {
		o.RoomPrefix = "guest:nb" + strconv.FormatUint(rand.Uint64()%(36*36*36*36), 36) + "-"
	}
	if o.Soak.on {
		return o.checkSoak()
	}
	return nil
}

// bench is one invocation's shared state.
type bench struct {
	opts   options
	minter minter
	server *serverMeter
	log    io.Writer // progress lines; nil: none
	// tlsRoots verifies the server's HTTP port when it serves TLS
	// (tlsTransport); nil: plaintext.
	tlsRoots *x509.CertPool
}

func (b *bench) progress(format string, args ...any) {
	if b.log != nil && !b.opts.Quiet {
		fmt.Fprintf(b.log, "notifybench: "+format+"\n", args...)
	}
}

func (b *bench) fleetConfig() fleetConfig {
	return fleetConfig{
		transport:  b.opts.Transport,
		grpcAddr:   b.opts.GRPCAddr,
		httpAddr:   b.opts.HTTPAddr,
		tlsRoots:   b.tlsRoots,
		conns:      b.opts.Conns,
		parallel:   b.opts.ConnectParallel,
		window:     int32(b.opts.Window),
		connWindow: int32(b.opts.ConnWindow),
		decode:     b.opts.Decode,
		shards:     64,
	}
}

// transports are the --transport values.
var transports = []string{"grpc", "grpc-tls", "grpcweb", "grpcweb-tls", "grpcweb-h2", "grpcweb-native", "grpcweb-h2c", "h2"}

// tlsTransport reports a transport that needs a notifyd with TLS on its
// ports (idle runs only).
func tlsTransport(t string) bool {
	return t == "grpc-tls" || t == "grpcweb-tls" || t == "grpcweb-h2" || t == "grpcweb-native"
}

// webTransport reports a grpc-web transport: a connection per stream.
func webTransport(t string) bool {
	return t == "grpcweb" || t == "grpcweb-tls" || t == "grpcweb-h2" || t == "grpcweb-native" || t == "grpcweb-h2c"
}
