// Package testutil holds the helpers that the tests of several packages
// share, so each is written (and tested) once:
//
//   - Buffer, a bytes.Buffer safe for concurrent writers: the sink of a
//     logger, or of a command's stdout and stderr, that goroutines write
//     while the test reads;
//   - JSONLogger and TextLogger, slog loggers at debug level that write
//     into such a sink, and JSONLines to read JSON log lines back;
//   - WaitFor, which polls a condition that another goroutine or process
//     makes true, failing the test after a bound;
//   - PHI, which finds patient data (MRNs, names, birth dates, phones,
//     emails) in logs, errors and answers and reports what it found
//     without repeating it;
//   - Clock, a clock tests move by hand.
//
// It imports only the standard library, so the tests of every package may
// use it, including those of mapping, fhirtest and adapter/ehr, whose
// import policies (deps_test.go) cover their non-test code only. It is
// meant for _test.go files: no non-test package imports it (the policy
// test of cmd/ketamine-fhir checks that). Nothing in it knows the record
// format; a package's tests turn their records into PHI values and words.
package testutil
