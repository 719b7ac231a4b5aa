// Package outcomes computes a ketamine clinic's depression outcomes and
// safety figures from FHIR R4 resources: PHQ-9 and MADRS trajectories,
// response and remission at the end of the induction series and 4 and 12
// weeks after the first session, sessions to first response, adverse events
// per 100 sessions, and blood pressure before and after the dose
// (DESIGN.md section 8).
//
// It is a pure transformation: a Collector takes resources as JSON, one at
// a time and in any order (the NDJSON of `ketamine-fhir map` or of a Bulk
// Data export), and Compute turns what it kept into a Report. There is no
// network, storage or clock. Rendering (HTML and charts) lives in
// outcomes/report.
//
// # Identification
//
// Resources are recognised by code, never by text:
//   - PHQ-9 total: Observation with LOINC 44261-6;
//   - MADRS total: Observation with code "MADRS" in the clinic's instrument
//     code system (Codes.Instrument; MADRS has no verified LOINC code);
//   - adverse events: Observations coded in the clinic's adverse-event code
//     system (Codes.AdverseEvent);
//   - blood pressure: Observation with LOINC 85354-9 and components 8480-6
//     (systolic) and 8462-4 (diastolic), partOf the MedicationAdministration;
//   - sessions: MedicationAdministration with status completed or stopped
//     (a dose was given, in full or in part).
//
// Observations with status entered-in-error, cancelled, preliminary,
// registered or unknown are left out, and so is every administration with
// another status. Patients are keyed by the literal reference of subject
// (Patient/123) when it has one, else by its identifier (system|value), so
// both `map` output (logical references, no ids) and an EHR export
// (literal references) work; administrations are matched to vitals and
// adverse events the same way.
//
// # Definitions
//
// Definitions lists every rule with its source; the report prints them.
// In short: baseline is the last score on or before the first session and
// no more than Options.BaselineDays (30) days before it; response is a
// reduction of 50% or more from baseline (NQF 1884/1885); remission is
// PHQ-9 below 5 (CMS159) and MADRS at or below Options.MADRSRemission
// (default 10, Zimmerman et al. 2004; Hawley et al. 2002). Only patients
// whose baseline is above the remission threshold are followed (for
// PHQ-9, above 9: the index event of CMS159 and NQF 1884/1885).
//
// # Small cells
//
// No figure is shown for fewer than MinCell patients (default 11): a
// cohort smaller than that is suppressed with all its figures, and a
// proportion whose numerator or complement counts 1 to MinCell-1 patients
// keeps its cohort size but hides the count and the rate, so neither can be
// derived from the other.
package outcomes
