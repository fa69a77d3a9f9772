package service

import (
	"time"
)

// Metrics receives what the service observes. The node passes a
// *metrics.Metrics; nil in Config means none.
type Metrics interface {
	EventPublished(roomKind string)
	SubscriberJoined(roomKind string)
	SubscriberLeft(roomKind string)
	Delivered(n int, latency time.Duration)
	QueueDropped(n int)
	SlowConsumer()
	BrokerError(op string)
	StoreError(op string)
	LimitRejected(limit string)
}

// Limits are the per-caller bounds the service enforces; nil fields in
// Config mean no bound.
type Limits struct {
	// Publish allows n more events for a publisher (by token subject).
	Publish interface {
		Allow(key string, n int) error
	}
	// Streams bounds the open streams of one user.
	Streams interface {
		Acquire(user string) (release func(), err error)
	}
}

// noMetrics discards observations.
type noMetrics struct{}

func (noMetrics) EventPublished(string)        {}
func (noMetrics) SubscriberJoined(string)      {}
func (noMetrics) SubscriberLeft(string)        {}
func (noMetrics) Delivered(int, time.Duration) {}
func (noMetrics) QueueDropped(int)             {}
func (noMetrics) SlowConsumer()                {}
func (noMetrics) BrokerError(string)           {}
func (noMetrics) StoreError(string)            {}
func (noMetrics) LimitRejected(string)         {}
