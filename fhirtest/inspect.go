package fhirtest

import (
	"fmt"
	"sort"
	"sync"
	"time"
)

// RequestLog is one request the server received.
type RequestLog struct {
	// Method is the HTTP method.
	Method string
	// Path is the URL path, base path included.
	Path string
	// Query is the raw query string (conditional URLs carry identifiers).
	Query string
	// IfNoneExist is the If-None-Exist header of a conditional create
	// (it carries the identifier), "" if none.
	IfNoneExist string
	// Proto is the protocol the request came over: "HTTP/1.1", or
	// "HTTP/2.0" (see StartTLS).
	Proto string
	// Time is when the request arrived, by the server's clock.
	Time time.Time
	// Status is the status the client received; 0 when the connection was
	// dropped or the client went away before an answer.
	Status int
	// HandlerStatus is the status the FHIR handler produced; 0 when the
	// request was not processed (rate limit, injected status, drop). It
	// differs from Status for lost responses: a write with HandlerStatus
	// 201 and Status 0 or 503 was committed although the client was told
	// nothing or a failure.
	HandlerStatus int
	// Fault is the fault injected, FaultNone if none.
	Fault Fault
	// End is when the server finished with the request (answered it,
	// dropped the connection, or saw the client go away), by the server's
	// clock. [Time, End] is the interval the request was in the server:
	// tests check that two writes of one identifier never overlap.
	End time.Time
	// RequestID is the request's X-Request-Id header, "" if none.
	RequestID string
}

// requestLog keeps the most recent requests.
type requestLog struct {
	mu      sync.Mutex
	limit   int // 0: none, < 0: all
	entries []RequestLog
	next    int // ring position once full
	// now stamps End; nil leaves End zero.
	now func() time.Time
}

func (l *requestLog) add(e RequestLog) {
	if l.limit == 0 {
		return
	}
	if l.now != nil && e.End.IsZero() {
		e.End = l.now()
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.limit < 0 || len(l.entries) < l.limit {
		l.entries = append(l.entries, e)
		return
	}
	l.entries[l.next] = e
	l.next = (l.next + 1) % l.limit
}

func (l *requestLog) snapshot() []RequestLog {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]RequestLog, 0, len(l.entries))
	out = append(out, l.entries[l.next:]...)
	return append(out, l.entries[:l.next]...)
}

func (l *requestLog) reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.entries, l.next = nil, 0
}

// Requests returns the requests received, oldest first, in the order they
// were answered (up to WithRequestLogLimit, the most recent).
func (s *Server) Requests() []RequestLog { return s.log.snapshot() }

// Connections returns the number of TCP connections the server has
// accepted since Start or StartTLS, or since the last Reset: a client that
// reuses its connections (keep-alive, HTTP/2) opens none at steady state.
// Dropped connections (DropNext, LoseDrop) and CloseClientConnections make
// clients open new ones. It counts only connections of a server started
// with Start or StartTLS, not those of Handler served on your own listener.
func (s *Server) Connections() int { return int(s.conns.Load()) }

// Count returns the number of live (not deleted) resources of a type.
func (s *Server) Count(resourceType string) int {
	s.store.mu.RLock()
	defer s.store.mu.RUnlock()
	if ts := s.store.types[resourceType]; ts != nil {
		return ts.live
	}
	return 0
}

// Counts returns the number of live resources of every type holding any.
func (s *Server) Counts() map[string]int {
	s.store.mu.RLock()
	defer s.store.mu.RUnlock()
	out := map[string]int{}
	for name, ts := range s.store.types {
		if ts.live > 0 {
			out[name] = ts.live
		}
	}
	return out
}

// Get returns the current JSON of Type/id (with id and meta as stored), or
// false when there is no such live resource.
func (s *Server) Get(resourceType, id string) ([]byte, bool) {
	s.store.mu.RLock()
	defer s.store.mu.RUnlock()
	r := s.store.lookup(resourceType, id)
	if r == nil || !r.live() {
		return nil, false
	}
	body := r.current().body
	return append([]byte(nil), body...), true
}

// IdentifierHolders returns the live resources ("Type/id", sorted) whose
// current version holds the identifier system|value. An empty system
// matches identifiers without a system.
func (s *Server) IdentifierHolders(system, value string) []string {
	s.store.mu.RLock()
	defer s.store.mu.RUnlock()
	var out []string
	for _, ts := range s.store.types {
		p := ts.idents[value]
		if p == nil {
			continue
		}
		p.each(func(r *resource) {
			for _, id := range r.idx.idents {
				if id.system == system && id.value == value {
					out = append(out, r.typ+"/"+r.id)
					return
				}
			}
		})
	}
	sort.Strings(out)
	return out
}

// DuplicateIdentifier is an identifier held by more than one live resource
// of one type.
type DuplicateIdentifier struct {
	ResourceType string
	System       string
	Value        string
	// IDs are the holders' ids, sorted.
	IDs []string
}

// String describes the duplicate for test failure messages.
func (d DuplicateIdentifier) String() string {
	return fmt.Sprintf("%s identifier %s|%s held by %v", d.ResourceType, d.System, d.Value, d.IDs)
}

// DuplicateIdentifiers lists every identifier (system and value) held by
// more than one live resource of the same type, sorted by type, system
// and value. An adapter whose writes are idempotent leaves it empty.
func (s *Server) DuplicateIdentifiers() []DuplicateIdentifier {
	s.store.mu.RLock()
	defer s.store.mu.RUnlock()
	var out []DuplicateIdentifier
	for name, ts := range s.store.types {
		for value, p := range ts.idents {
			if p.len() < 2 {
				continue
			}
			bySystem := map[string][]string{}
			p.each(func(r *resource) {
				seen := map[string]bool{}
				for _, id := range r.idx.idents {
					if id.value == value && !seen[id.system] {
						seen[id.system] = true
						bySystem[id.system] = append(bySystem[id.system], r.id)
					}
				}
			})
			for sys, ids := range bySystem {
				if len(ids) > 1 {
					sort.Strings(ids)
					out = append(out, DuplicateIdentifier{ResourceType: name, System: sys, Value: value, IDs: ids})
				}
			}
		}
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.ResourceType != b.ResourceType {
			return a.ResourceType < b.ResourceType
		}
		if a.System != b.System {
			return a.System < b.System
		}
		return a.Value < b.Value
	})
	return out
}

// Reset deletes every resource and its history and every export job,
// clears the request log, sets Connections to 0 and restarts
// server-assigned ids and export job ids from 1. Options, faults, export
// settings and open connections are kept.
func (s *Server) Reset() {
	s.store.mu.Lock()
	s.store.types = map[string]*typeStore{}
	s.store.nextID, s.store.seq = 0, 0
	s.store.mu.Unlock()
	s.exports.reset()
	s.log.reset()
	s.conns.Store(0)
}

// Add stores a resource directly, without HTTP and without faults, for
// setting up test data: with an id it is stored under that id (created or
// updated, whatever WithUpdateCreate says), without one it gets a server
// id. Validation and referential integrity apply as to any write. It
// returns the resource's id.
func (s *Server) Add(resourceJSON []byte) (string, error) {
	p, ferr := s.parseResource(resourceJSON, "")
	if ferr != nil {
		return "", ferr
	}
	if p.id != "" && !validID(p.id) {
		return "", errorf(400, "value", "invalid id").at(p.typ + ".id")
	}
	bases := s.localBases("")
	p.prepare(bases)
	s.store.mu.Lock()
	defer s.store.mu.Unlock()
	t := s.store.begin(s.now())
	ts := s.store.typeStore(p.typ, true)
	id, method := p.id, methodPUT
	if id == "" {
		id, method = s.store.newID(ts), methodPOST
	}
	t.put(ts, id, p, method, -1)
	if ferr := s.checkIntegrity(t); ferr != nil {
		t.rollback()
		return "", ferr
	}
	return id, nil
}
