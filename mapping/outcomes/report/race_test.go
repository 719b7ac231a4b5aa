//go:build race

package report_test

// raceEnabled is true under the race detector, which slows google/fhir/go's
// protobuf reflection (the in-process mapping of the test clinics) about
// twentyfold: the clinics shrink under it.
const raceEnabled = true
