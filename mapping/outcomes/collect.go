package outcomes

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/ketamine-fhir/ketamine-fhir/mapping"
)

// Code systems and codes the outcomes are recognised by
// (shared/reference/clinical-codes.md sections 5 and 6).
const (
	systemLOINC  = "http://loinc.org"
	loincPHQ9    = "44261-6"
	loincBPPanel = "85354-9"
	loincSys     = "8480-6"
	loincDia     = "8462-4"
	codeMADRS    = "MADRS"
)

// Codes holds the clinic-owned code systems the outcomes depend on: the
// systems `ketamine-fhir map` codes MADRS and adverse events in.
type Codes struct {
	// Instrument is the code system of instruments without a LOINC code;
	// MADRS is code "MADRS" in it.
	Instrument string
	// AdverseEvent is the code system of adverse-event Observations.
	AdverseEvent string
}

// CodesFor returns the code systems the mapping with cfg produces.
func CodesFor(cfg *mapping.Config) Codes {
	base := strings.TrimSuffix(cfg.Identifiers.Base, "/")
	c := Codes{Instrument: cfg.Identifiers.ClinicCodeSystem, AdverseEvent: base + "/adverse-event"}
	if c.Instrument == "" {
		c.Instrument = base + "/instrument"
	}
	return c
}

// DefaultCodes returns the code systems of the default mapping config.
func DefaultCodes() Codes { return CodesFor(mapping.DefaultConfig()) }

// ResourceError is a resource the Collector cannot read: not JSON, not a
// FHIR resource, or a field of the wrong shape. It names the resource type
// and the field, never a value.
type ResourceError struct {
	// Type is the resource type, empty when the input is not a resource.
	Type string
	// Field is the FHIR element, empty when the whole input is at fault.
	Field string
	// Reason says what is wrong.
	Reason string
}

func (e *ResourceError) Error() string {
	switch {
	case e.Type == "":
		return e.Reason
	case e.Field == "":
		return e.Type + ": " + e.Reason
	}
	return e.Type + ": " + e.Field + ": " + e.Reason
}

// Collector keeps what the outcomes need from a stream of resources. Add
// resources in any order, then call Compute. The zero value is not usable:
// use NewCollector. A Collector is not safe for concurrent use.
type Collector struct {
	codes    Codes
	resCount int
	types    map[string]int // resources read, by known type
	skipped  map[string]int // resources of types the report does not use
	excluded map[string]int // resources left out, by reason
	patients map[string]*patientData
	keyIDs   map[string]int32 // administration keys, interned
	admins   []*admin         // by key id; nil until the administration is read
	vitals   []bpReading
	events   []adverseEvent
	aeNames  map[string]string // adverse-event code -> display
}

// NewCollector returns an empty Collector that recognises the clinic's
// codes.
func NewCollector(codes Codes) *Collector {
	return &Collector{
		codes:    codes,
		types:    map[string]int{},
		skipped:  map[string]int{},
		excluded: map[string]int{},
		patients: map[string]*patientData{},
		keyIDs:   map[string]int32{},
		aeNames:  map[string]string{},
	}
}

type patientData struct {
	sessions []*admin
	scores   map[string][]score // by instrument
}

type admin struct {
	start, end time.Time
	request    string // key of the MedicationRequest, "" if none
	patient    *patientData
	counted    bool // a session: completed or stopped
}

type score struct {
	t     time.Time
	value float64
}

// bpReading is one blood pressure, kept small: a clinic has several a
// session.
type bpReading struct {
	admins   [2]int32 // key ids of the first two partOf references; -1 for none
	t        int64    // Unix seconds
	sys, dia float32
}

// keyID interns an administration key.
func (c *Collector) keyID(k string) int32 {
	id, ok := c.keyIDs[k]
	if !ok {
		id = int32(len(c.keyIDs))
		c.keyIDs[k] = id
	}
	return id
}

type adverseEvent struct {
	code    string
	patient string
}

// Minimal FHIR JSON shapes; unknown elements are ignored.
type fhirIdentifier struct {
	System string `json:"system"`
	Value  string `json:"value"`
}

type fhirReference struct {
	Reference  string          `json:"reference"`
	Type       string          `json:"type"`
	Identifier *fhirIdentifier `json:"identifier"`
}

type fhirCoding struct {
	System  string `json:"system"`
	Code    string `json:"code"`
	Display string `json:"display"`
}

type fhirConcept struct {
	Coding []fhirCoding `json:"coding"`
}

type fhirQuantity struct {
	Value *float64 `json:"value"`
}

type fhirPeriod struct {
	Start string `json:"start"`
	End   string `json:"end"`
}

type fhirComponent struct {
	Code          fhirConcept   `json:"code"`
	ValueQuantity *fhirQuantity `json:"valueQuantity"`
}

type fhirResource struct {
	ResourceType      string           `json:"resourceType"`
	ID                string           `json:"id"`
	Identifier        []fhirIdentifier `json:"identifier"`
	Status            string           `json:"status"`
	Subject           *fhirReference   `json:"subject"`
	PartOf            []fhirReference  `json:"partOf"`
	Request           *fhirReference   `json:"request"`
	Code              *fhirConcept     `json:"code"`
	Component         []fhirComponent  `json:"component"`
	ValueInteger      *float64         `json:"valueInteger"`
	ValueQuantity     *fhirQuantity    `json:"valueQuantity"`
	ValueString       *string          `json:"valueString"`
	EffectiveDateTime string           `json:"effectiveDateTime"`
	EffectiveInstant  string           `json:"effectiveInstant"`
	EffectivePeriod   *fhirPeriod      `json:"effectivePeriod"`
}

// knownTypes are the resource types the report reads (Patient and
// MedicationRequest only to count them: patients are known by the subject
// of their data, orders by the request of their administrations).
var knownTypes = map[string]bool{"Patient": true, "MedicationRequest": true, "MedicationAdministration": true, "Observation": true}

// Add reads one resource. A resource that is not JSON, not a FHIR
// resource, or has an element of the wrong shape gives a *ResourceError
// and changes nothing; a resource of a type the report does not use is
// counted and skipped; a resource the report cannot use (an Observation
// without a value, or with a status other than final, amended or
// corrected) is counted by reason.
func (c *Collector) Add(data []byte) error {
	var r fhirResource
	if err := json.Unmarshal(data, &r); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			typ := resourceTypeOf(data)
			if typ == "" {
				return &ResourceError{Reason: "not a FHIR resource (a JSON object with a resourceType)"}
			}
			return &ResourceError{Type: typ, Field: te.Field, Reason: "wrong JSON type (" + te.Value + ")"}
		}
		return &ResourceError{Reason: "not valid JSON"}
	}
	if r.ResourceType == "" {
		return &ResourceError{Reason: "not a FHIR resource (a JSON object with a resourceType)"}
	}
	if !knownTypes[r.ResourceType] {
		c.resCount++
		c.skipped[r.ResourceType]++
		return nil
	}
	var err error
	switch r.ResourceType {
	case "MedicationAdministration":
		err = c.addAdministration(&r)
	case "Observation":
		err = c.addObservation(&r)
	}
	if err != nil {
		return err
	}
	c.resCount++
	c.types[r.ResourceType]++
	return nil
}

// resourceTypeOf returns the resourceType of a JSON object, if it has one.
func resourceTypeOf(data []byte) string {
	var head struct {
		ResourceType string `json:"resourceType"`
	}
	if json.Unmarshal(data, &head) != nil {
		return ""
	}
	return head.ResourceType
}

// refKey returns the key of a reference to a resource of type typ: the
// literal reference as Type/id (a full URL or a version is cut), else
// Type|system|value of its identifier; "" if it has neither.
func refKey(r *fhirReference, typ string) string {
	if r == nil {
		return ""
	}
	if ref := r.Reference; ref != "" && !strings.HasPrefix(ref, "#") {
		if i := strings.Index(ref, "/_history/"); i >= 0 {
			ref = ref[:i]
		}
		parts := strings.Split(ref, "/")
		if len(parts) >= 2 {
			return parts[len(parts)-2] + "/" + parts[len(parts)-1]
		}
		return ref
	}
	if id := r.Identifier; id != nil && id.Value != "" {
		t := r.Type
		if t == "" {
			t = typ
		}
		return t + "|" + id.System + "|" + id.Value
	}
	return ""
}

// resourceKeys returns every key a reference to r may use.
func resourceKeys(r *fhirResource) []string {
	var keys []string
	if r.ID != "" {
		keys = append(keys, r.ResourceType+"/"+r.ID)
	}
	for _, id := range r.Identifier {
		if id.Value != "" {
			keys = append(keys, r.ResourceType+"|"+id.System+"|"+id.Value)
		}
	}
	return keys
}

func (c *Collector) patient(r *fhirResource) (*patientData, string, error) {
	key := refKey(r.Subject, "Patient")
	if key == "" {
		return nil, "", &ResourceError{Type: r.ResourceType, Field: "subject", Reason: "no reference or identifier"}
	}
	p := c.patients[key]
	if p == nil {
		p = &patientData{scores: map[string][]score{}}
		c.patients[key] = p
	}
	return p, key, nil
}

// fhirTime parses a FHIR dateTime or instant. ok is false for a value
// less precise than a day (a year or a month); an invalid value is an
// error.
func fhirTime(s string) (t time.Time, ok bool, err error) {
	switch len(s) {
	case 4, 7:
		if _, err := time.Parse("2006-01"[:len(s)], s); err != nil {
			return time.Time{}, false, err
		}
		return time.Time{}, false, nil
	case 10:
		t, err := time.Parse(time.DateOnly, s)
		return t, err == nil, err
	}
	t, err = time.Parse(time.RFC3339Nano, s)
	return t, err == nil, err
}

// effective returns the start and end of a resource's effective[x].
func effective(r *fhirResource) (start, end time.Time, ok bool, err error) {
	field, s := "effectiveDateTime", r.EffectiveDateTime
	if s == "" && r.EffectiveInstant != "" {
		field, s = "effectiveInstant", r.EffectiveInstant
	}
	if s == "" && r.EffectivePeriod != nil {
		field, s = "effectivePeriod.start", r.EffectivePeriod.Start
	}
	if s == "" {
		return time.Time{}, time.Time{}, false, nil
	}
	bad := func() error {
		return &ResourceError{Type: r.ResourceType, Field: field, Reason: "not a FHIR dateTime"}
	}
	start, ok, err = fhirTime(s)
	if err != nil {
		return time.Time{}, time.Time{}, false, bad()
	}
	end = start
	if field == "effectivePeriod.start" && r.EffectivePeriod.End != "" {
		field = "effectivePeriod.end"
		e, eok, err := fhirTime(r.EffectivePeriod.End)
		if err != nil {
			return time.Time{}, time.Time{}, false, bad()
		}
		if eok && e.After(start) {
			end = e
		}
	}
	return start, end, ok, nil
}

func (c *Collector) addAdministration(r *fhirResource) error {
	p, _, err := c.patient(r)
	if err != nil {
		return err
	}
	start, end, ok, err := effective(r)
	if err != nil {
		return err
	}
	counted := r.Status == "completed" || r.Status == "stopped"
	if !counted {
		c.excluded["administration not given (status "+statusText(r.Status)+")"]++
		return nil
	}
	if !ok {
		c.excluded["administration without a time precise to the day"]++
		return nil
	}
	a := &admin{start: start, end: end, request: refKey(r.Request, "MedicationRequest"), patient: p, counted: true}
	p.sessions = append(p.sessions, a)
	for _, k := range resourceKeys(r) {
		id := int(c.keyID(k))
		for len(c.admins) <= id {
			c.admins = append(c.admins, nil)
		}
		c.admins[id] = a
	}
	return nil
}

// statusText bounds a status for use as a count label.
func statusText(s string) string {
	switch s {
	case "in-progress", "not-done", "on-hold", "completed", "entered-in-error", "stopped", "unknown":
		return s
	case "":
		return "missing"
	}
	return "other"
}

// usableObservation says whether an Observation's status makes it data.
func usableObservation(status string) bool {
	return status == "final" || status == "amended" || status == "corrected"
}

func (c *Collector) addObservation(r *fhirResource) error {
	if r.Code == nil {
		return nil
	}
	kind, aeCode, aeDisplay := "", "", ""
	for _, cd := range r.Code.Coding {
		switch {
		case cd.System == systemLOINC && cd.Code == loincPHQ9:
			kind = PHQ9
		case cd.System == c.codes.Instrument && cd.Code == codeMADRS:
			kind = MADRS
		case cd.System == systemLOINC && cd.Code == loincBPPanel:
			kind = "bp"
		case cd.System == c.codes.AdverseEvent && cd.Code != "":
			kind, aeCode, aeDisplay = "ae", cd.Code, cd.Display
		}
		if kind != "" {
			break
		}
	}
	if kind == "" {
		return nil
	}
	if !usableObservation(r.Status) {
		c.excluded["observation not final, amended or corrected"]++
		return nil
	}
	_, pkey, err := c.patient(r)
	if err != nil {
		return err
	}
	p := c.patients[pkey]
	switch kind {
	case "ae":
		if _, ok := c.aeNames[aeCode]; !ok {
			c.aeNames[aeCode] = aeDisplay
		}
		c.events = append(c.events, adverseEvent{code: aeCode, patient: pkey})
		return nil
	}
	t, _, ok, err := effective(r)
	if err != nil {
		return err
	}
	if !ok {
		c.excluded["observation without a time precise to the day"]++
		return nil
	}
	if kind == "bp" {
		var sys, dia *float64
		for _, comp := range r.Component {
			for _, cd := range comp.Code.Coding {
				if cd.System != systemLOINC || comp.ValueQuantity == nil {
					continue
				}
				switch cd.Code {
				case loincSys:
					sys = comp.ValueQuantity.Value
				case loincDia:
					dia = comp.ValueQuantity.Value
				}
			}
		}
		if sys == nil || dia == nil {
			c.excluded["blood pressure without systolic and diastolic values"]++
			return nil
		}
		rd := bpReading{admins: [2]int32{-1, -1}, t: t.Unix(), sys: float32(*sys), dia: float32(*dia)}
		n := 0
		for i := range r.PartOf {
			if k := refKey(&r.PartOf[i], "MedicationAdministration"); k != "" && n < len(rd.admins) {
				rd.admins[n] = c.keyID(k)
				n++
			}
		}
		if n == 0 {
			c.excluded["blood pressure not partOf an administration"]++
			return nil
		}
		c.vitals = append(c.vitals, rd)
		return nil
	}
	var v *float64
	switch {
	case r.ValueInteger != nil:
		v = r.ValueInteger
	case r.ValueQuantity != nil && r.ValueQuantity.Value != nil:
		v = r.ValueQuantity.Value
	case r.ValueString != nil:
		// US Core's own PHQ-9 example carries the total as valueString.
		n, err := strconv.ParseFloat(strings.TrimSpace(*r.ValueString), 64)
		if err != nil {
			return &ResourceError{Type: r.ResourceType, Field: "valueString", Reason: "a score total that is not a number"}
		}
		v = &n
	}
	if v == nil {
		c.excluded["score without a value"]++
		return nil
	}
	if *v < 0 || *v > maxScore[kind] {
		return &ResourceError{Type: r.ResourceType, Field: "value[x]", Reason: fmt.Sprintf("%s total outside 0-%g", kind, maxScore[kind])}
	}
	p.scores[kind] = append(p.scores[kind], score{t: t, value: *v})
	return nil
}

// maxScore is each instrument's highest total.
var maxScore = map[string]float64{PHQ9: 27, MADRS: 60}
