package testutil

import (
	"encoding/json"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"testing"
)

// PHI finds patient data in text: the MRNs, names, birth dates, phone
// numbers and emails of a test's records, which must never appear in a
// log, an error or an answer. Add what to look for with Values and Words,
// then call Find or Check. The zero PHI looks for nothing.
//
// Each string is looked for as written, JSON-escaped (a log or an answer
// may escape it) and URL-query-escaped (a request URL may carry it). What
// Find reports names the string by its kind and position, never by its
// text, so failure messages do not spread what they caught.
type PHI struct {
	values []phiValue
	words  []phiWord
	seen   map[string]bool
}

// phiValue is a value's lower-cased forms and its length.
type phiValue struct {
	forms []string
	n     int
}

// phiWord is a word's patterns, one per form, and its length.
type phiWord struct {
	forms []*regexp.Regexp
	n     int
}

// Values adds strings found anywhere in a text, ignoring case: MRNs,
// birth dates, phone numbers, emails, free text. Empty strings and strings
// already added are ignored.
func (p *PHI) Values(vs ...string) {
	for _, v := range vs {
		if v == "" || p.once("v", v) {
			continue
		}
		var forms []string
		for _, f := range escapes(v) {
			forms = append(forms, strings.ToLower(f))
		}
		p.values = append(p.values, phiValue{forms, len(v)})
	}
}

// Words adds strings found only as whole words, respecting case: names,
// so that "Mai" does not match "Main" nor "Ng" "Warning". Empty strings
// and strings already added are ignored.
func (p *PHI) Words(ws ...string) {
	for _, w := range ws {
		if w == "" || p.once("w", w) {
			continue
		}
		var forms []*regexp.Regexp
		for _, f := range escapes(w) {
			forms = append(forms, regexp.MustCompile(`(?:^|[^\p{L}\p{N}])`+regexp.QuoteMeta(f)+`(?:$|[^\p{L}\p{N}])`))
		}
		p.words = append(p.words, phiWord{forms, len(w)})
	}
}

func (p *PHI) once(kind, s string) bool {
	if p.seen == nil {
		p.seen = map[string]bool{}
	}
	if p.seen[kind+s] {
		return true
	}
	p.seen[kind+s] = true
	return false
}

// escapes returns s and its JSON- and URL-query-escaped forms, without
// repeats.
func escapes(s string) []string {
	out := []string{s}
	if b, err := json.Marshal(s); err == nil {
		if j := string(b[1 : len(b)-1]); j != s {
			out = append(out, j)
		}
	}
	if q := url.QueryEscape(s); q != s && q != out[len(out)-1] {
		out = append(out, q)
	}
	return out
}

// Len returns how many values and words p looks for.
func (p *PHI) Len() int { return len(p.values) + len(p.words) }

// Find describes the patient data text holds, one entry per value or word
// found ("value #2 (10 bytes)", "word #0 (4 bytes)", numbered in the order
// added), without repeating it. It returns nil when text holds none.
func (p *PHI) Find(text string) []string {
	var found []string
	lower := strings.ToLower(text)
	for i, v := range p.values {
		for _, f := range v.forms {
			if strings.Contains(lower, f) {
				found = append(found, fmt.Sprintf("value #%d (%d bytes)", i, v.n))
				break
			}
		}
	}
	for i, w := range p.words {
		for _, re := range w.forms {
			if re.MatchString(text) {
				found = append(found, fmt.Sprintf("word #%d (%d bytes)", i, w.n))
				break
			}
		}
	}
	return found
}

// Check fails t (without stopping it) for each piece of patient data text
// holds; what names the text in the message ("the log", "stderr").
func (p *PHI) Check(t testing.TB, what, text string) {
	t.Helper()
	for _, f := range p.Find(text) {
		t.Errorf("%s contains patient data: %s", what, f)
	}
}
