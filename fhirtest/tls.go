package fhirtest

import (
	"crypto/tls"
	"crypto/x509"
)

// tlsOptions are the TLS settings of StartTLS.
type tlsOptions struct {
	cert      *tls.Certificate
	clientCAs *x509.CertPool
}

// WithTLSCertificate makes StartTLS present cert instead of httptest's
// built-in certificate, e.g. one issued by a test CA that the client
// trusts through its own CA bundle.
func WithTLSCertificate(cert tls.Certificate) Option {
	return func(c *config) { c.tls.cert = &cert }
}

// WithClientCAs makes StartTLS require a client certificate (mutual TLS)
// that chains to one of pool's CAs; a client without one, or with one
// from another CA or expired, fails the handshake.
func WithClientCAs(pool *x509.CertPool) Option {
	return func(c *config) { c.tls.clientCAs = pool }
}

func (o tlsOptions) apply(cfg *tls.Config) {
	if o.cert != nil {
		cfg.Certificates = []tls.Certificate{*o.cert}
	}
	if o.clientCAs != nil {
		cfg.ClientCAs = o.clientCAs
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
}
