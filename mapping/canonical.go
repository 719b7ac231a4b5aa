package mapping

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
)

// CanonicalJSON returns the canonical form of r: one JSON object, "kind"
// first, then the fields of the kind in the order of the record structs,
// absent optional fields left out, times in RFC 3339 with their original
// offset, no HTML escaping and no trailing newline. It is the form the
// adapter stores in its outbox, and Parse reads it back to a Record equal
// to r (except Line, which is not part of the content). It fails when r's
// content does not match its Kind or holds a value JSON cannot represent
// (NaN, a year outside 0-9999).
func (r *Record) CanonicalJSON() ([]byte, error) {
	var payload any
	n := 0
	if r.Patient != nil {
		n++
	}
	if r.Order != nil {
		n++
	}
	if r.Administration != nil {
		n++
	}
	if r.Score != nil {
		n++
	}
	switch {
	case n != 1:
		return nil, errors.New("mapping: canonical JSON: a record needs exactly one kind's content")
	case r.Kind == KindPatient && r.Patient != nil:
		payload = r.Patient
	case r.Kind == KindOrder && r.Order != nil:
		payload = r.Order
	case r.Kind == KindAdministration && r.Administration != nil:
		payload = r.Administration
	case r.Kind == KindScore && r.Score != nil:
		payload = r.Score
	default:
		return nil, errors.New("mapping: canonical JSON: record content does not match its kind")
	}
	var body bytes.Buffer
	enc := json.NewEncoder(&body)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(payload); err != nil {
		return nil, errors.New("mapping: canonical JSON of " + string(r.Kind) + " record: " + err.Error())
	}
	fields := bytes.TrimSpace(body.Bytes())
	fields = fields[1:] // drop '{'
	out := make([]byte, 0, len(fields)+32)
	out = append(out, `{"kind":"`...)
	out = append(out, r.Kind...)
	out = append(out, '"')
	if len(fields) > 1 { // not just "}"
		out = append(out, ',')
	}
	return append(out, fields...), nil
}

// Hash returns the hex SHA-256 of r's canonical JSON: equal records have
// equal hashes, and any change of content changes the hash. It returns ""
// when r has no canonical JSON (see CanonicalJSON).
func (r *Record) Hash() string {
	b, err := r.CanonicalJSON()
	if err != nil {
		return ""
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
