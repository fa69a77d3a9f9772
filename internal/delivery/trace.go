package delivery

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/maxloyalty/notify/internal/tracing"
)

// span starts the span of one attempt of a job when tracing is on
// (Config.Tracer): the root of a trace of its own, since the publish that
// queued the job may have ended long before, linked to the publish's span
// when the job kept its traceparent. end records the attempt's error.
func (q *Queue) span(ctx context.Context, name, traceparent string, attempt int, eventID, channel string) (context.Context, func(error)) {
	if q.cfg.Tracer == nil {
		return ctx, func(error) {}
	}
	opts := []trace.SpanStartOption{
		trace.WithNewRoot(),
		trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithAttributes(
			attribute.String("notify.event_id", eventID),
			attribute.String("notify.channel", channel),
			attribute.Int("notify.attempt", attempt),
		),
	}
	if traceparent != "" {
		if link, err := tracing.Link(traceparent); err == nil {
			opts = append(opts, trace.WithLinks(link))
		}
	}
	ctx, span := q.cfg.Tracer.Start(ctx, name, opts...)
	return ctx, func(err error) {
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
		}
		span.End()
	}
}
