package fhirtest

import "encoding/json"

// RejectRule decides whether the server refuses to write a resource, as an
// EHR's own business rules do: the reason for refusing it, or "" to let it
// through. resourceType is the resource's type and resource its JSON as the
// client sent it. A RejectRule must be safe for concurrent use.
type RejectRule func(resourceType string, resource []byte) (reason string)

// RejectWrites sets rule for every create and update that arrives over
// HTTP, an entry of a transaction or batch Bundle included: a resource for
// which rule gives a reason is refused with 422 Unprocessable Entity and an
// OperationOutcome (issue code business-rule) whose diagnostics is the
// reason. No retry changes that answer, so a client should give up on the
// resource (a dead letter) and go on with the rest. A transaction with such
// an entry fails as a whole, and its OperationOutcome names the entry; a
// batch refuses that entry alone. The request log records FaultRejected
// for a refused create, update or transaction.
//
// rule runs before any conditional match or write and sees every write
// request, retries included. nil removes the rule; so does ClearFaults.
// Add is not subject to it, and Reset keeps it.
func (s *Server) RejectWrites(rule RejectRule) {
	if rule == nil {
		s.reject.Store(nil)
		return
	}
	s.reject.Store(&rule)
}

// rejected applies the RejectWrites rule to a resource about to be written
// over HTTP: nil, or the 422 to answer.
func (s *Server) rejected(resourceType string, resource []byte) *fhirError {
	rule := s.reject.Load()
	if rule == nil {
		return nil
	}
	if reason := (*rule)(resourceType, resource); reason != "" {
		ferr := errorf(422, "business-rule", "%s", reason)
		ferr.fault = FaultRejected
		return ferr
	}
	return nil
}

// RejectIdentifiers returns a RejectRule that refuses every resource with
// an identifier (of any system) whose value is one of values, for example
// an MRN the EHR merged away. Its reason does not repeat the value, which
// may be patient data.
func RejectIdentifiers(values ...string) RejectRule {
	refused := make(map[string]bool, len(values))
	for _, v := range values {
		refused[v] = true
	}
	return func(_ string, resource []byte) string {
		var r struct {
			Identifier []struct {
				Value string `json:"value"`
			} `json:"identifier"`
		}
		if json.Unmarshal(resource, &r) != nil {
			return ""
		}
		for _, id := range r.Identifier {
			if refused[id.Value] {
				return "an identifier of this resource is refused by the server's rules"
			}
		}
		return ""
	}
}
