package mapping

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/fhir/go/fhirversion"
	"github.com/google/fhir/go/jsonformat"
	"github.com/google/fhir/go/jsonformat/fhirvalidate"

	dtpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/datatypes_go_proto"
	bcrpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/resources/bundle_and_contained_resource_go_proto"
)

// Resource is one validated, marshalled FHIR R4 resource built from a
// record.
type Resource struct {
	// Type is the FHIR resource type: "Patient", "MedicationRequest",
	// "MedicationAdministration" or "Observation".
	Type string
	// Identifier is the resource's business identifier, the key that makes
	// a write of it idempotent.
	Identifier Identifier
	// JSON is the compact FHIR JSON of the resource, without id or
	// meta.versionId (the EHR assigns those).
	JSON []byte

	// byMap is the JSON as Map wrote it: TransactionBundle copies that
	// into a Bundle as it is, and checks any other (a Resource built by
	// hand, or whose JSON was replaced).
	byMap mapJSON
}

// mapJSON identifies the JSON that Map wrote for a Resource: its first
// byte and its length.
type mapJSON struct {
	first *byte
	n     int
}

// jsonByMap reports whether r.JSON is still the JSON that Map wrote for it,
// which is known to be one valid, compact JSON object.
func (r Resource) jsonByMap() bool {
	return r.byMap.n > 0 && len(r.JSON) == r.byMap.n && &r.JSON[0] == r.byMap.first
}

// Lookup gives the mapper what a record refers to. Implementations must be
// safe for concurrent use if the Mapper is used concurrently with them.
type Lookup interface {
	// Reference returns the literal reference to the resource built from
	// the record (kind, id): "Patient/123", an absolute URL or
	// "urn:uuid:…". "" means: use a logical reference ({"type": T,
	// "identifier": {…}}) by the business identifier.
	Reference(kind Kind, id string) string
	// Order returns the order with that id, or nil if unknown (an
	// administration takes its medication product from its order).
	Order(id string) *Order
}

// ErrOrderUnknown is wrapped by the *MappingError of an administration whose
// order the Lookup does not know: the record should wait for its order, it
// is not wrong.
var ErrOrderUnknown = errors.New("order unknown to the lookup")

// MappingError reports a record that cannot be mapped to FHIR. Its message
// names the kind, the record id, the field and a fixed reason, never a field
// value. The id of a patient record is its MRN, so for patients the message
// gives the line instead of the id (RecordID still holds it).
type MappingError struct {
	Kind     Kind
	RecordID string
	// Line is the record's line in its source file, zero if unknown.
	Line int
	// Field is the local record field, e.g. "route" or "vitals[1].spo2";
	// empty when the problem is not with one field.
	Field string
	// Reason is a fixed description of the problem.
	Reason string
	// Err is the underlying error, if any (ErrOrderUnknown, a FHIR
	// validation error).
	Err error
}

// Error implements error.
func (e *MappingError) Error() string {
	var b strings.Builder
	b.WriteString("mapping ")
	b.WriteString(string(e.Kind))
	switch {
	case e.Kind == KindPatient && e.Line > 0:
		fmt.Fprintf(&b, " record (line %d)", e.Line)
	case e.Kind == KindPatient:
		b.WriteString(" record")
	default:
		fmt.Fprintf(&b, " %q", e.RecordID)
	}
	if e.Field != "" {
		fmt.Fprintf(&b, ": field %q", e.Field)
	}
	b.WriteString(": ")
	b.WriteString(e.Reason)
	return b.String()
}

// Unwrap returns the underlying error.
func (e *MappingError) Unwrap() error { return e.Err }

// Mapper maps local records to FHIR R4 resources. It is safe for concurrent
// use: every call builds its own protos, and the jsonformat Marshaller it
// shares between calls keeps no per-call state (pure FHIR JSON format).
type Mapper struct {
	cfg  Config
	sys  clinicSystems
	json *jsonformat.Marshaller
}

// clinicSystems holds the clinic's identifier and code system URIs.
type clinicSystems struct {
	patient, order, administration, score string
	adminObservation                      string
	product, notDoneReason, adverseEvent  string
	severity, instrument                  string
}

// NewMapper returns a Mapper for cfg. It checks what mapping needs from cfg
// (an absolute identifier base URI, a display for every formulary product,
// adverse event and not-done reason, a loadable time zone) and returns every
// problem found. The Mapper keeps its own copy of cfg.
func NewMapper(cfg *Config) (*Mapper, error) {
	if cfg == nil {
		return nil, errors.New("mapping: nil config")
	}
	var errs []error
	base := strings.TrimSuffix(cfg.Identifiers.Base, "/")
	if !absoluteURI(base) {
		errs = append(errs, errors.New("mapping: identifiers.base must be an absolute URI"))
	}
	instrument := cfg.Identifiers.ClinicCodeSystem
	if instrument == "" {
		instrument = base + "/instrument"
	} else if !absoluteURI(instrument) {
		errs = append(errs, errors.New("mapping: identifiers.clinic_code_system must be an absolute URI"))
	}
	for _, code := range slices.Sorted(maps.Keys(cfg.Formulary)) {
		p := cfg.Formulary[code]
		if strings.TrimSpace(p.Display) == "" {
			errs = append(errs, fmt.Errorf("mapping: formulary %q: display is required", code))
		}
		if p.RxNorm != "" && !rxcuiLike(p.RxNorm) {
			errs = append(errs, fmt.Errorf("mapping: formulary %q: rxnorm must be an RxCUI (digits)", code))
		}
	}
	for _, code := range slices.Sorted(maps.Keys(cfg.AdverseEvents)) {
		if strings.TrimSpace(cfg.AdverseEvents[code]) == "" {
			errs = append(errs, fmt.Errorf("mapping: adverse_events %q: display is required", code))
		}
	}
	for _, code := range slices.Sorted(maps.Keys(cfg.NotDoneReasons)) {
		if strings.TrimSpace(cfg.NotDoneReasons[code]) == "" {
			errs = append(errs, fmt.Errorf("mapping: not_done_reasons %q: display is required", code))
		}
	}
	tz := cfg.TimeZone
	if tz == "" {
		tz = "UTC"
	}
	if _, err := time.LoadLocation(tz); err != nil {
		errs = append(errs, fmt.Errorf("mapping: time_zone: %w", err))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	marshaller, err := jsonformat.NewMarshaller(false, "", "", fhirversion.R4)
	if err != nil {
		return nil, fmt.Errorf("mapping: create FHIR marshaller: %w", err)
	}
	m := &Mapper{
		cfg:  mapperConfigCopy(cfg),
		json: marshaller,
		sys: clinicSystems{
			patient:          base + "/" + string(KindPatient),
			order:            base + "/" + string(KindOrder),
			administration:   base + "/" + string(KindAdministration),
			score:            base + "/" + string(KindScore),
			adminObservation: base + "/administration-observation",
			product:          base + "/product",
			notDoneReason:    base + "/not-done-reason",
			adverseEvent:     base + "/adverse-event",
			severity:         base + "/severity",
			instrument:       instrument,
		},
	}
	m.cfg.Identifiers.Base = base
	m.cfg.Identifiers.ClinicCodeSystem = instrument
	return m, nil
}

// mapperConfigCopy copies cfg deeply enough that later changes by the caller do
// not reach the Mapper.
func mapperConfigCopy(cfg *Config) Config {
	c := *cfg
	c.Formulary = make(map[string]Product, len(cfg.Formulary))
	for k, p := range cfg.Formulary {
		p.Routes = append([]string(nil), p.Routes...)
		c.Formulary[k] = p
	}
	c.AdverseEvents = make(map[string]string, len(cfg.AdverseEvents))
	for k, v := range cfg.AdverseEvents {
		c.AdverseEvents[k] = v
	}
	c.NotDoneReasons = make(map[string]string, len(cfg.NotDoneReasons))
	for k, v := range cfg.NotDoneReasons {
		c.NotDoneReasons[k] = v
	}
	return c
}

// Map builds every resource of a record: the primary resource first, then
// the derived ones (the vital-sign, body weight and adverse-event
// Observations of an administration, in that order). Every resource passes
// fhirvalidate.Validate before it is marshalled. lk may be nil: every
// reference is then logical, and an administration cannot be mapped (its
// product comes from its order).
//
// A record that cannot be mapped gives a *MappingError; a record with
// several problems gives errors.Join of one *MappingError per problem
// (errors.As finds the first). Map is safe for concurrent use.
func (m *Mapper) Map(rec *Record, lk Lookup) ([]Resource, error) {
	if rec == nil {
		return nil, errors.New("mapping: nil record")
	}
	if lk == nil {
		lk = noLookup{}
	}
	p := &mapProblems{rec: rec}
	var out []builtResource
	switch {
	case rec.Kind == KindPatient && rec.Patient != nil:
		out = m.patient(rec.Patient, p)
	case rec.Kind == KindOrder && rec.Order != nil:
		out = m.medicationRequest(rec.Order, lk, p)
	case rec.Kind == KindAdministration && rec.Administration != nil:
		out = m.administration(rec.Administration, lk, p)
	case rec.Kind == KindScore && rec.Score != nil:
		out = m.score(rec.Score, lk, p)
	default:
		p.add("kind", "record kind does not match its content")
	}
	if err := p.err(); err != nil {
		return nil, err
	}
	res := make([]Resource, 0, len(out))
	for _, b := range out {
		r, err := m.finish(b)
		if err != nil {
			// jsonformat's validation messages hold a FHIR path and a fixed
			// reason, no values, so they may be shown.
			return nil, &MappingError{Kind: rec.Kind, RecordID: rec.ID(), Line: rec.Line,
				Reason: "produced " + b.typ + " fails FHIR validation: " + strings.ReplaceAll(err.Error(), "\n", "; "), Err: err}
		}
		res = append(res, r)
	}
	return res, nil
}

// builtResource is one resource proto waiting to be validated and marshalled.
type builtResource struct {
	typ string
	id  Identifier
	cr  *bcrpb.ContainedResource
}

// finish validates and marshals one built resource. The proto is owned by
// this call: Marshal rewrites references in place, so it runs after
// Validate and never on a shared proto.
func (m *Mapper) finish(b builtResource) (Resource, error) {
	if err := fhirvalidate.Validate(b.cr); err != nil {
		return Resource{}, err
	}
	data, err := m.json.Marshal(b.cr)
	if err != nil {
		return Resource{}, fmt.Errorf("marshal %s: %w", b.typ, err)
	}
	r := Resource{Type: b.typ, Identifier: b.id, JSON: data}
	if len(data) > 0 {
		r.byMap = mapJSON{first: &data[0], n: len(data)}
	}
	return r, nil
}

// noLookup is the Lookup used when Map is given nil.
type noLookup struct{}

func (noLookup) Reference(Kind, string) string { return "" }
func (noLookup) Order(string) *Order           { return nil }

// mapProblems collects the field problems of one record.
type mapProblems struct {
	rec  *Record
	errs []error
}

func (p *mapProblems) add(field, reason string) {
	p.addErr(field, reason, nil)
}

func (p *mapProblems) addErr(field, reason string, err error) {
	p.errs = append(p.errs, &MappingError{Kind: p.rec.Kind, RecordID: p.rec.ID(), Line: p.rec.Line,
		Field: field, Reason: reason, Err: err})
}

func (p *mapProblems) ok() bool { return len(p.errs) == 0 }

func (p *mapProblems) err() error {
	switch len(p.errs) {
	case 0:
		return nil
	case 1:
		return p.errs[0]
	}
	return errors.Join(p.errs...)
}

// resourceTypeOf is the FHIR type of the primary resource of each kind.
func resourceTypeOf(k Kind) string {
	switch k {
	case KindPatient:
		return "Patient"
	case KindOrder:
		return "MedicationRequest"
	case KindAdministration:
		return "MedicationAdministration"
	case KindScore:
		return "Observation"
	}
	return ""
}

// reference returns the reference to the resource built from record (kind,
// id): the literal reference the Lookup gives (typed, so that fhirvalidate
// checks the target type), else a logical reference by business identifier.
func (m *Mapper) reference(lk Lookup, kind Kind, id string) *dtpb.Reference {
	if lit := lk.Reference(kind, id); lit != "" {
		ref := &dtpb.Reference{Reference: &dtpb.Reference_Uri{Uri: fString(lit)}}
		// "Type/id" becomes a typed reference; URLs and urn:uuid stay URIs.
		// NormalizeReference fails only for non-reference protos.
		_ = jsonformat.NormalizeReference(ref)
		return ref
	}
	ident := m.Identifier(kind, id)
	return &dtpb.Reference{
		Type:       fURI(resourceTypeOf(kind)),
		Identifier: &dtpb.Identifier{System: fURI(ident.System), Value: fString(ident.Value)},
	}
}

// practitionerRef returns a logical reference to a Practitioner by NPI, with
// the name as display.
func practitionerRef(pr Practitioner) *dtpb.Reference {
	ref := &dtpb.Reference{
		Type:       fURI("Practitioner"),
		Identifier: &dtpb.Identifier{System: fURI(systemNPI), Value: fString(pr.NPI)},
	}
	if name := strings.TrimSpace(pr.Name); name != "" {
		ref.Display = fString(name)
	}
	return ref
}

// checkNPI reports a practitioner without NPI.
func checkNPI(p *mapProblems, field string, pr Practitioner) {
	if strings.TrimSpace(pr.NPI) == "" {
		p.add(field+".npi", "required")
	}
}

// FHIR primitive constructors.

func fString(s string) *dtpb.String { return &dtpb.String{Value: s} }
func fURI(s string) *dtpb.Uri       { return &dtpb.Uri{Value: s} }
func fCode(s string) *dtpb.Code     { return &dtpb.Code{Value: s} }
func fMarkdown(s string) *dtpb.Markdown {
	return &dtpb.Markdown{Value: s}
}

// fDecimal renders v as a FHIR decimal. v must be finite.
func fDecimal(v float64) *dtpb.Decimal {
	return &dtpb.Decimal{Value: decimalText(v)}
}

// decimalText renders v in the shortest decimal form ("35", "0.5").
func decimalText(v float64) string {
	return strconv.FormatFloat(v, 'f', -1, 64)
}

// protoUTC is the time zone of every Date and DateTime the mapper builds:
// jsonformat's name for UTC. google/fhir/go v0.7.4 resolves the zone of
// each Date and DateTime it marshals with time.LoadLocation, except "Z".
// For an offset such as "-05:00" LoadLocation first looks for a zone file
// of that name (failed opens, a search of $GOROOT/lib/time/zoneinfo.zip or
// the embedded tzdata) before jsonformat parses the offset itself; for an
// IANA name it reads and parses the zone file. That was about a fifth of
// Map's CPU. With "Z" it costs nothing.
const protoUTC = "Z"

// fDateTime renders t as a FHIR dateTime in UTC ("2025-03-04T14:30:00Z"):
// the same instant as t, with the precision its fraction needs (seconds,
// milliseconds or microseconds). The offset t was given with is not kept
// (see protoUTC).
func fDateTime(t time.Time) *dtpb.DateTime {
	prec := dtpb.DateTime_SECOND
	switch ns := t.Nanosecond(); {
	case ns == 0:
	case ns%int(time.Millisecond) == 0:
		prec = dtpb.DateTime_MILLISECOND
	default:
		prec = dtpb.DateTime_MICROSECOND
	}
	return &dtpb.DateTime{ValueUs: t.UnixMicro(), Timezone: protoUTC, Precision: prec}
}

// parseDay parses a YYYY-MM-DD calendar date as its midnight in UTC, the
// zone fDate and fDayDateTime write it in: a calendar date has no zone,
// and any zone gives the same YYYY-MM-DD back.
func (m *Mapper) parseDay(s string) (time.Time, bool) {
	t, err := time.Parse(time.DateOnly, s)
	return t, err == nil
}

// fDate renders a calendar day from parseDay as a FHIR date.
func (m *Mapper) fDate(day time.Time) *dtpb.Date {
	return &dtpb.Date{ValueUs: day.UnixMicro(), Timezone: protoUTC, Precision: dtpb.Date_DAY}
}

// fDayDateTime renders a calendar day from parseDay as a day-precision
// FHIR dateTime.
func (m *Mapper) fDayDateTime(day time.Time) *dtpb.DateTime {
	return &dtpb.DateTime{ValueUs: day.UnixMicro(), Timezone: protoUTC, Precision: dtpb.DateTime_DAY}
}

// fUCUM returns a UCUM-coded quantity.
func fUCUM(v float64, unit, code string) *dtpb.Quantity {
	return &dtpb.Quantity{Value: fDecimal(v), Unit: fString(unit), System: fURI(systemUCUM), Code: fCode(code)}
}

// fSimpleUCUM returns a UCUM-coded SimpleQuantity.
func fSimpleUCUM(v float64, unit, code string) *dtpb.SimpleQuantity {
	return &dtpb.SimpleQuantity{Value: fDecimal(v), Unit: fString(unit), System: fURI(systemUCUM), Code: fCode(code)}
}

// fNote returns a note, or nil for empty text.
func fNote(text string) []*dtpb.Annotation {
	if strings.TrimSpace(text) == "" {
		return nil
	}
	return []*dtpb.Annotation{{Text: fMarkdown(text)}}
}

// finiteNumber reports whether v is a usable number.
func finiteNumber(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }

// absoluteURI reports whether s is an absolute URI with a scheme and no
// white space.
func absoluteURI(s string) bool {
	if s == "" || strings.ContainsAny(s, " \t\r\n") {
		return false
	}
	u, err := url.Parse(s)
	return err == nil && u.Scheme != "" && (u.Host != "" || u.Opaque != "")
}

// rxcuiLike reports whether s is a non-empty string of ASCII digits.
func rxcuiLike(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
