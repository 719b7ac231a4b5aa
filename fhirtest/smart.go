package fhirtest

import (
	"bytes"
	"crypto/rand"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync"
	"time"
)

// SMART Backend Services authorization server (SMART App Launch 2,
// "Backend Services"): discovery at BASE/.well-known/smart-configuration,
// a client_credentials token endpoint that authenticates clients by a
// signed JWT assertion (private_key_jwt, RS384 or ES384) or by a client
// secret (HTTP Basic or form post), and scope enforcement on the FHIR API.

// SMARTClient is a client registered with the authorization server.
type SMARTClient struct {
	// ID is the client_id.
	ID string
	// Secret, when set, lets the client authenticate with it (HTTP Basic,
	// RFC 6749 section 2.3.1, or client_secret in the form).
	Secret string
	// JWKS is the client's public JWK Set, inline. Its keys verify the
	// client's assertions, found by kid.
	JWKS []byte
	// JWKSURL is where the client publishes its JWK Set; it is fetched at
	// each assertion, so a rotated key is seen at once. Used when JWKS is
	// empty.
	JWKSURL string
	// Scopes are the scopes the client may be granted, e.g.
	// "system/*.cruds" or "system/Patient.read". A token request gets the
	// requested scopes these cover.
	Scopes []string
}

// SMARTConfig configures the authorization server of WithSMART.
type SMARTConfig struct {
	// Clients are registered at start; AuthServer.Register adds more.
	Clients []SMARTClient
	// TokenLifetime is the expires_in of access tokens. Defaults to 5
	// minutes.
	TokenLifetime time.Duration
	// TokenPath is the token endpoint's path on the server (outside the
	// FHIR base). Defaults to "/auth/token".
	TokenPath string
	// HTTPClient fetches JWKSURL. Defaults to a client with a 5s timeout.
	HTTPClient *http.Client
}

// MaxAssertionLifetime is the longest exp of a client assertion SMART
// allows: five minutes after the server's now.
const MaxAssertionLifetime = 5 * time.Minute

// AssertionType is the client_assertion_type of a JWT assertion.
const AssertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

// WithSMART makes the server a SMART Backend Services authorization
// server: every FHIR API request but the CapabilityStatement needs a
// bearer token it issued, whose scopes cover the interaction
// (system/<Type>.read|write of SMART v1, system/<Type>.cruds of v2).
// Server.SMART returns the AuthServer, for registering clients and
// injecting faults.
func WithSMART(cfg SMARTConfig) Option {
	return func(c *config) { c.smart = &cfg }
}

// AuthServer is the authorization server of a Server made WithSMART. Its
// methods are safe for concurrent use.
type AuthServer struct {
	s        *Server
	lifetime time.Duration
	path     string
	hc       *http.Client

	mu       sync.Mutex
	clients  map[string]*SMARTClient
	revoked  map[string]bool
	tokens   map[string]grant
	jtis     map[string]time.Time // client id + " " + jti -> assertion exp
	skew     time.Duration
	fail     int    // token endpoint fault: status, 0 for none
	failCode string // its OAuth error code
	requests int    // token requests
	issued   int    // tokens issued
}

type grant struct {
	client string
	scopes []string
	exp    time.Time
}

func newAuthServer(s *Server, cfg SMARTConfig) *AuthServer {
	a := &AuthServer{
		s:        s,
		lifetime: cfg.TokenLifetime,
		path:     "/" + strings.Trim(cfg.TokenPath, "/"),
		hc:       cfg.HTTPClient,
		clients:  map[string]*SMARTClient{},
		revoked:  map[string]bool{},
		tokens:   map[string]grant{},
		jtis:     map[string]time.Time{},
	}
	if a.lifetime <= 0 {
		a.lifetime = 5 * time.Minute
	}
	if cfg.TokenPath == "" {
		a.path = "/auth/token"
	}
	if a.hc == nil {
		a.hc = &http.Client{Timeout: 5 * time.Second}
	}
	for _, c := range cfg.Clients {
		a.Register(c)
	}
	return a
}

// SMART returns the server's authorization server, nil unless the server
// was made WithSMART.
func (s *Server) SMART() *AuthServer { return s.auth }

// Register adds or replaces a client (and lifts a revocation of its id).
func (a *AuthServer) Register(c SMARTClient) {
	c.Scopes = append([]string(nil), c.Scopes...)
	c.JWKS = append([]byte(nil), c.JWKS...)
	a.mu.Lock()
	defer a.mu.Unlock()
	a.clients[c.ID] = &c
	delete(a.revoked, c.ID)
}

// Revoke revokes a client: its tokens stop working and its token requests
// are refused with invalid_client.
func (a *AuthServer) Revoke(clientID string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.revoked[clientID] = true
	for tok, g := range a.tokens {
		if g.client == clientID {
			delete(a.tokens, tok)
		}
	}
}

// ExpireTokens makes every token issued so far expired now.
func (a *AuthServer) ExpireTokens() {
	a.mu.Lock()
	defer a.mu.Unlock()
	clear(a.tokens)
}

// FailTokenEndpoint makes every token request fail with status and, for a
// 4xx, the OAuth error code oauthError (e.g. 503 and "", or 401 and
// "invalid_client"). Status 0 ends the fault.
func (a *AuthServer) FailTokenEndpoint(status int, oauthError string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.fail, a.failCode = status, oauthError
}

// SetClockSkew sets how far the authorization server's clock is ahead of
// the server's (negative: behind). It moves the checks of assertion exp
// and of token expiry.
func (a *AuthServer) SetClockSkew(d time.Duration) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.skew = d
}

// IssueToken issues a token to a registered client directly, without a
// token request, for clients with a static bearer token. It returns "" if
// the client is not registered or is revoked.
func (a *AuthServer) IssueToken(clientID string, scopes []string) string {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.clients[clientID] == nil || a.revoked[clientID] {
		return ""
	}
	return a.issueLocked(clientID, scopes)
}

// TokenRequests returns how many token requests came, and how many tokens
// were issued.
func (a *AuthServer) TokenRequests() (requests, issued int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.requests, a.issued
}

func (a *AuthServer) now() time.Time { return a.s.now().Add(a.skew) }

func (a *AuthServer) issueLocked(clientID string, scopes []string) string {
	tok := rand.Text()
	a.tokens[tok] = grant{client: clientID, scopes: scopes, exp: a.now().Add(a.lifetime)}
	a.issued++
	return tok
}

// serve answers the authorization server's own requests (discovery and
// token) and refuses FHIR API requests without the token and scopes they
// need. It returns nil for a request the FHIR handler should serve.
func (a *AuthServer) serve(r *http.Request) *response {
	base := a.s.cfg.basePath
	switch r.URL.Path {
	case a.path:
		return a.token(r)
	case base + "/.well-known/smart-configuration":
		return a.discovery(r)
	case base + "/metadata":
		return nil // the CapabilityStatement is public
	}
	if !strings.HasPrefix(r.URL.Path, base+"/") && r.URL.Path != base {
		return nil // 404 from the FHIR handler
	}
	return a.authorize(r)
}

func origin(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

func (a *AuthServer) discovery(r *http.Request) *response {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return errResponse(errorf(405, "not-supported", "use GET"))
	}
	body, _ := json.Marshal(map[string]any{
		"issuer":                                origin(r) + a.path,
		"token_endpoint":                        origin(r) + a.path,
		"grant_types_supported":                 []string{"client_credentials"},
		"token_endpoint_auth_methods_supported": []string{"private_key_jwt", "client_secret_basic", "client_secret_post"},
		"token_endpoint_auth_signing_alg_values_supported": allowedAlgs,
		"scopes_supported": []string{"system/*.read", "system/*.write", "system/*.cruds"},
		"capabilities":     []string{"client-confidential-asymmetric", "client-confidential-symmetric", "permission-v1", "permission-v2"},
	})
	resp := newResponse(200, body)
	resp.contentType = "application/json"
	return resp
}

// oauthError is an error answer of the token endpoint (RFC 6749 section
// 5.2). The description says what to check; it never echoes a secret or
// an assertion.
func oauthError(status int, code, format string, args ...any) *response {
	body, _ := json.Marshal(map[string]string{"error": code, "error_description": fmt.Sprintf(format, args...)})
	resp := newResponse(status, body)
	resp.contentType = "application/json"
	resp.header.Set("Cache-Control", "no-store")
	if status == http.StatusUnauthorized {
		resp.header.Set("WWW-Authenticate", `Basic realm="fhirtest"`)
	}
	return resp
}

func (a *AuthServer) token(r *http.Request) *response {
	a.mu.Lock()
	a.requests++
	fail, failCode := a.fail, a.failCode
	a.mu.Unlock()
	if fail != 0 {
		if fail >= 500 || failCode == "" {
			resp := oauthError(fail, "temporarily_unavailable", "injected token endpoint failure")
			if fail == http.StatusServiceUnavailable || fail == http.StatusTooManyRequests {
				resp.header.Set("Retry-After", "1")
			}
			return resp
		}
		return oauthError(fail, failCode, "injected token endpoint failure")
	}
	if r.Method != http.MethodPost {
		return oauthError(405, "invalid_request", "the token endpoint takes POST")
	}
	r.Body = http.MaxBytesReader(nil, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		return oauthError(400, "invalid_request", "the body is not an application/x-www-form-urlencoded form")
	}
	form := r.PostForm
	if gt := form.Get("grant_type"); gt != "client_credentials" {
		return oauthError(400, "unsupported_grant_type", "grant_type %q is not client_credentials", clip(gt))
	}
	client, errResp := a.authenticate(r, form)
	if errResp != nil {
		return errResp
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.revoked[client.ID] {
		return oauthError(401, "invalid_client", "client %q was revoked; register it again", client.ID)
	}
	requested := strings.Fields(form.Get("scope"))
	if len(requested) == 0 {
		requested = client.Scopes
	}
	var granted, refused []string
	for _, sc := range requested {
		if coveredBy(sc, client.Scopes) {
			granted = append(granted, sc)
		} else {
			refused = append(refused, sc)
		}
	}
	if len(granted) == 0 {
		return oauthError(400, "invalid_scope", "none of the requested scopes is granted to client %q (refused: %s; registered: %s)",
			client.ID, strings.Join(refused, " "), strings.Join(client.Scopes, " "))
	}
	tok := a.issueLocked(client.ID, granted)
	body, _ := json.Marshal(map[string]any{
		"access_token": tok,
		"token_type":   "bearer",
		"expires_in":   int(a.lifetime / time.Second),
		"scope":        strings.Join(granted, " "),
	})
	resp := newResponse(200, body)
	resp.contentType = "application/json"
	resp.header.Set("Cache-Control", "no-store")
	return resp
}

// authenticate finds and authenticates the client of a token request: by
// JWT assertion, HTTP Basic or client_secret in the form.
func (a *AuthServer) authenticate(r *http.Request, form url.Values) (*SMARTClient, *response) {
	if typ := form.Get("client_assertion_type"); typ != "" || form.Has("client_assertion") {
		if typ != AssertionType {
			return nil, oauthError(400, "invalid_request", "client_assertion_type must be %s", AssertionType)
		}
		return a.verifyAssertion(r, form)
	}
	id, secret, basic := r.BasicAuth()
	if basic {
		// RFC 6749 section 2.3.1: both are form-encoded before Basic.
		var err1, err2 error
		id, err1 = url.QueryUnescape(id)
		secret, err2 = url.QueryUnescape(secret)
		if err1 != nil || err2 != nil {
			return nil, oauthError(401, "invalid_client", "the Basic credentials are not form-encoded")
		}
	} else if form.Has("client_secret") {
		id, secret = form.Get("client_id"), form.Get("client_secret")
	} else {
		return nil, oauthError(401, "invalid_client", "no client authentication: send a client_assertion or a client secret")
	}
	a.mu.Lock()
	c := a.clients[id]
	a.mu.Unlock()
	switch {
	case c == nil:
		return nil, oauthError(401, "invalid_client", "client %q is not registered", clip(id))
	case c.Secret == "":
		return nil, oauthError(401, "invalid_client", "client %q has no secret; it authenticates with a signed assertion", c.ID)
	case subtle.ConstantTimeCompare([]byte(secret), []byte(c.Secret)) != 1:
		return nil, oauthError(401, "invalid_client", "wrong client secret for client %q", c.ID)
	}
	return c, nil
}

// clip bounds a client-sent value echoed in an error description.
func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

// authorize checks the bearer token and its scopes for a FHIR API request;
// nil lets it through.
func (a *AuthServer) authorize(r *http.Request) *response {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || tok == "" {
		resp := errResponse(errorf(401, "login", "a bearer token is required; get one at the token endpoint"))
		resp.header.Set("WWW-Authenticate", `Bearer realm="fhirtest"`)
		return resp
	}
	a.mu.Lock()
	g, known := a.tokens[tok]
	now := a.now()
	a.mu.Unlock()
	if !known || !now.Before(g.exp) {
		msg := "the access token is unknown or revoked"
		if known {
			msg = "the access token expired"
		}
		resp := errResponse(errorf(401, "expired", "%s", msg))
		resp.header.Set("WWW-Authenticate", `Bearer realm="fhirtest", error="invalid_token"`)
		return resp
	}
	needs, err := requiredScopes(r, a.s.cfg.basePath)
	if err != nil {
		return errResponse(errorf(400, "invalid", "%s", err.Error()))
	}
	for _, n := range needs {
		if !permits(g.scopes, n.typ, n.perm) {
			v1 := "read"
			if strings.IndexByte("cud", n.perm) >= 0 {
				v1 = "write"
			}
			resp := errResponse(errorf(403, "forbidden",
				"insufficient scope: %s needs system/%s.%c (SMART v2) or system/%s.%s (v1); the token grants %s",
				n.what, n.typ, n.perm, n.typ, v1, strings.Join(g.scopes, " ")))
			resp.header.Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm="fhirtest", error="insufficient_scope", scope="system/%s.%c"`, n.typ, n.perm))
			return resp
		}
	}
	return nil
}

// need is one permission a request needs: a SMART v2 letter (c, r, u, d,
// s) on a resource type ("*" for system-level interactions).
type need struct {
	typ  string
	perm byte
	what string // the interaction, for the error
}

var permNames = map[byte]string{'c': "create", 'r': "read", 'u': "update", 'd': "delete", 's': "search"}

// interactionNeed maps a method and a path relative to the base ("Patient",
// "Patient/1", "Patient?identifier=x", "$export") to the permission it
// needs.
func interactionNeed(method, rel string) need {
	p, _, hasQuery := strings.Cut(strings.Trim(rel, "/"), "?")
	segs := strings.Split(p, "/")
	typ := segs[0]
	if typ == "" || typ[0] == '$' || typ == "_history" || typ == exportSeg {
		typ = "*"
	}
	var perm byte
	switch method {
	case http.MethodPost:
		perm = 'c'
		if len(segs) > 1 && segs[1] == "_search" {
			perm = 's'
		}
	case http.MethodPut, http.MethodPatch:
		perm = 'u'
	case http.MethodDelete:
		perm = 'd'
	default:
		perm = 'r'
		if len(segs) == 1 && (typ != "*" || hasQuery) {
			perm = 's'
		}
	}
	if strings.Contains(p, "$") {
		perm = 'r' // operations such as $export read
	}
	return need{typ: typ, perm: perm, what: typ + " " + permNames[perm]}
}

// requiredScopes lists what a request needs; a transaction or batch Bundle
// needs what each of its entries does.
func requiredScopes(r *http.Request, base string) ([]need, error) {
	rel := strings.TrimPrefix(r.URL.Path, base)
	if r.URL.RawQuery != "" {
		rel += "?" + r.URL.RawQuery
	}
	if r.Method != http.MethodPost || strings.Trim(strings.TrimPrefix(r.URL.Path, base), "/") != "" {
		return []need{interactionNeed(r.Method, rel)}, nil
	}
	// A POST to the base: a transaction or batch.
	body, err := io.ReadAll(io.LimitReader(r.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("cannot read the request body")
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	var bundle struct {
		Entry []struct {
			Request struct {
				Method string `json:"method"`
				URL    string `json:"url"`
			} `json:"request"`
		} `json:"entry"`
	}
	if json.Unmarshal(body, &bundle) != nil {
		return nil, nil // the FHIR handler reports the bad body
	}
	var out []need
	for _, e := range bundle.Entry {
		out = append(out, interactionNeed(e.Request.Method, e.Request.URL))
	}
	return out, nil
}

// scopePerms parses "system/<Type>.<perm>" into its type and the SMART v2
// letters it grants. Granular scopes (with "?") and other contexts
// (patient/, user/) grant nothing here.
func scopePerms(scope string) (typ, perms string, ok bool) {
	rest, ok := strings.CutPrefix(scope, "system/")
	if !ok || strings.Contains(rest, "?") {
		return "", "", false
	}
	typ, p, ok := strings.Cut(rest, ".")
	if !ok || typ == "" {
		return "", "", false
	}
	switch p {
	case "read":
		return typ, "rs", true
	case "write":
		return typ, "cud", true
	case "*":
		return typ, "cruds", true
	}
	// v2: a non-empty subsequence of c, r, u, d, s, in that order.
	i := 0
	for j := 0; j < len(p); j++ {
		k := strings.IndexByte("cruds"[i:], p[j])
		if k < 0 {
			return "", "", false
		}
		i += k + 1
	}
	return typ, p, p != ""
}

// permits reports whether scopes grant perm on typ.
func permits(scopes []string, typ string, perm byte) bool {
	for _, sc := range scopes {
		t, p, ok := scopePerms(sc)
		if ok && (t == "*" || t == typ) && strings.IndexByte(p, perm) >= 0 {
			return true
		}
	}
	return false
}

// coveredBy reports whether the registered scopes cover everything the
// requested scope grants.
func coveredBy(requested string, registered []string) bool {
	typ, perms, ok := scopePerms(requested)
	if !ok {
		return false
	}
	for i := 0; i < len(perms); i++ {
		covered := false
		for _, sc := range registered {
			t, p, ok := scopePerms(sc)
			if ok && (t == "*" || t == typ) && strings.IndexByte(p, perms[i]) >= 0 {
				covered = true
				break
			}
		}
		if !covered {
			return false
		}
	}
	return true
}

// Tokens returns the scopes of the live tokens, one sorted,
// space-separated list per token, for tests.
func (a *AuthServer) Tokens() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []string
	now := a.now()
	for _, g := range a.tokens {
		if now.Before(g.exp) {
			sc := append([]string(nil), g.scopes...)
			sort.Strings(sc)
			out = append(out, strings.Join(sc, " "))
		}
	}
	sort.Strings(out)
	return out
}
