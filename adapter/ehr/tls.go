package ehr

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"
)

// TLSConfig configures TLS to the EHR beyond the system defaults. It
// combines with any auth mode. The files are read at New and again,
// before a TLS handshake, whenever their modification time or size has
// changed, so renewed certificates are picked up without a restart
// (connections already open keep theirs until they close).
type TLSConfig struct {
	// ClientCert and ClientKey are PEM files of the client certificate
	// (with its chain) and its private key for mutual TLS. Set both or
	// neither.
	ClientCert string
	ClientKey  string
	// CABundle is a PEM file of the CAs trusted for the EHR's
	// certificate, instead of the system roots.
	CABundle string
}

func (t TLSConfig) enabled() bool { return t.ClientCert != "" || t.ClientKey != "" || t.CABundle != "" }

// applyTLS sets up mutual TLS and the CA bundle on a transport; it
// returns a clone when it changes one.
func applyTLS(rt http.RoundTripper, cfg TLSConfig, now func() time.Time) (http.RoundTripper, error) {
	if !cfg.enabled() {
		return rt, nil
	}
	if (cfg.ClientCert == "") != (cfg.ClientKey == "") {
		return nil, errors.New("ehr: TLS client certificate and key: set both or neither")
	}
	t, ok := rt.(*http.Transport)
	if !ok {
		return nil, errors.New("ehr: TLS settings need an *http.Transport (HTTPClient brings another transport)")
	}
	t = t.Clone()
	tc := t.TLSClientConfig
	if tc == nil {
		tc = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	fr := &tlsFiles{cfg: cfg, now: now}
	if cfg.ClientCert != "" {
		if _, err := fr.clientCert(nil); err != nil {
			return nil, err
		}
		tc.GetClientCertificate = fr.clientCert
	}
	if cfg.CABundle != "" {
		if _, err := fr.roots(); err != nil {
			return nil, err
		}
		// The pool may change between handshakes, so verification is done
		// in VerifyConnection against the current pool, with the same
		// checks crypto/tls makes (chain to a root, server name). See the
		// crypto/tls example of VerifyConnection.
		tc.InsecureSkipVerify = true
		tc.VerifyConnection = fr.verify
	}
	t.TLSClientConfig = tc
	t.ForceAttemptHTTP2 = true // a custom TLSClientConfig would turn HTTP/2 off otherwise
	return t, nil
}

// tlsFiles caches the certificate files and reloads them when they
// change.
type tlsFiles struct {
	cfg TLSConfig
	now func() time.Time

	mu       sync.Mutex
	cert     *tls.Certificate
	certStat [2]fileStamp
	pool     *x509.CertPool
	caStat   fileStamp
}

type fileStamp struct {
	mod  time.Time
	size int64
}

func stamp(path string) (fileStamp, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{}, err
	}
	return fileStamp{fi.ModTime(), fi.Size()}, nil
}

// clientCert is tls.Config.GetClientCertificate: the current client
// certificate, reloaded when its files changed. A reload that fails
// keeps the previous certificate (a half-written renewal), unless there
// is none.
func (f *tlsFiles) clientCert(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	cs, err1 := stamp(f.cfg.ClientCert)
	ks, err2 := stamp(f.cfg.ClientKey)
	if f.cert != nil && err1 == nil && err2 == nil && [2]fileStamp{cs, ks} == f.certStat {
		return f.cert, nil
	}
	cert, err := tls.LoadX509KeyPair(f.cfg.ClientCert, f.cfg.ClientKey)
	if err != nil {
		if f.cert != nil {
			return f.cert, nil
		}
		return nil, fmt.Errorf("ehr: TLS client certificate %s and key %s: %v", f.cfg.ClientCert, f.cfg.ClientKey, errors.Unwrap(err))
	}
	if cert.Leaf != nil && f.now().After(cert.Leaf.NotAfter) {
		err := fmt.Errorf("ehr: TLS client certificate %s expired at %s; renew it", f.cfg.ClientCert, cert.Leaf.NotAfter.UTC().Format(time.RFC3339))
		if f.cert == nil {
			return nil, err
		}
	}
	f.cert, f.certStat = &cert, [2]fileStamp{cs, ks}
	return f.cert, nil
}

// roots returns the CA pool of CABundle, reloaded when the file changed.
func (f *tlsFiles) roots() (*x509.CertPool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	st, err := stamp(f.cfg.CABundle)
	if f.pool != nil && err == nil && st == f.caStat {
		return f.pool, nil
	}
	pem, err := os.ReadFile(f.cfg.CABundle)
	pool := x509.NewCertPool()
	if err == nil && !pool.AppendCertsFromPEM(pem) {
		err = errors.New("no PEM certificate in it")
	}
	if err != nil {
		if f.pool != nil {
			return f.pool, nil
		}
		return nil, fmt.Errorf("ehr: TLS CA bundle %s: %v", f.cfg.CABundle, unwrapPath(err))
	}
	f.pool, f.caStat = pool, st
	return pool, nil
}

func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// verify is tls.Config.VerifyConnection: the server's chain must lead to
// a CA of the bundle and name the server.
func (f *tlsFiles) verify(cs tls.ConnectionState) error {
	pool, err := f.roots()
	if err != nil {
		return err
	}
	if len(cs.PeerCertificates) == 0 {
		return errors.New("ehr: the EHR sent no TLS certificate")
	}
	opts := x509.VerifyOptions{
		Roots:         pool,
		DNSName:       cs.ServerName,
		Intermediates: x509.NewCertPool(),
		CurrentTime:   f.now(),
	}
	for _, c := range cs.PeerCertificates[1:] {
		opts.Intermediates.AddCert(c)
	}
	_, err = cs.PeerCertificates[0].Verify(opts)
	if err != nil {
		return &tls.CertificateVerificationError{UnverifiedCertificates: cs.PeerCertificates, Err: err}
	}
	return nil
}

// clientCertError is the AuthError of a TLS alert by which the EHR
// refused the client certificate (or its absence). The alert text, from
// a fixed list ("tls: unknown certificate authority"), is kept.
func clientCertError(err error) error {
	ae := &AuthError{Reason: "client_certificate"}
	var oerr *net.OpError
	if errors.As(err, &oerr) && oerr.Err != nil {
		ae.Detail = strings.TrimPrefix(oerr.Err.Error(), "tls: ")
	}
	return ae
}
