package mapping

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// The default limits of a Parser.
const (
	// DefaultMaxRecordBytes is the default size limit of one record: an
	// NDJSON line or a CSV row.
	DefaultMaxRecordBytes = 1 << 20
	// DefaultMaxFieldBytes is the default size limit of a string field
	// other than note: ids, codes, names, phone, email, lot.
	DefaultMaxFieldBytes = 256
	// DefaultMaxNoteBytes is the default size limit of a note.
	DefaultMaxNoteBytes = 4096
	// DefaultMaxListItems is the default limit of items in a list field
	// (given, diagnoses, vitals, adverse_events, items).
	DefaultMaxListItems = 256
)

// maxJSONDepth bounds the nesting of JSON values. The record format nests at
// most three levels (record, vitals list, vital); anything deeper is
// rejected before it can cost stack or memory.
const maxJSONDepth = 8

// Parser parses and checks local records (DESIGN.md section 2) against a
// clinic's Config. Build it with NewParser and set the limits before the
// first use; a Parser is then safe for concurrent use.
type Parser struct {
	// MaxRecordBytes limits the size of one record: an NDJSON line
	// (without its newline) or a CSV row. Defaults to
	// DefaultMaxRecordBytes (1 MiB).
	MaxRecordBytes int
	// MaxFieldBytes limits every string field other than note. Defaults to
	// DefaultMaxFieldBytes (256 bytes).
	MaxFieldBytes int
	// MaxNoteBytes limits a note. Defaults to DefaultMaxNoteBytes (4 KiB).
	MaxNoteBytes int
	// MaxListItems limits the items of a list field. Defaults to
	// DefaultMaxListItems (256).
	MaxListItems int

	cfg *Config
	now func() time.Time
}

// NewParser returns a Parser that checks records against cfg, with now as
// the clock of the "not in the future" checks. A nil cfg means
// DefaultConfig(); a nil now means time.Now. The Parser keeps cfg: do not
// modify it afterwards. NewParser does not validate cfg: call
// cfg.Validate first.
func NewParser(cfg *Config, now func() time.Time) *Parser {
	if cfg == nil {
		cfg = DefaultConfig()
	}
	if now == nil {
		now = time.Now
	}
	return &Parser{
		MaxRecordBytes: DefaultMaxRecordBytes,
		MaxFieldBytes:  DefaultMaxFieldBytes,
		MaxNoteBytes:   DefaultMaxNoteBytes,
		MaxListItems:   DefaultMaxListItems,
		cfg:            cfg,
		now:            now,
	}
}

// Config returns the configuration the Parser checks against.
func (p *Parser) Config() *Config { return p.cfg }

// The fixed reasons shared by parsing and checking.
const (
	reasonRequired   = "required"
	reasonNotString  = "not a string"
	reasonNotNumber  = "not a number"
	reasonNotInteger = "not an integer"
	reasonNotObject  = "not an object"
	reasonNotList    = "not a list"
	reasonNotTime    = "not an RFC 3339 time with offset (2006-01-02T15:04:05Z07:00)"
	reasonNotDate    = "not a date (YYYY-MM-DD)"
	reasonUnknown    = "unknown field"
	reasonDuplicate  = "duplicate field"
	reasonTooMany    = "too many items"
	reasonOutOfRange = "number out of range"
	reasonAtLeastOne = "must be at least 1"
)

// Parse parses one record, a JSON object such as an NDJSON line, and runs
// every check of DESIGN.md section 2 on it. line is the record's line in
// its file (0 if none); it goes into Record.Line and RecordError.Line.
//
// For any bad record the error is a *RecordError listing every problem.
// Before the fields are checked, data must be valid UTF-8, at most
// MaxRecordBytes long and exactly one JSON object without duplicate keys.
// The "kind" member may come anywhere in the object. A member whose value
// is null, "" or [] counts as absent.
func (p *Parser) Parse(data []byte, line int) (*Record, error) {
	if len(data) > p.MaxRecordBytes {
		return nil, &RecordError{Line: line, Problems: []FieldError{{Reason: "record larger than " + strconv.Itoa(p.MaxRecordBytes) + " bytes"}}}
	}
	if !utf8.Valid(data) {
		return nil, &RecordError{Line: line, Problems: []FieldError{{Reason: "invalid UTF-8"}}}
	}
	var pr fieldProblems
	obj, err := readJSONObject(data, &pr)
	if err != nil {
		re := &RecordError{Line: line, Problems: []FieldError{{Reason: err.reason}}}
		if err.diag != "" {
			re.Diagnostics = []string{err.diag}
		}
		return nil, re
	}
	return p.parseObject(obj, line, &pr)
}

// parseObject decodes and checks obj, a JSON object or the equivalent of a
// CSV row. pr may already hold problems found while reading obj.
func (p *Parser) parseObject(obj *jsonObject, line int, pr *fieldProblems) (*Record, error) {
	d := &recordDecoder{p: p, pr: pr}
	f := objectFields{d: d, o: obj}
	kv, _, ok := f.take("kind", true)
	if !ok {
		return nil, pr.recordError(line, "", "")
	}
	ks, isString := kv.(string)
	kind := Kind(ks)
	if !isString || !kind.Valid() {
		switch {
		case !isString:
			pr.add("kind", reasonNotString)
		case ks == "":
			pr.add("kind", reasonRequired)
		default:
			pr.addValue("kind", "unknown kind", ks)
		}
		return nil, pr.recordError(line, "", "")
	}
	rec := &Record{Kind: kind, Line: line}
	switch kind {
	case KindPatient:
		rec.Patient = d.patient(f)
	case KindOrder:
		rec.Order = d.order(f)
	case KindAdministration:
		rec.Administration = d.administration(f)
	case KindScore:
		rec.Score = d.score(f)
	}
	f.done()
	c := recordChecker{p: p, now: p.now(), pr: pr}
	c.record(rec)
	if len(pr.list) > 0 {
		return nil, pr.recordError(line, kind, recordIDIfValid(rec, pr))
	}
	return rec, nil
}

// recordIDIfValid returns rec's id when the id field passed its checks, else "".
func recordIDIfValid(rec *Record, pr *fieldProblems) string {
	field := recordIDField[rec.Kind]
	if field == "" || pr.blocked(field) {
		return ""
	}
	return rec.ID()
}

// recordIDField names the id field of each kind.
var recordIDField = map[Kind]string{
	KindPatient:        "mrn",
	KindOrder:          "order_id",
	KindAdministration: "admin_id",
	KindScore:          "score_id",
}

// maxProblems bounds the problems collected for one record; the record is
// rejected either way and the list stays readable.
const maxProblems = 100

// fieldProblems collects the problems of one record, at most one per field.
type fieldProblems struct {
	list   []FieldError
	diag   []string
	failed map[string]bool
	more   bool
}

// add records a problem with field unless field, or a field that contains
// it, already has one.
func (pr *fieldProblems) add(field, reason string) {
	if pr.blocked(field) {
		return
	}
	if pr.failed == nil {
		pr.failed = make(map[string]bool)
	}
	pr.failed[field] = true
	if len(pr.list) >= maxProblems {
		pr.more = true
		return
	}
	pr.list = append(pr.list, FieldError{Field: field, Reason: reason})
}

// maxDiagValue bounds the raw value kept in a diagnostic.
const maxDiagValue = 64

// addValue is add with the offending raw value kept in the diagnostics.
func (pr *fieldProblems) addValue(field, reason, raw string) {
	if pr.blocked(field) {
		return
	}
	pr.add(field, reason)
	if len(pr.diag) < maxProblems {
		pr.diag = append(pr.diag, field+": got "+strconv.Quote(truncateUTF8(raw, maxDiagValue)))
	}
}

// blocked reports whether field or a field containing it (a prefix ending
// before "." or "[") already has a problem. The record-level field ""
// blocks nothing.
func (pr *fieldProblems) blocked(field string) bool {
	if len(pr.failed) == 0 {
		return false
	}
	if pr.failed[field] {
		return true
	}
	for i := 0; i < len(field); i++ {
		if (field[i] == '.' || field[i] == '[') && pr.failed[field[:i]] {
			return true
		}
	}
	return false
}

// recordError returns the RecordError for the collected problems.
func (pr *fieldProblems) recordError(line int, kind Kind, id string) *RecordError {
	list := pr.list
	if pr.more {
		list = append(list, FieldError{Reason: "more problems not listed"})
	}
	return &RecordError{Line: line, Kind: kind, RecordID: id, Problems: list, Diagnostics: pr.diag}
}

// jsonObject is a JSON object read into memory: its members in input order.
// Values are string, json.Number, bool, nil (JSON null), []any or *jsonObject.
type jsonObject struct {
	keys []string
	vals []any
	used []bool
}

// index returns the position of the member named key, or -1.
func (o *jsonObject) index(key string) int {
	for i, k := range o.keys {
		if k == key {
			return i
		}
	}
	return -1
}

// set adds a member. It does not check for duplicates.
func (o *jsonObject) set(key string, val any) {
	o.keys = append(o.keys, key)
	o.vals = append(o.vals, val)
	o.used = append(o.used, false)
}

// jsonReadError is a problem that makes data unreadable as one JSON object.
type jsonReadError struct {
	reason string
	diag   string // may quote input; goes to Diagnostics only
}

// readJSONObject reads data, which must be valid UTF-8, as exactly one JSON
// object. Duplicate keys are recorded in pr (the first value is kept).
func readJSONObject(data []byte, pr *fieldProblems) (*jsonObject, *jsonReadError) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	tok, err := dec.Token()
	if err == io.EOF {
		return nil, &jsonReadError{reason: "empty record"}
	}
	if err != nil {
		return nil, &jsonReadError{reason: "malformed JSON", diag: err.Error()}
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, &jsonReadError{reason: "not a JSON object"}
	}
	r := jsonTreeReader{dec: dec, pr: pr}
	obj, rerr := r.object(0)
	if rerr != nil {
		return nil, rerr
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, &jsonReadError{reason: "data after the JSON object"}
	}
	return obj, nil
}

// jsonTreeReader builds the value tree of one record from a token stream.
type jsonTreeReader struct {
	dec  *json.Decoder
	pr   *fieldProblems
	path []pathSeg // field path of the current value, for duplicate keys
}

// pathSeg is one step of a field path: a member name, or a list index.
type pathSeg struct {
	key     string
	index   int
	isIndex bool
}

// malformedJSON turns a decoder error into a jsonReadError.
func malformedJSON(err error) *jsonReadError {
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return &jsonReadError{reason: "malformed JSON", diag: err.Error()}
}

// object reads the members of an object whose '{' has been read.
func (r *jsonTreeReader) object(depth int) (*jsonObject, *jsonReadError) {
	if depth > maxJSONDepth {
		return nil, &jsonReadError{reason: "JSON nested too deeply"}
	}
	obj := &jsonObject{}
	var seen map[string]bool // only for large objects; small ones scan keys
	for {
		tok, err := r.dec.Token()
		if err != nil {
			return nil, malformedJSON(err)
		}
		if d, ok := tok.(json.Delim); ok && d == '}' {
			return obj, nil
		}
		key, ok := tok.(string)
		if !ok {
			return nil, &jsonReadError{reason: "malformed JSON"}
		}
		dup := false
		if len(obj.keys) < 16 {
			dup = obj.index(key) >= 0
		} else {
			if seen == nil {
				seen = make(map[string]bool, 2*len(obj.keys))
				for _, k := range obj.keys {
					seen[k] = true
				}
			}
			dup = seen[key]
			seen[key] = true
		}
		r.path = append(r.path, pathSeg{key: key})
		val, rerr := r.value(depth)
		r.path = r.path[:len(r.path)-1]
		if rerr != nil {
			return nil, rerr
		}
		if dup {
			r.pr.add(r.fieldPath(key), reasonDuplicate)
			continue
		}
		obj.set(key, val)
	}
}

// fieldPath returns the path of member key of the current object, in the
// form of FieldError.Field.
func (r *jsonTreeReader) fieldPath(key string) string {
	var b strings.Builder
	for _, seg := range append(r.path, pathSeg{key: key}) {
		if seg.isIndex {
			b.WriteString("[" + strconv.Itoa(seg.index) + "]")
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		b.WriteString(memberName(seg.key))
	}
	return b.String()
}

// value reads one value.
func (r *jsonTreeReader) value(depth int) (any, *jsonReadError) {
	tok, err := r.dec.Token()
	if err != nil {
		return nil, malformedJSON(err)
	}
	switch t := tok.(type) {
	case json.Delim:
		switch t {
		case '{':
			return r.object(depth + 1)
		case '[':
			return r.list(depth + 1)
		}
		return nil, &jsonReadError{reason: "malformed JSON"}
	case string, json.Number, bool, nil:
		return t, nil
	}
	return nil, &jsonReadError{reason: "malformed JSON"}
}

// list reads the elements of an array whose '[' has been read.
func (r *jsonTreeReader) list(depth int) ([]any, *jsonReadError) {
	if depth > maxJSONDepth {
		return nil, &jsonReadError{reason: "JSON nested too deeply"}
	}
	var vals []any
	for r.dec.More() {
		r.path = append(r.path, pathSeg{index: len(vals), isIndex: true})
		v, err := r.value(depth)
		r.path = r.path[:len(r.path)-1]
		if err != nil {
			return nil, err
		}
		vals = append(vals, v)
	}
	if _, err := r.dec.Token(); err != nil { // the closing ']'
		return nil, malformedJSON(err)
	}
	return vals, nil
}

// memberName returns a member name fit for FieldError.Field: as is when it
// is short plain text, else quoted and cut.
func memberName(name string) string {
	return safeText(name, 64)
}

// recordDecoder turns a value tree into the record structs, checking presence
// and JSON types. Content checks are the checker's.
type recordDecoder struct {
	p  *Parser
	pr *fieldProblems
}

// objectFields is the view of one object being decoded; path is the prefix of
// its field paths ("" for the record, "dose.", "vitals[2].").
type objectFields struct {
	d    *recordDecoder
	o    *jsonObject
	path string
}

// take marks member name as known and returns its value. An absent member,
// or one that is null, is reported when required and yields ok false.
func (f objectFields) take(name string, required bool) (val any, field string, ok bool) {
	field = f.path + name
	i := f.o.index(name)
	if i >= 0 {
		f.o.used[i] = true
		val = f.o.vals[i]
	}
	if val == nil {
		if required {
			f.d.pr.add(field, reasonRequired)
		}
		return nil, field, false
	}
	return val, field, true
}

// done reports every member that was not taken as an unknown field.
func (f objectFields) done() {
	for i, used := range f.o.used {
		if !used {
			f.d.pr.add(f.path+memberName(f.o.keys[i]), reasonUnknown)
		}
	}
}

// str returns a string member; "" means absent. Whether an empty required
// string is an error is the checker's call.
func (f objectFields) str(name string, required bool) string {
	v, field, ok := f.take(name, required)
	if !ok {
		return ""
	}
	s, isString := v.(string)
	if !isString {
		f.d.pr.add(field, reasonNotString)
		return ""
	}
	return s
}

// number parses a json.Number as a finite float64.
func (f objectFields) number(field string, v any) (float64, bool) {
	n, isNumber := v.(json.Number)
	if !isNumber {
		f.d.pr.add(field, reasonNotNumber)
		return 0, false
	}
	x, err := strconv.ParseFloat(string(n), 64)
	if err != nil || math.IsInf(x, 0) || math.IsNaN(x) {
		f.d.pr.addValue(field, reasonOutOfRange, string(n))
		return 0, false
	}
	return x, true
}

// float returns a number member; ok is false when absent or bad.
func (f objectFields) float(name string, required bool) (float64, bool) {
	v, field, ok := f.take(name, required)
	if !ok {
		return 0, false
	}
	return f.number(field, v)
}

// optFloat returns an optional number member, nil when absent or bad.
func (f objectFields) optFloat(name string) *float64 {
	x, ok := f.float(name, false)
	if !ok {
		return nil
	}
	return &x
}

// maxIntField bounds every integer field; the checks have tighter bounds.
const maxIntField = 1 << 30

// integer converts a value to an int. An integral number written with a
// fraction or exponent (3.0, 1e1) is accepted.
func (f objectFields) integer(field string, v any) (int, bool) {
	n, isNumber := v.(json.Number)
	if !isNumber {
		f.d.pr.add(field, reasonNotInteger)
		return 0, false
	}
	if i, err := strconv.ParseInt(string(n), 10, 64); err == nil {
		if i < -maxIntField || i > maxIntField {
			f.d.pr.addValue(field, reasonOutOfRange, string(n))
			return 0, false
		}
		return int(i), true
	}
	x, err := strconv.ParseFloat(string(n), 64)
	switch {
	case err != nil && !errors.Is(err, strconv.ErrRange):
		f.d.pr.addValue(field, reasonNotInteger, string(n))
		return 0, false
	case math.IsInf(x, 0) || math.Abs(x) > maxIntField:
		f.d.pr.addValue(field, reasonOutOfRange, string(n))
		return 0, false
	case x != math.Trunc(x):
		f.d.pr.addValue(field, reasonNotInteger, string(n))
		return 0, false
	}
	return int(x), true
}

// int returns an integer member.
func (f objectFields) int(name string, required bool) (int, bool) {
	v, field, ok := f.take(name, required)
	if !ok {
		return 0, false
	}
	return f.integer(field, v)
}

// count returns an optional integer member that must be at least 1 when
// present (a session number, a planned count); 0 means absent.
func (f objectFields) count(name string) int {
	v, field, ok := f.take(name, false)
	if !ok {
		return 0
	}
	n, ok := f.integer(field, v)
	if !ok {
		return 0
	}
	if n < 1 {
		f.d.pr.add(field, reasonAtLeastOne)
		return 0
	}
	return n
}

// time returns a time member, which must be RFC 3339 with an offset.
func (f objectFields) time(name string, required bool) (time.Time, bool) {
	v, field, ok := f.take(name, required)
	if !ok {
		return time.Time{}, false
	}
	s, isString := v.(string)
	if !isString {
		f.d.pr.add(field, reasonNotTime)
		return time.Time{}, false
	}
	t, err := parseRecordTime(s)
	if err != nil {
		f.d.pr.addValue(field, reasonNotTime, s)
		return time.Time{}, false
	}
	return t, true
}

// optTime returns an optional time member, nil when absent or bad.
func (f objectFields) optTime(name string) *time.Time {
	t, ok := f.time(name, false)
	if !ok {
		return nil
	}
	return &t
}

// obj returns an object member as an objectFields view.
func (f objectFields) obj(name string, required bool) (objectFields, bool) {
	v, field, ok := f.take(name, required)
	if !ok {
		return objectFields{}, false
	}
	o, isObject := v.(*jsonObject)
	if !isObject {
		f.d.pr.add(field, reasonNotObject)
		return objectFields{}, false
	}
	return objectFields{d: f.d, o: o, path: field + "."}, true
}

// list returns a list member; an empty list counts as absent.
func (f objectFields) list(name string, required bool) ([]any, string, bool) {
	v, field, ok := f.take(name, required)
	if !ok {
		return nil, field, false
	}
	l, isList := v.([]any)
	switch {
	case !isList:
		f.d.pr.add(field, reasonNotList)
		return nil, field, false
	case len(l) == 0:
		if required {
			f.d.pr.add(field, reasonRequired)
		}
		return nil, field, false
	case len(l) > f.d.p.MaxListItems:
		f.d.pr.add(field, reasonTooMany)
		return nil, field, false
	}
	return l, field, true
}

// strList returns a list of strings; a bad element is reported by index
// and kept as "" so that indexes stay those of the input.
func (f objectFields) strList(name string, required bool) []string {
	l, field, ok := f.list(name, required)
	if !ok {
		return nil
	}
	out := make([]string, len(l))
	for i, v := range l {
		s, isString := v.(string)
		if !isString {
			f.d.pr.add(field+"["+strconv.Itoa(i)+"]", reasonNotString)
			continue
		}
		out[i] = s
	}
	return out
}

// intList returns a list of integers, like strList.
func (f objectFields) intList(name string, required bool) []int {
	l, field, ok := f.list(name, required)
	if !ok {
		return nil
	}
	out := make([]int, len(l))
	for i, v := range l {
		out[i], _ = f.integer(field+"["+strconv.Itoa(i)+"]", v)
	}
	return out
}

// practitioner decodes an {npi, name} object.
func (d *recordDecoder) practitioner(f objectFields, name string, required bool) (Practitioner, bool) {
	g, ok := f.obj(name, required)
	if !ok {
		return Practitioner{}, false
	}
	pr := Practitioner{NPI: g.str("npi", true), Name: g.str("name", true)}
	g.done()
	return pr, true
}

// dose decodes a {value, unit} object.
func (d *recordDecoder) dose(f objectFields) Dose {
	g, ok := f.obj("dose", true)
	if !ok {
		return Dose{}
	}
	var dose Dose
	dose.Value, _ = g.float("value", true)
	dose.Unit = g.str("unit", true)
	g.done()
	return dose
}

func (d *recordDecoder) patient(f objectFields) *Patient {
	return &Patient{
		MRN:       f.str("mrn", true),
		Family:    f.str("family", true),
		Given:     f.strList("given", true),
		BirthDate: f.str("birth_date", true),
		Sex:       f.str("sex", true),
		Phone:     f.str("phone", false),
		Email:     f.str("email", false),
		UpdatedAt: f.optTime("updated_at"),
	}
}

func (d *recordDecoder) order(f objectFields) *Order {
	o := &Order{
		OrderID: f.str("order_id", true),
		MRN:     f.str("mrn", true),
		Status:  f.str("status", true),
	}
	o.AuthoredAt, _ = f.time("authored_at", true)
	o.Prescriber, _ = d.practitioner(f, "prescriber", true)
	o.Medication = f.str("medication", true)
	o.Route = f.str("route", true)
	o.Dose = d.dose(f)
	o.Sessions = f.count("sessions")
	o.Frequency = f.str("frequency", false)
	o.Diagnoses = f.strList("diagnoses", false)
	o.Note = f.str("note", false)
	o.UpdatedAt = f.optTime("updated_at")
	return o
}

func (d *recordDecoder) administration(f objectFields) *Administration {
	a := &Administration{
		AdminID: f.str("admin_id", true),
		OrderID: f.str("order_id", true),
		MRN:     f.str("mrn", true),
		Status:  f.str("status", true),
	}
	a.StartedAt, _ = f.time("started_at", true)
	a.EndedAt = f.optTime("ended_at")
	a.Dose = d.dose(f)
	a.Route = f.str("route", true)
	a.Performer, _ = d.practitioner(f, "performer", true)
	a.Site = f.str("site", false)
	a.Lot = f.str("lot", false)
	a.LotExpires = f.str("lot_expires", false)
	a.Session = f.count("session")
	a.WeightKg = f.optFloat("weight_kg")
	a.Vitals = d.vitals(f)
	a.AdverseEvents = f.strList("adverse_events", false)
	a.NotDoneReason = f.str("not_done_reason", false)
	a.Note = f.str("note", false)
	a.UpdatedAt = f.optTime("updated_at")
	return a
}

// vitals decodes the vitals list; a bad element is reported and kept as a
// zero Vital so that indexes stay those of the input.
func (d *recordDecoder) vitals(f objectFields) []Vital {
	l, field, ok := f.list("vitals", false)
	if !ok {
		return nil
	}
	out := make([]Vital, len(l))
	for i, v := range l {
		elem := field + "[" + strconv.Itoa(i) + "]"
		o, isObject := v.(*jsonObject)
		if !isObject {
			d.pr.add(elem, reasonNotObject)
			continue
		}
		g := objectFields{d: d, o: o, path: elem + "."}
		out[i].At, _ = g.time("at", true)
		out[i].Systolic = g.optFloat("systolic")
		out[i].Diastolic = g.optFloat("diastolic")
		out[i].HeartRate = g.optFloat("heart_rate")
		out[i].SpO2 = g.optFloat("spo2")
		g.done()
	}
	return out
}

func (d *recordDecoder) score(f objectFields) *Score {
	s := &Score{
		ScoreID:    f.str("score_id", true),
		MRN:        f.str("mrn", true),
		Instrument: f.str("instrument", true),
	}
	s.TakenAt, _ = f.time("taken_at", true)
	s.Total, _ = f.int("total", true)
	s.Items = f.intList("items", false)
	s.AdminID = f.str("admin_id", false)
	if pr, ok := d.practitioner(f, "performer", false); ok {
		s.Performer = &pr
	}
	s.UpdatedAt = f.optTime("updated_at")
	return s
}

// parseRecordTime parses an RFC 3339 time, which must carry an offset ("Z" or
// ±hh:mm). The result's location depends only on the offset, never on the
// host's local zone: UTC for a zero offset, else a fixed zone, so that
// equal input gives equal Records on every machine.
func parseRecordTime(s string) (time.Time, error) {
	if len(s) < len("2006-01-02T15:04:05Z") || len(s) > 64 {
		return time.Time{}, errors.New("not an RFC 3339 time")
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, err
	}
	_, off := t.Zone()
	if off == 0 {
		return t.UTC(), nil
	}
	return t.In(time.FixedZone("", off)), nil
}

// parseRecordDate parses a YYYY-MM-DD calendar date (midnight UTC).
func parseRecordDate(s string) (time.Time, bool) {
	if len(s) != len("2006-01-02") {
		return time.Time{}, false
	}
	t, err := time.Parse(time.DateOnly, s)
	return t, err == nil
}
