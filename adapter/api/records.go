package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"

	"github.com/ketamine-fhir/ketamine-fhir/adapter/store"
	"github.com/ketamine-fhir/ketamine-fhir/mapping"
)

// Record statuses in a POST /v1/records answer.
const (
	// StatusAccepted: the record is new or changed and is committed to the
	// outbox.
	StatusAccepted = "accepted"
	// StatusUnchanged: the outbox already holds the same content.
	StatusUnchanged = "unchanged"
	// StatusRejected: the record failed to parse or a check; Errors says why.
	StatusRejected = "rejected"
)

// RecordResult is the outcome of one record of a POST /v1/records request.
type RecordResult struct {
	// Index is the 0-based position of the record in the request.
	Index int `json:"index"`
	// Line is the 1-based line of the body the record starts on.
	Line int `json:"line"`
	// Kind is the record's kind; empty when it could not be told.
	Kind string `json:"kind,omitempty"`
	// ID is the record's local id; never set for a patient (it is the MRN)
	// nor when the id itself was invalid.
	ID string `json:"id,omitempty"`
	// Status is StatusAccepted, StatusUnchanged or StatusRejected.
	Status string `json:"status"`
	// Errors lists the problems of a rejected record.
	Errors []FieldProblem `json:"errors,omitempty"`
}

// FieldProblem is one problem of a rejected record: the field path (empty
// for the record as a whole) and a fixed reason that never holds the
// field's value.
type FieldProblem struct {
	Field  string `json:"field,omitempty"`
	Reason string `json:"reason"`
}

// item is one record read from a request: parsed or rejected.
type item struct {
	line int
	rec  *mapping.Record
	rerr *mapping.RecordError
}

// errBadBody is a request body that cannot be read as records at all.
type errBadBody struct{ msg string }

func (e *errBadBody) Error() string { return e.msg }

// limitedBody wraps a MaxBytesReader and remembers that the limit was hit,
// whatever a reader above it makes of the error.
type limitedBody struct {
	r   io.Reader
	hit bool
}

func (b *limitedBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	var mbe *http.MaxBytesError
	if err != nil && errors.As(err, &mbe) {
		b.hit = true
	}
	return n, err
}

// postRecords is POST /v1/records.
func (s *server) postRecords(w http.ResponseWriter, r *http.Request) {
	format, ok := bodyFormat(r.Header.Get("Content-Type"))
	if !ok {
		s.writeError(w, r, http.StatusUnsupportedMediaType,
			"Content-Type must be application/x-ndjson (one record per line) or application/json (an array of records), UTF-8")
		return
	}
	if r.ContentLength > s.maxBody {
		s.tooLarge(w, r)
		return
	}
	body := &limitedBody{r: http.MaxBytesReader(w, r.Body, s.maxBody)}
	var items []item
	var err error
	if format == "ndjson" {
		items, err = s.readNDJSON(body)
	} else {
		items, err = s.readJSONArray(body)
	}
	var bad *errBadBody
	switch {
	case body.hit:
		s.tooLarge(w, r)
		return
	case errors.As(err, &bad):
		s.writeError(w, r, http.StatusBadRequest, bad.msg)
		return
	case err != nil:
		// The client went away or the connection failed mid-body.
		s.log.Info("reading a request body failed", "request_id", requestID(r), "err", err)
		s.writeError(w, r, http.StatusBadRequest, "reading the request body failed")
		return
	case len(items) == 0:
		s.writeError(w, r, http.StatusBadRequest, "the request holds no records")
		return
	}

	results := make([]RecordResult, len(items))
	var good []*mapping.Record
	var goodAt []int // index in items of each good record
	for i, it := range items {
		results[i] = RecordResult{Index: i, Line: it.line}
		if it.rerr != nil {
			s.b.Rejected(it.rerr)
			results[i].Status = StatusRejected
			results[i].Kind, results[i].ID = shownKindID(it.rerr.Kind, it.rerr.RecordID)
			results[i].Errors = problems(it.rerr)
			continue
		}
		s.b.Received(it.rec)
		results[i].Kind, results[i].ID = shownKindID(it.rec.Kind, it.rec.ID())
		good = append(good, it.rec)
		goodAt = append(goodAt, i)
	}
	if len(good) == 0 {
		s.log.Info("records rejected", "request_id", requestID(r), "rejected", len(items))
		s.writeJSON(w, r, http.StatusBadRequest, results)
		return
	}

	outs, err := s.b.Ingest(r.Context(), good)
	if err == nil && len(outs) != len(good) {
		err = fmt.Errorf("the outbox answered %d outcomes for %d records", len(outs), len(good))
	}
	if err != nil {
		s.log.Error("committing records to the outbox failed; none was stored",
			"request_id", requestID(r), "records", len(good), "err", err)
		w.Header().Set("Retry-After", "5")
		s.writeError(w, r, http.StatusServiceUnavailable, "the outbox is unavailable; no record was stored, retry later")
		return
	}
	var accepted, unchanged int
	for j, out := range outs {
		res := &results[goodAt[j]]
		if out.Outcome == store.Unchanged {
			res.Status = StatusUnchanged
			unchanged++
		} else {
			res.Status = StatusAccepted
			accepted++
		}
	}
	s.log.Info("records ingested", "request_id", requestID(r),
		"accepted", accepted, "unchanged", unchanged, "rejected", len(items)-len(good))
	s.writeJSON(w, r, http.StatusAccepted, results)
}

func (s *server) tooLarge(w http.ResponseWriter, r *http.Request) {
	s.writeError(w, r, http.StatusRequestEntityTooLarge,
		fmt.Sprintf("the request body is larger than %d bytes; send fewer records per request", s.maxBody))
}

// bodyFormat tells the format of a POST /v1/records body from its
// Content-Type: "ndjson" or "json". A charset other than UTF-8 is refused.
func bodyFormat(contentType string) (string, bool) {
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil {
		return "", false
	}
	if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") {
		return "", false
	}
	switch mt {
	case "application/x-ndjson", "application/ndjson":
		return "ndjson", true
	case "application/json":
		return "json", true
	}
	return "", false
}

// readNDJSON reads one record per line with the engine's streaming reader.
func (s *server) readNDJSON(body io.Reader) ([]item, error) {
	rd := s.b.Parser().NewNDJSONReader(body)
	var items []item
	for {
		rec, err := rd.Next()
		if errors.Is(err, io.EOF) {
			return items, nil
		}
		var re *mapping.RecordError
		switch {
		case errors.As(err, &re):
			items = append(items, item{line: re.Line, rerr: re})
		case err != nil:
			return nil, err
		default:
			items = append(items, item{line: rec.Line, rec: rec})
		}
	}
}

// readJSONArray reads a JSON array of record objects. The body is at most
// MaxBodyBytes, so it is read whole; each element is parsed on its own, so
// one bad record does not reject the others. A body that is not a JSON
// array is an *errBadBody naming the line where it went wrong.
func (s *server) readJSONArray(body io.Reader) ([]item, error) {
	data, err := io.ReadAll(body)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	lineAt := newLineCounter(data)
	tok, err := dec.Token()
	if err != nil || tok != json.Delim('[') {
		return nil, &errBadBody{"the body must be a JSON array of record objects (or send NDJSON as application/x-ndjson)"}
	}
	p := s.b.Parser()
	var items []item
	for dec.More() {
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, &errBadBody{fmt.Sprintf("malformed JSON in the array near line %d", lineAt(int(dec.InputOffset())))}
		}
		line := lineAt(int(dec.InputOffset()) - len(raw))
		rec, err := p.Parse(raw, line)
		var re *mapping.RecordError
		switch {
		case errors.As(err, &re):
			items = append(items, item{line: line, rerr: re})
		case err != nil:
			items = append(items, item{line: line, rerr: &mapping.RecordError{Line: line,
				Problems: []mapping.FieldError{{Reason: "not a valid record"}}}})
		default:
			items = append(items, item{line: line, rec: rec})
		}
	}
	if tok, err := dec.Token(); err != nil || tok != json.Delim(']') {
		return nil, &errBadBody{fmt.Sprintf("malformed JSON in the array near line %d", lineAt(int(dec.InputOffset())))}
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, &errBadBody{"unexpected data after the JSON array"}
	}
	return items, nil
}

// newLineCounter returns a function giving the 1-based line of a byte
// offset of data. Offsets must not decrease between calls (it counts
// incrementally, so a whole body costs one pass).
func newLineCounter(data []byte) func(off int) int {
	line, pos := 1, 0
	return func(off int) int {
		off = min(max(off, pos), len(data))
		line += bytes.Count(data[pos:off], []byte{'\n'})
		pos = off
		return line
	}
}

// shownKindID is the kind and local id a response may show: nothing for an
// unknown kind, no id for a patient (the MRN).
func shownKindID(kind mapping.Kind, id string) (string, string) {
	if !kind.Valid() {
		return "", ""
	}
	if kind == mapping.KindPatient {
		return string(kind), ""
	}
	return string(kind), id
}

// problems lists the field problems of a rejected record. Fields and
// reasons are fixed texts of the parser; Diagnostics (raw values) are
// never shown.
func problems(re *mapping.RecordError) []FieldProblem {
	if len(re.Problems) == 0 {
		return []FieldProblem{{Reason: "invalid record"}}
	}
	out := make([]FieldProblem, len(re.Problems))
	for i, p := range re.Problems {
		out[i] = FieldProblem{Field: p.Field, Reason: p.Reason}
	}
	return out
}
