package api

import (
	"net/http"
	"path"
	"slices"
	"strings"

	"github.com/sre-instrumentation/storage-api/internal/admission"
	"github.com/sre-instrumentation/storage-api/internal/fault"
	"github.com/sre-instrumentation/storage-api/internal/metrics"
)

// BucketPath is the route template of the object API, and its metrics path label.
const BucketPath = "/api/buckets/{id}"

// route is one entry of the routing table.
type route struct {
	methods []string // empty: any method
	path    string   // ServeMux path pattern
	label   string   // the metrics path label, when it is not path itself
	handler http.Handler
	api     bool // under /api: fault injection applies
	// unclean: not a ServeMux pattern. path is a prefix, and the route answers the
	// requests under it whose path is not canonical (see canonicalPath), which ServeMux
	// would otherwise answer itself with an unobserved redirect to the cleaned path.
	unclean bool
	// ops marks the operational routes (health, readiness, metrics): they are served
	// even on overflow connections, over the connection limit.
	ops bool
	// statuses are created at zero in the metrics for each method, so the series the
	// alert rules and dashboards divide by exist from the start.
	statuses []int
}

// routes lists every route the server answers. It is the one place to look.
func (s *server) routes() []route {
	return []route{
		{methods: []string{"PUT"}, path: BucketPath, handler: putObject(s.Store, s.MaxObjectSize, s.bodies, s.Log), api: true,
			statuses: []int{201, 204, 400, 411, 412, 413, 500, 503}},
		{methods: []string{"GET", "HEAD"}, path: BucketPath, handler: getObject(s.Store, s.bodies, s.Log), api: true,
			statuses: []int{200, 304, 400, 404, 500, 503}},
		{methods: []string{"DELETE"}, path: BucketPath, handler: deleteObject(s.Store, s.Log), api: true,
			statuses: []int{204, 400, 404, 412, 500, 503}},
		// /api/buckets/ with no id: an invalid (empty) id, not an unknown route.
		{path: "/api/buckets/{$}", label: BucketPath, handler: emptyID(), api: true},
		// Without this, ServeMux would redirect /api/buckets to /api/buckets/.
		{path: "/api/buckets", label: metrics.Unmatched, handler: notFound()},
		{methods: []string{"GET", "HEAD"}, path: "/healthz", handler: healthz(), ops: true, statuses: []int{200}},
		{methods: []string{"GET", "HEAD"}, path: "/readyz", handler: readyz(s.Store, s.ShuttingDown), ops: true, statuses: []int{200, 503}},
		{methods: []string{"GET", "HEAD"}, path: "/metrics", handler: s.MetricsHandler, ops: true, statuses: []int{200}},
		{path: "/", label: metrics.Unmatched, handler: notFound()},
		// Paths with dot segments ("/api/buckets/a/../b", "%2e%2e" included) or empty
		// ones ("//metrics"): never redirected, so never unobserved, and never a
		// second URL for an object.
		{path: "/api/buckets/", unclean: true, label: BucketPath, handler: invalidPath(), api: true},
		{path: "/", unclean: true, label: metrics.Unmatched, handler: notFound()},
	}
}

// register builds the mux. Every path with method-specific routes also gets a
// method-less fallback that answers 405 with an Allow header (ServeMux's own 405 is
// plain text and would bypass the instrumentation). Routes of one path share its
// metrics series: they are keyed by the path label.
func (s *server) register(mux *http.ServeMux) {
	rs := s.routes()
	allowed := map[string][]string{}
	var paths []string
	for _, r := range rs {
		if r.unclean {
			continue
		}
		if _, seen := allowed[r.path]; !seen {
			paths = append(paths, r.path)
		}
		allowed[r.path] = append(allowed[r.path], r.methods...)
	}
	for _, p := range paths {
		if methods := allowed[p]; len(methods) > 0 {
			rs = append(rs, route{path: p, handler: methodNotAllowed(strings.Join(methods, ", ")), api: strings.HasPrefix(p, "/api/")})
		}
	}

	for _, r := range rs {
		label := r.label
		if label == "" {
			label = r.path
		}
		h := r.handler
		if r.api && s.Faults.Enabled() {
			h = injectFaults(s.Faults, h)
		}
		h = overflow(r.ops, s.bodies)(h)
		var rec *metrics.Route
		if s.Metrics != nil {
			rec = s.Metrics.Route(label, r.methods, r.statuses)
		}
		tracer := s.tracer
		if r.ops {
			tracer = tracer.continuing()
		}
		h = observe(rec, s.Log, s.access, tracer, label)(h)
		if r.unclean {
			s.unclean = append(s.unclean, prefixRoute{prefix: r.path, handler: h})
			continue
		}
		if len(r.methods) == 0 {
			mux.Handle(r.path, h)
			continue
		}
		for _, m := range r.methods {
			// "GET /x" also matches HEAD; registering HEAD again would conflict.
			if m == "HEAD" && slices.Contains(r.methods, "GET") {
				continue
			}
			mux.Handle(m+" "+r.path, h)
		}
	}
}

// overflow closes every connection accepted over the connection limit after one
// response, and on those connections refuses all but the operational routes with 503,
// so that probes and scrapes still reach a server that is full (admission.ConnLimiter).
func overflow(ops bool, b *bodies) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !admission.Overflow(r.Context()) {
				next.ServeHTTP(w, r)
				return
			}
			w.Header().Set("Connection", "close")
			if ops {
				next.ServeHTTP(w, r)
				return
			}
			b.refused(refusedConnections)
			Unavailable(w, "server busy: too many connections")
		})
	}
}

// prefixRoute is an unclean route, built.
type prefixRoute struct {
	prefix  string
	handler http.Handler
}

// dispatch sends requests with a non-canonical path to the unclean routes (the longest
// matching prefix first, as listed) and all others to mux.
func (s *server) dispatch(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if canonicalPath(r.URL.Path) {
			mux.ServeHTTP(w, r)
			return
		}
		for _, u := range s.unclean {
			if strings.HasPrefix(r.URL.Path, u.prefix) {
				u.handler.ServeHTTP(w, r)
				return
			}
		}
		// "*" (OPTIONS *) or "" (CONNECT host:port): not a path at all.
		s.unclean[len(s.unclean)-1].handler.ServeHTTP(w, r)
	})
}

// canonicalPath reports whether ServeMux would serve p as it is: p is absolute and
// has no "." or ".." segment and no empty segment, except a final slash. (ServeMux
// cleans p with path.Clean, keeping a trailing slash, and redirects when that changes
// it.)
func canonicalPath(p string) bool {
	if p == "" || p[0] != '/' {
		return false
	}
	np := path.Clean(p)
	if p[len(p)-1] == '/' && np != "/" {
		np += "/"
	}
	return np == p
}

// injectFaults delays and/or fails a share of the requests before h sees them, as in
// decides; a failed one gets the API's own 503 JSON answer.
func injectFaults(in *fault.Injector, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fail, err := in.Inject(r.Context())
		switch {
		case err != nil: // the client left during the injected delay
		case fail:
			Unavailable(w, "injected fault")
		default:
			h.ServeHTTP(w, r)
		}
	})
}
