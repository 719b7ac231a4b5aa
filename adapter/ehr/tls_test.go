package ehr

import (
	"crypto/tls"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ketamine-fhir/ketamine-fhir/internal/testutil"
)

// mtlsServer is an HTTPS server with a certificate from ca that requires
// a client certificate from ca.
func mtlsServer(t *testing.T, ca *testutil.CA) *httptest.Server {
	t.Helper()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/fhir+json")
		io.WriteString(w, `{"resourceType":"Patient","id":"p1","meta":{"versionId":"`+r.Proto+`"}}`)
	}))
	srv.EnableHTTP2 = true
	srv.TLS = &tls.Config{
		Certificates: []tls.Certificate{ca.Issue(t, "ehr", true, time.Now().Add(time.Hour)).TLS},
		ClientCAs:    ca.Pool(),
		ClientAuth:   tls.RequireAndVerifyClientCert,
		// Under TLS 1.3 the server checks the client certificate after
		// the client's handshake is done, and the client often sees a
		// broken connection rather than the alert; TLS 1.2 delivers the
		// alert during the handshake, which lets this test check how an
		// alert is reported.
		MaxVersion: tls.VersionTLS12,
	}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes are expected
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestMutualTLS(t *testing.T) {
	t.Parallel()
	ca := testutil.NewCA(t, "test CA")
	srv := mtlsServer(t, ca)
	dir := t.TempDir()
	caFile := filepath.Join(dir, "ca.pem")
	writeFile(t, caFile, ca.PEM)
	certFile, keyFile := ca.Issue(t, "adapter", false, time.Now().Add(time.Hour)).WriteFiles(t, dir, "client")
	c, err := New(Config{BaseURL: srv.URL + basePath, TLS: TLSConfig{ClientCert: certFile, ClientKey: keyFile, CABundle: caFile}})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Do(ctxT(t), Request{Method: http.MethodGet, Path: "Patient/p1"})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Version != "HTTP/2.0" {
		t.Errorf("served over %s, want HTTP/2", resp.Version)
	}

	// A certificate from another CA: the EHR refuses the handshake.
	other := testutil.NewCA(t, "other CA")
	wrongCert, wrongKey := other.Issue(t, "adapter", false, time.Now().Add(time.Hour)).WriteFiles(t, dir, "wrong")
	c2, err := New(Config{BaseURL: srv.URL + basePath, RetryMax: -1, TLS: TLSConfig{ClientCert: wrongCert, ClientKey: wrongKey, CABundle: caFile}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c2.Do(ctxT(t), Request{Method: http.MethodGet, Path: "Patient/p1"})
	var ae *AuthError
	if !errors.As(err, &ae) || ae.Reason != "client_certificate" || !strings.Contains(err.Error(), "client certificate") {
		t.Errorf("err = %v, want an AuthError about the client certificate", err)
	}

	// Without the CA bundle the EHR's certificate is not trusted.
	c3, err := New(Config{BaseURL: srv.URL + basePath, RetryMax: -1, TLS: TLSConfig{ClientCert: certFile, ClientKey: keyFile}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err = c3.Do(ctxT(t), Request{Method: http.MethodGet, Path: "Patient/p1"}); Reason(err) != "tls_certificate" {
		t.Errorf("err = %v (reason %s), want tls_certificate", err, Reason(err))
	}
}

// TestClientCertificateReload: a renewed certificate written over the
// files is used by the next handshake, without a new client.
func TestClientCertificateReload(t *testing.T) {
	t.Parallel()
	ca := testutil.NewCA(t, "test CA")
	dir := t.TempDir()
	certFile, keyFile := ca.Issue(t, "adapter", false, time.Now().Add(time.Hour)).WriteFiles(t, dir, "client")
	f := &tlsFiles{cfg: TLSConfig{ClientCert: certFile, ClientKey: keyFile}, now: time.Now}
	first, err := f.clientCert(nil)
	if err != nil {
		t.Fatal(err)
	}
	renewed := ca.Issue(t, "adapter", false, time.Now().Add(2*time.Hour))
	writeFile(t, certFile, renewed.CertPEM)
	writeFile(t, keyFile, renewed.KeyPEM)
	later := time.Now().Add(time.Minute) // a new mtime even on coarse file systems
	os.Chtimes(certFile, later, later)
	os.Chtimes(keyFile, later, later)
	second, err := f.clientCert(nil)
	if err != nil {
		t.Fatal(err)
	}
	if first.Leaf.SerialNumber.Cmp(second.Leaf.SerialNumber) == 0 || !second.Leaf.NotAfter.Equal(renewed.TLS.Leaf.NotAfter) {
		t.Error("the renewed certificate was not loaded")
	}
	// A half-written renewal keeps the current certificate.
	writeFile(t, certFile, []byte("-----BEGIN CERT"))
	os.Chtimes(certFile, later.Add(time.Minute), later.Add(time.Minute))
	if third, err := f.clientCert(nil); err != nil || third != second {
		t.Errorf("after a broken renewal: %v, %v; want the previous certificate", third, err)
	}
}

func TestTLSConfigErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, tc := range []struct {
		tls  TLSConfig
		want string
	}{
		{TLSConfig{ClientCert: "x"}, "set both or neither"},
		{TLSConfig{ClientCert: filepath.Join(dir, "no.crt"), ClientKey: filepath.Join(dir, "no.key")}, "no.crt"},
		{TLSConfig{CABundle: filepath.Join(dir, "none.pem")}, "none.pem"},
	} {
		_, err := New(Config{BaseURL: "https://ehr.example/fhir", TLS: tc.tls})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: err = %v, want %q", tc.tls, err, tc.want)
		}
	}
}

// TestCABundleReload: a CA bundle rewritten with a new CA is used for the
// next connection; the old CA is no longer trusted.
func TestCABundleReload(t *testing.T) {
	t.Parallel()
	oldCA, newCA := testutil.NewCA(t, "old CA"), testutil.NewCA(t, "new CA")
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/fhir+json")
		io.WriteString(w, `{"resourceType":"Patient","id":"p1"}`)
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{newCA.Issue(t, "ehr", true, time.Now().Add(time.Hour)).TLS}}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	defer srv.Close()
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	writeFile(t, caFile, oldCA.PEM)
	c, err := New(Config{BaseURL: srv.URL + basePath, RetryMax: -1, TLS: TLSConfig{CABundle: caFile}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Do(ctxT(t), Request{Method: http.MethodGet, Path: "Patient/p1"}); Reason(err) != "tls_certificate" {
		t.Fatalf("old CA: err = %v, want tls_certificate", err)
	}
	writeFile(t, caFile, newCA.PEM)
	later := time.Now().Add(time.Minute)
	os.Chtimes(caFile, later, later)
	if _, err := c.Do(ctxT(t), Request{Method: http.MethodGet, Path: "Patient/p1"}); err != nil {
		t.Fatalf("after the bundle was renewed: %v", err)
	}
}
