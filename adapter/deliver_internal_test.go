package adapter

import (
	"slices"
	"testing"
	"time"

	"github.com/ketamine-fhir/ketamine-fhir/adapter/ehr"
	"github.com/ketamine-fhir/ketamine-fhir/adapter/store"
	"github.com/ketamine-fhir/ketamine-fhir/mapping"
)

// TestBackoffDoublesOnBlindTriesOnly: an in-memory retry waits the EHR's
// Retry-After when it gave one; otherwise the backoff doubles for each try
// in a row that got none. Tries answered with a Retry-After do not make a
// later lost answer wait longer.
func TestBackoffDoublesOnBlindTriesOnly(t *testing.T) {
	e := &Engine{shortRetry: RetryPolicy{Min: 250 * time.Millisecond, Max: 30 * time.Second, Jitter: func() float64 { return 0 }}}
	it := &item{}
	throttled := &ehr.TransientError{Reason: "http_429", RetryAfter: time.Second}
	lost := &ehr.TransientError{Reason: "connection"}
	steps := []struct {
		err  error
		want time.Duration
	}{
		{throttled, time.Second},
		{throttled, time.Second},
		{throttled, time.Second},
		{throttled, time.Second},
		{lost, 250 * time.Millisecond}, // not 4 s: the 429s gave their time
		{lost, 500 * time.Millisecond},
		{lost, time.Second},
		{throttled, time.Second},
		{lost, 250 * time.Millisecond}, // the EHR answered in between
	}
	for i, s := range steps {
		r := e.failed(it, s.err)
		if !r.retry {
			t.Fatalf("step %d: failed(%v) gave no retry: %+v", i, s.err, r)
		}
		if r.delay != s.want {
			t.Errorf("step %d: failed(%v) waits %v, want %v", i, s.err, r.delay, s.want)
		}
		it.retried(r)
	}
	if it.tries != len(steps) {
		t.Errorf("tries = %d, want %d: every failed try counts against ehr.retry_max", it.tries, len(steps))
	}
	it.progressed()
	if r := e.failed(it, lost); r.delay != 250*time.Millisecond {
		t.Errorf("after progress a lost answer waits %v, want 250ms", r.delay)
	}
}

// TestOrderParsedOncePerContent: an order row is parsed once per run and
// content, however many administrations depend on it; new content (another
// hash) is parsed again, and a payload that is not an order is refused.
func TestOrderParsedOncePerContent(t *testing.T) {
	p := &pipeline{e: &Engine{parser: mapping.NewParser(nil, nil)}, orders: map[orderKey]*mapping.Order{}}
	payload := func(dose string) []byte {
		return []byte(`{"kind":"order","order_id":"ord-17","mrn":"MRN-100234","status":"active","authored_at":"2025-05-01T14:30:00-04:00",` +
			`"prescriber":{"npi":"1234567893","name":"Dr. Rivera"},"medication":"ketamine-10mg-ml","route":"IV","dose":{"value":` + dose + `,"unit":"mg/kg"}}`)
	}
	row := store.Record{ID: 7, Hash: "h1", Payload: payload("0.5")}
	first, ok := p.order(row)
	if !ok || first.Dose.Value != 0.5 {
		t.Fatalf("order(row) = %+v, %v", first, ok)
	}
	row.Payload = nil // a second lookup of the same content does not parse
	if again, ok := p.order(row); !ok || again != first {
		t.Errorf("the same content was parsed again: %p, want %p", again, first)
	}
	changed := store.Record{ID: 7, Hash: "h2", Payload: payload("0.75")}
	if o, ok := p.order(changed); !ok || o.Dose.Value != 0.75 {
		t.Errorf("new content of the order: %+v, %v", o, ok)
	}
	if _, ok := p.order(store.Record{ID: 8, Hash: "h3", Payload: []byte(`{"kind":"patient"}`)}); ok {
		t.Error("a payload that is not an order gave an order")
	}
}

// TestRetriedUnitsGoFirst: a unit with a row tried before (its wait over)
// is taken from the ready queue before the units not tried yet, which
// keep their order.
func TestRetriedUnitsGoFirst(t *testing.T) {
	p := &pipeline{readyCh: make(chan struct{}, 1)}
	fresh := func(id int64) unit { return unit{items: []*item{{row: store.Record{ID: id}}}} }
	p.enqueue(fresh(1))
	p.enqueue(fresh(2))
	p.enqueue(unit{items: []*item{{row: store.Record{ID: 3}}, {row: store.Record{ID: 4}, tries: 1}}, tx: true})
	p.enqueue(fresh(5))
	p.enqueue(unit{items: []*item{{row: store.Record{ID: 6}, tries: 2}}})
	var got []int64
	for range 5 {
		u, ok := p.next()
		if !ok {
			t.Fatal("the queue closed")
		}
		got = append(got, u.items[0].row.ID)
	}
	if want := []int64{3, 6, 1, 2, 5}; !slices.Equal(got, want) {
		t.Errorf("units taken in the order %v (by first row id), want %v", got, want)
	}
}
