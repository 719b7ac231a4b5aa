package fhirtest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Client assertion verification, as a SMART authorization server does it.
// fhirtest imports only the standard library (STYLE.md), so the JWS
// compact form and JWKs are parsed here; the signatures are checked with
// crypto/rsa and crypto/ecdsa. This is an independent implementation from
// the adapter's signer (go-jose), which is what a test server wants.

// allowedAlgs is the algorithm allow-list of SMART Backend Services.
var allowedAlgs = []string{"RS384", "ES384"}

type assertionClaims struct {
	Iss string          `json:"iss"`
	Sub string          `json:"sub"`
	Aud json.RawMessage `json:"aud"`
	Exp *float64        `json:"exp"`
	Jti string          `json:"jti"`
}

// audiences reads aud, a string or an array of strings.
func (c *assertionClaims) audiences() []string {
	var one string
	if json.Unmarshal(c.Aud, &one) == nil {
		return []string{one}
	}
	var many []string
	_ = json.Unmarshal(c.Aud, &many)
	return many
}

func invalidClient(format string, args ...any) *response {
	return oauthError(401, "invalid_client", format, args...)
}

// verifyAssertion checks a client assertion like a real server: algorithm
// allow-list, registered client (iss = sub = client_id), the kid in the
// client's JWKS, the signature, aud = the token endpoint, exp in the next
// five minutes, and a jti not seen before.
func (a *AuthServer) verifyAssertion(r *http.Request, form url.Values) (*SMARTClient, *response) {
	parts := strings.Split(form.Get("client_assertion"), ".")
	if len(parts) != 3 {
		return nil, invalidClient("client_assertion is not a compact JWS")
	}
	var header struct {
		Alg string `json:"alg"`
		Kid string `json:"kid"`
		Typ string `json:"typ"`
	}
	var claims assertionClaims
	if decodeSegment(parts[0], &header) != nil || decodeSegment(parts[1], &claims) != nil {
		return nil, invalidClient("client_assertion header or claims are not base64url JSON")
	}
	if header.Alg != "RS384" && header.Alg != "ES384" {
		return nil, invalidClient("alg %q is not allowed; use one of %s", clip(header.Alg), strings.Join(allowedAlgs, ", "))
	}
	if header.Typ != "" && header.Typ != "JWT" {
		return nil, invalidClient("typ %q is not JWT", clip(header.Typ))
	}
	if header.Kid == "" {
		return nil, invalidClient("the assertion header has no kid")
	}
	a.mu.Lock()
	c := a.clients[claims.Iss]
	a.mu.Unlock()
	switch {
	case c == nil:
		return nil, invalidClient("client %q (the assertion's iss) is not registered", clip(claims.Iss))
	case claims.Sub != claims.Iss:
		return nil, invalidClient("the assertion's sub must equal iss, the client id %q", c.ID)
	case form.Has("client_id") && form.Get("client_id") != c.ID:
		return nil, invalidClient("client_id does not match the assertion's iss %q", c.ID)
	}
	keys, err := a.clientKeys(c)
	if err != nil {
		return nil, invalidClient("cannot read the JWKS of client %q: %v", c.ID, err)
	}
	key, ok := keys[header.Kid]
	if !ok {
		return nil, invalidClient("kid %q is not in the JWKS registered for client %q; register the key's public JWK or sign with a registered key", clip(header.Kid), c.ID)
	}
	if key.alg != "" && key.alg != header.Alg {
		return nil, invalidClient("key %q is registered for %s, the assertion uses %s", header.Kid, key.alg, header.Alg)
	}
	if err := verifyJWS(header.Alg, key.pub, parts[0]+"."+parts[1], parts[2]); err != nil {
		return nil, invalidClient("the assertion's signature does not verify with key %q: %v", header.Kid, err)
	}
	tokenURL := origin(r) + a.path
	audOK := false
	for _, aud := range claims.audiences() {
		audOK = audOK || aud == tokenURL
	}
	if !audOK {
		return nil, invalidClient("the assertion's aud must be the token endpoint %s", tokenURL)
	}
	if claims.Exp == nil {
		return nil, invalidClient("the assertion has no exp")
	}
	exp := time.Unix(int64(*claims.Exp), 0)
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.now()
	switch {
	case !now.Before(exp):
		return nil, invalidClient("the assertion expired at %s (server time %s); check the client's clock", exp.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	case exp.Sub(now) > MaxAssertionLifetime:
		return nil, invalidClient("the assertion's exp is %s ahead, more than the 5 minutes allowed; check the client's clock", exp.Sub(now).Round(time.Second))
	case claims.Jti == "":
		return nil, invalidClient("the assertion has no jti")
	}
	for k, e := range a.jtis {
		if !now.Before(e) {
			delete(a.jtis, k)
		}
	}
	jk := c.ID + " " + claims.Jti
	if _, seen := a.jtis[jk]; seen {
		return nil, invalidClient("the assertion's jti was already used (replay); sign a new assertion for each token request")
	}
	a.jtis[jk] = exp
	return c, nil
}

func decodeSegment(seg string, v any) error {
	b, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

type publicJWK struct {
	pub crypto.PublicKey
	alg string
}

// clientKeys returns the client's signing keys by kid, from the inline
// JWKS or fetched from the JWKS URL.
func (a *AuthServer) clientKeys(c *SMARTClient) (map[string]publicJWK, error) {
	raw := c.JWKS
	if len(raw) == 0 {
		if c.JWKSURL == "" {
			return nil, fmt.Errorf("the client has no JWKS or JWKS URL")
		}
		resp, err := a.hc.Get(c.JWKSURL)
		if err != nil {
			return nil, fmt.Errorf("fetching %s failed", c.JWKSURL)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("%s answered %d", c.JWKSURL, resp.StatusCode)
		}
		if raw, err = io.ReadAll(io.LimitReader(resp.Body, 1<<20)); err != nil {
			return nil, fmt.Errorf("reading %s failed", c.JWKSURL)
		}
	}
	return parseJWKS(raw)
}

// parseJWKS reads the RSA (2048 bits or more) and EC P-384 public keys
// with a kid of a JWK Set; other keys are skipped. A key with a private
// part is an error: a JWKS must hold public keys only.
func parseJWKS(raw []byte) (map[string]publicJWK, error) {
	var set struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.Unmarshal(raw, &set); err != nil {
		return nil, fmt.Errorf("not a JWK Set")
	}
	out := map[string]publicJWK{}
	for _, k := range set.Keys {
		str := func(name string) string { s, _ := k[name].(string); return s }
		kid := str("kid")
		if kid == "" || (str("use") != "" && str("use") != "sig") {
			continue
		}
		if _, ok := k["d"]; ok {
			return nil, fmt.Errorf("key %q has a private part", kid)
		}
		b64 := func(name string) []byte { b, _ := base64.RawURLEncoding.DecodeString(str(name)); return b }
		switch str("kty") {
		case "RSA":
			n, e := new(big.Int).SetBytes(b64("n")), new(big.Int).SetBytes(b64("e"))
			if n.BitLen() < 2048 || !e.IsInt64() || e.Int64() < 3 || e.Int64() > 1<<31 {
				return nil, fmt.Errorf("key %q is not an RSA key of 2048 bits or more", kid)
			}
			out[kid] = publicJWK{pub: &rsa.PublicKey{N: n, E: int(e.Int64())}, alg: str("alg")}
		case "EC":
			if str("crv") != "P-384" {
				continue
			}
			x, y := b64("x"), b64("y")
			if len(x) != 48 || len(y) != 48 {
				return nil, fmt.Errorf("key %q: bad P-384 coordinates", kid)
			}
			pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P384(), append(append([]byte{4}, x...), y...))
			if err != nil {
				return nil, fmt.Errorf("key %q is not a point on P-384", kid)
			}
			out[kid] = publicJWK{pub: pub, alg: str("alg")}
		}
	}
	return out, nil
}

// verifyJWS checks a JWS signature over input: RSASSA-PKCS1-v1_5 with
// SHA-384 (RS384), or ECDSA P-384 with SHA-384 as R||S (ES384).
func verifyJWS(alg string, pub crypto.PublicKey, input, sig64 string) error {
	sig, err := base64.RawURLEncoding.DecodeString(sig64)
	if err != nil {
		return fmt.Errorf("the signature is not base64url")
	}
	digest := sha512.Sum384([]byte(input))
	switch k := pub.(type) {
	case *rsa.PublicKey:
		if alg != "RS384" {
			return fmt.Errorf("an RSA key cannot verify %s", alg)
		}
		if err := rsa.VerifyPKCS1v15(k, crypto.SHA384, digest[:], sig); err != nil {
			return fmt.Errorf("RS384 verification failed")
		}
		return nil
	case *ecdsa.PublicKey:
		if alg != "ES384" {
			return fmt.Errorf("an EC key cannot verify %s", alg)
		}
		if len(sig) != 96 {
			return fmt.Errorf("an ES384 signature has 96 bytes, not %d", len(sig))
		}
		r, s := new(big.Int).SetBytes(sig[:48]), new(big.Int).SetBytes(sig[48:])
		if !ecdsa.Verify(k, digest[:], r, s) {
			return fmt.Errorf("ES384 verification failed")
		}
		return nil
	}
	return fmt.Errorf("unsupported key")
}
