package delivery

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/maxloyalty/notify/internal/store"
)

// Metrics are the queue's Prometheus instruments, per channel (webpush,
// fcm, apns, email, webhook). Register the value on a registry: it is a
// prometheus.Collector, and reads the queue's depth from the database when
// collected.
type Metrics struct {
	sent, failed, retried, dead, cancelled, removed *prometheus.CounterVec
	liveRecorded, liveDropped                       prometheus.Counter

	jobs, oldest *prometheus.Desc
	st           atomic.Pointer[store.Store]
	queues       []string // the configured queues, whose gauges exist at zero
}

func newMetrics() *Metrics {
	counter := func(name, help string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "notify", Subsystem: "delivery", Name: name, Help: help}, []string{"channel"})
	}
	return &Metrics{
		sent:      counter("sent_total", "Deliveries the provider accepted (webhooks: the receiver answered 2xx)."),
		failed:    counter("failed_total", "Deliveries that failed for good at once: refused by the provider, or its target gone."),
		retried:   counter("retried_total", "Attempts that failed and were scheduled again."),
		dead:      counter("dead_total", "Deliveries abandoned after their last attempt."),
		cancelled: counter("cancelled_total", "Deliveries cancelled before sending: seen in time, or their device removed."),
		removed:   counter("tokens_removed_total", "Devices removed because the provider said their token or subscription is gone."),
		liveRecorded: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "notify", Subsystem: "delivery", Name: "live_recorded_total",
			Help: "Deliveries to live streams recorded (they cancel delayed deliveries)."}),
		liveDropped: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "notify", Subsystem: "delivery", Name: "live_dropped_total",
			Help: "Deliveries to live streams not recorded: the buffer was full or the store failed."}),
		jobs: prometheus.NewDesc("notify_delivery_queue_jobs", "Unfinished jobs in the delivery queue, per channel and state (available, scheduled, retryable, running).",
			[]string{"channel", "state"}, nil),
		oldest: prometheus.NewDesc("notify_delivery_queue_oldest_seconds", "How long the oldest due job (available or retryable) of each channel has been due.",
			[]string{"channel"}, nil),
	}
}

// init creates each queue's series at zero.
func (m *Metrics) init(queues []string) {
	m.queues = queues
	for _, ch := range queues {
		for _, v := range []*prometheus.CounterVec{m.sent, m.failed, m.retried, m.dead, m.cancelled, m.removed} {
			v.WithLabelValues(ch)
		}
	}
}

func (m *Metrics) watch(st store.Store) { m.st.Store(&st) }

func (m *Metrics) vecs() []*prometheus.CounterVec {
	return []*prometheus.CounterVec{m.sent, m.failed, m.retried, m.dead, m.cancelled, m.removed}
}

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, v := range m.vecs() {
		v.Describe(ch)
	}
	m.liveRecorded.Describe(ch)
	m.liveDropped.Describe(ch)
	ch <- m.jobs
	ch <- m.oldest
}

// collectTimeout bounds the queue-depth query of one scrape.
const collectTimeout = 2 * time.Second

// Collect implements prometheus.Collector. The queue's depth is read from
// the database (bounded by collectTimeout; a failed read leaves the
// gauges out of that scrape).
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	for _, v := range m.vecs() {
		v.Collect(ch)
	}
	m.liveRecorded.Collect(ch)
	m.liveDropped.Collect(ch)
	p := m.st.Load()
	if p == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), collectTimeout)
	defer cancel()
	stats, err := (*p).QueueStats(ctx)
	if err != nil {
		return
	}
	byQueue := map[string]store.QueueStat{}
	for _, q := range stats {
		byQueue[q.Queue] = q
	}
	for _, name := range m.queues {
		q := byQueue[name]
		for _, state := range []string{"available", "scheduled", "retryable", "running"} {
			ch <- prometheus.MustNewConstMetric(m.jobs, prometheus.GaugeValue, float64(q.Jobs[state]), name, state)
		}
		ch <- prometheus.MustNewConstMetric(m.oldest, prometheus.GaugeValue, q.OldestDue.Seconds(), name)
	}
}
