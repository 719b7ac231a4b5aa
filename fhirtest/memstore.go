package fhirtest

import (
	"strconv"
	"sync"
	"time"
)

// Version methods, as recorded in history.
const (
	methodPOST uint8 = iota + 1
	methodPUT
	methodDELETE
)

// version is one version of a resource. body is nil for a delete.
type version struct {
	body    []byte
	updated int64 // Unix microseconds, millisecond precision
	method  uint8
}

// resource is everything the store holds about one Type/id. Its versions
// are append-only (a rolled-back transaction truncates them); bodies are
// never modified once stored, so readers may keep them after unlocking.
type resource struct {
	typ      string
	id       string
	seq      uint64 // creation order within the server
	versions []version
	idx      *indexData // search data of the current version; nil when deleted
}

func (r *resource) live() bool { return r.idx != nil }

// vid returns the current version id.
func (r *resource) vid() int { return len(r.versions) }

func (r *resource) current() version { return r.versions[len(r.versions)-1] }

// postingsSetThreshold is the size above which a posting list becomes a set,
// so removing one entry stays cheap for targets referenced by many
// resources (a practitioner referenced by every administration).
const postingsSetThreshold = 32

// postings is the set of resources holding one index key.
type postings struct {
	list []*resource
	set  map[*resource]struct{}
}

func (p *postings) add(r *resource) {
	if p.set != nil {
		p.set[r] = struct{}{}
		return
	}
	p.list = append(p.list, r)
	if len(p.list) > postingsSetThreshold {
		p.set = make(map[*resource]struct{}, len(p.list)*2)
		for _, x := range p.list {
			p.set[x] = struct{}{}
		}
		p.list = nil
	}
}

func (p *postings) remove(r *resource) {
	if p.set != nil {
		delete(p.set, r)
		return
	}
	for i, x := range p.list {
		if x == r {
			last := len(p.list) - 1
			p.list[i] = p.list[last]
			p.list[last] = nil
			p.list = p.list[:last]
			return
		}
	}
}

func (p *postings) len() int {
	if p.set != nil {
		return len(p.set)
	}
	return len(p.list)
}

func (p *postings) each(fn func(*resource)) {
	if p.set != nil {
		for r := range p.set {
			fn(r)
		}
		return
	}
	for _, r := range p.list {
		fn(r)
	}
}

// typeStore holds the resources of one type and their indexes.
type typeStore struct {
	name   string
	byID   map[string]*resource
	order  []*resource // creation order, deleted ones included
	live   int
	idents map[string]*postings // identifier value -> holders
	refs   map[string]*postings // reference target -> referrers
}

func newTypeStore(name string) *typeStore {
	return &typeStore{
		name:   name,
		byID:   map[string]*resource{},
		idents: map[string]*postings{},
		refs:   map[string]*postings{},
	}
}

func addKey(m map[string]*postings, k string, r *resource) {
	p := m[k]
	if p == nil {
		p = &postings{}
		m[k] = p
	}
	p.add(r)
}

func removeKey(m map[string]*postings, k string, r *resource) {
	if p := m[k]; p != nil {
		p.remove(r)
		if p.len() == 0 {
			delete(m, k)
		}
	}
}

// eachKey calls fn once per distinct key (a resource may hold one value
// twice, for example under two identifier systems).
func eachIdentKey(idx *indexData, fn func(string)) {
	for i, id := range idx.idents {
		dup := false
		for _, prev := range idx.idents[:i] {
			if prev.value == id.value {
				dup = true
				break
			}
		}
		if !dup {
			fn(id.value)
		}
	}
}

func eachRefKey(idx *indexData, fn func(string)) {
	for i, rv := range idx.refs {
		dup := false
		for _, prev := range idx.refs[:i] {
			if prev.target == rv.target {
				dup = true
				break
			}
		}
		if !dup {
			fn(rv.target)
		}
	}
}

// setIdx replaces r's search data, keeping the indexes and the live count
// in step.
func (ts *typeStore) setIdx(r *resource, idx *indexData) {
	if r.idx != nil {
		eachIdentKey(r.idx, func(k string) { removeKey(ts.idents, k, r) })
		eachRefKey(r.idx, func(k string) { removeKey(ts.refs, k, r) })
		ts.live--
	}
	r.idx = idx
	if idx != nil {
		eachIdentKey(idx, func(k string) { addKey(ts.idents, k, r) })
		eachRefKey(idx, func(k string) { addKey(ts.refs, k, r) })
		ts.live++
	}
}

// store is the server's data. mu guards everything in it.
type store struct {
	mu     sync.RWMutex
	types  map[string]*typeStore
	nextID uint64
	seq    uint64
	lastTS int64
}

func newStore() *store {
	return &store{types: map[string]*typeStore{}}
}

// typeStore returns the store of a type, creating it when create is set.
func (st *store) typeStore(name string, create bool) *typeStore {
	ts := st.types[name]
	if ts == nil && create {
		ts = newTypeStore(name)
		st.types[name] = ts
	}
	return ts
}

// lookup returns the resource Type/id, live or deleted, or nil.
func (st *store) lookup(typ, id string) *resource {
	if ts := st.types[typ]; ts != nil {
		return ts.byID[id]
	}
	return nil
}

// newID returns a server-assigned id not used by any resource of the type.
// Ids are decimal numbers counting up from 1 across all types.
func (st *store) newID(ts *typeStore) string {
	for {
		st.nextID++
		id := strconv.FormatUint(st.nextID, 10)
		if _, taken := ts.byID[id]; !taken {
			return id
		}
	}
}

// referrers returns up to limit live resources ("Type/id") whose current
// version references target, leaving out exclude.
func (st *store) referrers(target string, exclude *resource, limit int) []string {
	var out []string
	for _, ts := range st.types {
		p := ts.refs[target]
		if p == nil {
			continue
		}
		p.each(func(r *resource) {
			if r != exclude && len(out) < limit {
				out = append(out, r.typ+"/"+r.id)
			}
		})
	}
	return out
}

// tx is a set of changes made under the store's write lock, which it can
// undo. Every version it writes gets the same lastUpdated.
type tx struct {
	st      *store
	now     int64 // Unix microseconds, millisecond precision
	undo    []undoEntry
	written []txWrite
	deleted []txWrite
}

// txWrite records which Bundle entry (or -1) wrote or deleted a resource.
type txWrite struct {
	r     *resource
	entry int
}

type undoEntry struct {
	ts        *typeStore
	r         *resource
	created   bool
	nversions int
	idx       *indexData
}

// begin starts a change set; the caller holds st.mu for writing.
func (st *store) begin(now time.Time) *tx {
	ts := now.UnixMilli() * 1000
	if ts < st.lastTS {
		ts = st.lastTS
	}
	st.lastTS = ts
	return &tx{st: st, now: ts}
}

func (t *tx) lastUpdated() string {
	return time.UnixMicro(t.now).UTC().Format(instantFormat)
}

// put stores p as the next version of Type/id (creating the resource when
// absent) and returns the resource.
func (t *tx) put(ts *typeStore, id string, p *parsedResource, method uint8, entry int) *resource {
	r := ts.byID[id]
	if r == nil {
		t.st.seq++
		r = &resource{typ: ts.name, id: id, seq: t.st.seq}
		ts.byID[id] = r
		ts.order = append(ts.order, r)
		t.undo = append(t.undo, undoEntry{ts: ts, r: r, created: true})
	} else {
		t.undo = append(t.undo, undoEntry{ts: ts, r: r, nversions: len(r.versions), idx: r.idx})
	}
	body := p.assemble(id, len(r.versions)+1, t.lastUpdated())
	r.versions = append(r.versions, version{body: body, updated: t.now, method: method})
	ts.setIdx(r, p.idx)
	t.written = append(t.written, txWrite{r, entry})
	return r
}

// del records a delete version of a live resource.
func (t *tx) del(ts *typeStore, r *resource, entry int) {
	t.undo = append(t.undo, undoEntry{ts: ts, r: r, nversions: len(r.versions), idx: r.idx})
	r.versions = append(r.versions, version{updated: t.now, method: methodDELETE})
	ts.setIdx(r, nil)
	t.deleted = append(t.deleted, txWrite{r, entry})
}

// rollback undoes every change of t, newest first.
func (t *tx) rollback() {
	for i := len(t.undo) - 1; i >= 0; i-- {
		u := t.undo[i]
		if u.created {
			u.ts.setIdx(u.r, nil)
			delete(u.ts.byID, u.r.id)
			if n := len(u.ts.order); n > 0 && u.ts.order[n-1] == u.r {
				u.ts.order[n-1] = nil
				u.ts.order = u.ts.order[:n-1]
			}
			continue
		}
		u.ts.setIdx(u.r, nil)
		for j := u.nversions; j < len(u.r.versions); j++ {
			u.r.versions[j] = version{}
		}
		u.r.versions = u.r.versions[:u.nversions]
		u.ts.setIdx(u.r, u.idx)
	}
	t.undo = nil
	t.written = nil
	t.deleted = nil
}
