package mapping

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
)

// BundleEntry is one entry of a transaction Bundle: a resource and the
// conditional request that writes it.
type BundleEntry struct {
	// FullURL is the entry's fullUrl, "urn:uuid:…" (see URNFor); resources
	// in the same Bundle refer to each other by it.
	FullURL  string
	Resource Resource
	// Method is "PUT" (conditional update, URL "Type?identifier=…") or
	// "POST" (conditional create, URL "Type", with IfNoneExist).
	Method string
	URL    string
	// IfNoneExist is the query of a conditional create, "identifier=…".
	IfNoneExist string
	// IfMatch is the ETag a versioned update expects, e.g. `W/"3"`.
	IfMatch string
}

// ConditionalUpdate returns the entry that creates or updates r by its
// business identifier: PUT Type?identifier=…
func ConditionalUpdate(r Resource) BundleEntry {
	return BundleEntry{
		FullURL:  URNFor(r.Identifier),
		Resource: r,
		Method:   "PUT",
		URL:      r.Type + "?" + r.Identifier.Query(),
	}
}

// ConditionalCreate returns the entry that creates r unless a resource with
// its business identifier exists: POST Type with If-None-Exist.
func ConditionalCreate(r Resource) BundleEntry {
	return BundleEntry{
		FullURL:     URNFor(r.Identifier),
		Resource:    r,
		Method:      "POST",
		URL:         r.Type,
		IfNoneExist: r.Identifier.Query(),
	}
}

// EntryFor returns the entry DESIGN.md section 4 prescribes for r: a
// conditional create for a Patient (the EHR owns Patient: never overwrite
// it), a conditional update for every other resource.
func EntryFor(r Resource) BundleEntry {
	if r.Type == "Patient" {
		return ConditionalCreate(r)
	}
	return ConditionalUpdate(r)
}

// URNFor returns the deterministic "urn:uuid:…" of a business identifier:
// the RFC 4122 version 5 (SHA-1) UUID of id.Token() in the URL name space.
// The same identifier always gives the same URN, so a retried Bundle is
// identical to the first.
func URNFor(id Identifier) string {
	return "urn:uuid:" + uuidV5(urlNamespace, id.Token())
}

// TransactionBundle returns a FHIR transaction Bundle (compact JSON) of the
// entries, in the given order. Every entry needs a resource, a method (PUT
// or POST) and a URL; fullUrls must be unique. Errors name the entry index,
// never identifier values.
//
// The Bundle is written out by hand rather than by encoding a struct. A
// resource whose JSON is as Map wrote it is copied as it is; any other is
// checked and compacted in one pass (json.Compact), where json.Valid and
// then the encoder of a json.RawMessage scanned it twice and copied it
// once more (BENCHMARKS.md section 5.2).
func TransactionBundle(entries []BundleEntry) ([]byte, error) {
	size := 64
	for _, e := range entries {
		size += len(e.Resource.JSON) + len(e.FullURL) + len(e.URL) + len(e.IfMatch) + len(e.IfNoneExist) + 80
	}
	var buf bytes.Buffer
	buf.Grow(size)
	str := stringWriter(&buf)
	buf.WriteString(`{"resourceType":"Bundle","type":"transaction"`)
	if len(entries) > 0 {
		buf.WriteString(`,"entry":[`)
	}
	seen := make(map[string]int, len(entries))
	var errs []error
	for i, e := range entries {
		switch {
		case e.Method != "PUT" && e.Method != "POST":
			errs = append(errs, fmt.Errorf("mapping: bundle entry %d: method must be PUT or POST", i))
		case e.URL == "":
			errs = append(errs, fmt.Errorf("mapping: bundle entry %d: no request URL", i))
		}
		if e.FullURL != "" {
			if j, dup := seen[e.FullURL]; dup {
				errs = append(errs, fmt.Errorf("mapping: bundle entries %d and %d have the same fullUrl", j, i))
			}
			seen[e.FullURL] = i
		}
		if i > 0 {
			buf.WriteByte(',')
		}
		buf.WriteByte('{')
		if e.FullURL != "" {
			buf.WriteString(`"fullUrl":`)
			str(e.FullURL)
			buf.WriteByte(',')
		}
		buf.WriteString(`"resource":`)
		if e.Resource.jsonByMap() {
			// Written by Map: valid and compact already.
			buf.Write(e.Resource.JSON)
		} else {
			at := buf.Len()
			if err := json.Compact(&buf, e.Resource.JSON); err != nil || buf.Len() == at || buf.Bytes()[at] != '{' {
				errs = append(errs, fmt.Errorf("mapping: bundle entry %d: resource is not a JSON object", i))
			}
		}
		buf.WriteString(`,"request":{"method":`)
		str(e.Method)
		buf.WriteString(`,"url":`)
		str(e.URL)
		if e.IfMatch != "" {
			buf.WriteString(`,"ifMatch":`)
			str(e.IfMatch)
		}
		if e.IfNoneExist != "" {
			buf.WriteString(`,"ifNoneExist":`)
			str(e.IfNoneExist)
		}
		buf.WriteString(`}}`)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if len(entries) > 0 {
		buf.WriteByte(']')
	}
	buf.WriteByte('}')
	return buf.Bytes(), nil
}

// stringWriter returns a function that writes a string to buf as a JSON
// string, without HTML escaping (as an encoder with SetEscapeHTML(false)
// does).
func stringWriter(buf *bytes.Buffer) func(string) {
	enc := json.NewEncoder(buf)
	enc.SetEscapeHTML(false)
	return func(s string) {
		_ = enc.Encode(s)           // a string always encodes
		buf.Truncate(buf.Len() - 1) // Encode ends with a newline
	}
}

// BundleLookup is the Lookup for records written together in one
// transaction Bundle: a record present in the Bundle is referred to by the
// urn:uuid fullUrl of its resource (URNFor of its business identifier),
// any other by a logical reference; orders are those of the Bundle. It is
// read-only after NewBundleLookup, so safe for concurrent use.
//
// Build it from the records that go into the Bundle: a record given to
// NewBundleLookup but left out of the Bundle (because Map rejected it)
// leaves the references to it dangling, and the EHR rejects the whole
// transaction. When a record fails to map, build the lookup again without
// it and map the others again.
type BundleLookup struct {
	m       *Mapper
	present map[Dependency]bool
	orders  map[string]*Order
}

// NewBundleLookup returns the Lookup for a Bundle of recs, built with m.
func NewBundleLookup(m *Mapper, recs []*Record) *BundleLookup {
	b := &BundleLookup{m: m, present: make(map[Dependency]bool, len(recs)), orders: make(map[string]*Order)}
	for _, r := range recs {
		if r == nil {
			continue
		}
		b.present[Dependency{Kind: r.Kind, ID: r.ID()}] = true
		if r.Order != nil {
			b.orders[r.Order.OrderID] = r.Order
		}
	}
	return b
}

// Reference implements Lookup.
func (b *BundleLookup) Reference(kind Kind, id string) string {
	if !b.present[Dependency{Kind: kind, ID: id}] {
		return ""
	}
	return URNFor(b.m.Identifier(kind, id))
}

// Order implements Lookup.
func (b *BundleLookup) Order(id string) *Order { return b.orders[id] }
