package tracing

import (
	"context"
	"errors"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/sre-instrumentation/storage-api/internal/storage"
)

// StoreTracerName is the instrumentation scope of the store spans.
const StoreTracerName = "github.com/sre-instrumentation/storage-api/internal/storage"

// Span attributes of a store operation. There is no semantic convention for a blob
// store, so they live under storage.*.
const (
	AttrBackend   = attribute.Key("storage.backend")
	AttrOperation = attribute.Key("storage.operation")
	AttrResult    = attribute.Key("storage.result") // ok, not_found, precondition_failed, error: as in the metric
	AttrSize      = attribute.Key("storage.object.size")
)

// InstrumentStore wraps s so that each operation of a sampled request is a child span
// "storage <op>" of the request's span. Operations outside a recording span (an unsampled
// request, a readiness probe) start no span: they pass straight through. Install it outermost, around
// metrics.InstrumentStore, so the span covers what the metric times. With tp nil it
// returns s itself.
func InstrumentStore(s storage.Store, backend string, tp trace.TracerProvider) storage.Store {
	if tp == nil {
		return s
	}
	return &tracedStore{Store: s, tracer: tp.Tracer(StoreTracerName), backend: AttrBackend.String(backend)}
}

type tracedStore struct {
	storage.Store
	tracer  trace.Tracer
	backend attribute.KeyValue
}

func (s *tracedStore) start(ctx context.Context, op string) (context.Context, trace.Span) {
	return s.tracer.Start(ctx, "storage "+op, trace.WithSpanKind(trace.SpanKindInternal),
		trace.WithAttributes(s.backend, AttrOperation.String(op)))
}

func end(span trace.Span, err error) {
	result := "ok"
	switch {
	case err == nil:
	case errors.Is(err, storage.ErrNotFound):
		result = "not_found"
	case errors.Is(err, storage.ErrPreconditionFailed):
		result = "precondition_failed" // the client's guard doing its job
	default:
		result = "error"
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.SetAttributes(AttrResult.String(result))
	span.End()
}

func (s *tracedStore) Put(ctx context.Context, id, contentType string, data []byte, cond storage.Condition) (storage.PutResult, error) {
	if !trace.SpanFromContext(ctx).IsRecording() {
		return s.Store.Put(ctx, id, contentType, data, cond)
	}
	ctx, span := s.start(ctx, "put")
	span.SetAttributes(AttrSize.Int(len(data)))
	res, err := s.Store.Put(ctx, id, contentType, data, cond)
	end(span, err)
	return res, err
}

func (s *tracedStore) Get(ctx context.Context, id string) (*storage.Object, error) {
	if !trace.SpanFromContext(ctx).IsRecording() {
		return s.Store.Get(ctx, id)
	}
	ctx, span := s.start(ctx, "get")
	obj, err := s.Store.Get(ctx, id)
	if err == nil {
		span.SetAttributes(AttrSize.Int64(obj.Size))
	}
	end(span, err)
	return obj, err
}

func (s *tracedStore) Stat(ctx context.Context, id string) (storage.Info, error) {
	if !trace.SpanFromContext(ctx).IsRecording() {
		return s.Store.Stat(ctx, id)
	}
	ctx, span := s.start(ctx, "stat")
	info, err := s.Store.Stat(ctx, id)
	end(span, err)
	return info, err
}

func (s *tracedStore) Delete(ctx context.Context, id string, cond storage.Condition) error {
	if !trace.SpanFromContext(ctx).IsRecording() {
		return s.Store.Delete(ctx, id, cond)
	}
	ctx, span := s.start(ctx, "delete")
	err := s.Store.Delete(ctx, id, cond)
	end(span, err)
	return err
}
