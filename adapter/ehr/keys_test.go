package ehr

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

func TestGenerateKeyJWKS(t *testing.T) {
	t.Parallel()
	for _, alg := range []string{AlgES384, AlgRS384} {
		priv, jwks, kid, err := GenerateKey(alg)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(jwks), `"d"`) || strings.Contains(string(jwks), "PRIVATE") {
			t.Errorf("%s: JWKS has a private part: %s", alg, jwks)
		}
		var set jose.JSONWebKeySet
		if err := json.Unmarshal(jwks, &set); err != nil {
			t.Fatal(err)
		}
		if len(set.Keys) != 1 || !set.Keys[0].IsPublic() || set.Keys[0].KeyID != kid ||
			set.Keys[0].Algorithm != alg || set.Keys[0].Use != "sig" {
			t.Fatalf("%s: JWKS = %s", alg, jwks)
		}
		key, gotAlg, err := parsePrivateKey(priv)
		if err != nil || gotAlg != alg {
			t.Fatalf("%s: parse generated key: %v %s", alg, err, gotAlg)
		}
		if tp, _ := thumbprint(key.Public()); tp != kid {
			t.Errorf("%s: kid %s is not the thumbprint %s", alg, kid, tp)
		}
	}
	if _, _, _, err := GenerateKey("HS256"); err == nil {
		t.Error("HS256 accepted")
	}
}

// TestRotationSignsWithFirstKey: with two keys in the file, the JWKS
// lists both and the assertion is signed by the first.
func TestRotationSignsWithFirstKey(t *testing.T) {
	t.Parallel()
	pemBytes := append(pkcs8(t, ecKey()), pkcs8(t, rsaKey())...)
	raw, err := PublicJWKS(pemBytes, "")
	if err != nil {
		t.Fatal(err)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(raw, &set); err != nil || len(set.Keys) != 2 {
		t.Fatalf("JWKS = %s, %v", raw, err)
	}
	ecKid, _ := thumbprint(&ecKey().PublicKey)
	rsaKid, _ := thumbprint(&rsaKey().PublicKey)
	if set.Keys[0].KeyID != ecKid || set.Keys[1].KeyID != rsaKid {
		t.Errorf("kids %s %s, want %s %s", set.Keys[0].KeyID, set.Keys[1].KeyID, ecKid, rsaKid)
	}
	s := newAuthServer(t)
	var gotKid string
	s.verify = func(r *http.Request, form url.Values) error {
		tok, err := jwt.ParseSigned(form.Get("client_assertion"), []jose.SignatureAlgorithm{jose.ES384, jose.RS384})
		if err != nil {
			return err
		}
		gotKid = tok.Headers[0].KeyID
		keys := set.Key(gotKid)
		if len(keys) != 1 {
			return fmt.Errorf("kid %s is not in the JWKS", gotKid)
		}
		var cl jwt.Claims
		if err := tok.Claims(keys[0].Key, &cl); err != nil {
			return err
		}
		return cl.ValidateWithLeeway(jwt.Expected{Issuer: "c", Subject: "c", AnyAudience: jwt.Audience{s.URL + "/auth/token"}, Time: time.Now()}, 0)
	}
	c := s.client(t, AuthConfig{Mode: AuthSMARTBackend, ClientID: "c", PrivateKeyPEM: pemBytes, TokenURL: s.URL + "/auth/token"}, nil)
	if err := get(t, c); err != nil {
		t.Fatal(err)
	}
	if gotKid != ecKid {
		t.Errorf("signed with kid %s, want the first key's %s", gotKid, ecKid)
	}
}

// TestInvalidClientNamesKid: a SMART client refused with invalid_client
// is told which key to look for in the EHR's registration.
func TestInvalidClientNamesKid(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(401)
		io.WriteString(w, `{"error":"invalid_client","error_description":"kid not registered"}`)
	}))
	defer srv.Close()
	c, err := New(Config{BaseURL: srv.URL + basePath, Auth: AuthConfig{Mode: AuthSMARTBackend, ClientID: "c",
		PrivateKeyPEM: pkcs8(t, ecKey()), TokenURL: srv.URL + "/token"}})
	if err != nil {
		t.Fatal(err)
	}
	kid, _ := thumbprint(&ecKey().PublicKey)
	err = get(t, c)
	if Classify(err) != ClassAuth || !strings.Contains(err.Error(), "signing key (kid "+kid+") is in the JWKS the EHR registered") {
		t.Errorf("err = %v", err)
	}
}
