package fhirtest

import (
	"crypto/tls"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultBasePath is the path the FHIR API is served under unless
// WithBasePath says otherwise.
const DefaultBasePath = "/fhir/R4"

// Server is an in-memory FHIR R4 server. Create it with NewServer (started)
// or NewUnstartedServer (configure, then Start, or serve Handler on your
// own listener). All methods are safe for concurrent use.
type Server struct {
	// URL is the base URL of the FHIR API, for example
	// http://127.0.0.1:38123/fhir/R4 (no trailing slash). It is empty until
	// Start or StartTLS.
	URL string

	cfg       config
	store     *store
	faults    *faults
	exports   *exports
	validator *validator
	log       requestLog
	conns     atomic.Int64 // TCP connections accepted, see Connections
	auth      *AuthServer  // WithSMART; nil without
	reject    atomic.Pointer[RejectRule]

	mu      sync.Mutex // guards ts and started
	ts      *httptest.Server
	started bool

	closing   chan struct{}
	closeOnce sync.Once

	capMu     sync.Mutex
	capDate   string            // CapabilityStatement.date
	capByBase map[string][]byte // rendered statements by base URL
}

type config struct {
	basePath     string
	updateCreate bool
	integrity    bool
	noValidate   bool // WithValidation(false)
	seed         int64
	now          func() time.Time
	logLimit     int
	pageSize     int
	maxPageSize  int
	maxBodyBytes int64
	smart        *SMARTConfig // WithSMART
	tls          tlsOptions   // WithTLSCertificate, WithClientCAs
}

// Option configures a Server.
type Option func(*config)

// WithBasePath serves the FHIR API under path (for example "/api/FHIR/R4").
// Defaults to DefaultBasePath, "/fhir/R4"; "" or "/" serves at the root.
func WithBasePath(path string) Option {
	return func(c *config) { c.basePath = "/" + strings.Trim(path, "/") }
}

// WithUpdateCreate sets whether PUT may create a resource with a
// client-chosen id (update as create, CapabilityStatement updateCreate).
// When off, such a PUT is answered 405 Method Not Allowed, as many EHRs do.
// Defaults to true.
func WithUpdateCreate(on bool) Option {
	return func(c *config) { c.updateCreate = on }
}

// WithReferentialIntegrity sets whether literal references to this server
// must resolve: a write whose reference points to no live resource is
// answered 422, an unresolved urn:uuid or conditional reference outside a
// transaction too, and deleting a resource that live resources reference is
// answered 409. References to other servers are not checked. Defaults to
// true.
func WithReferentialIntegrity(on bool) Option {
	return func(c *config) { c.integrity = on }
}

// WithValidation sets whether every resource written is checked against
// the FHIR R4 structure definitions with google/fhir/go's validating
// parser, and answered 422 with an OperationOutcome when it fails.
// Defaults to true. Off, a write still needs a JSON object whose
// resourceType is an R4 type matching the URL, and referential integrity
// still applies; what is stored is not checked further. Validation is
// most of fhirtest's CPU per write (about 600 us a resource on a slow
// core): turn it off only for throughput runs whose client validates
// what it sends, where the server's CPU would otherwise be measured too.
func WithValidation(on bool) Option {
	return func(c *config) { c.noValidate = !on }
}

// WithSeed seeds the fault generator. Defaults to DefaultSeed.
func WithSeed(seed int64) Option {
	return func(c *config) { c.seed = seed }
}

// WithClock sets the clock used for meta.lastUpdated, Last-Modified, the
// request log and the rate limit. Defaults to time.Now.
func WithClock(now func() time.Time) Option {
	return func(c *config) { c.now = now }
}

// WithRequestLogLimit sets how many requests Requests keeps (the most
// recent). Defaults to 100000; 0 keeps none, a negative limit keeps all.
func WithRequestLogLimit(n int) Option {
	return func(c *config) { c.logLimit = n }
}

// WithPageSize sets the default and the largest _count of a search page.
// Defaults to 50 and 1000.
func WithPageSize(def, max int) Option {
	return func(c *config) {
		if def > 0 {
			c.pageSize = def
		}
		if max > 0 {
			c.maxPageSize = max
		}
	}
}

// WithMaxBodyBytes sets the largest request body accepted; larger ones are
// answered 413. Defaults to 32 MiB.
func WithMaxBodyBytes(n int64) Option {
	return func(c *config) { c.maxBodyBytes = n }
}

// NewServer starts and returns a Server on a loopback port. Close it when
// done.
func NewServer(opts ...Option) *Server {
	s := NewUnstartedServer(opts...)
	s.Start()
	return s
}

// NewUnstartedServer returns a Server that is not listening yet: set up
// data (Add) and faults, then call Start or StartTLS, or serve Handler
// yourself. Close releases it either way.
func NewUnstartedServer(opts ...Option) *Server {
	cfg := config{
		basePath:     DefaultBasePath,
		updateCreate: true,
		integrity:    true,
		seed:         DefaultSeed,
		now:          time.Now,
		logLimit:     100000,
		pageSize:     50,
		maxPageSize:  1000,
		maxBodyBytes: 32 << 20,
	}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.basePath == "/" {
		cfg.basePath = ""
	}
	if cfg.pageSize > cfg.maxPageSize {
		cfg.pageSize = cfg.maxPageSize
	}
	s := &Server{
		cfg:       cfg,
		store:     newStore(),
		faults:    newFaults(cfg.seed),
		exports:   newExports(),
		validator: newValidator(),
		log:       requestLog{limit: cfg.logLimit},
		closing:   make(chan struct{}),
	}
	s.log.now = s.now
	if cfg.smart != nil {
		s.auth = newAuthServer(s, *cfg.smart)
	}
	return s
}

// Start starts serving on a loopback port and sets URL. It panics if the
// server was already started.
func (s *Server) Start() { s.start(false) }

// StartTLS is Start with TLS, offering HTTP/2 and HTTP/1.1 (ALPN h2 and
// http/1.1, like httptest.Server with EnableHTTP2). Client trusts the
// server's certificate and speaks HTTP/2; a client that does not ask for
// h2 gets HTTP/1.1. RequestLog.Proto says which one a request came over.
func (s *Server) StartTLS() { s.start(true) }

func (s *Server) start(useTLS bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started {
		panic("fhirtest: Server already started")
	}
	s.started = true
	ts := httptest.NewUnstartedServer(s.Handler())
	// httptest chains its own connection tracking in front of this hook.
	ts.Config.ConnState = func(_ net.Conn, state http.ConnState) {
		if state == http.StateNew {
			s.conns.Add(1)
		}
	}
	scheme := "http"
	if useTLS {
		scheme = "https"
	}
	// Set URL before serving, so handlers read it without a race.
	s.URL = scheme + "://" + ts.Listener.Addr().String() + s.cfg.basePath
	if useTLS {
		ts.EnableHTTP2 = true
		ts.TLS = &tls.Config{MinVersion: tls.VersionTLS12, NextProtos: []string{"h2", "http/1.1"}}
		s.cfg.tls.apply(ts.TLS)
		if s.cfg.tls.clientCAs != nil {
			ts.Config.ErrorLog = log.New(io.Discard, "", 0) // refused client certificates are expected
		}
		ts.StartTLS()
	} else {
		ts.Start()
	}
	s.ts = ts
}

// Close stops the server: requests waiting out injected latency return,
// and Close waits for requests in flight. It is safe to call more than once
// and on a server that was never started.
func (s *Server) Close() {
	s.closeOnce.Do(func() { close(s.closing) })
	s.mu.Lock()
	ts := s.ts
	s.mu.Unlock()
	if ts != nil {
		ts.Close()
	}
}

// CloseClientConnections closes every client connection to the server
// (like httptest.Server.CloseClientConnections).
func (s *Server) CloseClientConnections() {
	s.mu.Lock()
	ts := s.ts
	s.mu.Unlock()
	if ts != nil {
		ts.CloseClientConnections()
	}
}

// Client returns an HTTP client set up for the server (trusting its TLS
// certificate, and speaking HTTP/2 after StartTLS). Before Start it
// returns a plain client.
func (s *Server) Client() *http.Client {
	s.mu.Lock()
	ts := s.ts
	s.mu.Unlock()
	if ts == nil {
		return &http.Client{}
	}
	return ts.Client()
}

// Handler returns the server's HTTP handler, faults included, for use with
// your own listener or http.Server. It serves the FHIR API under the base
// path and answers 404 elsewhere. Absolute URLs in responses (Location,
// fullUrl, links) are built from the request's Host.
func (s *Server) Handler() http.Handler {
	return http.HandlerFunc(s.serveHTTP)
}

// BasePath returns the path the FHIR API is served under, such as
// "/fhir/R4" ("" for the root).
func (s *Server) BasePath() string { return s.cfg.basePath }

func (s *Server) now() time.Time { return s.cfg.now() }
