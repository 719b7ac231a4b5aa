package ehr

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
)

// BenchmarkDo measures the client's own cost per request (retryablehttp,
// headers, response parsing) against a local server that answers at once.
func BenchmarkDo(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Location", "Observation/o1/_history/2")
		w.WriteHeader(201)
	}))
	defer srv.Close()
	c, err := New(Config{BaseURL: srv.URL + basePath, Auth: AuthConfig{Mode: AuthBearer, Token: "t"}})
	if err != nil {
		b.Fatal(err)
	}
	req := Request{Method: http.MethodPut, Path: "Observation?" + mrnQuery, ResourceType: "Observation",
		Body: []byte(`{"resourceType":"Observation","status":"final"}`)}
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := c.Do(ctx, req); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
