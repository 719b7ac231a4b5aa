package mapping

import (
	"encoding/json"
	"reflect"
	"strconv"
	"strings"
	"sync"

	"github.com/google/fhir/go/fhirversion"
	"github.com/google/fhir/go/jsonformat"
)

// Issue is one problem found in a FHIR resource.
type Issue struct {
	// Path is the FHIR path of the problem, e.g. "Observation.status" or
	// "Observation.component[1].valueQuantity.value"; "" for the document
	// as a whole.
	Path string
	// Message is a fixed description of the problem; it holds no value from
	// the resource.
	Message string
	// Diagnostics is the detail the FHIR library gives, which may quote
	// values from the resource (possibly patient data): show it to whoever
	// owns the file, never log it.
	Diagnostics string
}

// ValidationResult is the validation outcome of one resource.
type ValidationResult struct {
	// Index is 0 for a document that is a single resource; for a Bundle, the
	// index of the entry in Bundle.entry, or -1 for the Bundle itself (its
	// own elements, entries' resources excluded).
	Index int
	// ResourceType and ID are the resource's, when they can be read.
	ResourceType, ID string
	// FullURL is the Bundle entry's fullUrl, if any.
	FullURL string
	// Issues lists the problems; empty for a valid resource.
	Issues []Issue
}

// Valid reports whether the resource has no issues.
func (r ValidationResult) Valid() bool { return len(r.Issues) == 0 }

var validatingUnmarshaller = sync.OnceValues(func() (*jsonformat.Unmarshaller, error) {
	return jsonformat.NewUnmarshaller("UTC", fhirversion.R4)
})

// ValidateJSON validates one JSON document against FHIR R4 with the
// validating jsonformat Unmarshaller (structure, primitive formats, required
// elements, reference types; not profiles or invariants). The document is
// a resource, giving one result, or a Bundle, giving a result for the
// Bundle itself (Index -1) and one per entry that has a resource, so that
// one bad entry gives one invalid result naming its index and fullUrl; the
// paths of an entry's issues start at its resource ("Observation.status").
// Every resource gets a result: use Valid to pick the invalid ones. A
// document that is not a JSON object gives one result with one issue.
// ValidateJSON is safe for concurrent use.
func ValidateJSON(data []byte) []ValidationResult {
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(data, &doc); err != nil || doc == nil {
		msg := "invalid JSON"
		diag := ""
		if err != nil {
			diag = err.Error()
		}
		if json.Valid(data) {
			msg = "not a JSON object"
		}
		return []ValidationResult{{Issues: []Issue{{Message: msg, Diagnostics: diag}}}}
	}
	var rt string
	if raw, ok := doc["resourceType"]; ok {
		_ = json.Unmarshal(raw, &rt) // a non-string type is reported by validateResource
	}
	if rt != "Bundle" {
		return []ValidationResult{validateResource(0, "", data)}
	}
	return validateBundle(doc)
}

// validateBundle validates the Bundle without its entries' resources, then
// each entry's resource on its own.
func validateBundle(doc map[string]json.RawMessage) []ValidationResult {
	var entries []map[string]json.RawMessage
	if raw, ok := doc["entry"]; ok {
		if err := json.Unmarshal(raw, &entries); err != nil {
			return []ValidationResult{{Index: -1, ResourceType: "Bundle",
				Issues: []Issue{{Path: "Bundle.entry", Message: "not an array of objects", Diagnostics: err.Error()}}}}
		}
	}
	resources := make([]json.RawMessage, len(entries))
	fullURLs := make([]string, len(entries))
	for i, e := range entries {
		resources[i] = e["resource"]
		delete(e, "resource")
		if raw, ok := e["fullUrl"]; ok {
			_ = json.Unmarshal(raw, &fullURLs[i]) // a non-string fullUrl is reported by the Bundle's validation
		}
	}
	if entries != nil {
		raw, err := json.Marshal(entries)
		if err != nil {
			return []ValidationResult{{Index: -1, ResourceType: "Bundle", Issues: []Issue{{Message: "cannot re-encode entries", Diagnostics: err.Error()}}}}
		}
		doc["entry"] = raw
	}
	shell, err := json.Marshal(doc)
	if err != nil {
		return []ValidationResult{{Index: -1, ResourceType: "Bundle", Issues: []Issue{{Message: "cannot re-encode Bundle", Diagnostics: err.Error()}}}}
	}
	results := []ValidationResult{validateResource(-1, "", shell)}
	for i, raw := range resources {
		if len(raw) == 0 || string(raw) == "null" {
			continue
		}
		results = append(results, validateResource(i, fullURLs[i], raw))
	}
	return results
}

// validateResource validates one resource document.
func validateResource(index int, fullURL string, data []byte) ValidationResult {
	res := ValidationResult{Index: index, FullURL: fullURL}
	var head struct {
		ResourceType any `json:"resourceType"`
		ID           any `json:"id"`
	}
	if err := json.Unmarshal(data, &head); err != nil {
		res.Issues = []Issue{{Message: "not a JSON object", Diagnostics: err.Error()}}
		return res
	}
	res.ResourceType, _ = head.ResourceType.(string)
	res.ID, _ = head.ID.(string)
	if res.ResourceType == "" {
		res.Issues = []Issue{{Path: "resourceType", Message: "missing or not a string"}}
		return res
	}
	u, err := validatingUnmarshaller()
	if err != nil {
		res.Issues = []Issue{{Message: "cannot create the FHIR unmarshaller", Diagnostics: err.Error()}}
		return res
	}
	_, outcome, err := u.UnmarshalWithOutcome(data)
	if err != nil {
		res.Issues = issuesFromError(err)
		return res
	}
	if outcome != nil && outcome.R4Outcome != nil {
		for _, is := range outcome.R4Outcome.GetIssue() {
			var path string
			if exp := is.GetExpression(); len(exp) > 0 {
				path = exp[0].GetValue()
			}
			res.Issues = append(res.Issues, issueFromText(path, is.GetDiagnostics().GetValue()))
		}
	}
	return res
}

// issueFromText turns the text of a jsonformat validation error
// (`error at "PATH": DETAILS`) into an Issue. Its details are the fixed
// messages of jsonformat (no values).
func issueFromText(path, text string) Issue {
	msg := text
	if rest, ok := strings.CutPrefix(text, "error at "); ok {
		if quoted, err := strconv.QuotedPrefix(rest); err == nil {
			msg = strings.TrimPrefix(rest[len(quoted):], ": ")
			if path == "" {
				path, _ = strconv.Unquote(quoted)
			}
		}
	}
	return refineIssue(Issue{Path: path, Message: msg})
}

// refineIssue moves the field name of "missing required field" into the
// path: jsonformat reports it at the parent element.
func refineIssue(is Issue) Issue {
	if name, ok := strings.CutPrefix(is.Message, "missing required field "); ok {
		if field, err := strconv.Unquote(name); err == nil && field != "" {
			is.Path = joinPath(is.Path, field)
			is.Message = "missing required element"
		}
	}
	return is
}

func joinPath(parent, field string) string {
	if parent == "" {
		return field
	}
	return parent + "." + field
}

// issuesFromError reads the issues out of an error of the jsonformat
// Unmarshaller. Its error types (UnmarshalError and UnmarshalErrorList) are
// in an internal package, so their exported fields (Path, Details,
// Diagnostics) are read by reflection; any other error gives one issue
// with the error text as diagnostics.
func issuesFromError(err error) []Issue {
	v := reflect.ValueOf(err)
	if v.Kind() == reflect.Slice {
		var out []Issue
		for i := 0; i < v.Len(); i++ {
			if e, ok := v.Index(i).Interface().(error); ok {
				out = append(out, issuesFromError(e)...)
			}
		}
		if len(out) > 0 {
			return out
		}
	}
	if v.Kind() == reflect.Pointer && !v.IsNil() && v.Elem().Kind() == reflect.Struct {
		s := v.Elem()
		path, pok := stringField(s, "Path")
		details, dok := stringField(s, "Details")
		diag, _ := stringField(s, "Diagnostics")
		if pok && dok {
			is := Issue{Path: path, Message: details, Diagnostics: diag}
			if details == "unknown field" {
				// The path is the parent; the diagnostics is the quoted field name.
				if name, err := strconv.Unquote(diag); err == nil && name != "" {
					is.Path = joinPath(path, name)
				}
			}
			return []Issue{refineIssue(is)}
		}
	}
	return []Issue{{Message: "cannot read the resource", Diagnostics: err.Error()}}
}

func stringField(s reflect.Value, name string) (string, bool) {
	f := s.FieldByName(name)
	if !f.IsValid() || f.Kind() != reflect.String {
		return "", false
	}
	return f.String(), true
}
