package fhirtest

import (
	"io"
	"net/http"
	"sync"
	"testing"
)

// getDrained sends GET url with client and reads the whole body, so that the
// connection can be reused. It returns the response's protocol.
func getDrained(t *testing.T, client *http.Client, url string) (string, error) {
	t.Helper()
	r, err := client.Get(url)
	if err != nil {
		return "", err
	}
	defer r.Body.Close()
	if _, err := io.Copy(io.Discard, r.Body); err != nil {
		return "", err
	}
	if r.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, r.Status)
	}
	return r.Proto, nil
}

func TestConnections(t *testing.T) {
	t.Parallel()
	s := NewUnstartedServer()
	defer s.Close()
	if n := s.Connections(); n != 0 {
		t.Fatalf("Connections before Start = %d", n)
	}
	s.Start()
	client := s.Client()
	for i := 0; i < 10; i++ {
		if _, err := getDrained(t, client, s.URL+"/metadata"); err != nil {
			t.Fatal(err)
		}
	}
	if n := s.Connections(); n != 1 {
		t.Errorf("after 10 requests on one keep-alive client: Connections = %d, want 1", n)
	}

	s.CloseClientConnections()
	if _, err := getDrained(t, client, s.URL+"/metadata"); err != nil {
		t.Fatal(err)
	}
	if n := s.Connections(); n != 2 {
		t.Errorf("after CloseClientConnections: Connections = %d, want 2", n)
	}

	noKeepAlive := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	for i := 0; i < 3; i++ {
		if _, err := getDrained(t, noKeepAlive, s.URL+"/metadata"); err != nil {
			t.Fatal(err)
		}
	}
	if n := s.Connections(); n != 5 {
		t.Errorf("after 3 requests without keep-alive: Connections = %d, want 5", n)
	}

	s.Reset()
	if n := s.Connections(); n != 0 {
		t.Errorf("after Reset: Connections = %d, want 0", n)
	}
	if _, err := getDrained(t, client, s.URL+"/metadata"); err != nil {
		t.Fatal(err)
	}
	if n := s.Connections(); n != 0 {
		t.Errorf("a request on the kept connection after Reset: Connections = %d, want 0", n)
	}
}

func TestStartTLSOffersHTTP2(t *testing.T) {
	t.Parallel()
	s := NewUnstartedServer()
	defer s.Close()
	s.StartTLS()
	client := s.Client()
	proto, err := getDrained(t, client, s.URL+"/metadata")
	if err != nil {
		t.Fatal(err)
	}
	if proto != "HTTP/2.0" {
		t.Errorf("response protocol %s, want HTTP/2.0", proto)
	}
	// At steady state concurrent requests share the one connection.
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := client.Get(s.URL + "/metadata")
			if err == nil {
				_, err = io.Copy(io.Discard, r.Body)
				r.Body.Close()
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := s.Connections(); n != 1 {
		t.Errorf("Connections = %d, want 1 (HTTP/2 multiplexes)", n)
	}
	log := s.Requests()
	if len(log) != 21 {
		t.Fatalf("%d requests logged, want 21", len(log))
	}
	for _, e := range log {
		if e.Proto != "HTTP/2.0" {
			t.Errorf("RequestLog.Proto = %q, want HTTP/2.0", e.Proto)
		}
	}

	// A client that does not ask for h2 gets HTTP/1.1.
	tlsConfig := client.Transport.(*http.Transport).TLSClientConfig.Clone()
	tlsConfig.NextProtos = []string{"http/1.1"} // the h2 transport added "h2"
	h1 := &http.Client{Transport: &http.Transport{TLSClientConfig: tlsConfig}}
	proto, err = getDrained(t, h1, s.URL+"/metadata")
	if err != nil {
		t.Fatal(err)
	}
	log = s.Requests()
	if proto != "HTTP/1.1" || log[len(log)-1].Proto != "HTTP/1.1" {
		t.Errorf("HTTP/1.1 client: response %s, logged %s", proto, log[len(log)-1].Proto)
	}
	if n := s.Connections(); n != 2 {
		t.Errorf("Connections = %d, want 2", n)
	}
}

func TestStartLogsHTTP11(t *testing.T) {
	t.Parallel()
	s := NewServer()
	defer s.Close()
	if _, err := getDrained(t, s.Client(), s.URL+"/metadata"); err != nil {
		t.Fatal(err)
	}
	if log := s.Requests(); len(log) != 1 || log[0].Proto != "HTTP/1.1" {
		t.Errorf("log %+v, want one HTTP/1.1 request", log)
	}
}

// TestHTTP2Drop checks that a dropped request over HTTP/2 fails for the
// client and leaves the connection in use.
func TestHTTP2Drop(t *testing.T) {
	t.Parallel()
	s := NewUnstartedServer()
	defer s.Close()
	s.StartTLS()
	client := s.Client()
	if _, err := getDrained(t, client, s.URL+"/metadata"); err != nil {
		t.Fatal(err)
	}
	s.DropNext(1)
	if _, err := client.Get(s.URL + "/metadata"); err == nil {
		t.Fatal("dropped request succeeded")
	}
	if _, err := getDrained(t, client, s.URL+"/metadata"); err != nil {
		t.Fatal(err)
	}
	log := s.Requests()
	if len(log) != 3 || log[1].Fault != FaultDrop || log[1].Proto != "HTTP/2.0" {
		t.Errorf("log %+v", log)
	}
	if n := s.Connections(); n != 1 {
		t.Errorf("Connections = %d, want 1: a drop resets the stream, not the connection", n)
	}
}
