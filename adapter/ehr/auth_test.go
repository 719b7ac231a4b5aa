package ehr

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha512"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ketamine-fhir/ketamine-fhir/internal/testutil"
)

var (
	rsaKey = sync.OnceValue(func() *rsa.PrivateKey {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		return k
	})
	ecKey = sync.OnceValue(func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
		if err != nil {
			panic(err)
		}
		return k
	})
)

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func pkcs8(t *testing.T, k any) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pemBlock("PRIVATE KEY", der)
}

// authServer is a fake authorization server plus EHR: it serves
// /.well-known/smart-configuration under the FHIR base, a token endpoint
// at /auth/token issuing "tok-1", "tok-2", ..., and FHIR requests that
// succeed only with an accepted token.
type authServer struct {
	*httptest.Server
	t *testing.T

	// verify checks a token request; a non-nil error makes the endpoint
	// answer 401 invalid_client.
	verify    func(r *http.Request, form url.Values) error
	expiresIn int
	// accept says whether the EHR accepts a token.
	accept func(tok string) bool

	mu        sync.Mutex
	tokens    int
	discovery int
	ehr       int
	jtis      map[string]bool
}

func newAuthServer(t *testing.T) *authServer {
	s := &authServer{t: t, expiresIn: 300, jtis: map[string]bool{}, accept: func(string) bool { return true }}
	s.Server = httptest.NewServer(s)
	t.Cleanup(s.Close)
	return s
}

func (s *authServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case basePath + "/.well-known/smart-configuration":
		s.mu.Lock()
		s.discovery++
		s.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"token_endpoint":%q,"token_endpoint_auth_methods_supported":["private_key_jwt"]}`, s.URL+"/auth/token")
	case "/auth/token":
		if err := r.ParseForm(); err != nil || r.Method != http.MethodPost {
			http.Error(w, "bad request", 400)
			return
		}
		if s.verify != nil {
			if err := s.verify(r, r.PostForm); err != nil {
				s.t.Errorf("token request: %v", err)
				w.WriteHeader(401)
				io.WriteString(w, `{"error":"invalid_client"}`)
				return
			}
		}
		s.mu.Lock()
		s.tokens++
		n := s.tokens
		s.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"access_token":"tok-%d","token_type":"bearer","expires_in":%d,"scope":"system/*.write"}`, n, s.expiresIn)
	default:
		s.mu.Lock()
		s.ehr++
		s.mu.Unlock()
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || !s.accept(tok) {
			w.WriteHeader(401)
			return
		}
		w.Header().Set("Content-Type", "application/fhir+json")
		io.WriteString(w, `{"resourceType":"Patient","id":"p1"}`)
	}
}

func (s *authServer) counts() (tokens, discovery, ehr int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tokens, s.discovery, s.ehr
}

func (s *authServer) client(t *testing.T, auth AuthConfig, hl *hookLog) *Client {
	t.Helper()
	cfg := Config{BaseURL: s.URL + basePath, Auth: auth, RetryWaitMin: time.Millisecond, RetryWaitMax: time.Millisecond}
	if hl != nil {
		cfg.Hooks = hl.hooks()
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func get(t *testing.T, c *Client) error {
	t.Helper()
	_, err := c.Do(ctxT(t), Request{Method: http.MethodGet, Path: "Patient?" + mrnQuery, ResourceType: "Patient"})
	return err
}

func TestClientSecretTokenRequest(t *testing.T) {
	t.Parallel()
	s := newAuthServer(t)
	s.verify = func(r *http.Request, form url.Values) error {
		id, secret, ok := r.BasicAuth()
		// RFC 6749 2.3.1: both form-encoded before Basic.
		if !ok || id != "clinic%2Fadapter" || secret != "s3cret%26more" {
			return fmt.Errorf("basic auth = %q %q %v", id, secret, ok)
		}
		if form.Get("grant_type") != "client_credentials" || form.Get("scope") != "system/*.write system/Patient.read" {
			return fmt.Errorf("form = %v", form)
		}
		if form.Has("client_assertion") {
			return errors.New("client_assertion sent with a secret")
		}
		return nil
	}
	hl := &hookLog{}
	c := s.client(t, AuthConfig{Mode: AuthClientSecret, ClientID: "clinic/adapter", ClientSecret: "s3cret&more",
		Scopes: "system/*.write system/Patient.read", TokenURL: s.URL + "/auth/token"}, hl)
	for i := 0; i < 5; i++ {
		if err := get(t, c); err != nil {
			t.Fatal(err)
		}
	}
	tokens, discovery, ehr := s.counts()
	if tokens != 1 || discovery != 0 || ehr != 5 {
		t.Errorf("tokens %d discovery %d ehr %d, want 1 0 5 (token cached)", tokens, discovery, ehr)
	}
	if _, _, refresh := hl.snapshot(); len(refresh) != 1 || refresh[0] != nil {
		t.Errorf("OnTokenRefresh = %v, want one nil", refresh)
	}
}

func TestTokenExpiry(t *testing.T) {
	t.Parallel()
	s := newAuthServer(t)
	s.expiresIn = 300
	c := s.client(t, AuthConfig{Mode: AuthClientSecret, ClientID: "c", ClientSecret: "s", TokenURL: s.URL + "/auth/token"}, nil)
	clock := testutil.NewClock(time.Date(2025, 3, 4, 10, 0, 0, 0, time.UTC))
	c.now = clock.Now
	for _, step := range []struct {
		advance    time.Duration
		wantTokens int
	}{
		{0, 1},
		{3 * time.Minute, 1},  // still valid
		{time.Minute, 2},      // 4m: inside the 1m refresh margin of a 5m token
		{30 * time.Second, 2}, // the new one is fresh
	} {
		clock.Add(step.advance)
		if err := get(t, c); err != nil {
			t.Fatal(err)
		}
		if tokens, _, _ := s.counts(); tokens != step.wantTokens {
			t.Fatalf("after %v: %d token requests, want %d", step.advance, tokens, step.wantTokens)
		}
	}
}

func TestUnauthorizedRefreshesOnce(t *testing.T) {
	t.Parallel()
	s := newAuthServer(t)
	s.accept = func(tok string) bool { return tok != "tok-1" } // the first token was revoked
	hl := &hookLog{}
	c := s.client(t, AuthConfig{Mode: AuthClientSecret, ClientID: "c", ClientSecret: "s", TokenURL: s.URL + "/auth/token"}, hl)
	if err := get(t, c); err != nil {
		t.Fatalf("Do: %v", err)
	}
	if tokens, _, ehr := s.counts(); tokens != 2 || ehr != 2 {
		t.Errorf("tokens %d ehr %d, want 2 2", tokens, ehr)
	}
	requests, retries, refresh := hl.snapshot()
	if want := []string{"Patient GET 401", "Patient GET 200"}; !reflect.DeepEqual(requests, want) {
		t.Errorf("OnRequest = %q, want %q", requests, want)
	}
	if len(retries) != 0 || len(refresh) != 2 {
		t.Errorf("OnRetry %q, OnTokenRefresh %v", retries, refresh)
	}
}

func TestUnauthorizedTwiceIsAuthError(t *testing.T) {
	t.Parallel()
	s := newAuthServer(t)
	s.accept = func(string) bool { return false }
	c := s.client(t, AuthConfig{Mode: AuthClientSecret, ClientID: "c", ClientSecret: "s", TokenURL: s.URL + "/auth/token"}, nil)
	err := get(t, c)
	var ae *AuthError
	if !errors.As(err, &ae) || ae.Status != 401 || ae.Reason != "unauthorized" {
		t.Fatalf("err = %v, want an AuthError", err)
	}
	if Classify(err) != ClassAuth || Reason(err) != "auth" {
		t.Errorf("class %v reason %q", Classify(err), Reason(err))
	}
	if want := "ehr: GET Patient authentication failed: 401 (unauthorized): the EHR refused a fresh token; check the client's registration and token settings"; err.Error() != want {
		t.Errorf("Error() = %q, want %q", err, want)
	}
	if tokens, _, ehr := s.counts(); tokens != 2 || ehr != 2 {
		t.Errorf("tokens %d ehr %d, want 2 2 (one refresh, no more)", tokens, ehr)
	}
}

func TestStaticBearerUnauthorized(t *testing.T) {
	t.Parallel()
	s := newAuthServer(t)
	s.accept = func(string) bool { return false }
	c := s.client(t, AuthConfig{Mode: AuthBearer, Token: "static"}, nil)
	err := get(t, c)
	if Classify(err) != ClassAuth {
		t.Fatalf("err = %v, want ClassAuth", err)
	}
	if _, _, ehr := s.counts(); ehr != 1 {
		t.Errorf("%d EHR requests, want 1: a static token cannot be refreshed", ehr)
	}
}

func TestConcurrentRefreshShared(t *testing.T) {
	t.Parallel()
	s := newAuthServer(t)
	s.accept = func(tok string) bool { return tok != "tok-1" }
	c := s.client(t, AuthConfig{Mode: AuthClientSecret, ClientID: "c", ClientSecret: "s", TokenURL: s.URL + "/auth/token"}, nil)
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for range 20 {
		wg.Go(func() { errs <- get(t, c) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if tokens, _, _ := s.counts(); tokens != 2 {
		t.Errorf("%d token requests, want 2: one first fetch and one refresh shared by all", tokens)
	}
}

func TestTokenEndpointFailures(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		handler   http.HandlerFunc
		wantClass Class
		wantErr   string
	}{
		{"invalid client", func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(400)
			io.WriteString(w, `{"error":"invalid_client","error_description":"unknown key for `+mrn+`"}`)
		}, ClassAuth, "ehr: authentication failed: 400 (token_rejected: invalid_client): the token endpoint does not accept this client; check client_id and its key or secret"},
		{"unavailable", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(503) },
			ClassTransient, "ehr: transient failure: 503 after 2 attempts (token_endpoint)"},
		{"no token", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, `{"token_type":"bearer"}`) },
			ClassAuth, "ehr: authentication failed: 200 (bad_token_response)"},
		{"not bearer", func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, `{"access_token":"x","token_type":"mac"}`)
		}, ClassAuth, "ehr: authentication failed: 200 (bad_token_response)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := httptest.NewServer(tt.handler)
			defer srv.Close()
			hl := &hookLog{}
			c, err := New(Config{BaseURL: srv.URL + basePath, RetryMax: 1, RetryWaitMin: time.Millisecond, RetryWaitMax: time.Millisecond,
				Hooks: hl.hooks(), Auth: AuthConfig{Mode: AuthClientSecret, ClientID: "c", ClientSecret: "s", TokenURL: srv.URL + "/token"}})
			if err != nil {
				t.Fatal(err)
			}
			err = get(t, c)
			if Classify(err) != tt.wantClass || err.Error() != tt.wantErr {
				t.Errorf("err = %q (%v), want %q (%v)", err, Classify(err), tt.wantErr, tt.wantClass)
			}
			if _, _, refresh := hl.snapshot(); len(refresh) != 1 || refresh[0] == nil {
				t.Errorf("OnTokenRefresh = %v, want one error", refresh)
			}
		})
	}
}

// verifyAssertion checks a SMART Backend Services token request the way an
// authorization server does, with the registered public key.
func verifyAssertion(form url.Values, pub crypto.PublicKey, alg, kid, clientID, aud string, now time.Time, jtis map[string]bool) error {
	if form.Get("grant_type") != "client_credentials" ||
		form.Get("client_assertion_type") != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" ||
		form.Get("scope") != "system/*.write system/Patient.read" {
		return fmt.Errorf("form = %v", form)
	}
	parts := strings.Split(form.Get("client_assertion"), ".")
	if len(parts) != 3 {
		return errors.New("not a JWS")
	}
	dec := base64.RawURLEncoding
	var header struct{ Alg, Kid, Typ string }
	var claims struct {
		Iss, Sub, Aud, Jti string
		Exp, Iat           int64
	}
	for i, v := range []any{&header, &claims} {
		b, err := dec.DecodeString(parts[i])
		if err != nil {
			return err
		}
		if err := json.Unmarshal(b, v); err != nil {
			return err
		}
	}
	if header.Alg != alg || header.Kid != kid || header.Typ != "JWT" {
		return fmt.Errorf("header = %+v", header)
	}
	sig, err := dec.DecodeString(parts[2])
	if err != nil {
		return err
	}
	digest := sha512.Sum384([]byte(parts[0] + "." + parts[1]))
	switch k := pub.(type) {
	case *rsa.PublicKey:
		if err := rsa.VerifyPKCS1v15(k, crypto.SHA384, digest[:], sig); err != nil {
			return fmt.Errorf("RS384 signature: %w", err)
		}
	case *ecdsa.PublicKey:
		if len(sig) != 96 {
			return fmt.Errorf("ES384 signature of %d bytes, want 96 (R||S)", len(sig))
		}
		r, s := new(big.Int).SetBytes(sig[:48]), new(big.Int).SetBytes(sig[48:])
		if !ecdsa.Verify(k, digest[:], r, s) {
			return errors.New("ES384 signature does not verify")
		}
	}
	if claims.Iss != clientID || claims.Sub != clientID || claims.Aud != aud {
		return fmt.Errorf("claims = %+v", claims)
	}
	if exp := time.Unix(claims.Exp, 0); !exp.After(now) || exp.Sub(now) > 5*time.Minute {
		return fmt.Errorf("exp %v is not within five minutes of %v", exp, now)
	}
	if claims.Jti == "" || jtis[claims.Jti] {
		return fmt.Errorf("jti %q is empty or reused", claims.Jti)
	}
	jtis[claims.Jti] = true
	return nil
}

func TestSMARTBackend(t *testing.T) {
	t.Parallel()
	ecSEC1, err := x509.MarshalECPrivateKey(ecKey())
	if err != nil {
		t.Fatal(err)
	}
	// openssl ecparam -genkey writes the curve parameters first.
	ecParams := pemBlock("EC PARAMETERS", []byte{0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22})
	tests := []struct {
		name     string
		pem      []byte
		pub      crypto.PublicKey
		alg      string
		kid      string
		tokenURL bool // configure TokenURL instead of discovering it
	}{
		{"RS384 PKCS#8 discovered", pkcs8(t, rsaKey()), &rsaKey().PublicKey, "RS384", "kid-rsa", false},
		{"RS384 PKCS#1 configured", pemBlock("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rsaKey())), &rsaKey().PublicKey, "RS384", "kid-rsa", true},
		{"ES384 PKCS#8 discovered", pkcs8(t, ecKey()), &ecKey().PublicKey, "ES384", "kid-ec", false},
		{"ES384 SEC1 with parameters", append(ecParams, pemBlock("EC PRIVATE KEY", ecSEC1)...), &ecKey().PublicKey, "ES384", "kid-ec", true},
		{"default kid is the thumbprint", pkcs8(t, ecKey()), &ecKey().PublicKey, "ES384", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := newAuthServer(t)
			clock := testutil.NewClock(time.Now())
			wantKid := tt.kid
			if wantKid == "" {
				wantKid, _ = thumbprint(tt.pub)
			}
			s.verify = func(r *http.Request, form url.Values) error {
				if _, _, ok := r.BasicAuth(); ok {
					return errors.New("Basic auth sent with an assertion")
				}
				s.mu.Lock()
				defer s.mu.Unlock()
				return verifyAssertion(form, tt.pub, tt.alg, wantKid, "ketamine-fhir", s.URL+"/auth/token", clock.Now(), s.jtis)
			}
			auth := AuthConfig{Mode: AuthSMARTBackend, ClientID: "ketamine-fhir", PrivateKeyPEM: tt.pem, KeyID: tt.kid,
				Scopes: "system/*.write system/Patient.read"}
			if tt.tokenURL {
				auth.TokenURL = s.URL + "/auth/token"
			}
			hl := &hookLog{}
			c := s.client(t, auth, hl)
			c.now = clock.Now
			for range 3 {
				if err := get(t, c); err != nil {
					t.Fatal(err)
				}
			}
			clock.Add(10 * time.Minute) // expired: a new assertion with a new jti
			if err := get(t, c); err != nil {
				t.Fatal(err)
			}
			tokens, discovery, ehr := s.counts()
			wantDiscovery := 1
			if tt.tokenURL {
				wantDiscovery = 0
			}
			if tokens != 2 || discovery != wantDiscovery || ehr != 4 {
				t.Errorf("tokens %d discovery %d ehr %d, want 2 %d 4", tokens, discovery, ehr, wantDiscovery)
			}
			if _, _, refresh := hl.snapshot(); len(refresh) != 2 || refresh[0] != nil || refresh[1] != nil {
				t.Errorf("OnTokenRefresh = %v", refresh)
			}
		})
	}
}

func TestDiscoveryFailure(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.NotFoundHandler())
	defer srv.Close()
	c, err := New(Config{BaseURL: srv.URL + basePath, Auth: AuthConfig{Mode: AuthSMARTBackend, ClientID: "c", PrivateKeyPEM: pkcs8(t, ecKey())}})
	if err != nil {
		t.Fatal(err)
	}
	err = get(t, c)
	var ae *AuthError
	if !errors.As(err, &ae) || ae.Reason != "discovery" || ae.Status != 404 {
		t.Fatalf("err = %v, want a discovery AuthError", err)
	}
}

func TestPrivateKeyErrors(t *testing.T) {
	t.Parallel()
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	p256, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	encrypted := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Headers: map[string]string{"Proc-Type": "4,ENCRYPTED"}, Bytes: []byte{1}})
	tests := []struct {
		name string
		pem  []byte
		want string
	}{
		{"small RSA", pkcs8(t, small), "1024 bits"},
		{"P-256", pkcs8(t, p256), "P-256"},
		{"encrypted", encrypted, "encrypted"},
		{"garbage block", pemBlock("PRIVATE KEY", []byte("junk")), "cannot parse"},
		{"certificate only", pemBlock("CERTIFICATE", []byte("junk")), "no PEM private key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := parsePrivateKey(tt.pem)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestThumbprintRFC7638(t *testing.T) {
	t.Parallel()
	// The example key of RFC 7638 section 3.1.
	n, err := base64.RawURLEncoding.DecodeString("0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw")
	if err != nil {
		t.Fatal(err)
	}
	got, err := thumbprint(&rsa.PublicKey{N: new(big.Int).SetBytes(n), E: 65537})
	if err != nil || got != "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs" {
		t.Errorf("thumbprint = %q, %v", got, err)
	}
}
