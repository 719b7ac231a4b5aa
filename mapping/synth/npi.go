package synth

import "github.com/ketamine-fhir/ketamine-fhir/mapping"

// validNPI reports whether npi is ten digits with a valid check digit.
func validNPI(npi string) bool { return mapping.ValidNPI(npi) }

// makeNPI appends the check digit to a nine-digit base.
func makeNPI(base string) string {
	return base + string(mapping.NPICheckDigit(base))
}
