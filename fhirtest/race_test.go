//go:build race

package fhirtest

const raceEnabled = true
