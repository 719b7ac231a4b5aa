package ehr

import (
	"context"
	"errors"
	"fmt"
	"testing"
)

func TestClassifyAndReason(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		err        error
		wantClass  Class
		wantReason string
	}{
		{"nil", nil, ClassNone, ""},
		{"rejected", &RejectedError{Status: 422}, ClassPermanent, "http_422"},
		{"rejected wrapped", fmt.Errorf("deliver: %w", &RejectedError{Status: 404}), ClassPermanent, "http_404"},
		{"conflict", &RejectedError{Status: 412, IfMatch: "3"}, ClassConflict, "http_412"},
		{"412 unconditional", &RejectedError{Status: 412}, ClassPermanent, "http_412"},
		{"odd status", &RejectedError{Status: 999}, ClassPermanent, "http_other"},
		{"transient", &TransientError{Status: 503, Reason: "http_503"}, ClassTransient, "http_503"},
		{"transient no reason", &TransientError{Status: 502}, ClassTransient, "http_502"},
		{"transient bare", &TransientError{}, ClassTransient, "transient"},
		{"engine store", &TransientError{Reason: "store"}, ClassTransient, "store"},
		{"auth", &AuthError{Status: 401, Reason: "unauthorized"}, ClassAuth, "auth"},
		{"canceled", fmt.Errorf("ehr: GET /Patient: %w", context.Canceled), ClassCanceled, "canceled"},
		{"deadline", context.DeadlineExceeded, ClassCanceled, "canceled"},
		{"invalid", fmt.Errorf("%w: x", ErrInvalidRequest), ClassPermanent, "invalid_request"},
		{"pages", fmt.Errorf("%w: x", ErrTooManyPages), ClassPermanent, "too_many_pages"},
		{"bad response", fmt.Errorf("%w: x", ErrBadResponse), ClassTransient, "bad_response"},
		{"unknown", errors.New("disk full"), ClassTransient, "error"},
	}
	for _, tt := range tests {
		if got := Classify(tt.err); got != tt.wantClass {
			t.Errorf("%s: Classify = %v, want %v", tt.name, got, tt.wantClass)
		}
		if got := Reason(tt.err); got != tt.wantReason {
			t.Errorf("%s: Reason = %q, want %q", tt.name, got, tt.wantReason)
		}
	}
}

func TestErrorStrings(t *testing.T) {
	t.Parallel()
	many := make([]Issue, 5)
	for i := range many {
		many[i] = Issue{Severity: "error", Code: "invalid", Diagnostics: "value 'MRN0042XYZ'"}
	}
	tests := []struct {
		err  error
		want string
	}{
		{&RejectedError{Status: 404, Method: "GET", ResourceType: "Patient"}, "ehr: GET Patient rejected: 404"},
		// As the engine builds it, without a method.
		{&RejectedError{Status: 409, ResourceType: "Patient", Issues: []Issue{{Severity: "error", Code: "multiple-matches", Diagnostics: "2 patients"}}},
			"ehr: Patient rejected: 409 (1 issue: error multiple-matches)"},
		{&RejectedError{Status: 400, Issues: many}, "ehr: rejected: 400 (5 issues: error invalid; error invalid; error invalid; …)"},
		// Server text that could carry values is replaced.
		{&RejectedError{Status: 422, Issues: []Issue{{Severity: "error value=x", Code: "", Expression: []string{"Patient.identifier.where(value='MRN0042XYZ')", "Patient.name[0]"}}}},
			"ehr: rejected: 422 (1 issue: ? ? at ?, Patient.name[0])"},
		{&TransientError{Reason: "store"}, "ehr: transient failure (store)"},
		{&TransientError{Status: 429, Reason: "http_429", Method: "PUT", ResourceType: "Observation", Attempts: 4},
			"ehr: PUT Observation transient failure: 429 after 4 attempts (http_429)"},
		{&AuthError{Status: 400, Reason: "token_rejected", OAuthError: "invalid_client"}, "ehr: authentication failed: 400 (token_rejected: invalid_client): the token endpoint does not accept this client; check client_id and its key or secret"},
	}
	for _, tt := range tests {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("Error() = %q\nwant      %q", got, tt.want)
		}
		noPHI(t, "error", tt.err.Error())
	}
}

func TestClassString(t *testing.T) {
	t.Parallel()
	if ClassConflict.String() != "conflict" || Class(42).String() != "Class(42)" {
		t.Errorf("String: %v %v", ClassConflict, Class(42))
	}
}
