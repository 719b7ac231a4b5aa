//go:build race

package main

// raceEnabled is true when the tests run under the race detector, which
// slows google/fhir/go's protobuf reflection about twentyfold: the
// largest clinics of the tests shrink under it.
const raceEnabled = true
