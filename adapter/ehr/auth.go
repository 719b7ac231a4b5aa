package ehr

import (
	"context"
	"crypto"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
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
	// PrivateKeyPEM is the key of mode "smart-backend": RSA (2048 bits or
	// more, signs RS384) or EC P-384 (signs ES384), in PKCS#8, PKCS#1 or
	// SEC1 PEM, unencrypted.
	PrivateKeyPEM []byte
	// KeyID is the JWT "kid" header of mode "smart-backend", the id of the
	// public key the EHR registered. Defaults to the key's RFC 7638 JWK
	// thumbprint (SHA-256, base64url).
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
}

type noAuth struct{}

func (noAuth) token(context.Context, string) (string, error) { return "", nil }
func (noAuth) refreshable() bool                             { return false }

type staticToken string

func (t staticToken) token(context.Context, string) (string, error) { return string(t), nil }
func (staticToken) refreshable() bool                               { return false }

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
	s := &oauthSource{c: c, mode: mode, clientID: cfg.ClientID, scopes: cfg.Scopes}
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
	key, alg, err := parsePrivateKey(cfg.PrivateKeyPEM)
	if err != nil {
		return nil, err
	}
	s.key, s.alg, s.kid = key, alg, cfg.KeyID
	if s.kid == "" {
		if s.kid, err = thumbprint(key.Public()); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// oauthSource fetches and caches OAuth2 client_credentials tokens.
type oauthSource struct {
	c        *Client
	mode     string
	clientID string
	secret   string        // client-secret
	key      crypto.Signer // smart-backend
	alg      string
	kid      string
	scopes   string

	// Set at New or by the first successful discovery; written and read
	// only by the goroutine holding the fetch (inflight), so the mutex
	// orders them.
	tokenURL    *url.URL
	tokenURLStr string

	mu       sync.Mutex
	tok      string
	validTo  time.Time // refresh after this
	inflight *tokenFetch
}

type tokenFetch struct {
	done chan struct{}
	tok  string
	err  error
}

func (s *oauthSource) refreshable() bool { return true }

func (s *oauthSource) token(ctx context.Context, stale string) (string, error) {
	for {
		s.mu.Lock()
		if s.tok != "" && s.tok != stale && s.c.now().Before(s.validTo) {
			tok := s.tok
			s.mu.Unlock()
			return tok, nil
		}
		if f := s.inflight; f != nil {
			s.mu.Unlock()
			select {
			case <-f.done:
			case <-ctx.Done():
				return "", fmt.Errorf("ehr: token: %w", ctx.Err())
			}
			if f.err != nil && isContextErr(f.err) && ctx.Err() == nil {
				continue // the fetching caller gave up; fetch for ourselves
			}
			return f.tok, f.err
		}
		f := &tokenFetch{done: make(chan struct{})}
		s.inflight = f
		s.mu.Unlock()

		tok, validTo, err := s.fetch(ctx)

		s.mu.Lock()
		s.inflight = nil
		if err == nil {
			s.tok, s.validTo = tok, validTo
		} else if s.tok == stale {
			s.tok = "" // rejected by the EHR: do not hand it out again
		}
		f.tok, f.err = tok, err
		close(f.done)
		s.mu.Unlock()

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
}

func isContextErr(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

// defaultTokenLifetime is assumed when the token response has no
// expires_in.
const defaultTokenLifetime = 5 * time.Minute

const assertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

// fetch requests a new token: client_credentials grant, authenticated by
// HTTP Basic (client-secret) or a signed JWT assertion (smart-backend).
func (s *oauthSource) fetch(ctx context.Context) (string, time.Time, error) {
	if s.tokenURL == nil {
		if err := s.discover(ctx); err != nil {
			return "", time.Time{}, err
		}
	}
	form := url.Values{"grant_type": {"client_credentials"}}
	if s.scopes != "" {
		form.Set("scope", s.scopes)
	}
	h := http.Header{}
	h.Set("Accept", "application/json")
	h.Set("Content-Type", "application/x-www-form-urlencoded")
	h.Set("User-Agent", s.c.userAgent)
	switch s.mode {
	case AuthClientSecret:
		// RFC 6749 section 2.3.1: form-encode id and secret, then Basic.
		cred := url.QueryEscape(s.clientID) + ":" + url.QueryEscape(s.secret)
		h.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(cred)))
	case AuthSMARTBackend:
		jwt, err := s.assertion()
		if err != nil {
			return "", time.Time{}, err
		}
		form.Set("client_assertion_type", assertionType)
		form.Set("client_assertion", jwt)
	}
	raw, err := s.c.send(ctx, sendSpec{
		method:   http.MethodPost,
		u:        s.tokenURL,
		logPath:  s.tokenURL.EscapedPath(),
		label:    "token",
		header:   h,
		body:     []byte(form.Encode()),
		retryMax: s.c.retryMax,
	})
	if err != nil {
		return "", time.Time{}, tokenTransient(err)
	}
	var body struct {
		AccessToken string          `json:"access_token"`
		TokenType   string          `json:"token_type"`
		ExpiresIn   json.RawMessage `json:"expires_in"`
		Error       string          `json:"error"`
	}
	jerr := json.Unmarshal(raw.body, &body)
	if raw.status == http.StatusTooManyRequests || raw.status >= 500 {
		// The token endpoint is busy or down: not a verdict on the client.
		return "", time.Time{}, &TransientError{Status: raw.status, Reason: "token_endpoint",
			RetryAfter: parseRetryAfter(raw.header.Get("Retry-After"), s.c.now())}
	}
	if raw.status != http.StatusOK {
		ae := &AuthError{Status: raw.status, Reason: "token_rejected"}
		if jerr == nil && body.Error != "" {
			ae.OAuthError = safeCode(body.Error)
		}
		return "", time.Time{}, ae
	}
	if jerr != nil || body.AccessToken == "" || checkHeaderValue(body.AccessToken) != nil ||
		strings.ContainsAny(body.AccessToken, " \t") ||
		(body.TokenType != "" && !strings.EqualFold(body.TokenType, "bearer")) {
		return "", time.Time{}, &AuthError{Status: raw.status, Reason: "bad_token_response"}
	}
	life := parseExpiresIn(body.ExpiresIn)
	if life <= 0 {
		life = defaultTokenLifetime
	}
	// Refresh a little before the EHR would refuse it.
	margin := min(time.Minute, life/5)
	return body.AccessToken, s.c.now().Add(life - margin), nil
}

// parseExpiresIn reads expires_in, a number of seconds (some servers send
// it as a string).
func parseExpiresIn(raw json.RawMessage) time.Duration {
	v := strings.Trim(strings.TrimSpace(string(raw)), `"`)
	if v == "" {
		return 0
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || f <= 0 || f > 365*24*3600 {
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
