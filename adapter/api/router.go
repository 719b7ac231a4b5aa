package api

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/gorilla/mux"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/ketamine-fhir/ketamine-fhir/adapter"
	"github.com/ketamine-fhir/ketamine-fhir/adapter/metrics"
	"github.com/ketamine-fhir/ketamine-fhir/adapter/store"
	"github.com/ketamine-fhir/ketamine-fhir/mapping"
)

// Backend is the part of the sync engine the API uses. *adapter.Engine
// satisfies it.
type Backend interface {
	// Parser parses and checks one local record.
	Parser() *mapping.Parser
	// Ingest commits checked records to the outbox in one transaction and
	// reports an outcome per record, in order.
	Ingest(ctx context.Context, recs []*mapping.Record) ([]adapter.IngestResult, error)
	// Received counts a record that passed the checks.
	Received(rec *mapping.Record)
	// Rejected counts a record that failed them.
	Rejected(re *mapping.RecordError)
	// Store is the outbox (status counts, dead letters, re-queue, ping).
	Store() store.Store
	// LastSync is when a record was last delivered (zero: never).
	LastSync() time.Time
	// Wake tells the delivery loop that new work is there.
	Wake()
	// Delivery says how delivery is going (paused, pacing, queue).
	Delivery() adapter.DeliveryStatus
}

var _ Backend = (*adapter.Engine)(nil)

// Options configures the API.
type Options struct {
	// Token is the bearer token every /v1 request must carry. Empty refuses
	// every /v1 request (fail closed).
	Token string
	// MaxBodyBytes caps a request body; a larger one is answered 413.
	// Defaults to 10 MiB.
	MaxBodyBytes int64
	// ReadyTimeout bounds the store check of /readyz. Defaults to 2s.
	ReadyTimeout time.Duration
	// EHR is the prober whose last result /v1/status reports; its owner
	// starts and stops it. Nil reports the EHR as never checked.
	EHR *EHRProber
	// Gatherer is served on /metrics. Nil means /metrics is not served.
	Gatherer prometheus.Gatherer
	// Metrics counts API requests by route and status; nil counts nothing.
	Metrics *metrics.Metrics
	// Logger receives the access log and internal errors (never request
	// bodies, query strings or diagnostics). Defaults to slog.Default().
	Logger *slog.Logger
	// Now is the clock. Defaults to time.Now.
	Now func() time.Time
	// Console is the operator console (adapter/api/ui), served at /ui and
	// under /ui/ with its own sign-in. Nil serves no console.
	Console http.Handler
	// JWKSPath, when set with JWKS, serves the public JWK Set JWKS there,
	// unauthenticated (config api.jwks_path).
	JWKSPath string
	JWKS     []byte
}

// Defaults of Options.
const (
	DefaultMaxBodyBytes = 10 << 20
	DefaultReadyTimeout = 2 * time.Second
)

// Route names: the route templates used as the metric label and in the
// access log. Requests that match no route are labelled RouteUnmatched.
const (
	RouteRecords     = "/v1/records"
	RouteStatus      = "/v1/status"
	RouteDeadLetters = "/v1/deadletters"
	RouteRetry       = "/v1/deadletters/{id}/retry"
	RouteMetrics     = "/metrics"
	RouteHealthz     = "/healthz"
	RouteReadyz      = "/readyz"
	RouteUnmatched   = "unmatched"
	RouteConsole     = "/ui"
)

const (
	headerRequestID = "X-Request-Id"
	// Dead-letter pages: the default and largest limit.
	defaultDeadLetterPage = 100
	maxDeadLetterPage     = 1000
)

// server holds what the handlers share.
type server struct {
	b         Backend
	tokenHash [32]byte // sha256 of Options.Token; zero when no token
	hasToken  bool
	maxBody   int64
	ready     time.Duration
	ehr       *EHRProber
	metrics   *metrics.Metrics
	log       *slog.Logger
	now       func() time.Time
}

// NewRouter returns the HTTP API over b: the routes listed in the package
// doc, wrapped in request-id, access-log, metrics and panic-recovery
// middleware.
func NewRouter(b Backend, opts Options) http.Handler {
	s := &server{
		b: b, maxBody: opts.MaxBodyBytes, ready: opts.ReadyTimeout, ehr: opts.EHR,
		metrics: opts.Metrics, log: opts.Logger, now: opts.Now,
	}
	if s.maxBody <= 0 {
		s.maxBody = DefaultMaxBodyBytes
	}
	if s.ready <= 0 {
		s.ready = DefaultReadyTimeout
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.now == nil {
		s.now = time.Now
	}
	if opts.Token != "" {
		s.tokenHash = hashToken(opts.Token)
		s.hasToken = true
	}

	r := mux.NewRouter()
	r.NotFoundHandler = http.HandlerFunc(s.notFound)
	r.MethodNotAllowedHandler = http.HandlerFunc(s.methodNotAllowed)
	r.Use(nameRoute)

	r.Handle(RouteRecords, s.auth(http.HandlerFunc(s.postRecords))).Methods(http.MethodPost).Name(RouteRecords)
	r.Handle(RouteStatus, s.auth(http.HandlerFunc(s.getStatus))).Methods(http.MethodGet, http.MethodHead).Name(RouteStatus)
	r.Handle(RouteDeadLetters, s.auth(http.HandlerFunc(s.listDeadLetters))).Methods(http.MethodGet, http.MethodHead).Name(RouteDeadLetters)
	r.Handle("/v1/deadletters/{id:[0-9]+}/retry", s.auth(http.HandlerFunc(s.retryDeadLetter))).Methods(http.MethodPost).Name(RouteRetry)
	if opts.Gatherer != nil {
		r.Handle(RouteMetrics, promhttp.HandlerFor(opts.Gatherer, promhttp.HandlerOpts{
			ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
		})).Methods(http.MethodGet, http.MethodHead).Name(RouteMetrics)
	}
	if opts.JWKSPath != "" && len(opts.JWKS) > 0 {
		r.Handle(opts.JWKSPath, jwksHandler(opts.JWKS)).Methods(http.MethodGet, http.MethodHead).Name(RouteJWKS)
	}
	r.HandleFunc(RouteHealthz, s.healthz).Methods(http.MethodGet, http.MethodHead).Name(RouteHealthz)
	r.HandleFunc(RouteReadyz, s.readyz).Methods(http.MethodGet, http.MethodHead).Name(RouteReadyz)
	if opts.Console != nil {
		r.Handle(RouteConsole, opts.Console).Name(RouteConsole)
		r.PathPrefix(RouteConsole + "/").Handler(opts.Console).Name(RouteConsole)
	}

	return s.observe(s.recoverPanics(r))
}
