package sqlite_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/ketamine-fhir/ketamine-fhir/adapter/store"
	"github.com/ketamine-fhir/ketamine-fhir/adapter/store/sqlite"
)

// A record's life in the outbox: ingest, claim, deliver, finish.
func Example() {
	ctx := context.Background()
	s, err := sqlite.Open(ctx, sqlite.MemoryPath) // a file path in production
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()

	out, err := s.Upsert(ctx, []store.NewRecord{
		{Kind: "score", LocalID: "S-1", Hash: "h1", Payload: []byte(`{"kind":"score"}`)},
		{Kind: "patient", LocalID: "P-1", Hash: "h1", Payload: []byte(`{"kind":"patient"}`)},
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("upsert:", out)

	now := time.Date(2025, 3, 4, 10, 0, 0, 0, time.UTC)
	recs, err := s.Claim(ctx, "worker-1", 10, now, time.Minute)
	if err != nil {
		log.Fatal(err)
	}
	for _, r := range recs {
		fmt.Println("claimed:", r.Kind, r.State, "attempt", r.Attempts)
		// ... deliver r.Payload to the EHR ...
		err := s.Finish(ctx, r.ID, "worker-1", store.Outcome{
			State: store.StateSynced, Hash: r.Hash, EHRID: "x-" + r.LocalID, EHRVersion: "1",
		}, now)
		if err != nil {
			log.Fatal(err)
		}
	}

	p, err := s.Get(ctx, "patient", "P-1")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("patient:", p.State, p.EHRID)
	// Output:
	// upsert: [inserted inserted]
	// claimed: patient in_flight attempt 1
	// claimed: score in_flight attempt 1
	// patient: synced x-P-1
}
