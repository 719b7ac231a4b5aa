package api_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/ketamine-fhir/ketamine-fhir/adapter/api"
	"github.com/ketamine-fhir/ketamine-fhir/internal/testutil"
)

// TestConsoleMounted: Options.Console serves /ui and everything under
// /ui/, without the API's bearer token, logged under the route "/ui"
// (never the path); other paths are not its business.
func TestConsoleMounted(t *testing.T) {
	var log testutil.Buffer
	console := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Console", "yes")
		w.Write([]byte("console:" + r.URL.Path))
	})
	h := api.NewRouter(newFakeBackend(), api.Options{Token: testToken, Console: console, Logger: testutil.JSONLogger(&log)})
	for path, want := range map[string]int{"/ui": 200, "/ui/": 200, "/ui/records/12": 200, "/uix": 404, "/v1/status": 401} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		if rec.Code != want {
			t.Errorf("GET %s: %d, want %d", path, rec.Code, want)
		}
		if got := rec.Header().Get("X-Console") == "yes"; got != (want == 200) {
			t.Errorf("GET %s: served by the console: %v", path, got)
		}
		if want == 200 && rec.Header().Get("X-Request-Id") == "" {
			t.Errorf("GET %s: no request id", path)
		}
	}
	if strings.Contains(log.String(), "records/12") || !strings.Contains(log.String(), `"route":"/ui"`) {
		t.Errorf("access log: want route /ui and no console path")
	}

	h = api.NewRouter(newFakeBackend(), api.Options{Token: testToken})
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/ui/", nil))
	if rec.Code != http.StatusNotFound {
		t.Errorf("GET /ui/ without a console: %d, want 404", rec.Code)
	}
}
