package adapter

import (
	"context"
	"errors"
	"time"

	"github.com/ketamine-fhir/ketamine-fhir/adapter/ehr"
	"github.com/ketamine-fhir/ketamine-fhir/adapter/store"
	"github.com/ketamine-fhir/ketamine-fhir/mapping"
)

// txBatch is the rows of one patient and kind gathering for a
// transaction Bundle.
type txBatch struct {
	items   []*item
	entries int // estimated
	timer   *time.Timer
}

// batch adds an item to its patient's Bundle, which goes to the ready
// queue when it holds ehr.transaction_size entries or after
// ehr.transaction_linger (Benthos' count/period batching).
func (p *pipeline) batch(it *item) {
	if it.rec.Kind == mapping.KindPatient {
		// A patient is its own group, and the pipeline holds one row of
		// it at a time: its Bundle can never fill up, so it goes now
		// rather than after the linger (which every record of the
		// patient would wait out too).
		p.enqueue(unit{items: []*item{it}, tx: true})
		return
	}
	key := it.row.Kind + "|" + batchKey(it.rec)
	size := p.e.cfg.EHR.TransactionSize
	p.mu.Lock()
	b := p.batches[key]
	if b == nil {
		b = &txBatch{}
		p.batches[key] = b
		b.timer = time.AfterFunc(p.e.cfg.EHR.TransactionLinger.D(), func() { p.flushBatch(key, b) })
	}
	b.items = append(b.items, it)
	b.entries += estimateEntries(it.rec)
	full := b.entries >= size
	if full {
		delete(p.batches, key)
		b.timer.Stop()
	}
	p.mu.Unlock()
	if full {
		p.enqueue(unit{items: b.items, tx: true})
	}
}

// batchKey groups records per patient.
func batchKey(rec *mapping.Record) string {
	if deps := rec.Dependencies(); len(deps) > 0 {
		return deps[0].ID
	}
	return rec.ID()
}

// estimateEntries guesses how many Bundle entries a record maps to, for
// batching; the worker splits by the exact count.
func estimateEntries(rec *mapping.Record) int {
	if a := rec.Administration; a != nil {
		n := 1 + 3*len(a.Vitals) + len(a.AdverseEvents)
		if a.WeightKg != nil {
			n++
		}
		return n
	}
	return 1
}

// flushBatch sends a lingering batch on, unless it was sent already.
func (p *pipeline) flushBatch(key string, b *txBatch) {
	p.mu.Lock()
	if p.batches[key] != b {
		p.mu.Unlock()
		return
	}
	delete(p.batches, key)
	p.mu.Unlock()
	p.enqueue(unit{items: b.items, tx: true})
}

// flushBatches sends every gathering batch on now.
func (p *pipeline) flushBatches() {
	p.mu.Lock()
	batches := p.batches
	p.batches = map[string]*txBatch{}
	p.mu.Unlock()
	for _, b := range batches {
		b.timer.Stop()
		p.enqueue(unit{items: b.items, tx: true})
	}
}

// txEntry is one record's part of a Bundle.
type txEntry struct {
	it      *item
	entries []mapping.BundleEntry // primary first
}

// deliverBundle delivers rows of one patient and kind as transaction
// Bundles of at most ehr.transaction_size entries. Rows that wait, cannot
// be mapped, or are unchanged are settled on their own. When the EHR
// rejects a Bundle, each of its rows is delivered on its own (conditional
// writes) so that the poison row alone goes to the dead letters.
func (e *Engine) deliverBundle(ctx context.Context, p *pipeline, items []*item) {
	var ready []txEntry
	for _, it := range items {
		if it.rec.Kind == mapping.KindPatient && !e.cfg.Patients.Create {
			p.settle(it, e.holdPatient(ctx, it))
			continue
		}
		if it.mapped == nil {
			if res := e.prepare(ctx, p, it); res != nil {
				p.settle(it, *res)
				continue
			}
		}
		r := it.row
		if r.EHRID != "" && r.SentHash == it.sentHash && len(staleDerived(r.Derived, it.mapped)) == 0 {
			p.settle(it, result{out: store.Outcome{State: store.StateSynced, EHRID: r.EHRID, EHRVersion: r.EHRVersion}, unchanged: true})
			continue
		}
		ready = append(ready, txEntry{it: it, entries: e.bundleEntries(it)})
	}
	for len(ready) > 0 {
		n, size := 0, 0
		for n < len(ready) && (n == 0 || size+len(ready[n].entries) <= e.cfg.EHR.TransactionSize) {
			size += len(ready[n].entries)
			n++
		}
		e.sendBundle(ctx, p, ready[:n])
		ready = ready[n:]
	}
}

// bundleEntries turns a mapped item into Bundle entries: conditional
// updates on the business identifier (conditional create for a Patient),
// or an update by id with If-Match when the EHR id is known.
func (e *Engine) bundleEntries(it *item) []mapping.BundleEntry {
	r := it.row
	typ := primaryType(it.rec.Kind)
	self := mapping.URNFor(e.mapper.Identifier(it.rec.Kind, it.rec.ID()))
	if r.EHRID != "" {
		self = typ + "/" + r.EHRID
	}
	entries := make([]mapping.BundleEntry, 0, len(it.mapped))
	for i, res := range it.mapped {
		if i > 0 {
			res.JSON = withSelf(res.JSON, typ, self)
		}
		var entry mapping.BundleEntry
		if res.Type == "Patient" {
			entry = mapping.ConditionalCreate(res)
		} else {
			entry = mapping.ConditionalUpdate(res)
		}
		if i == 0 && r.EHRID != "" && res.Type != "Patient" {
			if body, err := withID(res.JSON, r.EHRID); err == nil {
				entry.Resource.JSON = body
				entry.URL = res.Type + "/" + r.EHRID
				entry.FullURL = ""
				entry.IfMatch = `W/"` + r.EHRVersion + `"` // an ETag, as the If-Match header carries
			}
		}
		entries = append(entries, entry)
	}
	return entries
}

// sendBundle sends one transaction Bundle and settles its rows.
func (e *Engine) sendBundle(ctx context.Context, p *pipeline, part []txEntry) {
	var entries []mapping.BundleEntry
	for _, t := range part {
		entries = append(entries, t.entries...)
	}
	bundle, err := mapping.TransactionBundle(entries)
	if err != nil {
		for _, t := range part {
			p.settle(t.it, result{out: store.Outcome{State: store.StateDead, ErrorClass: ClassMapping, ErrorDetail: err.Error()}})
		}
		return
	}
	results, err := e.client.Transaction(ctx, bundle)
	if err == nil && len(results) != len(entries) {
		err = &ehr.TransientError{Reason: "bad_bundle_response"}
	}
	if err != nil {
		var rej *ehr.RejectedError
		if errors.As(err, &rej) {
			// Find the poison row, and let a version conflict be resolved
			// by re-reading: deliver each row on its own.
			for _, t := range part {
				p.settle(t.it, e.deliverItem(ctx, p, t.it))
			}
			return
		}
		for _, t := range part {
			p.settle(t.it, e.failed(t.it, err))
		}
		return
	}
	pos := 0
	for _, t := range part {
		primary := results[pos]
		pos += len(t.entries)
		it := t.it
		it.id, it.ver = primary.ID, primary.Version
		it.derivedDone = make([]bool, len(it.mapped)-1)
		for i := range it.derivedDone {
			it.derivedDone[i] = true
		}
		if it.rec.Kind == mapping.KindPatient && primary.ID != "" {
			e.patientIDs.Store(it.rec.Patient.MRN, primary.ID)
		}
		// Stale derived resources, if any, go out on their own; the rest
		// is done, so deliverItem only retires them. A primary resource
		// whose id the answer did not give (no location, no resource) is
		// written again on its own, by its identifier, which returns it.
		p.settle(it, e.deliverItem(ctx, p, it))
	}
}
