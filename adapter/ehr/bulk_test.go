package ehr

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestOpenTokenPolicy: the token goes to the EHR's host only, never to
// another host, not even through a redirect.
func TestOpenTokenPolicy(t *testing.T) {
	t.Parallel()
	var otherAuth []string
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		otherAuth = append(otherAuth, r.Header.Get("Authorization"))
		io.WriteString(w, "line\n")
	}))
	defer other.Close()
	var ehrAuth []string
	ehr := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ehrAuth = append(ehrAuth, r.Header.Get("Authorization"))
		if r.URL.Path == basePath+"/redirect" {
			http.Redirect(w, r, other.URL+"/file?sig=secret", http.StatusFound)
			return
		}
		w.Header().Set("X-Progress", "50%")
		io.WriteString(w, "line\n")
	}))
	defer ehr.Close()
	c, err := New(Config{BaseURL: ehr.URL + basePath, Auth: AuthConfig{Mode: AuthBearer, Token: "tok-1"}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	resp, err := c.Open(ctx, ehr.URL+basePath+"/file", nil, true)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "line\n" || ehrAuth[0] != "Bearer tok-1" {
		t.Errorf("same host: body %q, Authorization %q", b, ehrAuth[0])
	}

	if _, err := c.Open(ctx, other.URL+"/file?sig=secret", nil, true); !errors.Is(err, ErrInvalidRequest) || strings.Contains(err.Error(), "secret") {
		t.Errorf("token to another host: err %v", err)
	}
	resp, err = c.Open(ctx, other.URL+"/file", nil, false)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()

	resp, err = c.Open(ctx, ehr.URL+basePath+"/redirect", nil, true)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	for i, a := range otherAuth {
		if a != "" {
			t.Errorf("request %d to the other host carried Authorization", i)
		}
	}
	if len(otherAuth) != 2 {
		t.Errorf("other host got %d requests, want 2", len(otherAuth))
	}

	r, err := c.DoURL(ctx, Request{Method: http.MethodGet, ResourceType: "Bundle"}, ehr.URL+basePath+"/status")
	if err != nil || r.Header.Get("X-Progress") != "50%" {
		t.Errorf("DoURL: %v, header %v", err, r)
	}
	if _, err := c.DoURL(ctx, Request{Method: http.MethodGet}, other.URL+"/status?x=secret"); !errors.Is(err, ErrInvalidRequest) || strings.Contains(err.Error(), "secret") {
		t.Errorf("DoURL to another host: %v", err)
	}
}
