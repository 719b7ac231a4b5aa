package api_test

import (
	"net/http"
	"testing"

	"github.com/ketamine-fhir/ketamine-fhir/adapter/api"
)

// TestJWKSRoute: the JWK Set is served at the configured path without a
// token, and nowhere when no path is configured.
func TestJWKSRoute(t *testing.T) {
	t.Parallel()
	jwks := []byte(`{"keys":[{"kty":"EC","kid":"k1","crv":"P-384","x":"x","y":"y"}]}`)
	e := setup(t, func(o *api.Options) { o.JWKSPath, o.JWKS = "/.well-known/jwks.json", jwks })
	rec := e.do(http.MethodGet, "/.well-known/jwks.json", "", nil)
	if rec.Code != 200 || rec.Body.String() != string(jwks) || rec.Header().Get("Content-Type") != "application/jwk-set+json" {
		t.Errorf("GET jwks: %d %q %q", rec.Code, rec.Header().Get("Content-Type"), rec.Body)
	}
	if rec := e.do(http.MethodPost, "/.well-known/jwks.json", "", nil); rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST jwks: %d, want 405", rec.Code)
	}
	off := setup(t)
	if rec := off.do(http.MethodGet, "/.well-known/jwks.json", "", nil); rec.Code != http.StatusNotFound {
		t.Errorf("without jwks_path: %d, want 404", rec.Code)
	}
}
