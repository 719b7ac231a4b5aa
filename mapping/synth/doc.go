// Package synth generates a deterministic synthetic ketamine clinic: local
// records (format v1, DESIGN.md section 2) for tests, the demo and
// benchmarks. No record describes a real person.
//
// Each patient of the clinic, a treatment-resistant depression practice,
// gets an intake consultation with baseline PHQ-9, GAD-7 and MADRS (and
// for some a QIDS-SR16), then an induction order and its series:
//
//   - most patients (about 65%): IM ketamine (ketamine-50mg-ml or
//     ketamine-100mg-ml), 0.5 to 1.0 mg/kg, six sessions twice a week;
//   - some (20%): IV ketamine infusions (ketamine-10mg-ml), 0.5 mg/kg over
//     40 minutes, six sessions twice a week;
//   - some (15%): esketamine nasal spray (esketamine-28mg-nasal), 56 or 84
//     mg, eight sessions twice a week.
//
// Sessions fall on Monday and Thursday or Tuesday and Friday, so they are 3
// and 4 days apart in turn. Each administration carries the dose in mg (or
// in mg/kg with weight_kg for some patients), the weight, vitals before and
// after the dose (with ketamine's usual small rise in blood pressure and
// heart rate), the lot and its expiry, the IM site (alternating sides), the
// performer's NPI and now and then adverse events. A few sessions are
// not-done (with the planned dose and a reason), a few infusions are
// stopped, a few are charted twice and the copy entered-in-error, and about
// one patient in twenty drops out (the order is cancelled). PHQ-9 is taken
// before every second session, GAD-7, MADRS (and QIDS-SR16) at the end of
// the series, with totals that fall along a response curve: about half the
// patients respond (at least a 50% drop), and most responders go on to a
// maintenance order (1/week or 2/month) with its own sessions.
//
// Every code comes from the default mapping.Config (formulary, adverse
// events, not-done reasons) or reference/clinical-codes.md (ICD-10-CM
// diagnoses); every NPI has a valid check digit; every time is RFC 3339 in
// the clinic's UTC-05:00 offset and lies within Span of Options.Start.
// The output is a pure function of Options: the package uses its own
// random number generator and never reads the clock.
//
// Generate streams records to a callback; WriteNDJSON writes them as NDJSON.
package synth
