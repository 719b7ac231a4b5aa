package main

import (
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/ketamine-fhir/ketamine-fhir/fhirtest"
)

// smartOptions are the flags of `ketamine-fhir ehr` that make it a SMART
// Backend Services authorization server with one registered client.
type smartOptions struct {
	clientID string
	jwks     string
	secret   string
	scopes   string
	lifetime time.Duration
}

func addSMARTFlags(fs *flag.FlagSet) *smartOptions {
	o := &smartOptions{}
	fs.StringVar(&o.clientID, "smart-client", "", "require SMART Backend Services tokens and register this client `id` (token endpoint /auth/token, discovery at BASE/.well-known/smart-configuration)")
	fs.StringVar(&o.jwks, "smart-jwks", "", "the client's public JWK Set: a `file` (keys generate's jwks.json) or an http(s) URL fetched at each token request")
	fs.StringVar(&o.secret, "smart-secret", "", "the client's `secret`, for client-secret authentication (visible in ps: for tests only)")
	fs.StringVar(&o.scopes, "smart-scopes", "system/*.cruds", "space-separated `scopes` the client may be granted")
	fs.DurationVar(&o.lifetime, "smart-token-lifetime", 5*time.Minute, "`lifetime` of access tokens")
	return o
}

// option returns the fhirtest option, nil when --smart-client is not set.
func (o *smartOptions) option() (fhirtest.Option, error) {
	if o.clientID == "" {
		if o.jwks != "" || o.secret != "" {
			return nil, fmt.Errorf("--smart-jwks and --smart-secret need --smart-client")
		}
		return nil, nil
	}
	if o.jwks == "" && o.secret == "" {
		return nil, fmt.Errorf("--smart-client needs --smart-jwks or --smart-secret")
	}
	if o.lifetime <= 0 {
		return nil, fmt.Errorf("--smart-token-lifetime must be positive")
	}
	c := fhirtest.SMARTClient{ID: o.clientID, Secret: o.secret, Scopes: strings.Fields(o.scopes)}
	switch {
	case strings.HasPrefix(o.jwks, "http://"), strings.HasPrefix(o.jwks, "https://"):
		c.JWKSURL = o.jwks
	case o.jwks != "":
		b, err := os.ReadFile(o.jwks)
		if err != nil {
			return nil, fmt.Errorf("--smart-jwks: %v", err)
		}
		c.JWKS = b
	}
	return fhirtest.WithSMART(fhirtest.SMARTConfig{Clients: []fhirtest.SMARTClient{c}, TokenLifetime: o.lifetime}), nil
}

// tlsOptions are the flags of `ketamine-fhir ehr` that serve HTTPS, with
// mutual TLS when --client-ca is set.
type ehrTLSOptions struct {
	cert, key, clientCA string
}

func addEHRTLSFlags(fs *flag.FlagSet) *ehrTLSOptions {
	o := &ehrTLSOptions{}
	fs.StringVar(&o.cert, "tls-cert", "", "serve HTTPS (and HTTP/2) with this PEM certificate `file` (with --tls-key)")
	fs.StringVar(&o.key, "tls-key", "", "PEM private key `file` of --tls-cert")
	fs.StringVar(&o.clientCA, "client-ca", "", "require a client certificate issued by a CA of this PEM `file` (mutual TLS; needs --tls-cert)")
	return o
}

// config returns the server's TLS configuration, nil for plain HTTP.
func (o *ehrTLSOptions) config() (*tls.Config, error) {
	if o.cert == "" && o.key == "" {
		if o.clientCA != "" {
			return nil, fmt.Errorf("--client-ca needs --tls-cert and --tls-key")
		}
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(o.cert, o.key)
	if err != nil {
		return nil, fmt.Errorf("--tls-cert, --tls-key: %v", err)
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
	if o.clientCA != "" {
		pem, err := os.ReadFile(o.clientCA)
		if err != nil {
			return nil, fmt.Errorf("--client-ca: %v", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--client-ca: no PEM certificate in %s", o.clientCA)
		}
		cfg.ClientCAs, cfg.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}
