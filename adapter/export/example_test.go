package export_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/ketamine-fhir/ketamine-fhir/adapter/ehr"
	"github.com/ketamine-fhir/ketamine-fhir/adapter/export"
	"github.com/ketamine-fhir/ketamine-fhir/adapter/store/sqlite"
	"github.com/ketamine-fhir/ketamine-fhir/fhirtest"
)

// Export every Patient and Observation of an EHR to a directory.
func Example() {
	t0 := time.Date(2026, 6, 1, 8, 0, 0, 0, time.UTC)
	srv := fhirtest.NewServer(fhirtest.WithClock(func() time.Time { return t0 }))
	defer srv.Close()
	srv.Add([]byte(`{"resourceType":"Patient","id":"p1","gender":"female"}`))
	srv.Add([]byte(`{"resourceType":"Observation","id":"o1","status":"final","code":{"text":"PHQ-9"},"subject":{"reference":"Patient/p1"}}`))

	dir, _ := os.MkdirTemp("", "export")
	defer os.RemoveAll(dir)
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(dir, "outbox.db"))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer st.Close()
	client, _ := ehr.New(ehr.Config{BaseURL: srv.URL, HTTPClient: srv.Client()})
	x, _ := export.New(client, st, export.Options{
		OutDir:      filepath.Join(dir, "out"),
		Types:       []string{"Patient", "Observation"},
		MaxPollWait: 10 * time.Millisecond,
	})
	res, err := x.Run(ctx)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("Patient:", res.Counts["Patient"], "Observation:", res.Counts["Observation"])
	b, _ := os.ReadFile(filepath.Join(dir, "out", "Patient.ndjson"))
	fmt.Print(string(b))
	// Output:
	// Patient: 1 Observation: 1
	// {"resourceType":"Patient","id":"p1","meta":{"versionId":"1","lastUpdated":"2026-06-01T08:00:00.000Z"},"gender":"female"}
}
