package api

import (
	"net/http"
	"strconv"
)

// RouteJWKS names the JWK Set route (its path is Options.JWKSPath) in
// metrics and the access log.
const RouteJWKS = "jwks"

// jwksHandler serves the adapter's public JWK Set: no authentication (an
// EHR fetches it to verify the adapter's client assertions), public keys
// only, cacheable for a few minutes so that a rotation shows soon.
func jwksHandler(jwks []byte) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Type", "application/jwk-set+json")
		h.Set("Cache-Control", "public, max-age=300")
		h.Set("Content-Length", strconv.Itoa(len(jwks)))
		if r.Method == http.MethodHead {
			return
		}
		_, _ = w.Write(jwks)
	})
}
