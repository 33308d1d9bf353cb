package ops

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/kuma-ha/kuma-ha/cluster"
	"github.com/kuma-ha/kuma-ha/fsm/resource"
)

// HeaderIndex carries the replica's applied Raft index on every answer.
const HeaderIndex = "X-Kuma-Index"

type server struct {
	cfg      Config
	state    State
	backend  Backend
	log      *slog.Logger
	mux      *http.ServeMux
	metrics  *httpMetrics
	hostname string
}

func newServer(cfg Config, state State, backend Backend) *server {
	if cfg.MaxBodySize <= 0 {
		cfg.MaxBodySize = DefaultMaxBodySize
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Mode == "" {
		cfg.Mode = "standalone"
	}
	reg := cfg.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	hostname := cfg.Hostname
	if hostname == "" {
		hostname, _ = os.Hostname()
	}
	s := &server{
		cfg:      cfg,
		state:    state,
		backend:  backend,
		log:      cfg.Logger.With("component", "ops"),
		mux:      http.NewServeMux(),
		metrics:  newHTTPMetrics(reg),
		hostname: hostname,
	}

	get := func(h http.HandlerFunc) methods { return methods{http.MethodGet: h} }
	s.handle("/{$}", get(s.handleIndex))
	s.handle("/ready", get(s.handleReady))
	s.handle("/cluster", get(s.handleCluster))
	s.handle("/cluster/replicas/{name}", methods{http.MethodDelete: s.handleRemoveReplica})
	s.handle("/_resources", get(s.handleResourceTypes))
	s.handleRaw("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))

	// Resources. Plurals are resolved in the handlers (resource.DescriptorByPlural).
	s.handle("/{plural}", get(s.handleListAll))
	s.handle("/{plural}/{name}", methods{
		http.MethodGet:    s.handleGetGlobal,
		http.MethodPut:    s.handlePutGlobal,
		http.MethodDelete: s.handleDeleteGlobal,
	})
	s.handle("/meshes/{mesh}/{plural}", get(s.handleListMesh))
	s.handle("/meshes/{mesh}/{plural}/{name}", methods{
		http.MethodGet:    s.handleGetMeshed,
		http.MethodPut:    s.handlePutMeshed,
		http.MethodDelete: s.handleDeleteMeshed,
	})

	// DataplaneOverview views.
	s.handle("/dataplanes+insights", get(s.handleOverviewList))
	s.handle("/meshes/{mesh}/dataplanes+insights", get(s.handleOverviewList))
	s.handle("/meshes/{mesh}/dataplanes/{name}/_overview", get(s.handleOverviewGet))
	s.handle("/meshes/{mesh}/dataplanes/_overview", get(s.handleOverviewList))
	s.handle("/dataplanes/_overview", get(s.handleOverviewList))

	// Views Kuma's kumactl inspects (kumaviews.go).
	s.handle("/mesh-insights", get(s.handleMeshInsightList))
	s.handle("/mesh-insights/{name}", get(s.handleMeshInsightGet))
	s.handle("/meshes/{mesh}/service-insights", get(s.handleServiceInsightList))
	s.handle("/meshes/{mesh}/service-insights/{name}", get(s.handleServiceInsightGet))
	for _, p := range []string{"/zoneingresses/_overview", "/zone-ingresses/_overview", "/zoneingresses+insights", "/zone-ingresses+insights", "/zoneingressoverviews"} {
		s.handle(p, get(s.zoneProxyOverviewHandler(resource.TypeZoneIngress)))
	}
	for _, p := range []string{"/zoneegresses/_overview", "/zoneegresses+insights", "/zoneegressoverviews"} {
		s.handle(p, get(s.zoneProxyOverviewHandler(resource.TypeZoneEgress)))
	}
	s.handle("/meshes/{mesh}/dataplanes/{name}/policies", get(s.handleDataplanePolicies))
	for _, op := range []string{"xds", "stats", "clusters", "_config", "config"} { // Kuma's kumactl asks for _config
		s.handle("/meshes/{mesh}/dataplanes/{name}/"+op, get(s.handleProxyAdmin))
	}

	s.handle("/", methods{"*": s.handleUnknownPath})
	return s
}

func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// methods maps an HTTP method to its handler; "*" matches any method.
type methods map[string]http.HandlerFunc

// handle registers an API route: method dispatch with Kuma-shaped 405s,
// ?consistent=true, X-Kuma-Index, metrics and logging.
func (s *server) handle(pattern string, ms methods) {
	allowed := make([]string, 0, len(ms))
	for m := range ms {
		allowed = append(allowed, m)
	}
	slices.Sort(allowed)
	s.handleRaw(pattern, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h, ok := ms[r.Method]
		if !ok && r.Method == http.MethodHead {
			h, ok = ms[http.MethodGet]
		}
		_, isRead := ms[http.MethodGet]
		isRead = isRead && ok && (r.Method == http.MethodGet || r.Method == http.MethodHead)
		if !ok {
			h, ok = ms["*"]
		}
		if !ok {
			w.Header().Set("Allow", strings.Join(allowed, ", "))
			s.writeError(w, r, "Method not Allowed", &Error{Status: http.StatusMethodNotAllowed,
				Title: "Method not Allowed", Detail: fmt.Sprintf("method %s is not allowed on %s; allowed: %s",
					r.Method, r.URL.Path, strings.Join(allowed, ", "))})
			return
		}
		if isRead {
			if err := s.backend.WaitVisible(r.Context()); err != nil {
				s.writeError(w, r, titleRead, err)
				return
			}
			if !s.consistentRead(w, r) {
				return
			}
		}
		// Set after any consistent read: the state read below includes at least this index.
		w.Header().Set(HeaderIndex, strconv.FormatUint(s.state.AppliedIndex(), 10))
		h(w, r)
	}))
}

// consistentRead honours ?consistent=true; it reports false after writing an error.
func (s *server) consistentRead(w http.ResponseWriter, r *http.Request) bool {
	v := r.URL.Query().Get("consistent")
	if v == "" {
		return true
	}
	consistent, err := strconv.ParseBool(v)
	if err != nil {
		s.writeError(w, r, titleRead, badRequest(titleRead, "consistent", "must be true or false"))
		return false
	}
	if !consistent {
		return true
	}
	if err := s.backend.ConsistentRead(r.Context()); err != nil {
		e, unexpected := toError(err, titleRead)
		if unexpected {
			s.log.Warn("consistent read failed", "err", err)
		}
		if e.Status != http.StatusServiceUnavailable && e.Status != 499 {
			// Any failure to get the leader's read index means we cannot answer consistently.
			e = &Error{Status: http.StatusServiceUnavailable, Title: titleRead, Detail: err.Error()}
		}
		s.writeError(w, r, titleRead, e)
		return false
	}
	return true
}

// handleRaw wraps h with metrics (by route pattern), X-Kuma-Index, logging and panic recovery.
func (s *server) handleRaw(pattern string, h http.Handler) {
	route := pattern
	if pattern == "/" {
		route = "unmatched" // raw paths of unknown URLs would explode the label set
	}
	s.mux.Handle(pattern, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w}
		rec.Header().Set(HeaderIndex, strconv.FormatUint(s.state.AppliedIndex(), 10))
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				s.log.Error("panic serving request", "method", r.Method, "path", r.URL.Path, "panic", p)
				if !rec.wroteHeader {
					s.writeError(rec, r, "Internal Server Error", errors.New("panic"))
				}
			}
			code := rec.code()
			elapsed := time.Since(start)
			s.metrics.observe(route, r.Method, code, elapsed)
			attrs := []any{"method", r.Method, "path", r.URL.Path, "route", route, "status", code, "duration", elapsed}
			if code >= 500 {
				s.log.Warn("request failed", attrs...)
			} else {
				s.log.Debug("request", attrs...)
			}
		}()
		h.ServeHTTP(rec, r)
	}))
}

type statusRecorder struct {
	http.ResponseWriter
	status      int
	wroteHeader bool
}

func (r *statusRecorder) WriteHeader(code int) {
	if !r.wroteHeader {
		r.status, r.wroteHeader = code, true
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	if !r.wroteHeader {
		r.status, r.wroteHeader = http.StatusOK, true
	}
	return r.ResponseWriter.Write(b)
}

func (r *statusRecorder) code() int {
	if !r.wroteHeader {
		return http.StatusOK
	}
	return r.status
}

func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// Flush keeps streaming handlers (promhttp with compression) working through the wrapper.
func (r *statusRecorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// httpMetrics are the API's request metrics, labelled by route pattern, never raw path.
type httpMetrics struct {
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
}

func newHTTPMetrics(reg prometheus.Registerer) *httpMetrics {
	m := &httpMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kuma_api_requests_total",
			Help: "HTTP API requests by route pattern, method and status code.",
		}, []string{"route", "method", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "kuma_api_request_duration_seconds",
			Help:    "HTTP API request latency by route pattern, method and status code.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"route", "method", "code"}),
	}
	m.requests = registerOrReuse(reg, m.requests)
	m.latency = registerOrReuse(reg, m.latency)
	return m
}

// registerOrReuse registers c, or returns the collector already registered
// under the same name (a second handler on the same registry shares it).
func registerOrReuse[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
		panic(fmt.Sprintf("ops: register metrics: %v", err)) // a programming error: conflicting metric names
	}
	return c
}

func (m *httpMetrics) observe(route, method string, code int, d time.Duration) {
	method = normalizeMethod(method)
	c := strconv.Itoa(code)
	m.requests.WithLabelValues(route, method, c).Inc()
	m.latency.WithLabelValues(route, method, c).Observe(d.Seconds())
}

// normalizeMethod keeps arbitrary client-chosen methods out of the label set.
func normalizeMethod(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPut, http.MethodPost, http.MethodDelete,
		http.MethodPatch, http.MethodOptions:
		return m
	}
	return "OTHER"
}

// indexResponse is Kuma's GET / body (pkg/api-server/types.IndexResponse).
type indexResponse struct {
	Hostname    string `json:"hostname"`
	Tagline     string `json:"tagline"`
	Product     string `json:"product"`
	Version     string `json:"version"`
	BasedOnKuma string `json:"basedOnKuma"`
	InstanceID  string `json:"instanceId"`
	ClusterID   string `json:"clusterId"`
	GUI         string `json:"gui"`
	Mode        string `json:"mode"`
}

func (s *server) handleIndex(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, indexResponse{
		Hostname:    s.hostname,
		Tagline:     "Kuma",
		Product:     "Kuma",
		Version:     s.cfg.Version,
		BasedOnKuma: s.cfg.Version,
		InstanceID:  s.hostname,
		ClusterID:   s.backend.ClusterID(),
		GUI:         "The gui is not available",
		Mode:        s.cfg.Mode,
	}, s.log)
}

type readyResponse struct {
	Ready  bool   `json:"ready"`
	Reason string `json:"reason,omitempty"`
}

func (s *server) handleReady(w http.ResponseWriter, r *http.Request) {
	ready, reason := s.backend.Ready()
	if !ready {
		if reason == "" {
			reason = "not ready"
		}
		writeJSON(w, http.StatusServiceUnavailable, readyResponse{Ready: false, Reason: reason}, s.log)
		return
	}
	writeJSON(w, http.StatusOK, readyResponse{Ready: true}, s.log)
}

func (s *server) handleCluster(w http.ResponseWriter, r *http.Request) {
	st := s.backend.Status()
	if st.Replicas == nil {
		st.Replicas = []cluster.ReplicaStatus{}
	}
	writeJSON(w, http.StatusOK, st, s.log)
}

func (s *server) handleRemoveReplica(w http.ResponseWriter, r *http.Request) {
	const title = "Could not remove the replica"
	name := r.PathValue("name")
	if err := s.backend.RemoveReplica(r.Context(), name); err != nil {
		s.writeError(w, r, title, err)
		return
	}
	w.Header().Set(HeaderIndex, strconv.FormatUint(s.state.AppliedIndex(), 10))
	writeJSON(w, http.StatusOK, struct{}{}, s.log)
}

func (s *server) handleUnknownPath(w http.ResponseWriter, r *http.Request) {
	s.writeError(w, r, "Not found", notFound("Not found", fmt.Sprintf("no such path: %s", r.URL.Path)))
}
