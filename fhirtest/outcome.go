package fhirtest

import (
	"cmp"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
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
	// fault, if any, is what the request log records for the answer.
	fault Fault
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

// sortIssues puts issues in a stable order: by expression (list indexes
// compared as numbers, so entry[2] comes before entry[10]), then code, then
// diagnostics. google/fhir/go reports validation problems in map order,
// which changes from run to run; a client's tests must see one order.
func sortIssues(issues []issue) {
	slices.SortStableFunc(issues, func(a, b issue) int {
		if c := slices.CompareFunc(a.Expression, b.Expression, comparePaths); c != 0 {
			return c
		}
		if c := strings.Compare(a.Code, b.Code); c != 0 {
			return c
		}
		return strings.Compare(a.Diagnostics, b.Diagnostics)
	})
}

// comparePaths compares two FHIRPath expressions as text, except that runs
// of digits compare as numbers.
func comparePaths(a, b string) int {
	for a != "" && b != "" {
		da, db := digitRun(a), digitRun(b)
		if da > 0 && db > 0 {
			na, nb := strings.TrimLeft(a[:da], "0"), strings.TrimLeft(b[:db], "0")
			if c := cmp.Compare(len(na), len(nb)); c != 0 {
				return c
			}
			if c := strings.Compare(na, nb); c != 0 {
				return c
			}
			if c := cmp.Compare(da, db); c != 0 {
				return c
			}
			a, b = a[da:], b[db:]
			continue
		}
		if a[0] != b[0] {
			return cmp.Compare(a[0], b[0])
		}
		a, b = a[1:], b[1:]
	}
	return cmp.Compare(len(a), len(b))
}

// digitRun returns the number of ASCII digits s starts with.
func digitRun(s string) int {
	n := 0
	for n < len(s) && s[n] >= '0' && s[n] <= '9' {
		n++
	}
	return n
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
