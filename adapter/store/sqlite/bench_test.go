package sqlite_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/ketamine-fhir/ketamine-fhir/adapter/store"
	"github.com/ketamine-fhir/ketamine-fhir/adapter/store/sqlite"
)

// benchPayload is an administration record of about 1.5 KB, the size of a
// session with vitals, as canonical JSON. %d makes each one distinct.
const benchPayload = `{"kind":"administration","admin_id":"A-%08d","order_id":"O-000123","mrn":"MRN-0004567",` +
	`"status":"completed","started_at":"2025-03-04T10:15:00-05:00","ended_at":"2025-03-04T11:05:00-05:00",` +
	`"dose":{"value":35,"unit":"mg"},"route":"IM","site":"left-deltoid","lot":"KX2291A","lot_expires":"2026-09-30",` +
	`"session":4,"weight_kg":71.4,"performer":{"npi":"1234567893","name":"Jordan Rivera, NP"},` +
	`"vitals":[{"at":"2025-03-04T10:10:00-05:00","systolic":122,"diastolic":78,"heart_rate":72,"spo2":98},` +
	`{"at":"2025-03-04T10:30:00-05:00","systolic":138,"diastolic":86,"heart_rate":80,"spo2":97},` +
	`{"at":"2025-03-04T10:45:00-05:00","systolic":141,"diastolic":88,"heart_rate":83,"spo2":97},` +
	`{"at":"2025-03-04T11:00:00-05:00","systolic":131,"diastolic":82,"heart_rate":76,"spo2":98}],` +
	`"adverse_events":["nausea","dissociation","dizziness"],"not_done_reason":"",` +
	`"note":"Patient tolerated the session well. Transient dissociation resolved within 40 minutes; mild nausea ` +
	`treated with ondansetron 4 mg ODT. Blood pressure peaked at 141/88 at 30 minutes and returned toward baseline ` +
	`before discharge. Patient escorted home by a family member; reminded not to drive until the next day. ` +
	`Next session scheduled per protocol; PHQ-9 to be repeated before the session.",` +
	`"updated_at":"2025-03-04T11:20:00-05:00","padding":"%s"}`

func benchRecords(from, n int) []store.NewRecord {
	recs := make([]store.NewRecord, n)
	for i := range recs {
		p := []byte(fmt.Sprintf(benchPayload, from+i, "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"))
		sum := sha256.Sum256(p)
		recs[i] = store.NewRecord{Kind: "administration", LocalID: fmt.Sprintf("A-%08d", from+i), Hash: hex.EncodeToString(sum[:]), Payload: p}
	}
	return recs
}

var syncModes = []struct {
	name string
	opts []sqlite.Option
}{
	{"sync=normal", nil},
	{"sync=full", []sqlite.Option{sqlite.WithSynchronousFull()}},
}

// BenchmarkUpsert imports new records in batches of 1,000, as `import` does.
// One op is one record.
func BenchmarkUpsert(b *testing.B) {
	const batch = 1000
	for _, m := range syncModes {
		b.Run(m.name, func(b *testing.B) {
			ctx := context.Background()
			s, err := sqlite.Open(ctx, filepath.Join(b.TempDir(), "outbox.db"), m.opts...)
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			b.SetBytes(int64(len(benchRecords(0, 1)[0].Payload)))
			b.ResetTimer()
			for i := 0; i < b.N; i += batch {
				b.StopTimer()
				recs := benchRecords(i, min(batch, b.N-i))
				b.StartTimer()
				if _, err := s.Upsert(ctx, recs); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
		})
	}
}

// BenchmarkUpsertUnchanged re-imports records the outbox already holds (a
// re-run of the same export), in batches of 1,000. One op is one record.
func BenchmarkUpsertUnchanged(b *testing.B) {
	const batch, rows = 1000, 20000
	ctx := context.Background()
	s, err := sqlite.Open(ctx, filepath.Join(b.TempDir(), "outbox.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	var all [][]store.NewRecord
	for i := 0; i < rows; i += batch {
		recs := benchRecords(i, batch)
		if _, err := s.Upsert(ctx, recs); err != nil {
			b.Fatal(err)
		}
		all = append(all, recs)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i += batch {
		recs := all[(i/batch)%len(all)][:min(batch, b.N-i)]
		out, err := s.Upsert(ctx, recs)
		if err != nil {
			b.Fatal(err)
		}
		if out[0] != store.Unchanged {
			b.Fatalf("outcome %s, want unchanged", out[0])
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
}

// BenchmarkClaimFinish is the engine's loop: claim 10 rows, finish each as
// synced (one transaction per Finish). One op is one record delivered.
func BenchmarkClaimFinish(b *testing.B) {
	const claimBatch = 10
	for _, m := range syncModes {
		b.Run(m.name, func(b *testing.B) {
			ctx := context.Background()
			s, err := sqlite.Open(ctx, filepath.Join(b.TempDir(), "outbox.db"), m.opts...)
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			for i := 0; i < b.N; i += 1000 {
				if _, err := s.Upsert(ctx, benchRecords(i, min(1000, b.N-i))); err != nil {
					b.Fatal(err)
				}
			}
			now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
			b.ResetTimer()
			done := 0
			for done < b.N {
				recs, err := s.Claim(ctx, "bench", claimBatch, now, time.Minute)
				if err != nil {
					b.Fatal(err)
				}
				if len(recs) == 0 {
					b.Fatalf("nothing to claim after %d of %d", done, b.N)
				}
				for _, r := range recs {
					out := store.Outcome{State: store.StateSynced, Hash: r.Hash, EHRID: "MedicationAdministration/x", EHRVersion: "1"}
					if err := s.Finish(ctx, r.ID, "bench", out, now); err != nil {
						b.Fatal(err)
					}
				}
				done += len(recs)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
		})
	}
}

// BenchmarkFinishBatch compares the completer's group commit, one
// FinishMany of 32 synced outcomes, with 32 Finish calls (a transaction
// each). One op is 32 outcomes; claiming them is not timed. The rows are
// recycled with Resync, so the outbox stays at 3,200 rows.
func BenchmarkFinishBatch(b *testing.B) {
	const batch, rows = 32, 3200
	for _, m := range syncModes {
		for _, mode := range []string{"finish", "finishmany"} {
			b.Run(m.name+"/"+mode, func(b *testing.B) {
				ctx := context.Background()
				s, err := sqlite.Open(ctx, filepath.Join(b.TempDir(), "outbox.db"), m.opts...)
				if err != nil {
					b.Fatal(err)
				}
				defer s.Close()
				if _, err := s.Upsert(ctx, benchRecords(0, rows)); err != nil {
					b.Fatal(err)
				}
				now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
				items := make([]store.Completion, batch)
				b.ResetTimer()
				for range b.N {
					b.StopTimer()
					recs, err := s.Claim(ctx, "bench", batch, now, time.Minute)
					if err == nil && len(recs) < batch {
						_, err = s.Resync(ctx, "", time.Time{}, now)
						if err == nil {
							recs, err = s.Claim(ctx, "bench", batch, now, time.Minute)
						}
					}
					if err != nil || len(recs) != batch {
						b.Fatalf("claim: %d rows, %v", len(recs), err)
					}
					for i, r := range recs {
						items[i] = store.Completion{ID: r.ID, Outcome: store.Outcome{State: store.StateSynced, Hash: r.Hash,
							EHRID: "MedicationAdministration/x", EHRVersion: "1", SentHash: r.Hash, SetDerived: true,
							Derived: []string{"Observation|urn:vitals|" + r.LocalID}}}
					}
					b.StartTimer()
					if mode == "finishmany" {
						errs, err := s.FinishMany(ctx, "bench", items, now)
						if err == nil {
							err = errors.Join(errs...)
						}
						if err != nil {
							b.Fatal(err)
						}
						continue
					}
					for _, it := range items {
						if err := s.Finish(ctx, it.ID, "bench", it.Outcome, now); err != nil {
							b.Fatal(err)
						}
					}
				}
			})
		}
	}
}

// BenchmarkGetMany compares one GetMany of 64 keys with 64 Get calls, on
// an outbox of 10,000 rows of about 1.5 KB. One op is 64 keys.
func BenchmarkGetMany(b *testing.B) {
	const batch, rows = 64, 10000
	ctx := context.Background()
	s, err := sqlite.Open(ctx, filepath.Join(b.TempDir(), "outbox.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	for i := 0; i < rows; i += 1000 {
		if _, err := s.Upsert(ctx, benchRecords(i, 1000)); err != nil {
			b.Fatal(err)
		}
	}
	// Keys spread over the table, a different set each op.
	keys := make([]store.Key, rows)
	for i := range keys {
		keys[i] = store.Key{Kind: "administration", LocalID: fmt.Sprintf("A-%08d", (i*7919)%rows)}
	}
	for _, mode := range []string{"get", "getmany"} {
		b.Run(mode, func(b *testing.B) {
			for i := range b.N {
				ks := keys[(i*batch)%(rows-batch):][:batch]
				if mode == "getmany" {
					got, err := s.GetMany(ctx, ks)
					if err != nil || len(got) != batch {
						b.Fatalf("GetMany: %d rows, %v", len(got), err)
					}
					continue
				}
				for _, k := range ks {
					if _, err := s.Get(ctx, k.Kind, k.LocalID); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}
