package ehr

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
	"golang.org/x/sync/singleflight"
)

// AuthConfig configures how the client authenticates to the EHR.
type AuthConfig struct {
	// Mode is "none" (the default when empty), "bearer", "client-secret"
	// or "smart-backend".
	Mode string
	// Token is the static bearer token of mode "bearer". It cannot be
	// refreshed: a 401 is an AuthError at once.
	Token string
	// ClientID is the OAuth2 client id (client-secret, smart-backend).
	ClientID string
	// ClientSecret is the secret of mode "client-secret": an OAuth2
	// client_credentials grant with HTTP Basic client authentication.
	ClientSecret string
	// PrivateKeyPEM holds the keys of mode "smart-backend": RSA (2048 bits
	// or more, signs RS384) or EC P-384 (signs ES384), in PKCS#8, PKCS#1
	// or SEC1 PEM, unencrypted. During a key rotation it holds several
	// keys: the first one in the file is the newest and signs every
	// assertion; the others are only published (PublicJWKS) until the EHR
	// has stopped trusting them.
	PrivateKeyPEM []byte
	// KeyID is the JWT "kid" header of the signing (first) key, the id of
	// the public key the EHR registered. Defaults to the key's RFC 7638 JWK
	// thumbprint (SHA-256, base64url), which is what `keys generate`
	// registers.
	KeyID string
	// Scopes is the space-separated scope list requested, e.g.
	// "system/*.write system/Patient.read". Empty requests none.
	Scopes string
	// TokenURL is the OAuth2 token endpoint. Defaults to the
	// token_endpoint of BaseURL + "/.well-known/smart-configuration",
	// fetched once on first use.
	TokenURL string
}

// Auth modes.
const (
	AuthNone         = "none"
	AuthBearer       = "bearer"
	AuthClientSecret = "client-secret"
	AuthSMARTBackend = "smart-backend"
)

// tokenSource gives the bearer token for a request.
type tokenSource interface {
	// token returns a valid token ("" for no authentication). When stale
	// is the current token (the EHR answered 401 to it), a new one is
	// fetched; concurrent callers share one fetch.
	token(ctx context.Context, stale string) (string, error)
	// refreshable reports whether a 401 is worth one refresh.
	refreshable() bool
	// current returns the cached token if it is still valid, else "",
	// without fetching.
	current() string
}

type noAuth struct{}

func (noAuth) token(context.Context, string) (string, error) { return "", nil }
func (noAuth) refreshable() bool                             { return false }
func (noAuth) current() string                               { return "" }

type staticToken string

func (t staticToken) token(context.Context, string) (string, error) { return string(t), nil }
func (staticToken) refreshable() bool                               { return false }
func (t staticToken) current() string                               { return string(t) }

func newTokenSource(cfg AuthConfig, c *Client) (tokenSource, error) {
	mode := strings.TrimSpace(cfg.Mode)
	switch mode {
	case "", AuthNone:
		return noAuth{}, nil
	case AuthBearer:
		if cfg.Token == "" {
			return nil, errors.New("ehr: auth mode bearer needs a token")
		}
		if checkHeaderValue(cfg.Token) != nil || strings.ContainsAny(cfg.Token, " \t") {
			return nil, errors.New("ehr: auth token has spaces or control characters")
		}
		return staticToken(cfg.Token), nil
	case AuthClientSecret, AuthSMARTBackend:
	default:
		return nil, fmt.Errorf("ehr: auth mode %q is not one of none, bearer, client-secret, smart-backend", safeCode(mode))
	}
	s := &oauthSource{c: c, mode: mode, clientID: cfg.ClientID, scopes: strings.Fields(cfg.Scopes)}
	if cfg.ClientID == "" {
		return nil, fmt.Errorf("ehr: auth mode %s needs a client id", mode)
	}
	if cfg.TokenURL != "" {
		u, err := url.Parse(cfg.TokenURL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return nil, errors.New("ehr: auth token URL must be an absolute http or https URL")
		}
		s.tokenURL, s.tokenURLStr = u, cfg.TokenURL
	}
	if mode == AuthClientSecret {
		if cfg.ClientSecret == "" {
			return nil, errors.New("ehr: auth mode client-secret needs a client secret")
		}
		s.secret = cfg.ClientSecret
		return s, nil
	}
	keys, err := parseSigningKeys(cfg.PrivateKeyPEM, cfg.KeyID)
	if err != nil {
		return nil, err
	}
	s.key = keys[0]
	return s, nil
}

// oauthSource fetches OAuth2 client_credentials tokens with
// golang.org/x/oauth2 and caches them. Concurrent fetches are shared with
// singleflight. The cache is kept here rather than in
// oauth2.ReuseTokenSource because expiry is judged on the client's clock
// (Client.now, which tests move) and a token the EHR answered 401 to must
// be dropped at once, which the reuse source cannot do.
type oauthSource struct {
	c        *Client
	mode     string
	clientID string
	secret   string     // client-secret
	key      signingKey // smart-backend: the newest key
	scopes   []string

	// Set at New or by the first successful discovery; written and read
	// only inside the single flight, so never concurrently.
	tokenURL    *url.URL
	tokenURLStr string

	group singleflight.Group

	mu      sync.Mutex
	tok     string
	validTo time.Time // refresh after this
}

func (s *oauthSource) refreshable() bool { return true }

func (s *oauthSource) current() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tok != "" && s.c.now().Before(s.validTo) {
		return s.tok
	}
	return ""
}

func (s *oauthSource) token(ctx context.Context, stale string) (string, error) {
	for {
		s.mu.Lock()
		if stale != "" && s.tok == stale {
			s.tok = "" // rejected by the EHR: do not hand it out again
		}
		s.mu.Unlock()
		if tok := s.current(); tok != "" {
			return tok, nil
		}

		ch := s.group.DoChan("token", func() (any, error) {
			// A flight that ended between our look at the cache and
			// this one may have fetched a token already: use it.
			if tok := s.current(); tok != "" && tok != stale {
				return tok, nil
			}
			return s.refresh(ctx)
		})
		select {
		case res := <-ch:
			if res.Err != nil {
				if isContextErr(res.Err) && ctx.Err() == nil {
					continue // the fetching caller gave up; fetch for ourselves
				}
				return "", res.Err
			}
			return res.Val.(string), nil
		case <-ctx.Done():
			return "", fmt.Errorf("ehr: token: %w", ctx.Err())
		}
	}
}

// refresh fetches a token, caches it, and reports it to hooks and logs.
// It runs inside the single flight.
func (s *oauthSource) refresh(ctx context.Context) (string, error) {
	tok, validTo, err := s.fetch(ctx)
	if err == nil {
		s.mu.Lock()
		s.tok, s.validTo = tok, validTo
		s.mu.Unlock()
	}
	if !isContextErr(err) {
		if s.c.hooks.OnTokenRefresh != nil {
			s.c.hooks.OnTokenRefresh(err)
		}
		if err != nil {
			s.c.log.Warn("ehr token request failed", "reason", Reason(err), "error", err)
		} else {
			s.c.log.Info("ehr token refreshed", "valid_for", validTo.Sub(s.c.now()).Round(time.Second))
		}
	}
	return tok, err
}

func isContextErr(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

// defaultTokenLifetime is assumed when the token response has no
// expires_in.
const defaultTokenLifetime = 5 * time.Minute

// AssertionType is the client_assertion_type of a SMART Backend Services
// token request (RFC 7523).
const AssertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

// fetch requests a new token with a client_credentials grant,
// authenticated by HTTP Basic (client-secret) or by a fresh signed JWT
// assertion (smart-backend). The request goes through the client's
// retrying, paced sender.
func (s *oauthSource) fetch(ctx context.Context) (string, time.Time, error) {
	if s.tokenURL == nil {
		if err := s.discover(ctx); err != nil {
			return "", time.Time{}, err
		}
	}
	conf := clientcredentials.Config{
		ClientID:  s.clientID,
		TokenURL:  s.tokenURLStr,
		Scopes:    s.scopes,
		AuthStyle: oauth2.AuthStyleInHeader, // RFC 6749 section 2.3.1
	}
	switch s.mode {
	case AuthClientSecret:
		conf.ClientSecret = s.secret
	case AuthSMARTBackend:
		jwt, err := s.key.assertion(s.clientID, s.tokenURLStr, s.c.now())
		if err != nil {
			return "", time.Time{}, err
		}
		// No secret: client_id goes in the form, with the assertion.
		conf.AuthStyle = oauth2.AuthStyleInParams
		conf.EndpointParams = url.Values{
			"client_assertion_type": {AssertionType},
			"client_assertion":      {jwt},
		}
	}
	rt := &tokenTransport{c: s.c, logPath: s.tokenURL.EscapedPath()}
	ctx = context.WithValue(ctx, oauth2.HTTPClient, &http.Client{Transport: rt})
	tok, err := conf.Token(ctx)
	if err != nil {
		return "", time.Time{}, s.tokenError(ctx, err, rt.status)
	}
	if tok.AccessToken == "" || checkHeaderValue(tok.AccessToken) != nil ||
		strings.ContainsAny(tok.AccessToken, " \t") ||
		(tok.TokenType != "" && !strings.EqualFold(tok.TokenType, "bearer")) {
		return "", time.Time{}, &AuthError{Status: rt.status, Reason: "bad_token_response"}
	}
	life := parseExpiresIn(tok.Extra("expires_in"))
	if life <= 0 {
		life = defaultTokenLifetime
	}
	// Refresh a little before the EHR would refuse it.
	margin := min(time.Minute, life/5)
	return tok.AccessToken, s.c.now().Add(life - margin), nil
}

// tokenError turns an error of oauth2 into this package's: a transient
// failure of the token endpoint, its refusal (RFC 6749 section 5.2 error
// code kept, description dropped: it may echo what we sent), or an
// unreadable answer.
func (s *oauthSource) tokenError(ctx context.Context, err error, status int) error {
	var te *TransientError
	if errors.As(err, &te) {
		return tokenTransient(te)
	}
	if cerr := ctx.Err(); cerr != nil {
		return fmt.Errorf("ehr: token: %w", cerr)
	}
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		ae := &AuthError{Status: status, Reason: "token_rejected"}
		if re.Response != nil {
			ae.Status = re.Response.StatusCode
		}
		code := re.ErrorCode
		if code == "" {
			// RFC 6749 section 5.2 asks for JSON, but some servers label
			// it text/plain, which oauth2 then reads as a form.
			var body struct {
				Error string `json:"error"`
			}
			if json.Unmarshal(re.Body, &body) == nil {
				code = body.Error
			}
		}
		if code != "" {
			ae.OAuthError = safeCode(code)
		}
		if s.mode == AuthSMARTBackend && ae.OAuthError == "invalid_client" {
			// The kid is public (a thumbprint); it is what to look for in
			// the EHR's registration.
			ae.Detail = "kid " + s.key.kid
		}
		return ae
	}
	return &AuthError{Status: status, Reason: "bad_token_response"}
}

// tokenTransport is the http.RoundTripper oauth2 sends the token request
// through: it hands it to Client.send (short retries, pacer, hooks) and
// remembers the final status.
type tokenTransport struct {
	c       *Client
	logPath string
	status  int
}

func (t *tokenTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	var body []byte
	if r.Body != nil {
		var err error
		body, err = io.ReadAll(r.Body)
		r.Body.Close()
		if err != nil {
			return nil, err
		}
	}
	h := r.Header.Clone()
	h.Set("Accept", "application/json")
	h.Set("User-Agent", t.c.userAgent)
	// Not counted against MaxInFlight: the request that needs the token
	// may hold a slot (freshTokenTransport).
	raw, err := t.c.send(context.WithValue(r.Context(), noSlotKey{}, true), sendSpec{
		method:   r.Method,
		u:        r.URL,
		logPath:  t.logPath,
		label:    "token",
		header:   h,
		body:     body,
		retryMax: t.c.retryMax,
	})
	if err != nil {
		return nil, err
	}
	t.status = raw.status
	return &http.Response{
		Status:     strconv.Itoa(raw.status) + " " + http.StatusText(raw.status),
		StatusCode: raw.status,
		Header:     raw.header,
		Body:       io.NopCloser(bytes.NewReader(raw.body)),
		Request:    r,
	}, nil
}

// parseExpiresIn reads expires_in, a number of seconds (some servers send
// it as a string).
func parseExpiresIn(v any) time.Duration {
	var f float64
	switch x := v.(type) {
	case float64:
		f = x
	case string:
		var err error
		if f, err = strconv.ParseFloat(strings.TrimSpace(x), 64); err != nil {
			return 0
		}
	case json.Number:
		var err error
		if f, err = x.Float64(); err != nil {
			return 0
		}
	default:
		return 0
	}
	if f <= 0 || f > 365*24*3600 {
		return 0
	}
	return time.Duration(f * float64(time.Second))
}

// tokenTransient relabels a transient failure of a token or discovery
// request; context errors pass through.
func tokenTransient(err error) error {
	var te *TransientError
	if errors.As(err, &te) {
		return &TransientError{Status: te.Status, Reason: "token_endpoint", RetryAfter: te.RetryAfter, Attempts: te.Attempts}
	}
	return err
}

// discover reads token_endpoint from BaseURL/.well-known/smart-configuration.
func (s *oauthSource) discover(ctx context.Context) error {
	u, _, err := s.c.resolve(".well-known/smart-configuration")
	if err != nil {
		return err
	}
	h := http.Header{}
	h.Set("Accept", "application/json")
	h.Set("User-Agent", s.c.userAgent)
	raw, err := s.c.send(ctx, sendSpec{
		method:   http.MethodGet,
		u:        u,
		logPath:  "/.well-known/smart-configuration",
		label:    "discovery",
		header:   h,
		retryMax: s.c.retryMax,
	})
	if err != nil {
		var te *TransientError
		if errors.As(err, &te) {
			return &TransientError{Status: te.Status, Reason: "discovery", RetryAfter: te.RetryAfter, Attempts: te.Attempts}
		}
		return err
	}
	if raw.status != http.StatusOK {
		return &AuthError{Status: raw.status, Reason: "discovery"}
	}
	var conf struct {
		TokenEndpoint string `json:"token_endpoint"`
	}
	if err := json.Unmarshal(raw.body, &conf); err != nil || conf.TokenEndpoint == "" {
		return &AuthError{Status: raw.status, Reason: "discovery"}
	}
	tu, err := url.Parse(conf.TokenEndpoint)
	if err != nil || (tu.Scheme != "https" && tu.Scheme != "http") || tu.Host == "" {
		return &AuthError{Status: raw.status, Reason: "discovery"}
	}
	s.tokenURL, s.tokenURLStr = tu, conf.TokenEndpoint
	return nil
}

// missingScope reads the scope an EHR says a request needs, from a 403's
// WWW-Authenticate: Bearer error="insufficient_scope", scope="..." (RFC
// 6750 section 3), as "needs scope system/Observation.c"; "" when absent
// or not a plain scope list.
func missingScope(h http.Header) string {
	for _, v := range h.Values("WWW-Authenticate") {
		if !strings.Contains(v, "insufficient_scope") {
			continue
		}
		_, rest, ok := strings.Cut(v, `scope="`)
		if !ok {
			continue
		}
		scope, _, ok := strings.Cut(rest, `"`)
		if !ok || scope == "" || len(scope) > 200 {
			continue
		}
		for _, c := range scope {
			// RFC 6749 scope-token characters, and spaces between them.
			if c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
				return ""
			}
		}
		return "needs scope " + scope
	}
	return ""
}
