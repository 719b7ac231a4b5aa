package outcomes_test

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"sync"
	"testing"

	"github.com/ketamine-fhir/ketamine-fhir/mapping"
	"github.com/ketamine-fhir/ketamine-fhir/mapping/outcomes"
	"github.com/ketamine-fhir/ketamine-fhir/mapping/synth"
)

// key is the id the test gives a resource, as an EHR would: opaque, not
// the business identifier.
func key(value string) string {
	sum := sha256.Sum256([]byte(value))
	return "k" + hex.EncodeToString(sum[:8])
}

var fhirType = map[mapping.Kind]string{
	mapping.KindPatient:        "Patient",
	mapping.KindOrder:          "MedicationRequest",
	mapping.KindAdministration: "MedicationAdministration",
}

// lookup maps as `ketamine-fhir map` does (logical references, no ids)
// or, with literal set, as an EHR's export has it (ids and literal
// references).
type lookup struct {
	literal bool
	orders  map[string]*mapping.Order
}

func (l *lookup) Reference(kind mapping.Kind, id string) string {
	if !l.literal {
		return ""
	}
	return fhirType[kind] + "/" + key(id)
}

func (l *lookup) Order(id string) *mapping.Order { return l.orders[id] }

// mapClinic generates and maps a clinic of n patients (seed 1) in process,
// as `generate` then `map` would.
func mapClinic(t testing.TB, n int, literal bool) [][]byte {
	t.Helper()
	m, err := mapping.NewMapper(mapping.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	lk := &lookup{literal: literal, orders: map[string]*mapping.Order{}}
	var out [][]byte
	err = synth.Generate(synth.Options{Patients: n, Seed: 1}, func(rec *mapping.Record) error {
		if rec.Order != nil {
			lk.orders[rec.Order.OrderID] = rec.Order
		}
		res, err := m.Map(rec, lk)
		if err != nil {
			return err
		}
		for _, r := range res {
			data := r.JSON
			if literal {
				var obj map[string]any
				if err := json.Unmarshal(data, &obj); err != nil {
					return err
				}
				obj["id"] = key(r.Identifier.Value)
				if data, err = json.Marshal(obj); err != nil {
					return err
				}
			}
			out = append(out, data)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

var (
	clinic200     [][]byte
	clinic200Once sync.Once
)

// clinicSize is the generated clinic of the tests: 200 patients, as
// `generate --patients 200`, or 50 under the race detector.
func clinicSize() int {
	if raceEnabled {
		return 50
	}
	return 200
}

// clinic returns the clinic of clinicSize patients mapped as `map` writes
// it, generated once per test binary.
func clinic(t testing.TB) [][]byte {
	clinic200Once.Do(func() { clinic200 = mapClinic(t, clinicSize(), false) })
	if clinic200 == nil {
		t.Fatal("the clinic could not be generated")
	}
	return clinic200
}

// compute runs the report over resources.
func compute(t testing.TB, resources [][]byte, o outcomes.Options) *outcomes.Report {
	t.Helper()
	c := outcomes.NewCollector(outcomes.DefaultCodes())
	for i, r := range resources {
		if err := c.Add(r); err != nil {
			t.Fatalf("resource %d: %v", i, err)
		}
	}
	return c.Compute(o)
}
