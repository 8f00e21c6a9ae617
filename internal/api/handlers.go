package api

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/sre-instrumentation/storage-api/internal/admission"
	"github.com/sre-instrumentation/storage-api/internal/storage"
)

var (
	nosniff    = []string{"nosniff"}
	sandboxCSP = []string{"default-src 'none'; sandbox"}
)

const (
	defaultContentType = "application/octet-stream"
	maxContentType     = 255
)

// putObject stores the body under id: 201 if the id was new, 204 if it replaced an object;
// 412 if If-Match / If-None-Match do not hold at the moment of the write.
func putObject(store storage.Store, maxSize int64, b *bodies, log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		id, ok := pathID(w, r)
		if !ok {
			return
		}
		if !framed(r) {
			// Whatever the client sent as a body is still on the wire, where net/http
			// would read it as the next request: close the connection instead.
			w.Header().Set("Connection", "close")
			writeError(w, http.StatusLengthRequired, "Content-Length or Transfer-Encoding: chunked is required")
			return
		}
		cond, err := parseCondition(r.Header)
		if err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
		contentType := r.Header.Get("Content-Type")
		if contentType == "" {
			contentType = defaultContentType
		}
		if len(contentType) > maxContentType {
			writeError(w, http.StatusBadRequest, "Content-Type header too long")
			return
		}
		if r.ContentLength > maxSize {
			writeError(w, http.StatusRequestEntityTooLarge, tooLarge(maxSize))
			return
		}
		// Admission: a body that cannot fit in the memory budget now is refused before
		// any of it is read. The connection closes, so net/http does not read it either.
		if !b.fits(r.ContentLength) {
			b.refused(refusedBudget)
			w.Header().Set("Connection", "close")
			Unavailable(w, errBudget.Error())
			return
		}
		res := reservation{budget: b.budget}
		defer res.release()
		data, err := b.readBody(w, r, maxSize, start, &res)
		if err != nil {
			bodyError(w, b, maxSize, err)
			return
		}
		stored, err := store.Put(r.Context(), id, contentType, data, cond)
		if err != nil {
			storeError(w, r, log, err)
			return
		}
		w.Header().Set("ETag", quoteETag(stored.ETag))
		if stored.Created {
			w.Header().Set("Location", "/api/buckets/"+url.PathEscape(id))
			w.WriteHeader(http.StatusCreated)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
}

// framed reports whether the request says how long its body is. net/http gives a
// request with neither Content-Length nor chunked framing ContentLength 0, so a PUT
// that sent its bytes without framing (the body is then never read) would store an
// empty object: only the absence of both headers tells. (net/http removes
// Content-Length from a chunked request's header; HTTP/2 frames every body.)
func framed(r *http.Request) bool {
	return r.ContentLength != 0 || len(r.TransferEncoding) > 0 || len(r.Header["Content-Length"]) > 0 || r.ProtoMajor != 1
}

// bodyError answers a request body that could not be read. The connection closes after
// every one of these: the rest of the body is still on the wire.
func bodyError(w http.ResponseWriter, b *bodies, maxSize int64, err error) {
	w.Header().Set("Connection", "close")
	switch {
	case errors.Is(err, errBudget):
		b.refused(refusedBudget)
		Unavailable(w, err.Error())
	case errors.Is(err, admission.ErrTooSlow):
		b.refused(refusedTooSlow)
		writeError(w, http.StatusRequestTimeout, "request body arrived too slowly: the minimum is "+
			strconv.FormatInt(b.rate.Min, 10)+" bytes/s, with no pause longer than "+b.rate.Grace.String())
	default:
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			writeError(w, http.StatusRequestEntityTooLarge, tooLarge(maxSize))
			return
		}
		// The client stopped sending (or went away): nothing was stored.
		writeError(w, http.StatusBadRequest, "could not read request body")
	}
}

// pathID returns the request's valid object id, or answers 400 and returns false.
func pathID(w http.ResponseWriter, r *http.Request) (string, bool) {
	id := r.PathValue("id")
	if err := ValidateID(id); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return "", false
	}
	return id, true
}

func tooLarge(maxSize int64) string {
	return "object too large: the limit is " + strconv.FormatInt(maxSize, 10) + " bytes"
}

// getObject answers GET and HEAD: the bytes with their stored Content-Type, the length
// and a strong ETag; 304 when If-None-Match names the current ETag.
func getObject(store storage.Store, b *bodies, log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		id, ok := pathID(w, r)
		if !ok {
			return
		}
		var (
			info storage.Info
			body io.ReadCloser
			err  error
		)
		if r.Method == http.MethodHead {
			info, err = store.Stat(r.Context(), id)
		} else {
			var obj *storage.Object
			if obj, err = store.Get(r.Context(), id); err == nil {
				info, body = obj.Info, obj.Body
				defer body.Close()
			}
		}
		if err != nil {
			storeError(w, r, log, err)
			return
		}
		etag := quoteETag(info.ETag)
		// Direct assignment of canonical keys: Header.Set would canonicalise each key
		// and allocate each value slice on every request.
		h := w.Header()
		h["Etag"] = []string{etag}
		if inm := r.Header.Get("If-None-Match"); inm != "" && etagMatches(inm, etag) {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		res := reservation{budget: b.budget}
		defer res.release()
		if body != nil && !res.acquire(min(info.Size, responseHold)) {
			b.refused(refusedBudget)
			h.Del("Etag")
			Unavailable(w, "server busy: response bodies in flight exceed the memory budget")
			return
		}
		h["Content-Type"] = []string{info.ContentType}
		h["Content-Length"] = []string{strconv.FormatInt(info.Size, 10)}
		// Stored content types come from clients: never let a browser sniff or run them.
		// The value slices are shared and never modified (an Add would reallocate them).
		h["X-Content-Type-Options"] = nosniff
		h["Content-Security-Policy"] = sandboxCSP
		w.WriteHeader(http.StatusOK)
		if body == nil {
			return
		}
		if err := b.writeBody(w, body, info.Size, start); err != nil {
			if errors.Is(err, admission.ErrTooSlow) {
				b.refused(refusedTooSlow)
			} else if r.Context().Err() == nil {
				// Headers are gone: all we can do is log and cut the connection short.
				log.LogAttrs(r.Context(), slog.LevelError, "object body copy failed",
					slog.String("request_id", RequestID(r)), slog.Any("error", err))
			}
			// A short body must not look complete: abort the connection.
			panic(http.ErrAbortHandler)
		}
	})
}

// deleteObject answers 204 if the object existed and 404 if not, 412 if it exists and
// If-Match (or If-None-Match) does not hold. (The original answered 500 for a successful
// delete and 400 for a missing one: docs/why-500.md.)
func deleteObject(store storage.Store, log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, ok := pathID(w, r)
		if !ok {
			return
		}
		cond, err := parseCondition(r.Header)
		if err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
		if err := store.Delete(r.Context(), id, cond); err != nil {
			storeError(w, r, log, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
}

// storeError maps a storage error to its response: 404 for a missing object, 412 for a
// failed precondition, 501 for one the backend cannot enforce, 503 when the store is
// unavailable (retrying may help), 507 when its disk is full, nothing for a client that
// left, and 500, logged, for a corrupt object or anything else.
func storeError(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	switch {
	case errors.Is(err, storage.ErrNotFound):
		writeError(w, http.StatusNotFound, "not found")
	case errors.Is(err, storage.ErrPreconditionFailed):
		writeError(w, http.StatusPreconditionFailed, "precondition failed: the object's current state does not satisfy If-Match / If-None-Match; nothing was changed")
	case errors.Is(err, storage.ErrConditionUnsupported):
		// The backend cannot guard the write atomically, so it did not write at all.
		writeError(w, http.StatusNotImplemented, err.Error())
	case errors.Is(err, storage.ErrCorrupt):
		// Never served: the bytes on disk are not the ones stored. A PUT or DELETE of
		// the id repairs it; docs/alerts.md (StorageCorruptionDetected) says what else.
		log.LogAttrs(r.Context(), slog.LevelError, "stored object is corrupt",
			slog.String("id", r.PathValue("id")), slog.String("request_id", RequestID(r)), slog.Any("error", err))
		writeError(w, http.StatusInternalServerError, "stored object is corrupt")
	case errors.Is(err, storage.ErrNoSpace):
		// Reads still work; retrying a write does not help until space is freed, so no
		// Retry-After (docs/why-500.md).
		log.LogAttrs(r.Context(), slog.LevelError, "storage full",
			slog.String("request_id", RequestID(r)), slog.Any("error", err))
		writeError(w, http.StatusInsufficientStorage, "insufficient storage: the store's disk is full or at its file size limit")
	case errors.Is(err, storage.ErrUnavailable), errors.Is(err, context.DeadlineExceeded):
		log.LogAttrs(r.Context(), slog.LevelWarn, "storage unavailable",
			slog.String("request_id", RequestID(r)), slog.Any("error", err))
		Unavailable(w, "storage unavailable")
	case errors.Is(err, context.Canceled) && r.Context().Err() != nil:
		// The client went away; the instrumentation records 499. Nobody reads a body.
	default:
		log.LogAttrs(r.Context(), slog.LevelError, "storage failure",
			slog.String("request_id", RequestID(r)), slog.Any("error", err))
		writeError(w, http.StatusInternalServerError, "internal error")
	}
}

func quoteETag(etag string) string { return `"` + etag + `"` }

// etagMatches implements If-None-Match's weak comparison (RFC 9110 13.1.2): "*" or any
// listed tag equal to etag once a W/ prefix is ignored.
func etagMatches(header, etag string) bool {
	for tag := range strings.SplitSeq(header, ",") {
		tag = strings.TrimSpace(tag)
		if tag == "*" {
			return true
		}
		if strings.TrimPrefix(tag, "W/") == etag {
			return true
		}
	}
	return false
}

// healthz answers 200 while the process serves: liveness only, no dependencies.
func healthz() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
}

// readyz answers 200 when the store is usable, 503 when not or once shutdown began, so
// load balancers stop sending before the listener closes.
func readyz(store storage.Store, shuttingDown func() bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if shuttingDown() {
			writeError(w, http.StatusServiceUnavailable, "shutting down")
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if err := store.Ready(ctx); err != nil {
			writeError(w, http.StatusServiceUnavailable, "storage not ready: "+err.Error())
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
	})
}

// methodNotAllowed answers 405 with the Allow header for a path that exists.
func methodNotAllowed(allow string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", allow)
		writeError(w, http.StatusMethodNotAllowed, "method "+strconv.Quote(truncate(r.Method, maxEchoedMethod))+" not allowed; allowed: "+allow)
	})
}

// notFound answers requests that matched no route.
func notFound() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "not found")
	})
}

// invalidPath answers an object path that is not canonical: dot segments or empty
// segments, which a URL cleaner (ServeMux among them) would rewrite into another path.
func invalidPath() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusBadRequest, "invalid path: "+errDotSegments)
	})
}

// emptyID answers /api/buckets/ with no id.
func emptyID() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusBadRequest, "invalid id: empty")
	})
}
