package fhirtest_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/ketamine-fhir/ketamine-fhir/fhirtest"
)

// smartKey is a client's ES384 key and its public JWKS.
type smartKey struct {
	priv *ecdsa.PrivateKey
	kid  string
	jwks []byte
}

func newSMARTKey(t *testing.T, kid string) smartKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	jwks, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &k.PublicKey, KeyID: kid, Algorithm: "ES384", Use: "sig"}}})
	if err != nil {
		t.Fatal(err)
	}
	return smartKey{priv: k, kid: kid, jwks: jwks}
}

// assertion signs a client assertion; edit changes the claims first.
func (k smartKey) assertion(t *testing.T, clientID, aud string, edit func(*jwt.Claims)) string {
	t.Helper()
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES384, Key: jose.JSONWebKey{Key: k.priv, KeyID: k.kid}},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	cl := jwt.Claims{Issuer: clientID, Subject: clientID, Audience: jwt.Audience{aud},
		Expiry: jwt.NewNumericDate(time.Now().Add(4 * time.Minute)), ID: rand.Text()}
	if edit != nil {
		edit(&cl)
	}
	s, err := jwt.Signed(signer).Claims(cl).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

type tokenAnswer struct {
	status int
	Token  string `json:"access_token"`
	Scope  string `json:"scope"`
	Error  string `json:"error"`
	Desc   string `json:"error_description"`
}

func postToken(t *testing.T, tokenURL string, form url.Values, basic ...string) tokenAnswer {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, tokenURL, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if len(basic) == 2 {
		req.SetBasicAuth(url.QueryEscape(basic[0]), url.QueryEscape(basic[1]))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var a tokenAnswer
	body, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(body, &a); err != nil {
		t.Fatalf("token answer %d is not JSON: %s", resp.StatusCode, body)
	}
	a.status = resp.StatusCode
	return a
}

func smartServer(t *testing.T, clients ...fhirtest.SMARTClient) (*fhirtest.Server, string) {
	t.Helper()
	srv := fhirtest.NewServer(fhirtest.WithSMART(fhirtest.SMARTConfig{Clients: clients}))
	t.Cleanup(srv.Close)
	resp, err := http.Get(srv.URL + "/.well-known/smart-configuration")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var conf struct {
		TokenEndpoint string   `json:"token_endpoint"`
		Methods       []string `json:"token_endpoint_auth_methods_supported"`
		Algs          []string `json:"token_endpoint_auth_signing_alg_values_supported"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&conf); err != nil || conf.TokenEndpoint == "" {
		t.Fatalf("smart-configuration: %v %+v", err, conf)
	}
	if strings.Join(conf.Algs, ",") != "RS384,ES384" {
		t.Errorf("algs %v", conf.Algs)
	}
	return srv, conf.TokenEndpoint
}

func assertionForm(a string, scope string) url.Values {
	return url.Values{"grant_type": {"client_credentials"}, "client_assertion_type": {fhirtest.AssertionType},
		"client_assertion": {a}, "scope": {scope}}
}

func TestSMARTAssertionChecks(t *testing.T) {
	t.Parallel()
	key := newSMARTKey(t, "k1")
	other := newSMARTKey(t, "k2")
	srv, tokenURL := smartServer(t, fhirtest.SMARTClient{ID: "app", JWKS: key.jwks, Scopes: []string{"system/*.cruds"}})
	good := key.assertion(t, "app", tokenURL, nil)
	if a := postToken(t, tokenURL, assertionForm(good, "system/Patient.rs")); a.status != 200 || a.Token == "" || a.Scope != "system/Patient.rs" {
		t.Fatalf("good assertion: %+v", a)
	}
	tests := []struct {
		name, assertion, want string
	}{
		{"replayed jti", good, "jti was already used"},
		{"kid not registered", other.assertion(t, "app", tokenURL, nil), `kid "k2" is not in the JWKS registered for client "app"`},
		{"unregistered client", key.assertion(t, "nobody", tokenURL, nil), `client "nobody" (the assertion's iss) is not registered`},
		{"sub differs", key.assertion(t, "app", tokenURL, func(c *jwt.Claims) { c.Subject = "x" }), "sub must equal iss"},
		{"wrong aud", key.assertion(t, "app", srv.URL, nil), "aud must be the token endpoint"},
		{"exp too far", key.assertion(t, "app", tokenURL, func(c *jwt.Claims) { c.Expiry = jwt.NewNumericDate(time.Now().Add(10 * time.Minute)) }), "more than the 5 minutes"},
		{"expired", key.assertion(t, "app", tokenURL, func(c *jwt.Claims) { c.Expiry = jwt.NewNumericDate(time.Now().Add(-time.Minute)) }), "expired"},
		{"no jti", key.assertion(t, "app", tokenURL, func(c *jwt.Claims) { c.ID = "" }), "no jti"},
		{"bad signature", good[:len(good)-4] + "AAAA", "signature does not verify"},
		{"HS256", hs256(t, "app", tokenURL), "is not allowed"},
	}
	for _, tt := range tests {
		a := postToken(t, tokenURL, assertionForm(tt.assertion, "system/*.cruds"))
		if a.status != 401 || a.Error != "invalid_client" || !strings.Contains(a.Desc, tt.want) {
			t.Errorf("%s: %d %s %q, want 401 invalid_client %q", tt.name, a.status, a.Error, a.Desc, tt.want)
		}
	}
	if reqs, issued := srv.SMART().TokenRequests(); reqs != len(tests)+1 || issued != 1 {
		t.Errorf("%d requests, %d issued", reqs, issued)
	}
}

func hs256(t *testing.T, clientID, aud string) string {
	t.Helper()
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: []byte("0123456789abcdef0123456789abcdef")},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", "k1"))
	if err != nil {
		t.Fatal(err)
	}
	s, err := jwt.Signed(signer).Claims(jwt.Claims{Issuer: clientID, Subject: clientID, Audience: jwt.Audience{aud},
		Expiry: jwt.NewNumericDate(time.Now().Add(time.Minute)), ID: "x"}).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestSMARTScopes: v1 and v2 scopes are enforced on the FHIR API, and a
// 403 names the missing scope.
func TestSMARTScopes(t *testing.T) {
	t.Parallel()
	srv, tokenURL := smartServer(t, fhirtest.SMARTClient{ID: "app", Secret: "pw", Scopes: []string{"system/Patient.read", "system/Patient.write", "system/Observation.rs"}})
	form := url.Values{"grant_type": {"client_credentials"}, "scope": {"system/Patient.read system/Patient.write system/Observation.rs system/Encounter.read"}}
	a := postToken(t, tokenURL, form, "app", "pw")
	if a.status != 200 || a.Scope != "system/Patient.read system/Patient.write system/Observation.rs" {
		t.Fatalf("token: %+v (Encounter must not be granted)", a)
	}
	do := func(method, path, body, tok string) (int, string) {
		req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/fhir+json")
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	patient := `{"resourceType":"Patient","id":"p1"}`
	if code, body := do(http.MethodPut, "/Patient/p1", patient, a.Token); code != 201 {
		t.Errorf("PUT Patient with system/Patient.write: %d %s", code, body)
	}
	if code, _ := do(http.MethodGet, "/Patient?_id=p1", "", a.Token); code != 200 {
		t.Errorf("search Patient with system/Patient.read: %d", code)
	}
	obs := `{"resourceType":"Observation","status":"final","code":{"text":"x"}}`
	code, body := do(http.MethodPost, "/Observation", obs, a.Token)
	if code != 403 || !strings.Contains(body, "system/Observation.c") || !strings.Contains(body, "OperationOutcome") {
		t.Errorf("POST Observation with system/Observation.rs: %d %s, want 403 naming system/Observation.c", code, body)
	}
	if code, _ := do(http.MethodGet, "/Patient/p1", "", ""); code != 401 {
		t.Errorf("no token: %d, want 401", code)
	}
	if code, _ := do(http.MethodGet, "/metadata", "", ""); code != 200 {
		t.Errorf("metadata without a token: %d, want 200", code)
	}
	srv.SMART().ExpireTokens()
	if code, _ := do(http.MethodGet, "/Patient/p1", "", a.Token); code != 401 {
		t.Errorf("expired token: %d, want 401", code)
	}
	if a := postToken(t, tokenURL, form, "app", "wrong"); a.status != 401 || a.Error != "invalid_client" || !strings.Contains(a.Desc, "wrong client secret") {
		t.Errorf("wrong secret: %+v", a)
	}
	post := url.Values{"grant_type": {"client_credentials"}, "client_id": {"app"}, "client_secret": {"pw"}, "scope": {"system/Encounter.read"}}
	if a := postToken(t, tokenURL, post); a.status != 400 || a.Error != "invalid_scope" {
		t.Errorf("only an ungranted scope: %+v, want invalid_scope", a)
	}
}

func TestSMARTFaults(t *testing.T) {
	t.Parallel()
	key := newSMARTKey(t, "k1")
	srv, tokenURL := smartServer(t, fhirtest.SMARTClient{ID: "app", JWKS: key.jwks, Scopes: []string{"system/*.cruds"}})
	auth := srv.SMART()
	try := func() tokenAnswer {
		return postToken(t, tokenURL, assertionForm(key.assertion(t, "app", tokenURL, nil), "system/*.cruds"))
	}
	auth.FailTokenEndpoint(503, "")
	if a := try(); a.status != 503 {
		t.Errorf("failing endpoint: %+v", a)
	}
	auth.FailTokenEndpoint(401, "invalid_client")
	if a := try(); a.status != 401 || a.Error != "invalid_client" {
		t.Errorf("invalid_client fault: %+v", a)
	}
	auth.FailTokenEndpoint(0, "")
	auth.SetClockSkew(5 * time.Minute)
	if a := try(); a.status != 401 || !strings.Contains(a.Desc, "check the client's clock") {
		t.Errorf("server clock 5 minutes ahead: %+v", a)
	}
	auth.SetClockSkew(0)
	auth.Revoke("app")
	if a := try(); a.status != 401 || !strings.Contains(a.Desc, "revoked") {
		t.Errorf("revoked: %+v", a)
	}
	auth.Register(fhirtest.SMARTClient{ID: "app", JWKS: key.jwks, Scopes: []string{"system/*.cruds"}})
	if a := try(); a.status != 200 {
		t.Errorf("registered again: %+v", a)
	}
}
