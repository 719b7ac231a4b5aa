package adapter

import (
	"context"
	"errors"
	"sync"

	"github.com/ketamine-fhir/ketamine-fhir/adapter/ehr"
	"github.com/ketamine-fhir/ketamine-fhir/adapter/store"
	"github.com/ketamine-fhir/ketamine-fhir/mapping"
)

// maxBundleRecords bounds how many records one transaction carries.
const maxBundleRecords = 20

// txItem is one record prepared for a transaction.
type txItem struct {
	row     store.Record
	entries []mapping.BundleEntry // primary first
}

// deliverTransactions delivers rows of one kind as transaction Bundles,
// one per patient (several records per request). Records that must wait or
// cannot be mapped are finished on their own. When the EHR rejects a
// bundle, each record is sent again on its own (conditional writes) so that
// the poison record alone goes to the dead letters.
func (e *Engine) deliverTransactions(ctx context.Context, kind mapping.Kind, rows []store.Record) []store.State {
	states := make([]store.State, len(rows))
	groups := map[string][]int{} // MRN -> row indexes
	var order []string
	for i, r := range rows {
		rec, err := e.parser.Parse(r.Payload, 0)
		if err != nil {
			states[i] = e.finish(r, store.Outcome{State: store.StateDead, ErrorClass: ClassInvalidRecord, ErrorDetail: err.Error()})
			continue
		}
		mrn := rec.Dependencies()
		key := rec.ID()
		if len(mrn) > 0 {
			key = mrn[0].ID
		}
		if _, ok := groups[key]; !ok {
			order = append(order, key)
		}
		groups[key] = append(groups[key], i)
	}
	var wg sync.WaitGroup
	for _, key := range order {
		idx := groups[key]
		for start := 0; start < len(idx); start += maxBundleRecords {
			chunk := idx[start:min(start+maxBundleRecords, len(idx))]
			if err := e.limit.acquire(ctx); err != nil {
				for _, i := range chunk {
					states[i] = e.finish(rows[i], canceled(rows[i], e.now()))
				}
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer e.limit.release()
				e.deliverBundle(ctx, rows, chunk, states)
			}()
		}
	}
	wg.Wait()
	return states
}

func (e *Engine) deliverBundle(ctx context.Context, rows []store.Record, idx []int, states []store.State) {
	var items []txItem
	var itemIdx []int
	for _, i := range idx {
		r := rows[i]
		item, out, ok := e.prepareTx(ctx, r)
		if !ok {
			states[i] = e.finish(r, out)
			continue
		}
		items = append(items, item)
		itemIdx = append(itemIdx, i)
	}
	if len(items) == 0 {
		return
	}
	var entries []mapping.BundleEntry
	for _, it := range items {
		entries = append(entries, it.entries...)
	}
	bundle, err := mapping.TransactionBundle(entries)
	if err != nil {
		for k, it := range items {
			states[itemIdx[k]] = e.finish(it.row, store.Outcome{State: store.StateDead, ErrorClass: ClassMapping, ErrorDetail: err.Error()})
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
			// Find the poison record, and let a version conflict be
			// resolved by re-reading: deliver each record on its own.
			for k, it := range items {
				states[itemIdx[k]] = e.finish(it.row, e.deliver(ctx, it.row))
			}
			return
		}
		for k, it := range items {
			states[itemIdx[k]] = e.finish(it.row, e.failure(it.row, err))
		}
		return
	}
	pos := 0
	for k, it := range items {
		primary := results[pos]
		pos += len(it.entries)
		states[itemIdx[k]] = e.finish(it.row, store.Outcome{State: store.StateSynced, EHRID: primary.ID, EHRVersion: primary.Version})
	}
}

// prepareTx resolves and maps one row into bundle entries, or returns the
// outcome that ends its delivery now (waiting, dead).
func (e *Engine) prepareTx(ctx context.Context, r store.Record) (txItem, store.Outcome, bool) {
	rec, err := e.parser.Parse(r.Payload, 0)
	if err != nil {
		return txItem{}, store.Outcome{State: store.StateDead, ErrorClass: ClassInvalidRecord, ErrorDetail: err.Error()}, false
	}
	lk := &lookup{refs: map[mapping.Dependency]string{}, orders: map[string]*mapping.Order{}}
	if rec.Kind != mapping.KindPatient {
		if lk, err = e.resolve(ctx, rec); err != nil {
			return txItem{}, e.waitOrFail(r, err), false
		}
	} else if !e.cfg.Patients.Create {
		return txItem{}, e.deliverPatient(ctx, r, rec), false
	}
	self := mapping.Dependency{Kind: rec.Kind, ID: rec.ID()}
	if r.EHRID != "" {
		lk.refs[self] = primaryType(rec.Kind) + "/" + r.EHRID
	} else {
		lk.refs[self] = mapping.URNFor(e.mapper.Identifier(rec.Kind, rec.ID()))
	}
	res, err := e.mapper.Map(rec, lk)
	if err != nil {
		return txItem{}, e.mappingFailure(rec, err), false
	}
	e.metrics.Mapped(r.Kind)
	item := txItem{row: r}
	for i, res := range res {
		var entry mapping.BundleEntry
		if res.Type == "Patient" {
			entry = mapping.ConditionalCreate(res)
		} else {
			entry = mapping.ConditionalUpdate(res)
		}
		if i == 0 && r.EHRID != "" && res.Type != "Patient" {
			body, err := withID(res.JSON, r.EHRID)
			if err != nil {
				return txItem{}, store.Outcome{State: store.StateDead, ErrorClass: ClassMapping, ErrorDetail: err.Error()}, false
			}
			entry.Resource.JSON = body
			entry.URL = res.Type + "/" + r.EHRID
			entry.FullURL = ""
			entry.IfMatch = r.EHRVersion
		}
		item.entries = append(item.entries, entry)
	}
	return item, store.Outcome{}, true
}
