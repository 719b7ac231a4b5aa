package ehr

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"time"
)

// SMART Backend Services client assertion (SMART App Launch 2,
// client-confidential-asymmetric): a JWS signed RS384 or ES384 with header
// {alg, kid, typ: "JWT"} and claims iss = sub = client_id, aud = the token
// endpoint URL, exp no more than five minutes ahead, and a unique jti.

// assertionLifetime is how far ahead exp is set. SMART allows at most five
// minutes; four leave room for clock skew.
const assertionLifetime = 4 * time.Minute

// minRSABits is the smallest RSA key accepted.
const minRSABits = 2048

type jwtHeader struct {
	Alg string `json:"alg"`
	Kid string `json:"kid,omitempty"`
	Typ string `json:"typ"`
}

type jwtClaims struct {
	Iss string `json:"iss"`
	Sub string `json:"sub"`
	Aud string `json:"aud"`
	Exp int64  `json:"exp"`
	Iat int64  `json:"iat"`
	Jti string `json:"jti"`
}

// assertion builds and signs a new client assertion for the token URL.
func (s *oauthSource) assertion() (string, error) {
	now := s.c.now()
	h, err := json.Marshal(jwtHeader{Alg: s.alg, Kid: s.kid, Typ: "JWT"})
	if err != nil {
		return "", err
	}
	cl, err := json.Marshal(jwtClaims{
		Iss: s.clientID,
		Sub: s.clientID,
		Aud: s.tokenURLStr,
		Exp: now.Add(assertionLifetime).Unix(),
		Iat: now.Unix(),
		Jti: rand.Text(),
	})
	if err != nil {
		return "", err
	}
	enc := base64.RawURLEncoding
	input := enc.EncodeToString(h) + "." + enc.EncodeToString(cl)
	sig, err := signJWS(s.key, s.alg, []byte(input))
	if err != nil {
		return "", fmt.Errorf("ehr: signing the client assertion: %w", err)
	}
	return input + "." + enc.EncodeToString(sig), nil
}

// signJWS signs input with SHA-384: RSASSA-PKCS1-v1_5 for RS384, ECDSA
// P-384 for ES384 in the JWS form R||S (48 bytes each), not ASN.1 DER.
func signJWS(key crypto.Signer, alg string, input []byte) ([]byte, error) {
	digest := sha512.Sum384(input)
	switch alg {
	case "RS384":
		k, ok := key.(*rsa.PrivateKey)
		if !ok {
			return nil, errors.New("RS384 needs an RSA key")
		}
		return rsa.SignPKCS1v15(rand.Reader, k, crypto.SHA384, digest[:])
	case "ES384":
		k, ok := key.(*ecdsa.PrivateKey)
		if !ok {
			return nil, errors.New("ES384 needs an EC key")
		}
		r, s, err := ecdsa.Sign(rand.Reader, k, digest[:])
		if err != nil {
			return nil, err
		}
		out := make([]byte, 96)
		r.FillBytes(out[:48])
		s.FillBytes(out[48:])
		return out, nil
	}
	return nil, fmt.Errorf("unsupported algorithm %q", alg)
}

// parsePrivateKey reads the first private key of a PEM file (PKCS#8
// "PRIVATE KEY", PKCS#1 "RSA PRIVATE KEY" or SEC1 "EC PRIVATE KEY"; other
// blocks such as "EC PARAMETERS" or certificates are skipped) and returns
// it with its JWS algorithm. Errors never contain key material.
func parsePrivateKey(pemBytes []byte) (crypto.Signer, string, error) {
	if len(pemBytes) == 0 {
		return nil, "", errors.New("ehr: auth mode smart-backend needs a private key")
	}
	rest := pemBytes
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return nil, "", errors.New("ehr: auth private key: no PEM private key found")
		}
		if strings.Contains(block.Headers["Proc-Type"], "ENCRYPTED") || block.Type == "ENCRYPTED PRIVATE KEY" {
			return nil, "", errors.New("ehr: auth private key: encrypted keys are not supported; decrypt it into a file readable only by the adapter")
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
			return nil, "", fmt.Errorf("ehr: auth private key: cannot parse %s block", block.Type)
		}
		switch k := key.(type) {
		case *rsa.PrivateKey:
			if k.N.BitLen() < minRSABits {
				return nil, "", fmt.Errorf("ehr: auth private key: RSA key of %d bits, want at least %d", k.N.BitLen(), minRSABits)
			}
			return k, "RS384", nil
		case *ecdsa.PrivateKey:
			if k.Curve != elliptic.P384() {
				return nil, "", fmt.Errorf("ehr: auth private key: EC key on %s, ES384 needs P-384", k.Curve.Params().Name)
			}
			return k, "ES384", nil
		}
		return nil, "", fmt.Errorf("ehr: auth private key: %T keys are not supported (RSA or EC P-384)", key)
	}
}

// thumbprint is the RFC 7638 JWK thumbprint (SHA-256, base64url) of an RSA
// or EC public key.
func thumbprint(pub crypto.PublicKey) (string, error) {
	enc := base64.RawURLEncoding
	var canon string
	switch k := pub.(type) {
	case *rsa.PublicKey:
		e := big.NewInt(int64(k.E)).Bytes()
		canon = fmt.Sprintf(`{"e":%q,"kty":"RSA","n":%q}`, enc.EncodeToString(e), enc.EncodeToString(k.N.Bytes()))
	case *ecdsa.PublicKey:
		size := (k.Curve.Params().BitSize + 7) / 8
		ecdh, err := k.ECDH()
		if err != nil {
			return "", fmt.Errorf("ehr: auth private key: %w", err)
		}
		pt := ecdh.Bytes() // 0x04 || X || Y
		canon = fmt.Sprintf(`{"crv":%q,"kty":"EC","x":%q,"y":%q}`, k.Curve.Params().Name,
			enc.EncodeToString(pt[1:1+size]), enc.EncodeToString(pt[1+size:]))
	default:
		return "", fmt.Errorf("ehr: auth private key: no thumbprint for %T", pub)
	}
	sum := sha256.Sum256([]byte(canon))
	return enc.EncodeToString(sum[:]), nil
}
