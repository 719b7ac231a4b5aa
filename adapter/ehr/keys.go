package ehr

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// SMART Backend Services client assertion (SMART App Launch 2,
// client-confidential-asymmetric): a JWS signed RS384 or ES384 with header
// {alg, kid, typ: "JWT"} and claims iss = sub = client_id, aud = the token
// endpoint URL, exp no more than five minutes ahead, and a unique jti. The
// JWS, JWK and thumbprint mechanics are go-jose's.

// assertionLifetime is how far ahead exp is set. SMART allows at most five
// minutes; four leave room for clock skew.
const assertionLifetime = 4 * time.Minute

// minRSABits is the smallest RSA key accepted.
const minRSABits = 2048

// Signing algorithms of SMART Backend Services keys.
const (
	AlgRS384 = "RS384"
	AlgES384 = "ES384"
)

// signingKey is one private key with its JWS algorithm and key id.
type signingKey struct {
	key crypto.Signer
	alg jose.SignatureAlgorithm
	kid string
}

// assertion signs a new client assertion with k for clientID and the token
// URL aud, issued at now.
func (k signingKey) assertion(clientID, aud string, now time.Time) (string, error) {
	signer, err := jose.NewSigner(
		jose.SigningKey{Algorithm: k.alg, Key: jose.JSONWebKey{Key: k.key, KeyID: k.kid, Algorithm: string(k.alg)}},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		return "", fmt.Errorf("ehr: auth private key %s: %w", k.kid, err)
	}
	out, err := jwt.Signed(signer).Claims(jwt.Claims{
		Issuer:   clientID,
		Subject:  clientID,
		Audience: jwt.Audience{aud},
		Expiry:   jwt.NewNumericDate(now.Add(assertionLifetime)),
		IssuedAt: jwt.NewNumericDate(now),
		ID:       rand.Text(),
	}).Serialize()
	if err != nil {
		return "", fmt.Errorf("ehr: signing the client assertion with key %s: %w", k.kid, err)
	}
	return out, nil
}

// parseSigningKeys reads every private key of a PEM file, in order (the
// first signs; see AuthConfig.PrivateKeyPEM). keyID, when set, is the kid
// of the first key; the others use their thumbprints.
func parseSigningKeys(pemBytes []byte, keyID string) ([]signingKey, error) {
	keys, err := parsePrivateKeys(pemBytes)
	if err != nil {
		return nil, err
	}
	out := make([]signingKey, len(keys))
	seen := map[string]bool{}
	for i, k := range keys {
		alg := jose.RS384
		if _, ok := k.(*ecdsa.PrivateKey); ok {
			alg = jose.ES384
		}
		kid := keyID
		if i > 0 || kid == "" {
			if kid, err = thumbprint(k.Public()); err != nil {
				return nil, err
			}
		}
		if seen[kid] {
			return nil, fmt.Errorf("ehr: auth private key: key %d has the same kid %s as an earlier key", i+1, kid)
		}
		seen[kid] = true
		out[i] = signingKey{key: k, alg: alg, kid: kid}
	}
	return out, nil
}

// parsePrivateKey reads the first private key of a PEM file and returns it
// with its JWS algorithm.
func parsePrivateKey(pemBytes []byte) (crypto.Signer, string, error) {
	keys, err := parsePrivateKeys(pemBytes)
	if err != nil {
		return nil, "", err
	}
	if _, ok := keys[0].(*ecdsa.PrivateKey); ok {
		return keys[0], AlgES384, nil
	}
	return keys[0], AlgRS384, nil
}

// parsePrivateKeys reads the private keys of a PEM file (PKCS#8 "PRIVATE
// KEY", PKCS#1 "RSA PRIVATE KEY" or SEC1 "EC PRIVATE KEY"; other blocks
// such as "EC PARAMETERS" or certificates are skipped) and checks the key
// policy: RSA of at least 2048 bits (RS384) or EC P-384 (ES384). Errors
// never contain key material.
func parsePrivateKeys(pemBytes []byte) ([]crypto.Signer, error) {
	if len(pemBytes) == 0 {
		return nil, errors.New("ehr: auth mode smart-backend needs a private key")
	}
	var keys []crypto.Signer
	rest := pemBytes
	for n := 1; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if strings.Contains(block.Headers["Proc-Type"], "ENCRYPTED") || block.Type == "ENCRYPTED PRIVATE KEY" {
			return nil, errors.New("ehr: auth private key: encrypted keys are not supported; decrypt it into a file readable only by the adapter")
		}
		var (
			key any
			err error
		)
		switch block.Type {
		case "PRIVATE KEY":
			key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
		case "RSA PRIVATE KEY":
			key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
		case "EC PRIVATE KEY":
			key, err = x509.ParseECPrivateKey(block.Bytes)
		default:
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("ehr: auth private key %d: cannot parse %s block", n, block.Type)
		}
		switch k := key.(type) {
		case *rsa.PrivateKey:
			if k.N.BitLen() < minRSABits {
				return nil, fmt.Errorf("ehr: auth private key %d: RSA key of %d bits, want at least %d", n, k.N.BitLen(), minRSABits)
			}
			keys = append(keys, k)
		case *ecdsa.PrivateKey:
			if k.Curve != elliptic.P384() {
				return nil, fmt.Errorf("ehr: auth private key %d: EC key on %s, ES384 needs P-384", n, k.Curve.Params().Name)
			}
			keys = append(keys, k)
		default:
			return nil, fmt.Errorf("ehr: auth private key %d: %T keys are not supported (RSA or EC P-384)", n, key)
		}
		n++
	}
	if len(keys) == 0 {
		return nil, errors.New("ehr: auth private key: no PEM private key found")
	}
	return keys, nil
}

// thumbprint is the RFC 7638 JWK thumbprint (SHA-256, base64url) of an RSA
// or EC public key.
func thumbprint(pub crypto.PublicKey) (string, error) {
	sum, err := (&jose.JSONWebKey{Key: pub}).Thumbprint(crypto.SHA256)
	if err != nil {
		return "", fmt.Errorf("ehr: auth private key: no thumbprint for %T", pub)
	}
	return base64.RawURLEncoding.EncodeToString(sum), nil
}

// PublicJWKS returns the JSON Web Key Set of the public halves of the
// private keys in pemBytes (several keys during a rotation), in file
// order, each with kid, alg and use "sig". keyID, when set, is the kid of
// the first key, as with AuthConfig.KeyID; other keys get their RFC 7638
// thumbprint. It is what an EHR registers for a SMART backend client; it
// holds no private part.
func PublicJWKS(pemBytes []byte, keyID string) ([]byte, error) {
	keys, err := parseSigningKeys(pemBytes, keyID)
	if err != nil {
		return nil, err
	}
	var set jose.JSONWebKeySet
	for _, k := range keys {
		set.Keys = append(set.Keys, jose.JSONWebKey{Key: k.key.Public(), KeyID: k.kid, Algorithm: string(k.alg), Use: "sig"})
	}
	return json.MarshalIndent(set, "", "  ")
}

// GenerateKey makes a new private key for alg (AlgRS384: RSA 3072 bits;
// AlgES384: EC P-384) and returns it as PKCS#8 PEM, with its public JWK
// Set (kid = the RFC 7638 thumbprint).
func GenerateKey(alg string) (privatePEM, jwks []byte, kid string, err error) {
	var key crypto.Signer
	switch alg {
	case AlgRS384:
		key, err = rsa.GenerateKey(rand.Reader, 3072)
	case AlgES384:
		key, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	default:
		return nil, nil, "", fmt.Errorf("ehr: key algorithm %q is not %s or %s", safeCode(alg), AlgRS384, AlgES384)
	}
	if err != nil {
		return nil, nil, "", fmt.Errorf("ehr: generating a %s key: %w", alg, err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, "", fmt.Errorf("ehr: encoding the %s key: %w", alg, err)
	}
	privatePEM = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	if jwks, err = PublicJWKS(privatePEM, ""); err != nil {
		return nil, nil, "", err
	}
	kid, err = thumbprint(key.Public())
	return privatePEM, jwks, kid, err
}
