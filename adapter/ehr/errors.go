package ehr

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Issue is one issue of a FHIR OperationOutcome. Severity, Code and
// Expression are safe to log; Details and Diagnostics may echo submitted
// values (patient data) and are kept for the dead-letter store only.
type Issue struct {
	// Severity is fatal, error, warning or information.
	Severity string `json:"severity,omitempty"`
	// Code is the IssueType code, e.g. "processing", "required", "conflict".
	Code string `json:"code,omitempty"`
	// Details is issue.details.text (or its first coding's display or code).
	Details string `json:"details,omitempty"`
	// Diagnostics is issue.diagnostics, free text from the server.
	Diagnostics string `json:"diagnostics,omitempty"`
	// Expression holds issue.expression (or the deprecated issue.location
	// when the server sends no expression): FHIRPath to the element.
	Expression []string `json:"expression,omitempty"`
}

// RejectedError is a permanent answer of the EHR to a request: the same
// request with the same content will fail again. Its Error() names the
// method, resource type, status and each issue's severity, code and
// expression; diagnostics are only in Issues and Diagnostics().
type RejectedError struct {
	// Status is the HTTP status code.
	Status int
	// Method is the HTTP method; empty when not known.
	Method string
	// ResourceType is the request's resource type ("Patient"); empty for
	// requests to the base.
	ResourceType string
	// IfMatch is the version the request required with If-Match, empty if
	// none. A 412 with IfMatch set is a version conflict (ClassConflict).
	IfMatch string
	// Issues are parsed from the OperationOutcome body; nil when the body
	// was not one.
	Issues []Issue
}

// maxIssuesInError bounds how many issues Error() lists.
const maxIssuesInError = 3

func (e *RejectedError) Error() string {
	var b strings.Builder
	b.WriteString("ehr: ")
	writeOp(&b, e.Method, e.ResourceType)
	b.WriteString("rejected: ")
	b.WriteString(strconv.Itoa(e.Status))
	if n := len(e.Issues); n > 0 {
		fmt.Fprintf(&b, " (%d issue", n)
		if n > 1 {
			b.WriteString("s")
		}
		b.WriteString(": ")
		for i, is := range e.Issues {
			if i == maxIssuesInError {
				b.WriteString("; …")
				break
			}
			if i > 0 {
				b.WriteString("; ")
			}
			b.WriteString(safeCode(is.Severity))
			b.WriteString(" ")
			b.WriteString(safeCode(is.Code))
			if len(is.Expression) > 0 {
				b.WriteString(" at ")
				for j, x := range is.Expression {
					if j > 0 {
						b.WriteString(", ")
					}
					b.WriteString(safeExpression(x))
				}
			}
		}
		b.WriteString(")")
	}
	return b.String()
}

// Diagnostics returns the issues' details and diagnostics texts, one issue
// per line, for the dead-letter store. They may contain patient data:
// never log them.
func (e *RejectedError) Diagnostics() string {
	var lines []string
	for _, is := range e.Issues {
		var parts []string
		if is.Details != "" {
			parts = append(parts, is.Details)
		}
		if is.Diagnostics != "" {
			parts = append(parts, is.Diagnostics)
		}
		if len(parts) > 0 {
			lines = append(lines, strings.Join(parts, ": "))
		}
	}
	return strings.Join(lines, "\n")
}

// TransientError is a failure worth retrying later: 408, 429, 5xx but 501
// and 505, a timeout or a connection error, after the short retries of one
// request were spent (or for failures that short retries cannot fix, such
// as a TLS certificate error, at once).
type TransientError struct {
	// Status is the last HTTP status, 0 when there was no response.
	Status int
	// Reason is a bounded, PHI-free class: "http_503", "timeout",
	// "connection", "dns", "tls", "tls_certificate", "token_endpoint", ...
	Reason string
	// RetryAfter is the last response's Retry-After, not capped by
	// RetryWaitMax (at most 24h); zero when absent.
	RetryAfter time.Duration
	// Method and ResourceType name the request; empty when not known.
	Method       string
	ResourceType string
	// Attempts is how many HTTP attempts were made; 0 when not known.
	Attempts int
}

func (e *TransientError) Error() string {
	var b strings.Builder
	b.WriteString("ehr: ")
	writeOp(&b, e.Method, e.ResourceType)
	b.WriteString("transient failure")
	if e.Status != 0 {
		fmt.Fprintf(&b, ": %d", e.Status)
	}
	if e.Attempts > 0 {
		fmt.Fprintf(&b, " after %d attempt", e.Attempts)
		if e.Attempts > 1 {
			b.WriteString("s")
		}
	}
	reason := e.Reason
	if reason == "" {
		reason = "transient"
	}
	fmt.Fprintf(&b, " (%s", reason)
	if e.RetryAfter > 0 {
		fmt.Fprintf(&b, ", retry after %s", e.RetryAfter)
	}
	b.WriteString(")")
	return b.String()
}

// AuthError is an authorization failure of the whole client, not of one
// record: the EHR answered 401 again after a token refresh (or 401 with a
// token that cannot be refreshed), the EHR answered 403 (the client lacks
// a scope or access), or the token endpoint or SMART discovery rejected our
// request (e.g. invalid_client).
type AuthError struct {
	// Status is the HTTP status of the failing answer (EHR or token
	// endpoint), 0 when there was none.
	Status int
	// Reason is a bounded class: "unauthorized" (the EHR answered 401),
	// "forbidden" (the EHR answered 403),
	// "token_rejected" (the token endpoint refused), "bad_token_response",
	// "discovery" (no usable .well-known/smart-configuration),
	// "client_certificate" (the EHR refused the TLS client certificate).
	Reason string
	// OAuthError is the token endpoint's "error" code (e.g.
	// "invalid_client"), when it sent one.
	OAuthError string
	// Detail is a bounded, secret-free detail: the TLS alert of reason
	// "client_certificate" ("unknown certificate authority"), the kid
	// that signed a refused assertion.
	Detail string
	// Method and ResourceType name the EHR request; empty for token
	// endpoint failures.
	Method       string
	ResourceType string
}

func (e *AuthError) Error() string {
	var b strings.Builder
	b.WriteString("ehr: ")
	writeOp(&b, e.Method, e.ResourceType)
	b.WriteString("authentication failed")
	if e.Status != 0 {
		fmt.Fprintf(&b, ": %d", e.Status)
	}
	if e.Reason != "" {
		fmt.Fprintf(&b, " (%s", e.Reason)
		if e.OAuthError != "" {
			b.WriteString(": " + e.OAuthError)
		}
		if e.Detail != "" {
			b.WriteString(": " + e.Detail)
		}
		b.WriteString(")")
	}
	if hint := e.hint(); hint != "" {
		b.WriteString(": " + hint)
	}
	return b.String()
}

// hint says what an operator should check.
func (e *AuthError) hint() string {
	switch {
	case e.Reason == "forbidden":
		return "check the scopes and access the EHR granted to this client"
	case e.Reason == "unauthorized":
		return "the EHR refused a fresh token; check the client's registration and token settings"
	case e.Reason == "client_certificate":
		return "the EHR refused the TLS client certificate; check ehr.tls.client_cert: it must be current and issued by a CA the EHR trusts"
	case e.OAuthError == "invalid_client" && strings.HasPrefix(e.Detail, "kid "):
		return "the token endpoint does not accept this client; check client_id, and that the signing key (" + e.Detail + ") is in the JWKS the EHR registered for it"
	case e.OAuthError == "invalid_client":
		return "the token endpoint does not accept this client; check client_id and its key or secret"
	case e.OAuthError == "invalid_scope":
		return "the EHR grants none of the requested scopes; check ehr.auth.scopes against the client's registration"
	case e.Reason == "discovery":
		return "check ehr.auth.token_url or the EHR's .well-known/smart-configuration"
	}
	return ""
}

// ErrInvalidRequest reports a Request the client refuses to send (bad
// method, a path that leaves the base, control characters in a header).
// It is a programming error, permanent for that request.
var ErrInvalidRequest = errors.New("ehr: invalid request")

// ErrTooManyPages reports a search whose results span more pages than
// Config.MaxSearchPages, or whose next links loop.
var ErrTooManyPages = errors.New("ehr: search has too many pages")

// ErrBadResponse reports a 2xx answer whose body is not the FHIR JSON the
// request expects (a search that returns no Bundle, a proxy's HTML page).
// It is treated as transient.
var ErrBadResponse = errors.New("ehr: unexpected response body")

// Class is what the caller should do with an error.
type Class int

const (
	// ClassNone is the class of a nil error.
	ClassNone Class = iota
	// ClassTransient: retry later (outbox schedule). Unknown errors are
	// transient: a record is never dead-lettered for a failure that is
	// not a clear answer about its content.
	ClassTransient
	// ClassPermanent: the EHR rejected this content; dead-letter it.
	ClassPermanent
	// ClassConflict: 412 to a request with If-Match; re-read the current
	// version and try again.
	ClassConflict
	// ClassAuth: credentials or token endpoint problem; retry later and
	// alert, the content is not at fault.
	ClassAuth
	// ClassCanceled: the caller's context ended.
	ClassCanceled
)

var classNames = [...]string{"none", "transient", "permanent", "conflict", "auth", "canceled"}

func (c Class) String() string {
	if c < 0 || int(c) >= len(classNames) {
		return "Class(" + strconv.Itoa(int(c)) + ")"
	}
	return classNames[c]
}

// Classify returns the class of an error returned by this package (or
// wrapping one).
func Classify(err error) Class {
	if err == nil {
		return ClassNone
	}
	var rej *RejectedError
	if errors.As(err, &rej) {
		if rej.Status == http.StatusPreconditionFailed && rej.IfMatch != "" {
			return ClassConflict
		}
		return ClassPermanent
	}
	var auth *AuthError
	if errors.As(err, &auth) {
		return ClassAuth
	}
	var te *TransientError
	if errors.As(err, &te) {
		return ClassTransient
	}
	switch {
	case errors.Is(err, ErrInvalidRequest), errors.Is(err, ErrTooManyPages):
		return ClassPermanent
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return ClassCanceled
	}
	return ClassTransient
}

// Reason returns a bounded, PHI-free reason class for metrics labels and
// the outbox: "http_422", "timeout", "connection", "auth", "canceled", ...
// It returns "" for a nil error and "error" for an unknown one.
func Reason(err error) string {
	if err == nil {
		return ""
	}
	var rej *RejectedError
	if errors.As(err, &rej) {
		return statusReason(rej.Status)
	}
	var auth *AuthError
	if errors.As(err, &auth) {
		return "auth"
	}
	var te *TransientError
	if errors.As(err, &te) {
		if te.Reason == "" {
			if te.Status != 0 {
				return statusReason(te.Status)
			}
			return "transient"
		}
		return te.Reason
	}
	switch {
	case errors.Is(err, ErrInvalidRequest):
		return "invalid_request"
	case errors.Is(err, ErrTooManyPages):
		return "too_many_pages"
	case errors.Is(err, ErrBadResponse):
		return "bad_response"
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return "canceled"
	}
	return "error"
}

// statusReason is "http_NNN" for a valid status code, "http_other" else.
func statusReason(status int) string {
	if status < 100 || status > 599 {
		return "http_other"
	}
	return "http_" + strconv.Itoa(status)
}

func writeOp(b *strings.Builder, method, resourceType string) {
	if method != "" {
		b.WriteString(method)
		b.WriteString(" ")
	}
	if resourceType != "" {
		b.WriteString(resourceType)
		b.WriteString(" ")
	}
}

// safeCode keeps a code-like token (letters, digits, '-', '_', '.') of at
// most 64 bytes; anything else becomes "?". Severity and issue codes come
// from value sets, but a server may send anything.
func safeCode(s string) string {
	if s == "" || len(s) > 64 {
		return "?"
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return "?"
		}
	}
	return s
}

// safeExpression keeps a FHIRPath expression of printable ASCII without
// quotes (a quoted literal could hold a value), cut at 120 bytes.
func safeExpression(s string) string {
	const max = 120
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c > 0x7e || c == '\'' || c == '"' || c == '`' {
			return "?"
		}
		if b.Len() == max {
			b.WriteString("…")
			break
		}
		b.WriteByte(c)
	}
	if b.Len() == 0 {
		return "?"
	}
	return b.String()
}
