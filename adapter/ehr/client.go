package ehr

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-retryablehttp"
	"golang.org/x/sync/semaphore"
)

// Config configures a Client. The zero value of every optional field
// means its default.
type Config struct {
	// BaseURL is the EHR's FHIR base, e.g.
	// https://ehr.example.org/api/FHIR/R4. Its path is kept when joining
	// request paths. It must be an absolute http or https URL without a
	// query, fragment or user info.
	BaseURL string
	// Timeout bounds one HTTP attempt, reading the response body
	// included. Defaults to 30s.
	Timeout time.Duration
	// AnswerTimeoutMin is the least an attempt waits for its answer once
	// answers to its kind of request (method and resource type) have been
	// timed: an attempt whose answer takes longer than they usually do
	// (their mean plus four deviations, RFC 6298's retransmission
	// timeout), doubled for each attempt of that kind taken for lost
	// since the last answer, is abandoned and retried as a timeout (see
	// answer.go). Defaults to 1s; a negative value turns this off, and
	// every attempt waits up to Timeout.
	AnswerTimeoutMin time.Duration
	// RetryMax is how many times one request is retried after a transient
	// failure, inside one Do. Defaults to 3; a negative value disables
	// short retries.
	RetryMax int
	// RetryWaitMin is the first backoff wait. Defaults to 500ms.
	RetryWaitMin time.Duration
	// RetryWaitMax caps the backoff wait and any Retry-After the EHR
	// sends. Defaults to 30s.
	RetryWaitMax time.Duration
	// MaxSearchPages bounds how many Bundle pages Search reads. Defaults
	// to 100.
	MaxSearchPages int
	// UserAgent is sent as User-Agent. Defaults to "ketamine-fhir".
	UserAgent string
	// Auth selects and configures authentication. The zero value is no
	// authentication.
	Auth AuthConfig
	// HTTPClient is the base client (transport, TLS settings, proxies).
	// It is copied, not modified: the copy gets Timeout, a redirect
	// policy that follows redirects for GET only, and a transport wrapper.
	// Defaults to a client with a pooled transport cloned from
	// http.DefaultTransport.
	HTTPClient *http.Client
	// Logger receives request and retry events at Debug level and token
	// refreshes at Info (Warn when they fail). It never receives URLs
	// with query strings, bodies, tokens or patient data. Defaults to
	// discarding.
	Logger *slog.Logger
	// Hooks are optional metrics callbacks.
	Hooks Hooks
	// Pacer, when set, paces every HTTP attempt of the client, token and
	// discovery requests included: Wait before it is sent, Done after.
	Pacer Pacer
	// TLS adds mutual TLS and a CA bundle to the transport (the default
	// one, or HTTPClient's when it is an *http.Transport).
	TLS TLSConfig
	// MaxIdleConnsPerHost sizes the default transport's keep-alive pool
	// for the EHR host; set it to at least the requests in flight so
	// steady state opens no new connections. Defaults to 64. Ignored
	// when HTTPClient brings its own transport.
	MaxIdleConnsPerHost int
	// MaxInFlight is the most requests to the EHR sent and not yet done
	// with (answered and the answer's body closed) at once; more wait,
	// first come first served, before they wait for the Pacer. It lets a
	// caller run more goroutines than requests in flight, so that the next
	// request is ready when one is answered. Token requests are not
	// counted (a request may refresh the token while it holds its place),
	// nor are Pings. 0 means no limit.
	MaxInFlight int
}

// Pacer paces a Client's requests. Wait blocks until a request may be
// sent (or returns ctx's error); every Wait that returned nil is followed
// by one Done with the answer's status (0 when none came) and Retry-After
// (0 when none).
type Pacer interface {
	Wait(ctx context.Context) error
	Done(status int, retryAfter time.Duration)
}

// Hooks are callbacks for metrics. A nil func is skipped. They may be
// called from many goroutines at once and must not block.
type Hooks struct {
	// OnRequest is called after each HTTP attempt to the FHIR API (not to
	// the token endpoint) with the resource type label ("Patient",
	// "Bundle" for transactions, "other" when unknown), the method, the
	// status (0 for a transport error) and the attempt's duration.
	OnRequest func(resourceType, method string, status int, elapsed time.Duration)
	// OnRetry is called before each short retry, token and discovery
	// requests included, with a bounded reason: "http_429", "http_503",
	// "timeout", "connection", "dns", ...
	OnRetry func(reason string)
	// OnTokenRefresh is called after each token request with its error,
	// nil on success.
	OnTokenRefresh func(err error)
}

// Request is one FHIR REST request, built by the caller.
type Request struct {
	// Method is GET, POST, PUT, PATCH or DELETE.
	Method string
	// Path is relative to BaseURL: "Patient?identifier=…",
	// "Observation/123", "" for the base (transactions). A query must be
	// URL-encoded already; it is sent as is, except that characters not
	// allowed in a URL query (space, '|', '"', non-ASCII, ...) are
	// percent-encoded. A leading '/' is ignored; "." and ".." segments are
	// refused.
	Path string
	// ResourceType labels metrics and error text ("Patient"). Never put
	// patient data here. Defaults to the first segment of Path.
	ResourceType string
	// Body is the FHIR JSON body, nil for none.
	Body []byte
	// IfMatch is a version id ("3"), sent as If-Match: W/"3".
	IfMatch string
	// IfNoneExist is the query of a conditional create
	// ("identifier=sys|val"), sent as If-None-Exist.
	IfNoneExist string
	// Prefer is sent as the Prefer header when set, e.g. "return=minimal".
	Prefer string
}

// Response is a 2xx answer.
type Response struct {
	// Status is the HTTP status code.
	Status int
	// Body is the response body, possibly empty.
	Body []byte
	// ID and Version are the resource's id and version, from Location
	// (…/Type/id/_history/v) or Content-Location, ETag (W/"v"), or the
	// body's id and meta.versionId; empty when the EHR sent none.
	ID, Version string
	// Location is the Location (or Content-Location) header.
	Location string
	// LastModified is from Last-Modified or the body's meta.lastUpdated;
	// zero when absent.
	LastModified time.Time
	// Header is the response's header (Content-Location, X-Progress,
	// Retry-After, Expires of Bulk Data answers).
	Header http.Header
}

// Client is a FHIR REST client for one EHR. It is safe for concurrent use.
type Client struct {
	base        *url.URL // Path without trailing '/'
	baseStr     string   // base.String() without trailing '/'
	http        *http.Client
	transport   http.RoundTripper // the transport under the idle-close shield
	retryMax    int
	waitMin     time.Duration
	waitMax     time.Duration
	maxPages    int
	userAgent   string
	pingTimeout time.Duration
	timeout     time.Duration
	log         *slog.Logger
	hooks       Hooks
	auth        tokenSource
	now         func() time.Time
}

// Defaults of Config.
const (
	DefaultTimeout = 30 * time.Second
	// DefaultAnswerTimeoutMin is Config.AnswerTimeoutMin's default.
	DefaultAnswerTimeoutMin = time.Second
	DefaultRetryMax         = 3
	DefaultRetryWaitMin     = 500 * time.Millisecond
	DefaultRetryWaitMax     = 30 * time.Second
	DefaultMaxSearchPages   = 100
	DefaultUserAgent        = "ketamine-fhir"
)

// maxResponseBytes bounds a response body read into memory.
const maxResponseBytes = 32 << 20

// maxRetryAfter bounds the Retry-After reported to the outbox.
const maxRetryAfter = 24 * time.Hour

// New returns a Client for cfg. It fails on a bad BaseURL or an auth
// configuration that cannot work (unknown mode, missing credentials, an
// unreadable private key); it makes no network call.
func New(cfg Config) (*Client, error) {
	base, err := parseBase(cfg.BaseURL)
	if err != nil {
		return nil, err
	}
	c := &Client{
		base:      base,
		baseStr:   base.String(),
		retryMax:  cfg.RetryMax,
		waitMin:   cfg.RetryWaitMin,
		waitMax:   cfg.RetryWaitMax,
		maxPages:  cfg.MaxSearchPages,
		userAgent: cfg.UserAgent,
		log:       cfg.Logger,
		hooks:     cfg.Hooks,
		now:       time.Now,
	}
	timeout := cfg.Timeout
	switch {
	case timeout < 0:
		return nil, errors.New("ehr: Timeout must not be negative")
	case timeout == 0:
		timeout = DefaultTimeout
	}
	switch {
	case c.retryMax == 0:
		c.retryMax = DefaultRetryMax
	case c.retryMax < 0:
		c.retryMax = 0
	}
	if c.waitMin <= 0 {
		c.waitMin = DefaultRetryWaitMin
	}
	if c.waitMax <= 0 {
		c.waitMax = DefaultRetryWaitMax
	}
	if c.waitMin > c.waitMax {
		c.waitMin = c.waitMax
	}
	if c.maxPages <= 0 {
		c.maxPages = DefaultMaxSearchPages
	}
	if c.userAgent == "" {
		c.userAgent = DefaultUserAgent
	}
	if err := checkHeaderValue(c.userAgent); err != nil {
		return nil, errors.New("ehr: UserAgent has control characters")
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	c.pingTimeout = min(5*time.Second, timeout)
	c.timeout = timeout
	answerMin := cfg.AnswerTimeoutMin
	if answerMin == 0 {
		answerMin = DefaultAnswerTimeoutMin
	}

	var hc http.Client
	if cfg.HTTPClient != nil {
		hc = *cfg.HTTPClient
	}
	c.transport = hc.Transport
	if c.transport == nil {
		c.transport = defaultTransport(cfg.MaxIdleConnsPerHost)
	}
	if c.transport, err = applyTLS(c.transport, cfg.TLS, c.now); err != nil {
		return nil, err
	}
	// retryablehttp closes the client's idle connections after every
	// failed request; with one client shared by concurrent requests that
	// would drop the whole keep-alive pool on each 429 that exhausts its
	// retries. The shield hides CloseIdleConnections from it.
	//
	// Under the shield, from the wire up: the token is made current last,
	// after the waits above it; the pacer sets the rate; the slots bound
	// the requests in flight.
	var rt http.RoundTripper = c.transport
	if answerMin > 0 && answerMin < timeout {
		rt = answerTransport{rt: rt, times: newAnswerTimes(answerMin, timeout), now: c.now}
	}
	if cfg.Auth.Mode == AuthClientSecret || cfg.Auth.Mode == AuthSMARTBackend {
		rt = freshTokenTransport{rt}
	}
	if cfg.Pacer != nil {
		rt = pacedTransport{rt: rt, pacer: cfg.Pacer, now: c.now}
	}
	if cfg.MaxInFlight > 0 {
		rt = slotTransport{rt: rt, slots: semaphore.NewWeighted(int64(cfg.MaxInFlight))}
	}
	hc.Transport = idleShield{rt}
	hc.Timeout = timeout
	hc.CheckRedirect = checkRedirect
	c.http = &hc

	c.auth, err = newTokenSource(cfg.Auth, c)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// CloseIdleConnections closes the idle connections of the transport.
func (c *Client) CloseIdleConnections() {
	type closeIdler interface{ CloseIdleConnections() }
	if t, ok := c.transport.(closeIdler); ok {
		t.CloseIdleConnections()
	}
}

func parseBase(raw string) (*url.URL, error) {
	if strings.TrimSpace(raw) == "" {
		return nil, errors.New("ehr: BaseURL is required")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("ehr: BaseURL: %w", err)
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, errors.New("ehr: BaseURL must be an http or https URL")
	case u.Host == "":
		return nil, errors.New("ehr: BaseURL has no host")
	case u.User != nil:
		return nil, errors.New("ehr: BaseURL must not carry user info; use Auth")
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "":
		return nil, errors.New("ehr: BaseURL must not have a query or fragment")
	}
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawPath = strings.TrimRight(u.RawPath, "/")
	return u, nil
}

func defaultTransport(idlePerHost int) http.RoundTripper {
	if idlePerHost <= 0 {
		idlePerHost = 64
	}
	t := http.DefaultTransport.(*http.Transport).Clone()
	// The engine sends many concurrent requests to one host: keep a
	// connection per request in flight, so steady state dials nothing.
	// HTTP/2 is negotiated over TLS where the EHR offers it
	// (ForceAttemptHTTP2 from the default transport).
	t.MaxIdleConns = max(100, idlePerHost)
	t.MaxIdleConnsPerHost = idlePerHost
	return t
}

// pacedTransport asks the pacer before each attempt and tells it the
// answer.
type pacedTransport struct {
	rt    http.RoundTripper
	pacer Pacer
	now   func() time.Time
}

func (p pacedTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if err := p.pacer.Wait(r.Context()); err != nil {
		if r.Body != nil {
			r.Body.Close()
		}
		return nil, err
	}
	resp, err := p.rt.RoundTrip(r)
	if err != nil {
		p.pacer.Done(0, 0)
		return nil, err
	}
	p.pacer.Done(resp.StatusCode, parseRetryAfter(resp.Header.Get("Retry-After"), p.now()))
	return resp, nil
}

// slotTransport lets at most MaxInFlight requests through at once, apart
// from those whose context carries noSlotKey. A request holds its slot
// until its response body is closed, when its connection goes back to
// the keep-alive pool: a slot freed at the headers would let the next
// request find no idle connection and dial one.
type slotTransport struct {
	rt    http.RoundTripper
	slots *semaphore.Weighted
}

// noSlotKey marks a request that takes no slot: a token request (the
// request that needs the token may hold a slot, see freshTokenTransport)
// or a ping (the EHR prober behind GET /v1/status and
// ketamine_fhir_ehr_up must not wait behind C deliveries).
type noSlotKey struct{}

func (t slotTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Context().Value(noSlotKey{}) != nil {
		return t.rt.RoundTrip(r)
	}
	if err := t.slots.Acquire(r.Context(), 1); err != nil {
		if r.Body != nil {
			r.Body.Close()
		}
		return nil, err
	}
	resp, err := t.rt.RoundTrip(r)
	if err != nil {
		t.slots.Release(1)
		return nil, err
	}
	resp.Body = &slotBody{ReadCloser: resp.Body, release: func() { t.slots.Release(1) }}
	return resp, nil
}

// slotBody frees its request's slot when it is closed, once.
type slotBody struct {
	io.ReadCloser
	once    sync.Once
	release func()
}

// Close closes the body, frees the slot and yields the processor. The
// request waiting for the slot was made runnable on this processor by the
// release, and would otherwise wait until this goroutine blocks: it goes
// on to parse the answer, settle its rows and map the next Bundle, a
// millisecond or more. Measured at 50 ms latency (BENCHMARKS.md section
// 2.6), the slots were 0.87-0.94 full without the yield and 0.92-0.98
// with it.
func (b *slotBody) Close() error {
	err := b.ReadCloser.Close()
	b.once.Do(func() {
		b.release()
		runtime.Gosched()
	})
	return err
}

// freshToken is how a request's bearer token is kept current while it
// waits for the pacer; doURL puts it in the request's context.
type freshToken struct {
	scheme, host string // the token goes to this origin only
	src          tokenSource
	used         string // the token sent last
	refresh      bool   // a 401 is followed by a refresh (doURL's first try)
}

type freshTokenKey struct{}

// freshTokenTransport sits below the pacer. A request that waited there
// (for a free slot, the rate or a pause) while the token was replaced is
// sent with the new token, not with the one it was built with, which
// would only earn a 401 of its own. And a 401 refreshes the token before
// the answer goes up through the pacer, which frees the request's slot:
// the next request in line then takes the new token. (A failed refresh is
// left for doURL, whose own call to the source fetches again and reports
// it.)
type freshTokenTransport struct{ rt http.RoundTripper }

func (t freshTokenTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	ft, _ := r.Context().Value(freshTokenKey{}).(*freshToken)
	if ft == nil || r.URL.Scheme != ft.scheme || !strings.EqualFold(r.URL.Host, ft.host) {
		return t.rt.RoundTrip(r)
	}
	if tok := ft.src.current(); tok != "" && tok != ft.used {
		r = r.Clone(r.Context()) // a RoundTripper must not change its request
		r.Header.Set("Authorization", "Bearer "+tok)
		ft.used = tok
	}
	resp, err := t.rt.RoundTrip(r)
	if err == nil && resp.StatusCode == http.StatusUnauthorized && ft.refresh {
		_, _ = ft.src.token(r.Context(), ft.used)
	}
	return resp, err
}

// idleShield hides the transport's CloseIdleConnections (see New).
type idleShield struct{ rt http.RoundTripper }

func (s idleShield) RoundTrip(r *http.Request) (*http.Response, error) { return s.rt.RoundTrip(r) }

var errTooManyRedirects = errors.New("too many redirects")

// checkRedirect follows redirects of GET and HEAD only (up to 10): a
// redirected write could change method or lose its body. Other redirects
// come back as 3xx responses, which Do rejects.
func checkRedirect(req *http.Request, via []*http.Request) error {
	if m := via[0].Method; m != http.MethodGet && m != http.MethodHead {
		return http.ErrUseLastResponse
	}
	if len(via) >= 10 {
		return errTooManyRedirects
	}
	// net/http keeps Authorization on a redirect to a subdomain; the
	// token goes to the host it was issued for only.
	if !strings.EqualFold(req.URL.Host, via[0].URL.Host) || req.URL.Scheme != via[0].URL.Scheme {
		req.Header.Del("Authorization")
	}
	return nil
}

// Do sends one request, with short retries and authentication. It returns
// a *Response for a 2xx answer; otherwise a *RejectedError, a
// *TransientError, an *AuthError, or the context's error wrapped. Errors
// never contain the query string of req.Path.
func (c *Client) Do(ctx context.Context, req Request) (*Response, error) {
	return c.do(ctx, req, c.retryMax)
}

func (c *Client) do(ctx context.Context, req Request, retryMax int) (*Response, error) {
	u, logPath, err := c.resolve(req.Path)
	if err != nil {
		return nil, err
	}
	if req.ResourceType == "" {
		first, _, _ := strings.Cut(strings.TrimLeft(req.Path, "/"), "/")
		first, _, _ = strings.Cut(first, "?")
		req.ResourceType = first
	}
	return c.doURL(ctx, req, u, logPath, retryMax)
}

// doURL is Do for an absolute URL (search next links).
func (c *Client) doURL(ctx context.Context, req Request, u *url.URL, logPath string, retryMax int) (*Response, error) {
	header, err := c.header(req)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("ehr: %s %s: %w", req.Method, logPath, err)
	}
	spec := sendSpec{
		method:   req.Method,
		u:        u,
		logPath:  logPath,
		label:    label(req.ResourceType),
		body:     req.Body,
		retryMax: retryMax,
		report:   true,
	}
	var stale string
	for try := 0; ; try++ {
		tok, err := c.auth.token(ctx, stale)
		if err != nil {
			return nil, err
		}
		spec.header = header
		sendCtx := ctx
		var ft *freshToken
		if tok != "" {
			spec.header = header.Clone()
			spec.header.Set("Authorization", "Bearer "+tok)
			if c.auth.refreshable() {
				ft = &freshToken{scheme: u.Scheme, host: u.Host, src: c.auth, used: tok, refresh: try == 0}
				sendCtx = context.WithValue(ctx, freshTokenKey{}, ft)
			}
		}
		raw, err := c.send(sendCtx, spec)
		if ft != nil {
			tok = ft.used // the token the last attempt carried
		}
		if err != nil {
			if te := (*TransientError)(nil); errors.As(err, &te) {
				te.Method, te.ResourceType = req.Method, req.ResourceType
			}
			return nil, err
		}
		if raw.status == http.StatusUnauthorized {
			if try == 0 && c.auth.refreshable() {
				stale = tok
				continue
			}
			return nil, &AuthError{Status: raw.status, Reason: "unauthorized", Method: req.Method, ResourceType: req.ResourceType}
		}
		return c.outcome(req, raw)
	}
}

var methods = map[string]bool{
	http.MethodGet: true, http.MethodPost: true, http.MethodPut: true,
	http.MethodPatch: true, http.MethodDelete: true, http.MethodHead: true,
}

func (c *Client) header(req Request) (http.Header, error) {
	if !methods[req.Method] {
		return nil, fmt.Errorf("%w: method %q", ErrInvalidRequest, safeCode(req.Method))
	}
	h := make(http.Header, 6)
	h.Set("Accept", "application/fhir+json")
	h.Set("User-Agent", c.userAgent)
	if len(req.Body) > 0 {
		h.Set("Content-Type", "application/fhir+json")
	}
	if v := req.IfMatch; v != "" {
		if !strings.HasPrefix(v, `W/"`) {
			if strings.ContainsRune(v, '"') {
				return nil, fmt.Errorf("%w: If-Match version has a quote", ErrInvalidRequest)
			}
			v = `W/"` + v + `"`
		}
		if checkHeaderValue(v) != nil {
			return nil, fmt.Errorf("%w: If-Match has control characters", ErrInvalidRequest)
		}
		h.Set("If-Match", v)
	}
	if v := req.IfNoneExist; v != "" {
		if checkHeaderValue(v) != nil {
			return nil, fmt.Errorf("%w: If-None-Exist has control characters", ErrInvalidRequest)
		}
		h.Set("If-None-Exist", v)
	}
	if v := req.Prefer; v != "" {
		if checkHeaderValue(v) != nil {
			return nil, fmt.Errorf("%w: Prefer has control characters", ErrInvalidRequest)
		}
		h.Set("Prefer", v)
	}
	return h, nil
}

func checkHeaderValue(v string) error {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < 0x20 && c != '\t' || c == 0x7f {
			return ErrInvalidRequest
		}
	}
	return nil
}

// label is the resource type label for hooks: a resource type name, or
// "other".
func label(resourceType string) string {
	if isResourceType(resourceType) {
		return resourceType
	}
	return "other"
}

// outcome turns a non-401 answer into a Response or a RejectedError.
func (c *Client) outcome(req Request, raw *rawResponse) (*Response, error) {
	if raw.status == http.StatusForbidden {
		// A scope or access problem of the client, not of this content.
		return nil, &AuthError{Status: raw.status, Reason: "forbidden", Method: req.Method, ResourceType: req.ResourceType,
			Detail: missingScope(raw.header)}
	}
	if raw.status < 200 || raw.status > 299 {
		return nil, &RejectedError{
			Status:       raw.status,
			Method:       req.Method,
			ResourceType: req.ResourceType,
			IfMatch:      req.IfMatch,
			Issues:       parseOutcome(raw.body),
		}
	}
	r := &Response{Status: raw.status, Body: raw.body, Header: raw.header}
	// The headers win over the body; the body is parsed only for what they
	// leave open (a write answered with Location, ETag and Last-Modified
	// needs no JSON parse of the resource it echoes).
	r.Location = raw.header.Get("Location")
	if r.Location == "" {
		r.Location = raw.header.Get("Content-Location")
	}
	_, locID, locVersion := parseLocation(r.Location)
	etag := parseETag(raw.header.Get("ETag"))
	var lastModified time.Time
	if lm := raw.header.Get("Last-Modified"); lm != "" {
		if t, err := http.ParseTime(lm); err == nil {
			lastModified = t
		}
	}
	// A Bundle (a transaction's answer) or an OperationOutcome is never the
	// resource the answer describes: no need to parse it here.
	bodyIsResource := req.ResourceType != "Bundle" && req.ResourceType != "OperationOutcome"
	if bodyIsResource && (locID == "" || (locVersion == "" && etag == "") || lastModified.IsZero()) {
		if res, ok := parseResource(raw.body); ok && res.ResourceType != "OperationOutcome" && res.ResourceType != "Bundle" &&
			(req.ResourceType == "" || res.ResourceType == req.ResourceType) {
			r.ID, r.Version, r.LastModified = res.ID, res.version(), res.lastUpdated()
		}
	}
	if locID != "" {
		r.ID = locID
		if locVersion != "" {
			r.Version = locVersion
		}
	}
	if etag != "" {
		r.Version = etag
	}
	if !lastModified.IsZero() {
		r.LastModified = lastModified
	}
	return r, nil
}

// resolve joins a request path to the base URL. logPath is the path with
// any query replaced by "?…", safe for errors and logs.
func (c *Client) resolve(path string) (u *url.URL, logPath string, err error) {
	p, q, hasQuery := strings.Cut(path, "?")
	p = strings.TrimLeft(p, "/")
	logPath = "/" + p
	if hasQuery {
		logPath += "?…"
	}
	if strings.Contains(p, "://") {
		return nil, "", fmt.Errorf("%w: path is an absolute URL", ErrInvalidRequest)
	}
	for _, seg := range strings.Split(p, "/") {
		if seg == "." || seg == ".." {
			return nil, "", fmt.Errorf("%w: path %s leaves the base URL", ErrInvalidRequest, logPath)
		}
	}
	s := c.baseStr
	if p != "" {
		s += "/" + escape(p, false)
	}
	if hasQuery {
		s += "?" + escape(q, true)
	}
	u, err = url.Parse(s)
	if err != nil {
		return nil, "", fmt.Errorf("%w: path %s does not form a URL", ErrInvalidRequest, logPath)
	}
	return u, logPath, nil
}

// escape percent-encodes the bytes not allowed in a URL path (or query):
// existing %XX escapes and allowed characters are kept, so an encoded
// query is not encoded twice.
func escape(s string, query bool) string {
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]):
			b.WriteByte(c)
		case c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9':
			b.WriteByte(c)
		case strings.IndexByte("-._~!$&'()*+,;=:@/", c) >= 0, query && c == '?':
			b.WriteByte(c)
		default:
			const hex = "0123456789ABCDEF"
			b.WriteByte('%')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&15])
		}
	}
	return b.String()
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

// sendSpec is one logical request for send.
type sendSpec struct {
	method   string
	u        *url.URL
	logPath  string // for logs and errors
	label    string // resource type label for hooks
	header   http.Header
	body     []byte
	retryMax int
	report   bool // call Hooks.OnRequest for each attempt
}

type rawResponse struct {
	status int
	header http.Header
	body   []byte
}

// send makes one logical request through retryablehttp, without
// authentication. It returns the final response (any status but the
// retried ones, whose last occurrence becomes a *TransientError), a
// *TransientError, or the context's error wrapped.
func (c *Client) send(ctx context.Context, s sendSpec) (*rawResponse, error) {
	a := &attempts{c: c, spec: &s}
	rc := &retryablehttp.Client{
		HTTPClient:     c.http,
		Logger:         nil, // its logger prints full URLs; we log in the hooks below
		RetryWaitMin:   c.waitMin,
		RetryWaitMax:   c.waitMax,
		RetryMax:       s.retryMax,
		RequestLogHook: a.begin,
		CheckRetry:     a.checkRetry,
		Backoff:        a.backoff,
		ErrorHandler:   a.giveUp,
	}
	// The request is made on no URL, so that nothing retryablehttp or
	// net/http might print carries the query (nor does s.u need formatting
	// and parsing again), then pointed at the full URL.
	var body any
	if len(s.body) > 0 {
		body = s.body
	}
	if s.report {
		// A request to the FHIR API: its answers are timed by kind.
		ctx = context.WithValue(ctx, answerKindKey{}, s.method+" "+s.label)
	}
	req, err := retryablehttp.NewRequestWithContext(ctx, s.method, "", body)
	if err != nil {
		return nil, fmt.Errorf("%w: %s %s", ErrInvalidRequest, s.method, s.logPath)
	}
	req.URL = s.u
	req.Host = s.u.Host
	if s.header != nil {
		req.Header = s.header // built for this request (or cloned for its token): its own
	}
	if id := RequestID(ctx); id != "" {
		req.Header.Set(HeaderRequestID, id)
	}
	req.SetResponseHandler(a.readBody)

	resp, err := rc.Do(req)
	if err != nil {
		if cerr := ctx.Err(); cerr != nil {
			return nil, fmt.Errorf("ehr: %s %s: %w", s.method, s.logPath, cerr)
		}
		if te := (*TransientError)(nil); errors.As(err, &te) {
			if te.Reason == "tls_client_certificate" {
				return nil, clientCertError(err)
			}
			return nil, te
		}
		// Not expected (giveUp makes every failure a TransientError),
		// but never let an error that may hold the URL through.
		return nil, &TransientError{Reason: "connection", Attempts: a.n}
	}
	resp.Body.Close() // read by readBody already
	return &rawResponse{status: resp.StatusCode, header: resp.Header, body: a.body}, nil
}

// attempts is the state of one send across its HTTP attempts. The
// retryablehttp callbacks of one Do run sequentially.
type attempts struct {
	c          *Client
	spec       *sendSpec
	n          int // attempt number, 1-based
	start      time.Time
	reported   bool
	body       []byte
	status     int           // status of the current attempt, 0 if none
	reason     string        // why the current attempt failed, "" if it did not
	retryAfter time.Duration // Retry-After of the current attempt
	retry      bool          // whether the failure is worth a short retry
}

func (a *attempts) begin(_ retryablehttp.Logger, _ *http.Request, i int) {
	a.n = i + 1
	a.start = a.c.now()
	a.reported = false
	a.body = nil
	a.status, a.reason, a.retryAfter = 0, "", 0
}

var errResponseTooLarge = errors.New("response body too large")

// readBody reads the body inside the attempt, so a connection lost while
// reading is retried like one lost before the headers.
func (a *attempts) readBody(resp *http.Response) error {
	defer resp.Body.Close()
	b, err := readAll(resp.Body, resp.ContentLength, maxResponseBytes)
	if err != nil {
		return err
	}
	a.body = b
	return nil
}

// readAll is io.ReadAll of at most limit bytes (errResponseTooLarge
// beyond), with a buffer sized by the Content-Length when there is one:
// one allocation of the body's size instead of growing one from 512 bytes
// (a write answered with no body, as Prefer: return=minimal asks,
// allocates almost nothing). The length is a hint only: a HEAD answer
// announces one and has no body.
func readAll(r io.Reader, length, limit int64) ([]byte, error) {
	size := int64(512)
	if length >= 0 {
		size = min(length, limit) + 1 // + 1: room to read the EOF
	}
	b := make([]byte, 0, size)
	for {
		n, err := r.Read(b[len(b):min(int64(cap(b)), limit+1)])
		b = b[:len(b)+n]
		if int64(len(b)) > limit {
			return nil, errResponseTooLarge
		}
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return nil, err
		}
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)] // let append pick the next capacity
		}
	}
}

func (a *attempts) checkRetry(ctx context.Context, resp *http.Response, err error) (bool, error) {
	if !a.reported {
		a.reported = true
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		elapsed := a.c.now().Sub(a.start)
		if a.spec.report && a.c.hooks.OnRequest != nil {
			a.c.hooks.OnRequest(a.spec.label, a.spec.method, status, elapsed)
		}
		if a.c.log.Enabled(ctx, slog.LevelDebug) { // else the arguments cost allocations per request for nothing
			a.c.log.Debug("ehr request", "method", a.spec.method, "path", a.spec.logPath,
				"status", status, "attempt", a.n, "elapsed", elapsed)
		}
	}
	if cerr := ctx.Err(); cerr != nil {
		return false, cerr
	}
	if err != nil {
		if resp != nil {
			a.status = resp.StatusCode
		}
		if errors.Is(err, errResponseTooLarge) {
			a.reason, a.retry = "response_too_large", false
			return false, err
		}
		a.reason, a.retry = transportReason(err)
		return a.retry, nil
	}
	a.status = resp.StatusCode
	if retryableStatus(resp.StatusCode) {
		a.reason, a.retry = statusReason(resp.StatusCode), true
		a.retryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), a.c.now())
		return true, nil
	}
	a.reason, a.retry, a.retryAfter = "", false, 0
	return false, nil
}

// retryableStatus reports the statuses retried: 408, 429 and every 5xx
// but 501 Not Implemented and 505 HTTP Version Not Supported.
func retryableStatus(status int) bool {
	switch {
	case status == http.StatusRequestTimeout, status == http.StatusTooManyRequests:
		return true
	case status == http.StatusNotImplemented, status == http.StatusHTTPVersionNotSupported:
		return false
	}
	return status >= 500 && status <= 599
}

// transportReason classifies an error of an HTTP attempt (no response, or
// the body lost) and says whether a short retry may help.
func transportReason(err error) (reason string, retry bool) {
	var (
		verr *tls.CertificateVerificationError
		uerr x509.UnknownAuthorityError
		herr x509.HostnameError
		cerr x509.CertificateInvalidError
		rerr tls.RecordHeaderError
		nerr net.Error
		derr *net.DNSError
		oerr *net.OpError
	)
	switch {
	case errors.As(err, &oerr) && oerr.Op == "remote error" && oerr.Err != nil && strings.Contains(oerr.Err.Error(), "certificate"):
		// The EHR sent a TLS alert about our client certificate.
		return "tls_client_certificate", false
	case errors.As(err, &verr), errors.As(err, &uerr), errors.As(err, &herr), errors.As(err, &cerr):
		return "tls_certificate", false
	case errors.As(err, &rerr):
		return "tls", false
	case errors.Is(err, errTooManyRedirects):
		return "redirect", false
	case errors.As(err, new(*lostAnswerError)):
		return "answer_timeout", true
	case errors.As(err, &derr):
		if derr.IsTimeout {
			return "timeout", true
		}
		return "dns", true
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded),
		errors.As(err, &nerr) && nerr.Timeout():
		return "timeout", true
	}
	return "connection", true
}

// parseRetryAfter reads a Retry-After header: delay seconds or an HTTP
// date. It returns 0 when absent or unreadable, at most maxRetryAfter.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	var d time.Duration
	if n, err := parseUint(v); err == nil {
		if n > int64(maxRetryAfter/time.Second) {
			return maxRetryAfter
		}
		d = time.Duration(n) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(now)
	}
	if d < 0 {
		return 0
	}
	return min(d, maxRetryAfter)
}

func parseUint(s string) (int64, error) {
	if s == "" || len(s) > 18 {
		return 0, errors.New("not a number")
	}
	var n int64
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, errors.New("not a number")
		}
		n = n*10 + int64(s[i]-'0')
	}
	return n, nil
}

// backoff is called by retryablehttp only when it is about to retry.
func (a *attempts) backoff(lo, hi time.Duration, attemptNum int, _ *http.Response) time.Duration {
	var wait time.Duration
	if a.retryAfter > 0 {
		wait = min(a.retryAfter, hi)
	} else {
		wait = Backoff(lo, hi, attemptNum+1, rand.Float64())
	}
	if a.c.hooks.OnRetry != nil {
		a.c.hooks.OnRetry(a.reason)
	}
	a.c.log.Debug("ehr retry", "method", a.spec.method, "path", a.spec.logPath,
		"reason", a.reason, "attempt", a.n, "wait", wait)
	return wait
}

// giveUp replaces retryablehttp's "giving up" error, which carries the
// URL, with a *TransientError. (When the caller's context is done, send
// returns the context's error instead.)
func (a *attempts) giveUp(resp *http.Response, _ error, n int) (*http.Response, error) {
	if resp != nil {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
	}
	reason := a.reason
	if reason == "" {
		reason = "connection"
	}
	return nil, &TransientError{
		Status:     a.status,
		Reason:     reason,
		RetryAfter: a.retryAfter,
		Attempts:   n,
	}
}
