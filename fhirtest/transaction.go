package fhirtest

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// bundleIn is the part of a POSTed Bundle the server reads. Entry
// resources are validated one by one with google/fhir/go.
type bundleIn struct {
	ResourceType string          `json:"resourceType"`
	Type         string          `json:"type"`
	Entry        []bundleEntryIn `json:"entry"`
}

type bundleEntryIn struct {
	FullURL  string          `json:"fullUrl"`
	Resource json.RawMessage `json:"resource"`
	Request  *struct {
		Method      string `json:"method"`
		URL         string `json:"url"`
		IfMatch     string `json:"ifMatch"`
		IfNoneExist string `json:"ifNoneExist"`
		IfNoneMatch string `json:"ifNoneMatch"`
	} `json:"request"`
}

// entryOp is one parsed Bundle entry.
type entryOp struct {
	index       int
	method      string // GET, POST, PUT, DELETE
	typ, id     string
	history     bool // GET Type/id/_history
	vid         int  // GET Type/id/_history/vid
	query       string
	fullURL     string
	ifMatch     string
	ifNoneExist string
	ifNoneMatch string
	p           *parsedResource

	// transaction state
	targetID string
	existing *resource // POST whose ifNoneExist matched
	out      entryResult
}

// entryResult is Bundle.entry.response (and resource) of one entry.
type entryResult struct {
	status       int
	location     string // relative: Type/id/_history/vid
	etag         string
	lastModified string
	fullURL      string
	resource     []byte
	outcome      []byte
}

func (op *entryOp) expr() string { return "Bundle.entry[" + strconv.Itoa(op.index) + "]" }

// serveBundle processes a Bundle POSTed to the base: transaction or batch.
func (s *Server) serveBundle(ctx *reqCtx, body []byte) *response {
	var b bundleIn
	if len(strings.TrimSpace(string(body))) == 0 {
		return errResponse(errorf(400, "required", "POST to the base needs a transaction or batch Bundle"))
	}
	if err := json.Unmarshal(body, &b); err != nil {
		return errResponse(errorf(400, "structure", "the body is not a Bundle: %s", jsonSyntaxReason(err)))
	}
	if b.ResourceType != "Bundle" {
		return errResponse(errorf(400, "invalid", "POST to the base takes a Bundle, not %q", truncate(b.ResourceType, 64)))
	}
	switch b.Type {
	case "transaction":
		return s.transaction(ctx, b.Entry)
	case "batch":
		return s.batch(ctx, b.Entry)
	}
	return errResponse(errorf(400, "value", "Bundle.type must be transaction or batch").at("Bundle.type"))
}

// parseEntry reads one entry's request and resource.
func (s *Server) parseEntry(ctx *reqCtx, i int, e bundleEntryIn) (*entryOp, *fhirError) {
	op := &entryOp{index: i, fullURL: e.FullURL}
	if e.Request == nil {
		return op, errorf(400, "required", "the entry has no request").at(op.expr() + ".request")
	}
	op.method = strings.ToUpper(e.Request.Method)
	op.ifMatch, op.ifNoneExist, op.ifNoneMatch = e.Request.IfMatch, e.Request.IfNoneExist, e.Request.IfNoneMatch
	switch op.method {
	case http.MethodGet, http.MethodHead:
		op.method = http.MethodGet
	case http.MethodPost, http.MethodPut, http.MethodDelete:
	case http.MethodPatch:
		return op, errorf(http.StatusMethodNotAllowed, "not-supported", "PATCH is not supported").at(op.expr() + ".request.method")
	default:
		return op, errorf(400, "value", "request.method must be GET, HEAD, POST, PUT or DELETE").at(op.expr() + ".request.method")
	}
	raw := e.Request.URL
	for _, b := range append([]string{ctx.base}, ctx.bases...) {
		if strings.HasPrefix(raw, b+"/") {
			raw = raw[len(b)+1:]
			break
		}
	}
	if strings.Contains(raw, "://") {
		return op, errorf(400, "value", "request.url points to another server").at(op.expr() + ".request.url")
	}
	path, query, _ := strings.Cut(strings.TrimPrefix(raw, "/"), "?")
	op.query = query
	segs := strings.Split(path, "/")
	bad := func() *fhirError {
		return errorf(400, "value", "request.url does not fit the %s interaction", op.method).at(op.expr() + ".request.url")
	}
	if path == "" || !isResourceType(segs[0]) {
		return op, errorf(404, "not-supported", "request.url does not start with a supported resource type").at(op.expr() + ".request.url")
	}
	op.typ = segs[0]
	if len(segs) > 1 {
		op.id = segs[1]
		if op.id != "_search" && !validID(op.id) {
			return op, bad()
		}
	}
	switch op.method {
	case http.MethodGet:
		switch {
		case len(segs) == 1:
		case len(segs) == 2 && op.id == "_search":
			op.id = ""
		case len(segs) == 2:
		case len(segs) == 3 && segs[2] == "_history":
			op.history = true
		case len(segs) == 4 && segs[2] == "_history":
			v, err := strconv.Atoi(segs[3])
			if err != nil || v < 1 {
				return op, bad()
			}
			op.vid = v
		default:
			return op, bad()
		}
	case http.MethodPost:
		if len(segs) != 1 {
			return op, bad()
		}
	case http.MethodPut, http.MethodDelete:
		if !(len(segs) == 2 && op.id != "_search" && query == "" || len(segs) == 1 && query != "") {
			return op, bad()
		}
	}
	if op.method == http.MethodPost || op.method == http.MethodPut {
		if len(e.Resource) == 0 || string(e.Resource) == "null" {
			return op, errorf(400, "required", "a %s entry needs a resource", op.method).at(op.expr() + ".resource")
		}
		p, ferr := s.parseResource(e.Resource, op.typ)
		if ferr != nil {
			return op, ferr.inEntry(op.expr())
		}
		if op.method == http.MethodPut {
			if ferr := checkUpdateID(p, op.id); ferr != nil {
				return op, ferr.inEntry(op.expr())
			}
		}
		if ferr := s.rejected(p.typ, e.Resource); ferr != nil {
			return op, ferr.inEntry(op.expr())
		}
		p.prepare(ctx.bases)
		op.p = p
	}
	return op, nil
}

// transaction processes a transaction Bundle all or nothing, in the order
// FHIR R4 prescribes: DELETE, then POST, then PUT, then GET. Entries get
// their identities first (conditional criteria are evaluated after the
// deletes), references to entries' fullUrls (urn:uuid and others) and
// conditional references (Type?criteria, evaluated before the creates and
// updates) are rewritten, and then the writes happen. Any failure rolls
// everything back and answers with the failing entry's status and an
// OperationOutcome naming it.
func (s *Server) transaction(ctx *reqCtx, entries []bundleEntryIn) *response {
	ops := make([]*entryOp, len(entries))
	fullURLs := map[string]int{}
	for i, e := range entries {
		op, ferr := s.parseEntry(ctx, i, e)
		if ferr != nil {
			return errResponse(ferr)
		}
		if op.fullURL != "" {
			if j, dup := fullURLs[op.fullURL]; dup {
				return errResponse(errorf(400, "duplicate", "entries %d and %d have the same fullUrl", j, i).at(op.expr() + ".fullUrl"))
			}
			fullURLs[op.fullURL] = i
		}
		ops[i] = op
	}

	s.store.mu.Lock()
	defer s.store.mu.Unlock()
	t := s.store.begin(s.now())
	ferr := s.runTransaction(ctx, t, ops)
	if ferr != nil {
		t.rollback()
		return errResponse(ferr)
	}

	results := make([]entryResult, len(ops))
	for i, op := range ops {
		results[i] = op.out
	}
	return newResponse(http.StatusOK, responseBundle("transaction-response", ctx.base, results))
}

func (s *Server) runTransaction(ctx *reqCtx, t *tx, ops []*entryOp) *fhirError {
	claimed := map[string]int{}
	claim := func(op *entryOp, typ, id string) *fhirError {
		k := typ + "/" + id
		if j, dup := claimed[k]; dup {
			return errorf(400, "duplicate", "entries %d and %d both change the same resource", j, op.index).at(op.expr())
		}
		claimed[k] = op.index
		return nil
	}
	idMap := map[string]string{}
	mapFullURL := func(op *entryOp, typ, id string) {
		if op.fullURL != "" && op.fullURL != ctx.base+"/"+typ+"/"+id {
			idMap[op.fullURL] = typ + "/" + id
		}
	}

	// 1. DELETE.
	for _, op := range ops {
		if op.method != http.MethodDelete {
			continue
		}
		r, ferr := s.resolveDelete(op.typ, op.id, op.query, ctx.bases)
		if ferr != nil {
			return ferr.inEntry(op.expr())
		}
		if r == nil {
			op.out = entryResult{status: http.StatusNoContent}
			continue
		}
		if ferr := claim(op, r.typ, r.id); ferr != nil {
			return ferr
		}
		op.out = s.writeEntryResult(ctx, s.delete(t, r, op.index))
	}
	// 2. Identities of POST entries, then 3. of PUT entries.
	for _, op := range ops {
		if op.method != http.MethodPost {
			continue
		}
		existing, ferr := s.matchIfNoneExist(op.typ, op.ifNoneExist, ctx.bases)
		if ferr != nil {
			return ferr.at(op.expr() + ".request.ifNoneExist").inEntry(op.expr())
		}
		if existing != nil {
			op.existing = existing
			mapFullURL(op, existing.typ, existing.id)
			continue
		}
		op.targetID = s.store.newID(s.store.typeStore(op.typ, true))
		if ferr := claim(op, op.typ, op.targetID); ferr != nil {
			return ferr
		}
		mapFullURL(op, op.typ, op.targetID)
	}
	for _, op := range ops {
		if op.method != http.MethodPut {
			continue
		}
		tid, ferr := s.resolveUpdate(op.p, op.id, op.query, ctx.bases)
		if ferr != nil {
			return ferr.inEntry(op.expr())
		}
		op.targetID = tid
		if ferr := claim(op, op.typ, tid); ferr != nil {
			return ferr
		}
		mapFullURL(op, op.typ, tid)
	}
	// 4. Rewrite references to entries and conditional references.
	for _, op := range ops {
		if op.p == nil || op.existing != nil {
			continue
		}
		rw := &refRewriter{s: s, ctx: ctx, idMap: idMap}
		rw.walk(op.p.tree, op.p.typ)
		if rw.err != nil {
			return rw.err.inEntry(op.expr())
		}
		if rw.changed {
			op.p.prepare(ctx.bases)
		}
	}
	// 5. Writes: POST, then PUT.
	for _, op := range ops {
		if op.method != http.MethodPost {
			continue
		}
		if op.existing != nil {
			op.out = s.writeEntryResult(ctx, resultOf(op.existing, http.StatusOK, "a matching resource exists; nothing was created"))
			continue
		}
		r := t.put(s.store.typeStore(op.typ, true), op.targetID, op.p, methodPOST, op.index)
		op.out = s.writeEntryResult(ctx, resultOf(r, http.StatusCreated, "created"))
	}
	for _, op := range ops {
		if op.method != http.MethodPut {
			continue
		}
		res, ferr := s.update(t, op.p, op.targetID, op.ifMatch, op.index)
		if ferr != nil {
			return ferr.inEntry(op.expr())
		}
		op.out = s.writeEntryResult(ctx, res)
	}
	if ferr := s.checkIntegrity(t); ferr != nil {
		return ferr
	}
	// 6. Reads, seeing the transaction's writes.
	for _, op := range ops {
		if op.method != http.MethodGet {
			continue
		}
		out, ferr := s.readEntry(ctx, op)
		if ferr != nil {
			return ferr.inEntry(op.expr())
		}
		op.out = out
	}
	return nil
}

// refRewriter rewrites, in a resource tree, every reference to a fullUrl of
// the transaction (to Type/id; other elements such as uri get the absolute
// URL; narrative href and src attributes too) and resolves conditional
// references (Type?criteria, exactly one match, else 412).
type refRewriter struct {
	s       *Server
	ctx     *reqCtx
	idMap   map[string]string
	changed bool
	err     *fhirError
}

func (rw *refRewriter) walk(n any, path string) {
	switch v := n.(type) {
	case []any:
		for i, e := range v {
			if str, ok := e.(string); ok {
				if to, ok := rw.idMap[str]; ok {
					v[i] = rw.ctx.base + "/" + to
					rw.changed = true
				}
				continue
			}
			rw.walk(e, path+"["+strconv.Itoa(i)+"]")
		}
	case map[string]any:
		for k, e := range v {
			str, ok := e.(string)
			if !ok {
				rw.walk(e, path+"."+k)
				continue
			}
			switch {
			case k == "reference":
				if to, ok := rw.idMap[str]; ok {
					v[k] = to
					rw.changed = true
				} else if typ, query, ok := conditionalRef(str); ok {
					to, ferr := rw.resolve(typ, query)
					if ferr != nil {
						if rw.err == nil {
							rw.err = ferr.at(path)
						}
						continue
					}
					v[k] = to
					rw.changed = true
				}
			case k == "div":
				for from, to := range rw.idMap {
					if strings.Contains(str, `"`+from+`"`) {
						str = strings.ReplaceAll(str, `"`+from+`"`, `"`+rw.ctx.base+"/"+to+`"`)
						rw.changed = true
					}
				}
				v[k] = str
			default:
				if to, ok := rw.idMap[str]; ok {
					v[k] = rw.ctx.base + "/" + to
					rw.changed = true
				}
			}
		}
	}
}

// conditionalRef splits a conditional reference "Type?criteria".
func conditionalRef(ref string) (typ, query string, ok bool) {
	typ, query, ok = strings.Cut(ref, "?")
	if !ok || !isResourceType(typ) || query == "" {
		return "", "", false
	}
	return typ, query, true
}

func (rw *refRewriter) resolve(typ, query string) (string, *fhirError) {
	matches, ferr := rw.s.conditionalMatches(typ, query, rw.ctx.bases)
	if ferr != nil {
		return "", ferr
	}
	if len(matches) != 1 {
		return "", errorf(http.StatusPreconditionFailed, "multiple-matches", "a conditional reference to %s matches %d resources; it must match exactly one", typ, len(matches))
	}
	return matches[0].typ + "/" + matches[0].id, nil
}

// writeEntryResult renders the result of a write entry, following Prefer:
// return.
func (s *Server) writeEntryResult(ctx *reqCtx, res *result) entryResult {
	out := entryResult{status: res.status}
	if res.vid > 0 {
		out.etag = etag(res.vid)
		out.lastModified = instant(res.updated)
	}
	if res.deleted {
		if ctx.ret == returnOutcome {
			out.status = http.StatusOK
			out.outcome = infoOutcome("%s", res.message)
		} else {
			out.status = http.StatusNoContent
		}
		return out
	}
	out.location = res.typ + "/" + res.id + "/_history/" + strconv.Itoa(res.vid)
	out.fullURL = ctx.base + "/" + res.typ + "/" + res.id
	switch ctx.ret {
	case returnMinimal:
	case returnOutcome:
		out.outcome = infoOutcome("%s", res.message)
	default:
		out.resource = res.body
	}
	return out
}

// readEntry runs a GET entry: read, vread, history or search. The caller
// holds the lock.
func (s *Server) readEntry(ctx *reqCtx, op *entryOp) (entryResult, *fhirError) {
	switch {
	case op.id == "":
		params, err := url.ParseQuery(op.query)
		if err != nil {
			return entryResult{}, errorf(400, "invalid", "request.url has an invalid query string")
		}
		q, ferr := s.parseSearch(op.typ, params, ctx.strict, false, ctx.bases)
		if ferr != nil {
			return entryResult{}, ferr
		}
		total, page := s.searchPageLocked(q)
		return entryResult{status: http.StatusOK, resource: s.searchBundle(ctx.base, q, total, page)}, nil
	case op.history:
		body, ferr := s.historyLocked(ctx, op.typ, op.id)
		if ferr != nil {
			return entryResult{}, ferr
		}
		return entryResult{status: http.StatusOK, resource: body}, nil
	}
	res, ferr := s.readLocked(op.typ, op.id, op.vid)
	if ferr != nil {
		return entryResult{}, ferr
	}
	if op.ifNoneMatch != "" && op.ifNoneMatch == etag(res.vid) {
		return entryResult{status: http.StatusNotModified, etag: etag(res.vid)}, nil
	}
	return entryResult{
		status:       http.StatusOK,
		etag:         etag(res.vid),
		lastModified: instant(res.updated),
		fullURL:      ctx.base + "/" + res.typ + "/" + res.id,
		resource:     res.body,
	}, nil
}

// batch processes a batch Bundle: every entry on its own, in order, as if
// it were a separate request; one entry's failure does not affect the
// others. References between entries are not resolved.
func (s *Server) batch(ctx *reqCtx, entries []bundleEntryIn) *response {
	results := make([]entryResult, len(entries))
	for i, e := range entries {
		results[i] = s.batchEntry(ctx, i, e)
	}
	return newResponse(http.StatusOK, responseBundle("batch-response", ctx.base, results))
}

// responseBundle renders a transaction-response or batch-response Bundle
// (FHIR JSON has no empty arrays: no entries, no entry member).
func responseBundle(typ, base string, results []entryResult) []byte {
	b := []byte(`{"resourceType":"Bundle","type":"`)
	b = append(b, typ...)
	b = append(b, `","link":[{"relation":"self","url":`...)
	b = appendJSONString(b, base)
	b = append(b, `}]`...)
	if len(results) > 0 {
		b = append(b, `,"entry":[`...)
		for i, r := range results {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendEntryResult(b, r)
		}
		b = append(b, ']')
	}
	return append(b, '}')
}

func (s *Server) batchEntry(ctx *reqCtx, i int, e bundleEntryIn) entryResult {
	fail := func(ferr *fhirError) entryResult {
		return entryResult{status: ferr.status, outcome: outcomeJSON(ferr.issues)}
	}
	op, ferr := s.parseEntry(ctx, i, e)
	if ferr != nil {
		return fail(ferr)
	}
	var res *result
	switch op.method {
	case http.MethodGet:
		s.store.mu.RLock()
		out, ferr := s.readEntry(ctx, op)
		s.store.mu.RUnlock()
		if ferr != nil {
			return fail(ferr.inEntry(op.expr()))
		}
		return out
	case http.MethodPost:
		res, ferr = s.createParsed(ctx.bases, op.p, op.ifNoneExist)
	case http.MethodPut:
		res, ferr = s.updateParsed(ctx.bases, op.p, op.id, op.query, op.ifMatch)
	case http.MethodDelete:
		res, ferr = s.deleteRequest(ctx, op.typ, op.id, op.query)
	}
	if ferr != nil {
		return fail(ferr.inEntry(op.expr()))
	}
	return s.writeEntryResult(ctx, res)
}

func appendEntryResult(b []byte, out entryResult) []byte {
	b = append(b, '{')
	if out.fullURL != "" && out.resource != nil {
		b = append(b, `"fullUrl":`...)
		b = appendJSONString(b, out.fullURL)
		b = append(b, ',')
	}
	if out.resource != nil {
		b = append(b, `"resource":`...)
		b = append(b, out.resource...)
		b = append(b, ',')
	}
	b = append(b, `"response":{"status":`...)
	b = appendJSONString(b, statusLine(out.status))
	if out.location != "" {
		b = append(b, `,"location":`...)
		b = appendJSONString(b, out.location)
	}
	if out.etag != "" {
		b = append(b, `,"etag":`...)
		b = appendJSONString(b, out.etag)
	}
	if out.lastModified != "" {
		b = append(b, `,"lastModified":`...)
		b = appendJSONString(b, out.lastModified)
	}
	if out.outcome != nil {
		b = append(b, `,"outcome":`...)
		b = append(b, out.outcome...)
	}
	return append(b, `}}`...)
}
