package limit

import (
	"log/slog"
	"time"
)

// Option configures a limiter. Each says which limiters it applies to;
// the others ignore it.
type Option func(*options)

type options struct {
	now      func() time.Time
	maxConns int
	onReject func(reason string)
	onOpen   func(delta int)
	log      *slog.Logger
}

func buildOptions(opts []Option) options {
	o := options{now: time.Now}
	for _, opt := range opts {
		opt(&o)
	}
	return o
}

// WithClock makes a PublishRate or ConnRate read time from now instead of
// time.Now, for tests.
func WithClock(now func() time.Time) Option {
	return func(o *options) { o.now = now }
}

// MaxConns caps the connections a ConnRate's listeners have open at once at
// n; n <= 0 (the default) means no cap.
func MaxConns(n int) Option {
	return func(o *options) { o.maxConns = n }
}

// OnReject makes a ConnRate call fn, with the reason, for every connection
// it refuses; fn must be quick and safe for concurrent use (a metrics
// counter).
func OnReject(fn func(reason string)) Option {
	return func(o *options) { o.onReject = fn }
}

// OnOpen makes a ConnRate call fn with +1 for every connection it admits
// and -1 when that connection is first closed, so a gauge of open
// connections needs no wrapper of its own; fn must be quick and safe for
// concurrent use.
func OnOpen(fn func(delta int)) Option {
	return func(o *options) { o.onOpen = fn }
}
