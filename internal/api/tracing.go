package api

import (
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.39.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/sre-instrumentation/storage-api/internal/metrics"
	"github.com/sre-instrumentation/storage-api/internal/tracing"
)

// tracerName is the instrumentation scope of the server spans.
const tracerName = "github.com/sre-instrumentation/storage-api/internal/api"

// serverTracer starts the server span of each request. observe holds a nil one when
// tracing is off, and then does nothing more than a nil check.
type serverTracer struct {
	tracer trace.Tracer
	prop   propagation.TextMapPropagator
	// headRatio < 1: a request without traceparent gets a span only with this
	// probability, drawn here (the provider then samples every root it is asked for).
	headRatio float64
	// continueOnly: start no trace of its own, only continue a caller's (see continuing).
	continueOnly bool
}

// continuing returns the tracer of the operational routes (health, readiness, metrics):
// it records a request only when a caller's valid traceparent asks for it. Their own
// root traces would be one per probe and per scrape: noise in the tracing backend,
// and at the default ratio a steady trickle of traces nobody looks for (OpenTelemetry
// HTTP instrumentations are commonly configured to filter these routes out).
func (t *serverTracer) continuing() *serverTracer {
	if t == nil {
		return nil
	}
	c := *t
	c.continueOnly = true
	return &c
}

func newServerTracer(tp trace.TracerProvider, headRatio float64) *serverTracer {
	if tp == nil {
		return nil
	}
	if headRatio <= 0 || headRatio > 1 {
		headRatio = 1
	}
	return &serverTracer{tracer: tp.Tracer(tracerName), prop: tracing.Propagator, headRatio: headRatio}
}

// start continues the caller's trace (W3C traceparent) or starts one, with a server span
// named after the route template. An unsampled request pays for the sampling decision
// and no more: no attributes are built, and the request keeps its context, since
// everything downstream (store spans, exemplars, log ids) acts on recording or sampled
// spans only.
func (t *serverTracer) start(r *http.Request, route string, start time.Time) (*http.Request, trace.Span) {
	if r.Header["Traceparent"] == nil && (t.continueOnly || t.headRatio < 1 && rand.Float64() >= t.headRatio) {
		return r, nil // not sampled, decided without the SDK
	}
	ctx := t.prop.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
	if t.continueOnly && !trace.SpanContextFromContext(ctx).IsValid() {
		return r, nil // a malformed traceparent: nothing to continue
	}
	ctx, span := t.tracer.Start(ctx, spanName(r.Method, route),
		trace.WithSpanKind(trace.SpanKindServer), trace.WithTimestamp(start))
	if !span.IsRecording() {
		return r, span
	}
	span.SetAttributes(requestAttributes(r, route)...)
	return r.WithContext(ctx), span
}

// spanName follows the HTTP semantic conventions: "{method} {http.route}", just the method
// when no route matched, "HTTP" for a method outside the known set.
func spanName(method, route string) string {
	if metrics.MethodLabel(method) == "OTHER" {
		method = "HTTP"
	}
	if route == metrics.Unmatched {
		return method
	}
	return method + " " + route
}

// requestAttributes are the HTTP server span attributes of the current semantic
// conventions (stable HTTP, semconv 1.39) known when the request starts.
func requestAttributes(r *http.Request, route string) []attribute.KeyValue {
	method := r.Method
	attrs := make([]attribute.KeyValue, 0, 11)
	if metrics.MethodLabel(method) == "OTHER" {
		attrs = append(attrs, semconv.HTTPRequestMethodKey.String("_OTHER"), semconv.HTTPRequestMethodOriginal(method))
	} else {
		attrs = append(attrs, semconv.HTTPRequestMethodKey.String(method))
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	attrs = append(attrs, semconv.URLScheme(scheme), semconv.URLPath(r.URL.Path))
	if route != metrics.Unmatched {
		attrs = append(attrs, semconv.HTTPRoute(route))
	}
	if host, port := splitHostPort(r.Host); host != "" {
		attrs = append(attrs, semconv.ServerAddress(host))
		if port > 0 {
			attrs = append(attrs, semconv.ServerPort(port))
		}
	}
	if host, port := splitHostPort(r.RemoteAddr); host != "" {
		attrs = append(attrs, semconv.ClientAddress(host), semconv.NetworkPeerAddress(host))
		if port > 0 {
			attrs = append(attrs, semconv.NetworkPeerPort(port))
		}
	}
	if r.ProtoMajor == 2 {
		attrs = append(attrs, semconv.NetworkProtocolVersion("2"))
	} else {
		attrs = append(attrs, semconv.NetworkProtocolVersion(strconv.Itoa(r.ProtoMajor)+"."+strconv.Itoa(r.ProtoMinor)))
	}
	if ua := r.UserAgent(); ua != "" {
		attrs = append(attrs, semconv.UserAgentOriginal(ua))
	}
	return attrs
}

// end records the outcome and ends the span at the time the metrics recorded. A 5xx is an
// error of the server span; a 4xx is the client's and leaves the status unset
// (semantic conventions). 499 (client gone) is recorded as the error type "499" so a
// trace shows why it has no response.
func endSpan(span trace.Span, status int, reqSize, respSize int64, end time.Time) {
	if span.IsRecording() {
		span.SetAttributes(semconv.HTTPResponseStatusCode(status),
			semconv.HTTPRequestBodySize(int(reqSize)), semconv.HTTPResponseBodySize(int(respSize)))
		if status >= 500 || status == StatusClientClosedRequest {
			code := strconv.Itoa(status)
			span.SetAttributes(semconv.ErrorTypeKey.String(code))
			if status >= 500 {
				span.SetStatus(codes.Error, code)
			}
		}
	}
	span.End(trace.WithTimestamp(end))
}

// splitHostPort splits "host:port" (port 0 when absent or invalid).
func splitHostPort(hp string) (string, int) {
	host, p, err := net.SplitHostPort(hp)
	if err != nil {
		return hp, 0
	}
	port, _ := strconv.Atoi(p)
	return host, port
}
