package metrics

import (
	"net/http"
	"runtime"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// namespace prefixes every instrument's name.
const namespace = "notify"

// RoomKinds returns the room kinds with their own label value, as package
// room names them. Any other kind is counted as "unknown".
func RoomKinds() []string {
	return []string{
		"restaurant",
		"restaurant_points",
		"restaurant_transactions",
		"guest",
		"user",
		"admin",
	}
}

// unknownKind labels a room kind outside RoomKinds.
const unknownKind = "unknown"

// Transport label values of notify_connections_open.
const (
	// TransportGRPC is the native gRPC port.
	TransportGRPC = "grpc"
	// TransportHTTP is the HTTP port (grpc-web, REST, websockets).
	TransportHTTP = "http"
)

// kindInstruments are one room kind's pre-resolved label children.
type kindInstruments struct {
	subscribers prometheus.Gauge
	published   prometheus.Counter
}

// Metrics is notifyd's set of instruments and the registry serving them.
type Metrics struct {
	reg *prometheus.Registry

	grpcRequests *prometheus.CounterVec
	grpcDuration *prometheus.HistogramVec
	streamsOpen  prometheus.Gauge
	methods      methodSet

	connections *prometheus.GaugeVec

	subscribers     *prometheus.GaugeVec
	published       *prometheus.CounterVec
	kinds           map[string]kindInstruments
	unknown         kindInstruments
	delivered       prometheus.Counter
	latency         prometheus.Histogram
	queueDrops      prometheus.Counter
	slowConsumers   prometheus.Counter
	brokerErrors    *prometheus.CounterVec
	storeErrors     *prometheus.CounterVec
	limitRejections *prometheus.CounterVec
}

// New builds the instruments and a registry holding them, the Go and
// process collectors and notify_build_info{version, commit, go_version}.
func New(buildVersion, buildCommit string) *Metrics {
	reg := prometheus.NewRegistry()
	m := &Metrics{reg: reg}
	m.grpcRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "grpc_requests_total",
		Help: "gRPC calls completed, by full method name and status code.",
	}, []string{"method", "code"})
	m.grpcDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: namespace, Name: "grpc_request_duration_seconds",
		Help:    "Duration of completed gRPC calls (streams: their whole life), by full method name and status code.",
		Buckets: []float64{.0005, .001, .005, .01, .025, .05, .1, .25, .5, 1, 5, 30, 300, 3600},
	}, []string{"method", "code"})
	m.streamsOpen = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: namespace, Name: "grpc_streams_open",
		Help: "gRPC streams in progress.",
	})
	m.connections = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: namespace, Name: "connections_open",
		Help: "Open client connections, by transport.",
	}, []string{"transport"})
	m.subscribers = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: namespace, Name: "subscribers",
		Help: "Room subscriptions on this node, by room kind.",
	}, []string{"room_kind"})
	m.published = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "events_published_total",
		Help: "Events published, one per room they were published in, by room kind.",
	}, []string{"room_kind"})
	m.delivered = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: namespace, Name: "events_delivered_total",
		Help: "Events written to subscriber streams.",
	})
	m.latency = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: namespace, Name: "delivery_latency_seconds",
		Help: "Time from an event's publish to the moment a stream writes it.",
		// 0.5 ms to 5 s.
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
	})
	m.queueDrops = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: namespace, Name: "queue_drops_total",
		Help: "Frames dropped from closed or overflowed subscriber queues.",
	})
	m.slowConsumers = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: namespace, Name: "slow_consumer_disconnects_total",
		Help: "Streams ended because their queue overflowed.",
	})
	m.brokerErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "broker_errors_total",
		Help: "Broker operations that failed, by operation.",
	}, []string{"op"})
	m.storeErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "store_errors_total",
		Help: "Store operations that failed, by operation.",
	}, []string{"op"})
	m.limitRejections = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "limit_rejections_total",
		Help: "Requests, streams or connections refused by a limit, by limit.",
	}, []string{"limit"})
	build := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: namespace, Name: "build_info",
		Help: "Build of this notifyd; the value is always 1.",
	}, []string{"version", "commit", "go_version"})
	build.WithLabelValues(buildVersion, buildCommit, runtime.Version()).Set(1)

	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.grpcRequests, m.grpcDuration, m.streamsOpen,
		m.connections,
		m.subscribers, m.published, m.delivered, m.latency, m.queueDrops, m.slowConsumers,
		m.brokerErrors, m.storeErrors, m.limitRejections,
		build,
	)

	// Resolve the fixed label children once, so the hot path neither
	// hashes labels nor allocates, and every series exists from the start.
	kinds := RoomKinds()
	m.kinds = make(map[string]kindInstruments, len(kinds))
	for _, k := range kinds {
		m.kinds[k] = m.kindInstruments(k)
	}
	m.unknown = m.kindInstruments(unknownKind)
	m.connections.WithLabelValues(TransportGRPC)
	m.connections.WithLabelValues(TransportHTTP)
	// Every limit's series exists from the start, at 0, so that a rate of
	// refusals (connections refused on accept above all, which nothing
	// else shows) can be graphed and alerted on before the first one.
	for _, l := range Limits() {
		m.limitRejections.WithLabelValues(l)
	}
	// So do the error counters: an alert on their rate then fires on a
	// node's first error, not its second.
	for _, op := range BrokerOps() {
		m.brokerErrors.WithLabelValues(op)
	}
	for _, op := range StoreOps() {
		m.storeErrors.WithLabelValues(op)
	}
	return m
}

// BrokerOps returns the op label values of notify_broker_errors_total
// that BrokerError is called with.
func BrokerOps() []string { return []string{"publish", "history", "listen"} }

// StoreOps returns the op label values of notify_store_errors_total that
// StoreError is called with.
func StoreOps() []string { return []string{"insert"} }

// Limits returns the limit label values of notify_limit_rejections_total
// that LimitRejected is called with.
func Limits() []string {
	return []string{"publish_rate", "streams", "rooms", "batch_size", "conn_rate", "max_connections"}
}

func (m *Metrics) kindInstruments(kind string) kindInstruments {
	return kindInstruments{
		subscribers: m.subscribers.WithLabelValues(kind),
		published:   m.published.WithLabelValues(kind),
	}
}

func (m *Metrics) kind(roomKind string) kindInstruments {
	if k, ok := m.kinds[roomKind]; ok {
		return k
	}
	return m.unknown
}

// Registry is the registry New built, for collectors of other packages.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the registry in the Prometheus exposition formats.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		ErrorHandling:       promhttp.ContinueOnError,
		MaxRequestsInFlight: 4,
	})
}

// Observe registers a gauge whose value fn returns at every scrape. name is
// the full metric name (start it with "notify_"). fn must be safe for
// concurrent use and quick. Observe panics if the name is invalid or
// already registered: both are programming errors.
func (m *Metrics) Observe(name, help string, fn func() float64) {
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, fn))
}

// EventPublished counts one event published in a room of roomKind.
func (m *Metrics) EventPublished(roomKind string) { m.kind(roomKind).published.Inc() }

// SubscriberJoined counts a stream joining a room of roomKind.
func (m *Metrics) SubscriberJoined(roomKind string) { m.kind(roomKind).subscribers.Inc() }

// SubscriberLeft counts a stream leaving a room of roomKind.
func (m *Metrics) SubscriberLeft(roomKind string) { m.kind(roomKind).subscribers.Dec() }

// Delivered counts n events written to a stream in one write and observes
// latency, the publish-to-write time, once. Call it per event for a
// per-event latency distribution, or per coalesced write with the oldest
// event's latency. n <= 0 records nothing.
func (m *Metrics) Delivered(n int, latency time.Duration) {
	if n <= 0 {
		return
	}
	m.delivered.Add(float64(n))
	m.latency.Observe(latency.Seconds())
}

// QueueDropped counts n frames dropped from a closed or overflowed queue.
func (m *Metrics) QueueDropped(n int) {
	if n > 0 {
		m.queueDrops.Add(float64(n))
	}
}

// SlowConsumer counts a stream ended because its queue overflowed.
func (m *Metrics) SlowConsumer() { m.slowConsumers.Inc() }

// BrokerError counts a failed broker operation; op is a constant such as
// "publish" or "history".
func (m *Metrics) BrokerError(op string) { m.brokerErrors.WithLabelValues(op).Inc() }

// StoreError counts a failed store operation; op is a constant such as
// "append" or "prune".
func (m *Metrics) StoreError(op string) { m.storeErrors.WithLabelValues(op).Inc() }

// LimitRejected counts a refusal by a limit; limit is a constant such as
// "publish_rate", "streams", "rooms", "batch_size", "conn_rate" or
// "max_connections".
func (m *Metrics) LimitRejected(limit string) { m.limitRejections.WithLabelValues(limit).Inc() }
