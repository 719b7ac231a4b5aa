package fhirtest

import (
	"net/http"
	"strconv"
	"strings"
)

// result is the outcome of a successful interaction.
type result struct {
	status  int
	typ, id string
	vid     int
	updated int64  // Unix microseconds
	body    []byte // the resource version, nil for deletes
	deleted bool   // a delete (the answer is 204 or an OperationOutcome)
	message string // for Prefer: return=OperationOutcome
}

func resultOf(r *resource, status int, msg string) *result {
	v := r.current()
	return &result{status: status, typ: r.typ, id: r.id, vid: r.vid(), updated: v.updated, body: v.body, message: msg}
}

// inTx runs fn under the write lock as one change set, checks referential
// integrity, and rolls everything back when either fails.
func (s *Server) inTx(fn func(t *tx) (*result, *fhirError)) (*result, *fhirError) {
	s.store.mu.Lock()
	defer s.store.mu.Unlock()
	t := s.store.begin(s.now())
	res, ferr := fn(t)
	if ferr == nil {
		ferr = s.checkIntegrity(t)
	}
	if ferr != nil {
		t.rollback()
		return nil, ferr
	}
	return res, nil
}

// createRequest is POST [base]/Type, with If-None-Exist when not empty.
func (s *Server) createRequest(ctx *reqCtx, typ string, body []byte, ifNoneExist string) (*result, *fhirError) {
	p, ferr := s.parseResource(body, typ)
	if ferr != nil {
		return nil, ferr
	}
	if ferr := s.rejected(p.typ, body); ferr != nil {
		return nil, ferr
	}
	p.prepare(ctx.bases)
	return s.createParsed(ctx.bases, p, ifNoneExist)
}

// createParsed is create (conditional when ifNoneExist is set) of a parsed
// and prepared resource.
func (s *Server) createParsed(bases []string, p *parsedResource, ifNoneExist string) (*result, *fhirError) {
	return s.inTx(func(t *tx) (*result, *fhirError) {
		existing, ferr := s.matchIfNoneExist(p.typ, ifNoneExist, bases)
		if ferr != nil {
			return nil, ferr
		}
		if existing != nil {
			return resultOf(existing, http.StatusOK, "a matching resource exists; nothing was created"), nil
		}
		ts := s.store.typeStore(p.typ, true)
		r := t.put(ts, s.store.newID(ts), p, methodPOST, -1)
		return resultOf(r, http.StatusCreated, "created"), nil
	})
}

// criteriaQuery returns the query part of conditional criteria given as
// "identifier=..." or "Type?identifier=...".
func criteriaQuery(criteria string) string {
	if i := strings.IndexByte(criteria, '?'); i >= 0 {
		return criteria[i+1:]
	}
	return criteria
}

// matchIfNoneExist resolves conditional create criteria: nil when nothing
// matches, the match when one does, 412 when several do. The caller holds
// the lock.
func (s *Server) matchIfNoneExist(typ, criteria string, bases []string) (*resource, *fhirError) {
	if criteria == "" {
		return nil, nil
	}
	matches, ferr := s.conditionalMatches(typ, criteriaQuery(criteria), bases)
	if ferr != nil {
		return nil, ferr
	}
	switch len(matches) {
	case 0:
		return nil, nil
	case 1:
		return matches[0], nil
	}
	return nil, errorf(http.StatusPreconditionFailed, "multiple-matches", "If-None-Exist criteria match %d resources", len(matches))
}

// updateRequest is PUT [base]/Type/id (id set) or PUT [base]/Type?criteria.
func (s *Server) updateRequest(ctx *reqCtx, typ, id, criteria string, body []byte, ifMatch string) (*result, *fhirError) {
	p, ferr := s.parseResource(body, typ)
	if ferr != nil {
		return nil, ferr
	}
	if ferr := checkUpdateID(p, id); ferr != nil {
		return nil, ferr
	}
	if ferr := s.rejected(p.typ, body); ferr != nil {
		return nil, ferr
	}
	p.prepare(ctx.bases)
	return s.updateParsed(ctx.bases, p, id, criteria, ifMatch)
}

// checkUpdateID checks that an update by id carries that id.
func checkUpdateID(p *parsedResource, id string) *fhirError {
	if id != "" {
		if p.id == "" {
			return errorf(400, "required", "the resource has no id; an update needs the id of the URL").at(p.typ + ".id")
		}
		if p.id != id {
			return errorf(400, "invalid", "the resource id %s does not match the URL id %s", truncate(p.id, 64), id).at(p.typ + ".id")
		}
	}
	return nil
}

// updateParsed is update (by id, or conditional on criteria) of a parsed
// and prepared resource.
func (s *Server) updateParsed(bases []string, p *parsedResource, id, criteria, ifMatch string) (*result, *fhirError) {
	return s.inTx(func(t *tx) (*result, *fhirError) {
		tid, ferr := s.resolveUpdate(p, id, criteria, bases)
		if ferr != nil {
			return nil, ferr
		}
		return s.update(t, p, tid, ifMatch, -1)
	})
}

// resolveUpdate decides which id an update writes: id itself, or for
// conditional criteria the single match, the body's id, or a new id. The
// caller holds the lock.
func (s *Server) resolveUpdate(p *parsedResource, id, criteria string, bases []string) (string, *fhirError) {
	ts := s.store.typeStore(p.typ, true)
	if criteria == "" {
		if r := ts.byID[id]; r == nil && !s.cfg.updateCreate {
			return "", errorf(http.StatusMethodNotAllowed, "not-supported", "%s/%s does not exist and this server does not allow client-defined ids (update as create)", p.typ, id)
		}
		return id, nil
	}
	matches, ferr := s.conditionalMatches(p.typ, criteriaQuery(criteria), bases)
	if ferr != nil {
		return "", ferr
	}
	switch len(matches) {
	case 0:
		if p.id == "" {
			return s.store.newID(ts), nil
		}
		if r := ts.byID[p.id]; r != nil && r.live() {
			return "", errorf(http.StatusConflict, "conflict", "the criteria match nothing but %s/%s exists", p.typ, p.id)
		}
		if !s.cfg.updateCreate && ts.byID[p.id] == nil {
			return "", errorf(http.StatusMethodNotAllowed, "not-supported", "the criteria match nothing and this server does not allow client-defined ids (update as create)")
		}
		return p.id, nil
	case 1:
		if p.id != "" && p.id != matches[0].id {
			return "", errorf(400, "invalid", "the resource id %s is not the id %s of the resource the criteria match", truncate(p.id, 64), matches[0].id).at(p.typ + ".id")
		}
		return matches[0].id, nil
	}
	return "", errorf(http.StatusPreconditionFailed, "multiple-matches", "the criteria match %d resources", len(matches))
}

// update writes p as the next version of Type/id, checking If-Match.
func (s *Server) update(t *tx, p *parsedResource, id, ifMatch string, entry int) (*result, *fhirError) {
	ts := s.store.typeStore(p.typ, true)
	r := ts.byID[id]
	exists := r != nil && r.live()
	if ifMatch != "" {
		m, ok := parseIfMatch(ifMatch)
		if !ok {
			return nil, errorf(400, "invalid", `If-Match must be an ETag such as W/"3"`)
		}
		if !exists {
			return nil, errorf(http.StatusPreconditionFailed, "not-found", "If-Match: %s/%s does not exist", p.typ, id)
		}
		if !m.matches(r.vid()) {
			return nil, errorf(http.StatusPreconditionFailed, "conflict", "If-Match: the current version is %s", etag(r.vid()))
		}
	}
	r = t.put(ts, id, p, methodPUT, entry)
	if exists {
		return resultOf(r, http.StatusOK, "updated"), nil
	}
	return resultOf(r, http.StatusCreated, "created"), nil
}

// deleteRequest is DELETE [base]/Type/id or DELETE [base]/Type?criteria.
func (s *Server) deleteRequest(ctx *reqCtx, typ, id, criteria string) (*result, *fhirError) {
	return s.inTx(func(t *tx) (*result, *fhirError) {
		r, ferr := s.resolveDelete(typ, id, criteria, ctx.bases)
		if ferr != nil {
			return nil, ferr
		}
		if r == nil {
			return &result{status: http.StatusNoContent, typ: typ, id: id, deleted: true, message: "nothing to delete"}, nil
		}
		return s.delete(t, r, -1), nil
	})
}

// resolveDelete finds the live resource a delete removes, or nil when there
// is none (deleting nothing succeeds). The caller holds the lock.
func (s *Server) resolveDelete(typ, id, criteria string, bases []string) (*resource, *fhirError) {
	if criteria != "" {
		matches, ferr := s.conditionalMatches(typ, criteriaQuery(criteria), bases)
		if ferr != nil {
			return nil, ferr
		}
		switch len(matches) {
		case 0:
			return nil, nil
		case 1:
			return matches[0], nil
		}
		return nil, errorf(http.StatusPreconditionFailed, "multiple-matches", "the criteria match %d resources; conditional delete removes one", len(matches))
	}
	r := s.store.lookup(typ, id)
	if r == nil || !r.live() {
		return nil, nil
	}
	return r, nil
}

func (s *Server) delete(t *tx, r *resource, entry int) *result {
	ts := s.store.typeStore(r.typ, true)
	t.del(ts, r, entry)
	return &result{status: http.StatusNoContent, typ: r.typ, id: r.id, vid: r.vid(), updated: t.now, deleted: true, message: "deleted"}
}

// read is read (vid 0) and vread.
func (s *Server) read(typ, id string, vid int) (*result, *fhirError) {
	s.store.mu.RLock()
	defer s.store.mu.RUnlock()
	return s.readLocked(typ, id, vid)
}

func (s *Server) readLocked(typ, id string, vid int) (*result, *fhirError) {
	r := s.store.lookup(typ, id)
	if r == nil {
		return nil, errorf(http.StatusNotFound, "not-found", "%s/%s is not known", typ, id)
	}
	if vid == 0 {
		if !r.live() {
			return nil, errorf(http.StatusGone, "deleted", "%s/%s has been deleted", typ, id)
		}
		return resultOf(r, http.StatusOK, ""), nil
	}
	if vid > len(r.versions) {
		return nil, errorf(http.StatusNotFound, "not-found", "%s/%s has no version %d", typ, id, vid)
	}
	v := r.versions[vid-1]
	if v.body == nil {
		return nil, errorf(http.StatusGone, "deleted", "version %d of %s/%s is a delete", vid, typ, id)
	}
	return &result{status: http.StatusOK, typ: typ, id: id, vid: vid, updated: v.updated, body: v.body}, nil
}

// serveHistory is GET [base]/Type/id/_history: every version, newest
// first.
func (s *Server) serveHistory(ctx *reqCtx, typ, id string) *response {
	s.store.mu.RLock()
	body, ferr := s.historyLocked(ctx, typ, id)
	s.store.mu.RUnlock()
	if ferr != nil {
		return errResponse(ferr)
	}
	return newResponse(http.StatusOK, body)
}

// historyLocked renders the history Bundle of Type/id. The caller holds
// the lock.
func (s *Server) historyLocked(ctx *reqCtx, typ, id string) ([]byte, *fhirError) {
	r := s.store.lookup(typ, id)
	if r == nil {
		return nil, errorf(http.StatusNotFound, "not-found", "%s/%s is not known", typ, id)
	}
	versions := r.versions
	full := ctx.base + "/" + typ + "/" + id
	b := make([]byte, 0, 256)
	b = append(b, `{"resourceType":"Bundle","type":"history","total":`...)
	b = strconv.AppendInt(b, int64(len(versions)), 10)
	b = append(b, `,"link":[{"relation":"self","url":`...)
	b = appendJSONString(b, full+"/_history")
	b = append(b, `}],"entry":[`...)
	for i := len(versions) - 1; i >= 0; i-- {
		v := versions[i]
		if i < len(versions)-1 {
			b = append(b, ',')
		}
		b = append(b, `{"fullUrl":`...)
		b = appendJSONString(b, full)
		if v.body != nil {
			b = append(b, `,"resource":`...)
			b = append(b, v.body...)
		}
		method, url, status := "PUT", typ+"/"+id, http.StatusOK
		switch {
		case v.method == methodDELETE:
			method, status = "DELETE", http.StatusNoContent
		case v.method == methodPOST:
			method, url, status = "POST", typ, http.StatusCreated
		case i == 0 || versions[i-1].body == nil:
			status = http.StatusCreated
		}
		b = append(b, `,"request":{"method":"`...)
		b = append(b, method...)
		b = append(b, `","url":`...)
		b = appendJSONString(b, url)
		b = append(b, `},"response":{"status":"`...)
		b = append(b, statusLine(status)...)
		b = append(b, `","etag":`...)
		b = appendJSONString(b, etag(i+1))
		b = append(b, `,"lastModified":"`...)
		b = append(b, instant(v.updated)...)
		b = append(b, `"}}`...)
	}
	b = append(b, `]}`...)
	return b, nil
}

// checkIntegrity enforces referential integrity on a change set: every
// local reference of a written resource resolves to a live resource, and no
// live resource references a deleted one. Errors name the entry of a
// transaction. The caller holds the lock.
func (s *Server) checkIntegrity(t *tx) *fhirError {
	if !s.cfg.integrity {
		return nil
	}
	for _, w := range t.written {
		r := w.r
		if !r.live() {
			continue
		}
		for _, rv := range r.idx.refs {
			expr := r.typ
			if rv.path != "" {
				expr += "." + rv.path
			}
			var ferr *fhirError
			if typ, id, ok := splitTarget(rv.target); ok {
				if tr := s.store.lookup(typ, id); tr == nil || !tr.live() {
					ferr = errorf(422, "not-found", "reference %s/%s does not resolve to a resource on this server", typ, id)
				}
			} else if strings.HasPrefix(rv.target, "urn:uuid:") || strings.HasPrefix(rv.target, "urn:oid:") {
				ferr = errorf(422, "not-found", "the urn reference does not resolve: urn references are only resolved against fullUrls in a transaction")
			} else if strings.Contains(rv.target, "?") && !strings.Contains(rv.target, "://") {
				ferr = errorf(422, "not-found", "conditional references are only resolved in a transaction")
			} else if !strings.Contains(rv.target, "://") && !strings.HasPrefix(rv.target, "urn:") {
				ferr = errorf(422, "value", "the reference is neither Type/id nor an absolute URL")
			}
			if ferr != nil {
				ferr.at(expr)
				if w.entry >= 0 {
					ferr.inEntry("Bundle.entry[" + strconv.Itoa(w.entry) + "]")
				}
				return ferr
			}
		}
	}
	for _, d := range t.deleted {
		target := d.r.typ + "/" + d.r.id
		if refs := s.store.referrers(target, d.r, 3); len(refs) > 0 {
			ferr := errorf(http.StatusConflict, "conflict", "%s is referenced by %s and cannot be deleted", target, strings.Join(refs, ", "))
			if d.entry >= 0 {
				ferr.inEntry("Bundle.entry[" + strconv.Itoa(d.entry) + "]")
			}
			return ferr
		}
	}
	return nil
}
