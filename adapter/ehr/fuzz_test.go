package ehr

import (
	"strings"
	"testing"
)

func FuzzParseOutcome(f *testing.F) {
	f.Add([]byte(outcome422))
	f.Add([]byte(`{"resourceType":"OperationOutcome","issue":[{"details":{"coding":[{"code":"x"}]}}]}`))
	f.Add([]byte(`{"resourceType":"OperationOutcome","issue":null}`))
	f.Add([]byte(`[1,2]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		issues := parseOutcome(b)
		rej := &RejectedError{Status: 422, Issues: issues}
		msg := rej.Error()
		for _, is := range issues {
			if len(is.Diagnostics) > 3 && strings.Contains(msg, is.Diagnostics) && !strings.Contains(safeCode(is.Severity)+safeCode(is.Code), is.Diagnostics) {
				// Diagnostics may only appear by coincidence through a code.
				for _, x := range is.Expression {
					if strings.Contains(safeExpression(x), is.Diagnostics) {
						return
					}
				}
				t.Errorf("diagnostics %q leaked into %q", is.Diagnostics, msg)
			}
		}
	})
}

func FuzzParseBundle(f *testing.F) {
	f.Add([]byte(transactionResponse))
	f.Add([]byte(`{"resourceType":"Bundle","link":[{"relation":"next","url":"::"}],"entry":[{"resource":5}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		bundle, ok := parseBundle(b)
		if !ok {
			return
		}
		_ = bundle.next()
		for _, e := range bundle.Entry {
			parseResource(e.Resource)
			if e.Response != nil {
				if s := parseEntryStatus(e.Response.Status); s != 0 && (s < 100 || s > 599) {
					t.Errorf("status %d from %q", s, e.Response.Status)
				}
				parseLocation(e.Response.Location)
				parseETag(e.Response.Etag)
				parseOutcome(e.Response.Outcome)
			}
		}
	})
}

func FuzzParseLocation(f *testing.F) {
	f.Add("https://ehr.example/fhir/Patient/p1/_history/2")
	f.Add("Patient/p1")
	f.Add("/_history/1")
	f.Add("%zz/Patient/1?x#y")
	f.Fuzz(func(t *testing.T, loc string) {
		rt, id, v := parseLocation(loc)
		if id == "" && (rt != "" || v != "") {
			t.Errorf("parseLocation(%q) = %q %q %q: parts without an id", loc, rt, id, v)
		}
		if rt != "" && !isResourceType(rt) {
			t.Errorf("parseLocation(%q) type %q", loc, rt)
		}
		if strings.ContainsAny(id, "/?#") {
			t.Errorf("parseLocation(%q) id %q", loc, id)
		}
	})
}

func FuzzEscape(f *testing.F) {
	f.Add("identifier=a|b c%7C%zz\\é")
	f.Fuzz(func(t *testing.T, s string) {
		for _, q := range []bool{false, true} {
			out := escape(s, q)
			if escape(out, q) != out {
				t.Errorf("escape not idempotent on %q: %q", s, out)
			}
			for i := 0; i < len(out); i++ {
				if c := out[i]; c <= ' ' || c >= 0x7f || strings.IndexByte("\"<>\\^`{|}#", c) >= 0 {
					t.Errorf("escape(%q) = %q keeps %q", s, out, c)
				}
			}
		}
	})
}
