// Package tracing sets up OpenTelemetry tracing from the standard OTEL_* environment
// variables, the same way every OpenTelemetry SDK reads them, so that the service is
// configured like any other traced service. With no OTLP endpoint set, tracing is off:
// New returns a nil provider and nothing on the request path changes.
package tracing

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.39.0"
	"go.opentelemetry.io/otel/trace"
)

// DefaultSampleRatio is the share of new traces sampled when OTEL_TRACES_SAMPLER is not
// set: parent-based, so a caller's decision is always followed, and 1 in 100 of the
// requests that arrive without one. At that ratio a server doing 30,000 requests a
// second exports 300 spans (and a few hundred bytes of exemplars) a second, which a
// single collector takes easily; docs/tracing.md has the measured costs.
const DefaultSampleRatio = 0.01

// Propagator is W3C Trace Context (traceparent, tracestate): the OpenTelemetry default
// and what every current tracer speaks.
var Propagator propagation.TextMapPropagator = propagation.TraceContext{}

// EnvHelp lists the variables New reads, for the binaries' -h.
const EnvHelp = `Tracing (OpenTelemetry; off unless an OTLP endpoint is set; docs/tracing.md) reads the standard variables:
  OTEL_EXPORTER_OTLP_ENDPOINT          OTLP base URL (/v1/traces is appended for HTTP), e.g. http://jaeger:4318
  OTEL_EXPORTER_OTLP_TRACES_ENDPOINT   full traces URL (wins over the above)
  OTEL_EXPORTER_OTLP_PROTOCOL          http/protobuf (default) or grpc
  OTEL_EXPORTER_OTLP_TRACES_PROTOCOL   same, for traces only
  OTEL_EXPORTER_OTLP_HEADERS           headers sent with each export (also _TIMEOUT, _COMPRESSION, _CERTIFICATE)
  OTEL_SERVICE_NAME                    service.name
  OTEL_RESOURCE_ATTRIBUTES             key=value,... resource attributes
  OTEL_TRACES_SAMPLER                  default parentbased_traceidratio
  OTEL_TRACES_SAMPLER_ARG              the ratio, default 0.01
  OTEL_TRACES_EXPORTER                 otlp, or none to switch tracing off
  OTEL_BSP_SCHEDULE_DELAY              batch span processor (also _EXPORT_TIMEOUT, _MAX_QUEUE_SIZE, _MAX_EXPORT_BATCH_SIZE)
  OTEL_SDK_DISABLED                    true switches tracing off
`

// Option changes what New builds.
type Option func(*options)

type options struct{ headSampling bool }

// WithHeadSampling is for a server whose root spans are requests that came without a
// traceparent: with the default parentbased_traceidratio sampler and a ratio below 1, the
// provider samples every root it is asked to start, and Config.HeadRatio is the ratio the
// caller must draw itself before starting one. A request that loses the draw then costs
// a random number instead of the SDK's work for a span that is dropped (ids, a
// non-recording span, a context): about 6,400 instructions per request (docs/performance.md).
func WithHeadSampling() Option { return func(o *options) { o.headSampling = true } }

// Config is what New read from the environment; String describes it for the start-up log.
type Config struct {
	Endpoint   string // traces URL
	Protocol   string // http/protobuf or grpc
	Sampler    string // as named in OTEL_TRACES_SAMPLER
	SamplerArg float64
	// HeadRatio is the share of root requests the caller samples itself, with
	// WithHeadSampling; 1 (start every root span and let the SDK decide) otherwise.
	HeadRatio   float64
	ServiceName string
}

func (c Config) String() string {
	return fmt.Sprintf("endpoint=%s protocol=%s sampler=%s ratio=%g service=%s", c.Endpoint, c.Protocol, c.Sampler, c.SamplerArg, c.ServiceName)
}

// New returns a tracer provider configured from the environment (read through getenv),
// or nil when tracing is off: no OTLP endpoint, OTEL_SDK_DISABLED=true or
// OTEL_TRACES_EXPORTER=none. serviceName and version are the defaults of service.name
// and service.version; OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES override them.
//
// Read here, with getenv: the on/off decision, the endpoint, the protocol, the sampler,
// the resource and the batch processor (OTEL_BSP_*). The exporter's own options
// (OTEL_EXPORTER_OTLP_HEADERS, _TIMEOUT, _COMPRESSION, _CERTIFICATE...) are read by the
// SDK from the process environment, which is what getenv reads in the binaries.
//
// The caller must Shutdown the provider: that flushes the spans still in the batch.
func New(ctx context.Context, serviceName, version string, getenv func(string) string, opts ...Option) (*sdktrace.TracerProvider, Config, error) {
	cfg := Config{HeadRatio: 1}
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	if strings.EqualFold(strings.TrimSpace(getenv("OTEL_SDK_DISABLED")), "true") {
		return nil, cfg, nil
	}
	if exp := strings.TrimSpace(getenv("OTEL_TRACES_EXPORTER")); exp != "" && exp != "otlp" {
		if exp == "none" {
			return nil, cfg, nil
		}
		return nil, cfg, fmt.Errorf("OTEL_TRACES_EXPORTER=%q: only otlp (or none) is supported", exp)
	}
	proto := firstSet(getenv, "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL")
	if proto == "" {
		proto = "http/protobuf"
	}
	if proto != "http/protobuf" && proto != "grpc" {
		return nil, cfg, fmt.Errorf("OTEL_EXPORTER_OTLP_PROTOCOL=%q: want http/protobuf or grpc", proto)
	}
	endpoint, err := tracesEndpoint(getenv, proto)
	if err != nil || endpoint == "" {
		return nil, cfg, err
	}
	cfg.Endpoint, cfg.Protocol = endpoint, proto
	sampler, err := newSampler(getenv, &cfg)
	if err != nil {
		return nil, cfg, err
	}
	if o.headSampling && cfg.Sampler == "parentbased_traceidratio" && cfg.SamplerArg > 0 && cfg.SamplerArg < 1 {
		// The caller draws the ratio for requests without a parent before asking the SDK
		// (HeadRatio); the SDK then samples every root it is asked for, and still follows
		// a parent's decision.
		cfg.HeadRatio = cfg.SamplerArg
		sampler = sdktrace.ParentBased(sdktrace.AlwaysSample())
	}
	res, err := newResource(serviceName, version, getenv, &cfg)
	if err != nil {
		return nil, cfg, err
	}
	bspOpts, err := batchOptions(getenv)
	if err != nil {
		return nil, cfg, err
	}
	var exp sdktrace.SpanExporter
	if proto == "grpc" {
		// An http:// endpoint means a plaintext connection, https:// TLS (the specification).
		exp, err = otlptracegrpc.New(ctx, otlptracegrpc.WithEndpointURL(endpoint))
	} else {
		exp, err = otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(endpoint))
	}
	if err != nil {
		return nil, cfg, fmt.Errorf("OTLP exporter: %w", err)
	}
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithSampler(sampler),
		sdktrace.WithResource(res),
		sdktrace.WithBatcher(exp, bspOpts...),
	)
	return tp, cfg, nil
}

// tracesEndpoint is the traces URL: the signal-specific variable as it is, or the generic
// one, with /v1/traces appended for OTLP/HTTP (the OTLP exporter specification).
func tracesEndpoint(getenv func(string) string, proto string) (string, error) {
	name, u := "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", strings.TrimSpace(getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
	if u == "" {
		name, u = "OTEL_EXPORTER_OTLP_ENDPOINT", strings.TrimSpace(getenv("OTEL_EXPORTER_OTLP_ENDPOINT"))
		if u == "" {
			return "", nil
		}
		if proto == "http/protobuf" {
			u = strings.TrimRight(u, "/") + "/v1/traces"
		}
	}
	p, err := url.Parse(u)
	if err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
		return "", fmt.Errorf("%s=%q: want an http(s) URL", name, u)
	}
	return u, nil
}

func firstSet(getenv func(string) string, names ...string) string {
	for _, n := range names {
		if v := strings.TrimSpace(getenv(n)); v != "" {
			return v
		}
	}
	return ""
}

// newSampler implements OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG as the
// specification names them; only the default differs (a ratio instead of always_on).
func newSampler(getenv func(string) string, cfg *Config) (sdktrace.Sampler, error) {
	name := strings.TrimSpace(getenv("OTEL_TRACES_SAMPLER"))
	if name == "" {
		name = "parentbased_traceidratio"
	}
	cfg.Sampler = name
	ratio := 1.0
	if strings.HasSuffix(name, "traceidratio") {
		ratio = DefaultSampleRatio
		if arg := strings.TrimSpace(getenv("OTEL_TRACES_SAMPLER_ARG")); arg != "" {
			r, err := strconv.ParseFloat(arg, 64)
			if err != nil || !(r >= 0 && r <= 1) {
				return nil, fmt.Errorf("OTEL_TRACES_SAMPLER_ARG=%q: want a ratio in 0..1", arg)
			}
			ratio = r
		}
		cfg.SamplerArg = ratio
	}
	switch name {
	case "always_on":
		return sdktrace.AlwaysSample(), nil
	case "always_off":
		return sdktrace.NeverSample(), nil
	case "traceidratio":
		return sdktrace.TraceIDRatioBased(ratio), nil
	case "parentbased_always_on":
		return sdktrace.ParentBased(sdktrace.AlwaysSample()), nil
	case "parentbased_always_off":
		return sdktrace.ParentBased(sdktrace.NeverSample()), nil
	case "parentbased_traceidratio":
		return sdktrace.ParentBased(sdktrace.TraceIDRatioBased(ratio)), nil
	}
	return nil, fmt.Errorf("OTEL_TRACES_SAMPLER=%q: want always_on, always_off, traceidratio or parentbased_ one of those", name)
}

// newResource: service.name and service.version defaults, OTEL_RESOURCE_ATTRIBUTES
// (key=value pairs, comma-separated, values percent-encoded) over them, and
// OTEL_SERVICE_NAME over everything.
func newResource(serviceName, version string, getenv func(string) string, cfg *Config) (*resource.Resource, error) {
	attrs := map[string]string{string(semconv.ServiceNameKey): serviceName}
	if version != "" {
		attrs[string(semconv.ServiceVersionKey)] = version
	}
	if s := strings.TrimSpace(getenv("OTEL_RESOURCE_ATTRIBUTES")); s != "" {
		for pair := range strings.SplitSeq(s, ",") {
			k, v, ok := strings.Cut(pair, "=")
			k = strings.TrimSpace(k)
			if !ok || k == "" {
				return nil, fmt.Errorf("OTEL_RESOURCE_ATTRIBUTES: %q is not key=value", pair)
			}
			dv, err := url.PathUnescape(strings.TrimSpace(v))
			if err != nil {
				return nil, fmt.Errorf("OTEL_RESOURCE_ATTRIBUTES: %q: %w", pair, err)
			}
			attrs[k] = dv
		}
	}
	if s := strings.TrimSpace(getenv("OTEL_SERVICE_NAME")); s != "" {
		attrs[string(semconv.ServiceNameKey)] = s
	}
	cfg.ServiceName = attrs[string(semconv.ServiceNameKey)]
	kvs := make([]attribute.KeyValue, 0, len(attrs)+3)
	for k, v := range attrs {
		kvs = append(kvs, attribute.String(k, v))
	}
	kvs = append(kvs, semconv.TelemetrySDKLanguageGo, semconv.TelemetrySDKName("opentelemetry"),
		semconv.TelemetrySDKVersion(sdk.Version()))
	return resource.NewWithAttributes(semconv.SchemaURL, kvs...), nil
}

// batchOptions implements OTEL_BSP_SCHEDULE_DELAY, OTEL_BSP_EXPORT_TIMEOUT (both in
// milliseconds), OTEL_BSP_MAX_QUEUE_SIZE and OTEL_BSP_MAX_EXPORT_BATCH_SIZE.
func batchOptions(getenv func(string) string) ([]sdktrace.BatchSpanProcessorOption, error) {
	var opts []sdktrace.BatchSpanProcessorOption
	var errs []error
	num := func(name string, apply func(int)) {
		v := strings.TrimSpace(getenv(name))
		if v == "" {
			return
		}
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			errs = append(errs, fmt.Errorf("%s=%q: want a positive integer", name, v))
			return
		}
		apply(n)
	}
	num("OTEL_BSP_SCHEDULE_DELAY", func(n int) {
		opts = append(opts, sdktrace.WithBatchTimeout(time.Duration(n)*time.Millisecond))
	})
	num("OTEL_BSP_EXPORT_TIMEOUT", func(n int) {
		opts = append(opts, sdktrace.WithExportTimeout(time.Duration(n)*time.Millisecond))
	})
	num("OTEL_BSP_MAX_QUEUE_SIZE", func(n int) { opts = append(opts, sdktrace.WithMaxQueueSize(n)) })
	num("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", func(n int) { opts = append(opts, sdktrace.WithMaxExportBatchSize(n)) })
	return opts, errors.Join(errs...)
}

// Sampled returns the trace and span ids of ctx's span as hex when it is sampled (the
// span will be exported), and empty strings otherwise. Exemplars and log lines use it
// so that every trace id they show leads to a trace that exists.
func Sampled(ctx context.Context) (traceID, spanID string) {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsSampled() {
		return "", ""
	}
	return sc.TraceID().String(), sc.SpanID().String()
}
