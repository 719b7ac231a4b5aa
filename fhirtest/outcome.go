package fhirtest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
)

// issue is one OperationOutcome.issue. Code is an R4 issue-type code
// (http://hl7.org/fhir/issue-type), Severity an issue-severity code.
type issue struct {
	Severity    string   `json:"severity"`
	Code        string   `json:"code"`
	Diagnostics string   `json:"diagnostics,omitempty"`
	Expression  []string `json:"expression,omitempty"`
}

// fhirError is a failed interaction: the HTTP status to answer with and the
// issues of the OperationOutcome that explains it. Diagnostics name FHIR
// paths, ids and fixed reasons, never element values.
type fhirError struct {
	status int
	issues []issue
	// header holds extra response headers (for example Allow on a 405).
	header http.Header
}

func (e *fhirError) Error() string {
	if len(e.issues) == 0 {
		return fmt.Sprintf("fhirtest: %d %s", e.status, http.StatusText(e.status))
	}
	return fmt.Sprintf("fhirtest: %d %s: %s", e.status, http.StatusText(e.status), e.issues[0].Diagnostics)
}

// errorf returns a fhirError with one error issue.
func errorf(status int, code, format string, args ...any) *fhirError {
	return &fhirError{status: status, issues: []issue{{
		Severity:    "error",
		Code:        code,
		Diagnostics: fmt.Sprintf(format, args...),
	}}}
}

// at sets the FHIRPath expression of every issue that has none, and
// prefixes expressions with prefix when it is not empty.
func (e *fhirError) at(expression string) *fhirError {
	for i := range e.issues {
		if len(e.issues[i].Expression) == 0 && expression != "" {
			e.issues[i].Expression = []string{expression}
		}
	}
	return e
}

// inEntry places the issues in Bundle entry entryExpr (such as
// "Bundle.entry[2]"): expressions on the resource (starting with a resource
// type) move under entryExpr + ".resource", issues without an expression
// point at the entry.
func (e *fhirError) inEntry(entryExpr string) *fhirError {
	for i := range e.issues {
		if len(e.issues[i].Expression) == 0 {
			e.issues[i].Expression = []string{entryExpr}
			continue
		}
		for j, x := range e.issues[i].Expression {
			if strings.HasPrefix(x, entryExpr) {
				continue // already placed
			}
			head, rest := x, ""
			if k := strings.IndexAny(x, ".["); k >= 0 {
				head, rest = x[:k], x[k:]
			}
			if isResourceType(head) {
				e.issues[i].Expression[j] = entryExpr + ".resource" + rest
			}
		}
	}
	return e
}

// outcomeJSON renders an OperationOutcome with the given issues.
func outcomeJSON(issues []issue) []byte {
	if len(issues) == 0 {
		issues = []issue{{Severity: "information", Code: "informational"}}
	}
	b, err := json.Marshal(struct {
		ResourceType string  `json:"resourceType"`
		Issue        []issue `json:"issue"`
	}{"OperationOutcome", issues})
	if err != nil {
		// Only strings and slices of strings: cannot fail.
		panic("fhirtest: marshal OperationOutcome: " + err.Error())
	}
	return b
}

// infoOutcome renders an informational OperationOutcome, used for
// Prefer: return=OperationOutcome.
func infoOutcome(format string, args ...any) []byte {
	return outcomeJSON([]issue{{
		Severity:    "information",
		Code:        "informational",
		Diagnostics: fmt.Sprintf(format, args...),
	}})
}

// statusLine returns "201 Created" style text for Bundle.entry.response.status.
func statusLine(status int) string {
	return fmt.Sprintf("%d %s", status, http.StatusText(status))
}
