package loadgen

import (
	"context"
	"errors"
	"net/url"
	"strconv"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.39.0"
	"go.opentelemetry.io/otel/trace"
)

// bucketTemplate is the url.template of every request loadgen sends.
const bucketTemplate = "/api/buckets/{id}"

// AttrScheduleLag is how long after its due time a rate-mode request was sent (for a
// late one, the wait for a free worker).
const AttrScheduleLag = attribute.Key("loadgen.schedule_lag_seconds")

// startSpan starts the client span of one request, named like the server's span
// ("{method} {url.template}", HTTP client semantic conventions). It starts at the send:
// the client span beside the server span shows the time spent between them.
func (c *client) startSpan(ctx context.Context, method, id string, j job, sent time.Time) (context.Context, trace.Span) {
	ctx, span := c.tracer.Start(ctx, method+" "+bucketTemplate,
		trace.WithSpanKind(trace.SpanKindClient), trace.WithTimestamp(sent))
	if span.IsRecording() {
		span.SetAttributes(
			semconv.HTTPRequestMethodKey.String(method),
			semconv.URLFull(c.base+url.PathEscape(id)),
			semconv.URLTemplate(bucketTemplate),
			semconv.ServerAddress(c.host),
			semconv.ServerPort(c.port),
		)
		if j.paced {
			span.SetAttributes(AttrScheduleLag.Float64(sent.Sub(j.due).Seconds()), attribute.Bool("loadgen.late", j.late))
		}
	}
	return ctx, span
}

// endSpan records the outcome: for a client span, 4xx and 5xx are errors, and so is a
// request that got no answer (error.type names the cause).
func endSpan(span trace.Span, code int, err error, end time.Time) {
	if span.IsRecording() {
		switch {
		case err != nil:
			typ := "transport"
			var uerr *url.Error
			if errors.As(err, &uerr) && uerr.Timeout() {
				typ = "timeout"
			}
			span.SetAttributes(semconv.ErrorTypeKey.String(typ))
			span.SetStatus(codes.Error, err.Error())
		default:
			span.SetAttributes(semconv.HTTPResponseStatusCode(code))
			if code >= 400 {
				span.SetAttributes(semconv.ErrorTypeKey.String(strconv.Itoa(code)))
				span.SetStatus(codes.Error, strconv.Itoa(code))
			}
		}
	}
	span.End(trace.WithTimestamp(end))
}
