package fhirtest

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"
	"unique"

	"github.com/google/fhir/go/fhirversion"
	"github.com/google/fhir/go/jsonformat"
	c4pb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/codes_go_proto"
)

// parsedResource is a resource from a request body: validated, decoded, and
// (after prepare) split into the parts the store needs.
type parsedResource struct {
	typ  string
	id   string // the id in the body, "" when absent
	tree map[string]any

	// Set by prepare.
	rest     []byte // `,"key":value...` for every member but resourceType, id and meta
	metaRest []byte // `,"key":value...` for every meta member but versionId and lastUpdated
	idx      *indexData
}

// validator checks resources with google/fhir/go's validating unmarshaller.
// It is safe for concurrent use.
type validator struct {
	u *jsonformat.Unmarshaller
}

func newValidator() *validator {
	u, err := jsonformat.NewUnmarshaller("UTC", fhirversion.R4)
	if err != nil {
		// Only fails for an unknown zone or version, both constant here.
		panic("fhirtest: jsonformat.NewUnmarshaller: " + err.Error())
	}
	u.MaxNestingDepth = 128
	return &validator{u: u}
}

// validate returns nil when raw is a valid R4 resource, else a 422 error
// whose issues carry the FHIR path of each problem.
func (v *validator) validate(raw []byte) *fhirError {
	_, outcome, err := v.u.UnmarshalWithOutcome(raw)
	if err != nil {
		issues := unmarshalIssues(err)
		if len(issues) == 0 {
			return errorf(422, "structure", "resource could not be read as FHIR R4")
		}
		sortIssues(issues)
		return &fhirError{status: 422, issues: issues}
	}
	var issues []issue
	if outcome != nil && outcome.R4Outcome != nil {
		for _, is := range outcome.R4Outcome.GetIssue() {
			if is.GetSeverity().GetValue() != c4pb.IssueSeverityCode_ERROR && is.GetSeverity().GetValue() != c4pb.IssueSeverityCode_FATAL {
				continue
			}
			var expr []string
			for _, e := range is.GetExpression() {
				expr = append(expr, e.GetValue())
			}
			issues = append(issues, issue{
				Severity:    "error",
				Code:        "invariant",
				Diagnostics: stripErrorAt(is.GetDiagnostics().GetValue()),
				Expression:  expr,
			})
		}
	}
	if len(issues) > 0 {
		sortIssues(issues)
		return &fhirError{status: 422, issues: issues}
	}
	return nil
}

// stripErrorAt turns `error at "Observation": missing required field "code"`
// into `missing required field "code"` (the path is in the expression).
func stripErrorAt(s string) string {
	if strings.HasPrefix(s, "error at ") {
		if i := strings.Index(s, ": "); i >= 0 {
			return s[i+2:]
		}
	}
	return s
}

// unmarshalIssues turns the parse errors of google/fhir/go (an
// UnmarshalError or UnmarshalErrorList from an internal package) into
// issues. It reads their exported Path and Details fields by reflection,
// leaving out Diagnostics, which may hold element values, except for the
// name of an unknown element.
func unmarshalIssues(err error) []issue {
	var out []issue
	add := func(v reflect.Value) {
		if v.Kind() == reflect.Pointer {
			v = v.Elem()
		}
		if v.Kind() != reflect.Struct {
			return
		}
		path := stringField(v, "Path")
		details := stringField(v, "Details")
		if details == "" {
			return
		}
		if details == "unknown field" {
			if name, err := strconv.Unquote(stringField(v, "Diagnostics")); err == nil && isElementName(name) {
				details = "unknown element " + strconv.Quote(name)
				path = joinPath(path, name)
			}
		}
		is := issue{Severity: "error", Code: "structure", Diagnostics: details}
		if path != "" {
			is.Expression = []string{path}
		}
		out = append(out, is)
	}
	v := reflect.ValueOf(err)
	switch v.Kind() {
	case reflect.Slice:
		for i := 0; i < v.Len(); i++ {
			add(v.Index(i))
		}
	case reflect.Pointer:
		add(v)
	}
	if len(out) == 0 {
		var target interface{ Unwrap() error }
		if errors.As(err, &target) && target.Unwrap() != nil {
			return nil
		}
	}
	return out
}

func stringField(v reflect.Value, name string) string {
	f := v.FieldByName(name)
	if !f.IsValid() || f.Kind() != reflect.String {
		return ""
	}
	return f.String()
}

func joinPath(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

// isElementName reports whether s looks like a FHIR element name (so it can
// be echoed without carrying data).
func isElementName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// decodeJSONObject decodes one JSON object, keeping numbers as json.Number
// so decimals keep their precision.
func decodeJSONObject(raw []byte) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("data after the top-level value")
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, errors.New("not a JSON object")
	}
	return m, nil
}

// parseResource reads a request body as a resource of type wantType (any
// type when empty): 400 when it is not a JSON object or its resourceType is
// missing, unknown or not wantType; 422 when google/fhir/go finds it
// invalid.
func (s *Server) parseResource(raw []byte, wantType string) (*parsedResource, *fhirError) {
	if len(bytes.TrimSpace(raw)) == 0 {
		return nil, errorf(400, "required", "the request has no resource in its body")
	}
	tree, err := decodeJSONObject(raw)
	if err != nil {
		return nil, errorf(400, "structure", "the body is not a JSON object: %s", jsonSyntaxReason(err))
	}
	typ, _ := tree["resourceType"].(string)
	if typ == "" {
		return nil, errorf(400, "required", "the resource has no resourceType")
	}
	if !isResourceType(typ) {
		return nil, errorf(400, "not-supported", "%q is not an R4 resource type", truncate(typ, 64))
	}
	if wantType != "" && typ != wantType {
		return nil, errorf(400, "invalid", "resourceType %s does not match the %s in the URL", typ, wantType).at(typ)
	}
	if !s.cfg.noValidate {
		if ferr := s.validator.validate(raw); ferr != nil {
			return nil, ferr
		}
	}
	id, _ := tree["id"].(string)
	return &parsedResource{typ: typ, id: id, tree: tree}, nil
}

// jsonSyntaxReason describes a decoding error without quoting the input.
func jsonSyntaxReason(err error) string {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return "invalid JSON at byte " + strconv.FormatInt(se.Offset, 10)
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return "unexpected JSON " + te.Value
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return "unexpected end of JSON"
	}
	msg := err.Error()
	if strings.HasPrefix(msg, "data after") || strings.HasPrefix(msg, "not a JSON") {
		return msg
	}
	return "invalid JSON"
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "..."
}

// prepare encodes the resource's members and extracts its search index.
// Call it after any change to tree (such as reference rewriting).
func (p *parsedResource) prepare(bases []string) {
	keys := make([]string, 0, len(p.tree))
	for k := range p.tree {
		switch k {
		case "resourceType", "id", "meta":
			continue
		}
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b []byte
	for _, k := range keys {
		b = append(b, ',')
		b = appendJSONString(b, k)
		b = append(b, ':')
		b = appendJSON(b, p.tree[k])
	}
	p.rest = b
	p.metaRest = nil
	if meta, ok := p.tree["meta"].(map[string]any); ok {
		mkeys := make([]string, 0, len(meta))
		for k := range meta {
			if k != "versionId" && k != "lastUpdated" {
				mkeys = append(mkeys, k)
			}
		}
		sort.Strings(mkeys)
		var m []byte
		for _, k := range mkeys {
			m = append(m, ',')
			m = appendJSONString(m, k)
			m = append(m, ':')
			m = appendJSON(m, meta[k])
		}
		p.metaRest = m
	}
	p.idx = extractIndex(p.typ, p.tree, bases)
}

// assemble returns the stored JSON of the resource as version vid with the
// given id and lastUpdated.
func (p *parsedResource) assemble(id string, vid int, lastUpdated string) []byte {
	b := make([]byte, 0, len(p.rest)+len(p.metaRest)+len(p.typ)+len(id)+96)
	b = append(b, `{"resourceType":`...)
	b = appendJSONString(b, p.typ)
	b = append(b, `,"id":`...)
	b = appendJSONString(b, id)
	b = append(b, `,"meta":{"versionId":"`...)
	b = strconv.AppendInt(b, int64(vid), 10)
	b = append(b, `","lastUpdated":"`...)
	b = append(b, lastUpdated...)
	b = append(b, '"')
	b = append(b, p.metaRest...)
	b = append(b, '}')
	b = append(b, p.rest...)
	b = append(b, '}')
	return b
}

// appendJSON appends the JSON encoding of a value decoded by
// decodeJSONObject. Object keys are written in sorted order.
func appendJSON(b []byte, v any) []byte {
	switch v := v.(type) {
	case nil:
		return append(b, "null"...)
	case bool:
		return strconv.AppendBool(b, v)
	case json.Number:
		return append(b, v...)
	case float64:
		return strconv.AppendFloat(b, v, 'g', -1, 64)
	case string:
		return appendJSONString(b, v)
	case []any:
		b = append(b, '[')
		for i, e := range v {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSON(b, e)
		}
		return append(b, ']')
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		b = append(b, '{')
		for i, k := range keys {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSONString(b, k)
			b = append(b, ':')
			b = appendJSON(b, v[k])
		}
		return append(b, '}')
	default:
		// Not produced by decodeJSONObject.
		panic("fhirtest: appendJSON: unexpected type " + reflect.TypeOf(v).String())
	}
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string. Invalid UTF-8 becomes U+FFFD.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// ident is one Identifier of a resource.
type ident struct {
	system, value string
}

// tokenValue is one token of a token search parameter.
type tokenValue struct {
	param, system, code string
}

// refValue is one literal reference in a resource: the dotted element path
// it sits at (for example "performer.actor") and its target, normalised to
// "Type/id" when it points to this server.
type refValue struct {
	path, target string
}

// dateValue is one value of a date search parameter.
type dateValue struct {
	param string
	r     dateRange
}

// indexData is what search needs from one resource version.
type indexData struct {
	idents []ident
	tokens []tokenValue
	refs   []refValue
	dates  []dateValue
}

// intern returns a canonical copy of s, so repeated systems, codes and
// paths are stored once.
func intern(s string) string { return unique.Make(s).Value() }

// extractIndex extracts identifiers, tokens, references and dates.
func extractIndex(typ string, tree map[string]any, bases []string) *indexData {
	idx := &indexData{}
	for _, n := range walkPath(tree, "identifier") {
		if m, ok := n.(map[string]any); ok {
			sys, _ := m["system"].(string)
			val, _ := m["value"].(string)
			if val != "" {
				idx.idents = append(idx.idents, ident{intern(sys), val})
			}
		}
	}
	for _, p := range typeParams[typ] {
		if len(p.paths) == 0 || p.name == paramIdentifier {
			continue
		}
		switch p.kind {
		case kindToken:
			for _, path := range p.paths {
				for _, n := range walkPath(tree, path) {
					idx.tokens = appendTokens(idx.tokens, p.name, n)
				}
			}
		case kindDate:
			for _, path := range p.paths {
				for _, n := range walkPath(tree, path) {
					if r, ok := nodeDateRange(n); ok {
						idx.dates = append(idx.dates, dateValue{p.name, r})
					}
				}
			}
		}
	}
	idx.refs = collectRefs(idx.refs, "", tree, bases)
	// Exact-size copies: append over-allocates, and a million resources
	// keep these.
	idx.idents = slices.Clone(idx.idents)
	idx.tokens = slices.Clone(idx.tokens)
	idx.refs = slices.Clone(idx.refs)
	idx.dates = slices.Clone(idx.dates)
	return idx
}

// walkPath returns the values at a dotted element path, flattening arrays.
func walkPath(tree map[string]any, path string) []any {
	nodes := []any{tree}
	for path != "" {
		name := path
		if i := strings.IndexByte(path, '.'); i >= 0 {
			name, path = path[:i], path[i+1:]
		} else {
			path = ""
		}
		var next []any
		for _, n := range nodes {
			m, ok := n.(map[string]any)
			if !ok {
				continue
			}
			switch v := m[name].(type) {
			case nil:
			case []any:
				next = append(next, v...)
			default:
				next = append(next, v)
			}
		}
		nodes = next
	}
	return nodes
}

// appendTokens appends the tokens of a code, boolean, string, Coding,
// CodeableConcept or Identifier node.
func appendTokens(out []tokenValue, param string, n any) []tokenValue {
	switch v := n.(type) {
	case string:
		return append(out, tokenValue{param, "", intern(v)})
	case bool:
		return append(out, tokenValue{param, "", strconv.FormatBool(v)})
	case map[string]any:
		if codings, ok := v["coding"].([]any); ok {
			for _, c := range codings {
				if cm, ok := c.(map[string]any); ok {
					out = appendCoding(out, param, cm, "code")
				}
			}
			return out
		}
		if _, ok := v["code"]; ok {
			return appendCoding(out, param, v, "code")
		}
		if _, ok := v["value"]; ok {
			return appendCoding(out, param, v, "value")
		}
	}
	return out
}

func appendCoding(out []tokenValue, param string, m map[string]any, codeKey string) []tokenValue {
	sys, _ := m["system"].(string)
	code, _ := m[codeKey].(string)
	if code == "" {
		return out
	}
	return append(out, tokenValue{param, intern(sys), intern(code)})
}

// nodeDateRange reads a date, dateTime or instant string, or a Period.
func nodeDateRange(n any) (dateRange, bool) {
	switch v := n.(type) {
	case string:
		return parseDateRange(v)
	case map[string]any:
		start, _ := v["start"].(string)
		end, _ := v["end"].(string)
		if start == "" && end == "" {
			return dateRange{}, false
		}
		return periodRange(start, end)
	}
	return dateRange{}, false
}

// collectRefs appends every literal reference ("reference" string members)
// under n, except references to contained resources ("#id").
func collectRefs(out []refValue, path string, n any, bases []string) []refValue {
	switch v := n.(type) {
	case []any:
		for _, e := range v {
			out = collectRefs(out, path, e, bases)
		}
	case map[string]any:
		if r, ok := v["reference"].(string); ok && r != "" && r[0] != '#' {
			out = append(out, refValue{intern(path), intern(normalizeRef(r, bases))})
		}
		for k, e := range v {
			switch e.(type) {
			case map[string]any, []any:
				p := k
				if path != "" {
					p = path + "." + k
				}
				out = collectRefs(out, p, e, bases)
			}
		}
	}
	return out
}

// normalizeRef turns a reference to this server (relative, versioned, or
// absolute under one of bases) into "Type/id"; other references are kept.
func normalizeRef(r string, bases []string) string {
	for _, b := range bases {
		if len(r) > len(b)+1 && strings.HasPrefix(r, b) && r[len(b)] == '/' {
			if t, ok := localTarget(r[len(b)+1:]); ok {
				return t
			}
		}
	}
	if t, ok := localTarget(r); ok {
		return t
	}
	return r
}

// localTarget parses "Type/id" or "Type/id/_history/vid".
func localTarget(r string) (string, bool) {
	typ, rest, ok := strings.Cut(r, "/")
	if !ok || !isResourceType(typ) {
		return "", false
	}
	id, hist, hasHist := strings.Cut(rest, "/")
	if !validID(id) {
		return "", false
	}
	if hasHist {
		h, vid, ok := strings.Cut(hist, "/")
		if !ok || h != "_history" || !validID(vid) {
			return "", false
		}
		return typ + "/" + id, true
	}
	return r, true
}

// splitTarget splits a normalised local target "Type/id".
func splitTarget(t string) (typ, id string, ok bool) {
	typ, id, ok = strings.Cut(t, "/")
	if !ok || !isResourceType(typ) || !validID(id) {
		return "", "", false
	}
	return typ, id, true
}

// validID reports whether s is a valid FHIR id: 1 to 64 of A-Z a-z 0-9 - .
func validID(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}
