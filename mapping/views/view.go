package views

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"

	"github.com/gofhir/fhirpath/types"
)

// View is a parsed, validated ViewDefinition with its FHIRPath expressions
// compiled once. It is immutable: one View may Run on many goroutines at
// once.
type View struct {
	name      string
	resource  string
	constants []constant
	where     []whereClause
	selects   []*selectNode
	columns   []Column
}

// Column describes one column of a view's rows, in row order.
type Column struct {
	// Name is the column name, unique in the view: a letter, then letters,
	// digits or underscores.
	Name string
	// Path is the FHIRPath expression giving the column's value.
	Path string
	// Type is the FHIR type the view declares ("string", "dateTime", ...);
	// "" when the view does not say.
	Type string
	// Collection is true when the column holds a list ([]any in a Row)
	// rather than at most one value.
	Collection bool
	// Description is the view's description of the column, often "".
	Description string
}

// Row is one output row: Row[i] is the value of Columns()[i]. A value is
// nil (missing), bool, int64, string (also dates, times and quantities, in
// FHIR text form), json.Number (decimal, with its digits as written),
// json.RawMessage (a complex element's JSON) or, for a collection column,
// a non-nil []any of those.
type Row []any

// ParseError reports what is wrong with a ViewDefinition. Path is the JSON
// path of the offending element ("select[0].column[1].name"); "" for the
// document itself.
type ParseError struct {
	Path   string
	Reason string
}

func (e *ParseError) Error() string {
	if e.Path == "" {
		return "invalid ViewDefinition: " + e.Reason
	}
	return "invalid ViewDefinition: " + e.Path + ": " + e.Reason
}

type constant struct {
	name  string
	value types.Value
}

type whereClause struct {
	path string // JSON path, for errors
	expr *expr
}

type columnNode struct {
	Column
	path string
	expr *expr
}

// selectNode is one select element. Its rows carry width values: its own
// columns, then those of its nested selects in order, then those of its
// unionAll branches (which all have the same columns).
type selectNode struct {
	path          string
	columns       []columnNode
	forEach       *expr
	forEachOrNull *expr
	repeat        []*expr
	selects       []*selectNode
	unionAll      []*selectNode
	width         int
}

var (
	columnName   = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_]*$`)
	constantName = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_]*$`)
)

// builtinVariables are the %names a view may use without declaring them:
// %rowIndex (SQL on FHIR) and those FHIRPath itself defines.
var builtinVariables = map[string]bool{
	"rowIndex": true, "resource": true, "rootResource": true, "context": true,
	"ucum": true, "sct": true, "loinc": true,
}

// Keys allowed on each element beside the FHIR base ones (id, extension,
// modifierExtension). Unknown keys in select, column, where and constant
// are errors, since a misspelt "forEach" would silently change the rows.
// The resource level holds metadata (url, title, publisher, ...) and is not
// checked key by key.
var (
	selectKeys   = keySet("column", "select", "forEach", "forEachOrNull", "repeat", "unionAll")
	columnKeys   = keySet("name", "path", "description", "collection", "type", "tag")
	whereKeys    = keySet("path", "description")
	constantKeys = keySet("name")
)

func keySet(keys ...string) map[string]bool {
	m := map[string]bool{"id": true, "extension": true, "modifierExtension": true}
	for _, k := range keys {
		m[k] = true
	}
	return m
}

// Parse reads and validates a ViewDefinition (JSON) and compiles its
// FHIRPath expressions. It rejects, with a *ParseError naming the element:
// malformed JSON, a missing resource or select, elements of the wrong
// JSON type, unknown keys in select/column/where/constant, bad or
// duplicate column and constant names, a constant without exactly one
// value[x], both forEach and forEachOrNull (or repeat) on one select,
// unionAll branches whose columns differ in name or order, FHIRPath that
// does not parse or calls an unknown function, and %names that are neither
// declared constants nor built in.
func Parse(data []byte) (*View, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var doc any
	if err := dec.Decode(&doc); err != nil {
		return nil, &ParseError{Reason: "not JSON: " + err.Error()}
	}
	if dec.More() {
		return nil, &ParseError{Reason: "more than one JSON value"}
	}
	obj, ok := doc.(map[string]any)
	if !ok {
		return nil, &ParseError{Reason: "not a JSON object"}
	}
	p := &parser{}
	v := p.view(obj)
	if p.err != nil {
		return nil, p.err
	}
	return v, nil
}

// MustParse is Parse for views known to be valid (built-in views, tests);
// it panics on error.
func MustParse(data []byte) *View {
	v, err := Parse(data)
	if err != nil {
		panic(err)
	}
	return v
}

// parser keeps the first error; later checks are skipped once one failed.
type parser struct {
	err       *ParseError
	constants map[string]bool
}

func (p *parser) fail(path, format string, args ...any) {
	if p.err == nil {
		p.err = &ParseError{Path: path, Reason: fmt.Sprintf(format, args...)}
	}
}

func (p *parser) view(obj map[string]any) *View {
	v := &View{}
	if rt, ok := obj["resourceType"]; ok && rt != "ViewDefinition" {
		p.fail("resourceType", "must be \"ViewDefinition\"")
	}
	if n, ok := obj["name"]; ok {
		s, isStr := n.(string)
		if !isStr {
			p.fail("name", "must be a string")
		}
		v.name = s
	}
	switch r := obj["resource"].(type) {
	case nil:
		p.fail("resource", "required: the FHIR resource type the view reads")
	case string:
		if !columnName.MatchString(r) || r[0] < 'A' || r[0] > 'Z' {
			p.fail("resource", "%q is not a FHIR resource type", r)
		}
		v.resource = r
	default:
		p.fail("resource", "must be a string")
	}
	v.constants = p.constantList(obj["constant"])
	v.where = p.whereList(obj["where"])
	sel, ok := obj["select"]
	if !ok {
		p.fail("select", "required: at least one select")
		return v
	}
	v.selects = p.selectList("select", sel, true)
	if p.err != nil {
		return v
	}
	for _, s := range v.selects {
		v.columns = appendColumns(v.columns, s)
	}
	seen := map[string]bool{}
	for _, c := range v.columns {
		if seen[c.Name] {
			p.fail("select", "column name %q used twice", c.Name)
		}
		seen[c.Name] = true
	}
	return v
}

func (p *parser) constantList(raw any) []constant {
	if raw == nil {
		return nil
	}
	list, ok := raw.([]any)
	if !ok {
		p.fail("constant", "must be an array")
		return nil
	}
	p.constants = map[string]bool{}
	var out []constant
	for i, item := range list {
		path := fmt.Sprintf("constant[%d]", i)
		obj, ok := item.(map[string]any)
		if !ok {
			p.fail(path, "must be an object")
			return nil
		}
		name, _ := obj["name"].(string)
		if !constantName.MatchString(name) {
			p.fail(path+".name", "required: a letter, then letters, digits or underscores")
			return nil
		}
		if p.constants[name] {
			p.fail(path+".name", "constant %q defined twice", name)
			return nil
		}
		var field string
		for k := range obj {
			switch {
			case strings.HasPrefix(k, "value") && len(k) > len("value"):
				if field != "" {
					p.fail(path, "more than one value[x]")
					return nil
				}
				field = k
			case !constantKeys[k]:
				p.fail(path+"."+k, "unknown element")
				return nil
			}
		}
		if field == "" {
			p.fail(path, "constant %q has no value[x]", name)
			return nil
		}
		val, err := constantValue(field, obj[field])
		if err != nil {
			p.fail(path+"."+field, "%v", err)
			return nil
		}
		p.constants[name] = true
		out = append(out, constant{name: name, value: val})
	}
	return out
}

func (p *parser) whereList(raw any) []whereClause {
	if raw == nil {
		return nil
	}
	list, ok := raw.([]any)
	if !ok {
		p.fail("where", "must be an array")
		return nil
	}
	var out []whereClause
	for i, item := range list {
		path := fmt.Sprintf("where[%d]", i)
		obj, ok := item.(map[string]any)
		if !ok {
			p.fail(path, "must be an object")
			return nil
		}
		p.unknownKeys(path, obj, whereKeys)
		e := p.fhirpath(path+".path", obj["path"], true)
		out = append(out, whereClause{path: path + ".path", expr: e})
	}
	return out
}

func (p *parser) unknownKeys(path string, obj map[string]any, allowed map[string]bool) {
	keys := make([]string, 0, len(obj))
	for k := range obj {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if !allowed[k] {
			p.fail(path+"."+k, "unknown element")
		}
	}
}

// fhirpath compiles the expression at path; raw must be a string.
func (p *parser) fhirpath(path string, raw any, required bool) *expr {
	if raw == nil {
		if required {
			p.fail(path, "required")
		}
		return nil
	}
	s, ok := raw.(string)
	if !ok {
		p.fail(path, "must be a FHIRPath string")
		return nil
	}
	e, err := compile(s)
	if err != nil {
		p.fail(path, "%v", err)
		return nil
	}
	if name := e.unknownFunction(); name != "" {
		p.fail(path, "FHIRPath %q calls %s(), which is not a known function", s, name)
		return nil
	}
	for _, name := range e.externalConstants() {
		if !builtinVariables[name] && !p.constants[name] {
			p.fail(path, "%%%s is not a declared constant", name)
			return nil
		}
	}
	return e
}

func (p *parser) selectList(path string, raw any, required bool) []*selectNode {
	if raw == nil {
		return nil
	}
	list, ok := raw.([]any)
	if !ok {
		p.fail(path, "must be an array")
		return nil
	}
	if required && len(list) == 0 {
		p.fail(path, "must not be empty")
		return nil
	}
	var out []*selectNode
	for i, item := range list {
		s := p.selectNode(fmt.Sprintf("%s[%d]", path, i), item)
		if p.err != nil {
			return nil
		}
		out = append(out, s)
	}
	return out
}

func (p *parser) selectNode(path string, raw any) *selectNode {
	obj, ok := raw.(map[string]any)
	if !ok {
		p.fail(path, "must be an object")
		return nil
	}
	p.unknownKeys(path, obj, selectKeys)
	s := &selectNode{path: path}
	s.forEach = p.fhirpath(path+".forEach", obj["forEach"], false)
	s.forEachOrNull = p.fhirpath(path+".forEachOrNull", obj["forEachOrNull"], false)
	if r, ok := obj["repeat"]; ok {
		list, isList := r.([]any)
		if !isList || len(list) == 0 {
			p.fail(path+".repeat", "must be a non-empty array of FHIRPath strings")
			return nil
		}
		for i, item := range list {
			s.repeat = append(s.repeat, p.fhirpath(fmt.Sprintf("%s.repeat[%d]", path, i), item, true))
		}
	}
	n := 0
	for _, k := range []string{"forEach", "forEachOrNull", "repeat"} {
		if _, ok := obj[k]; ok {
			n++
		}
	}
	if n > 1 {
		p.fail(path, "forEach, forEachOrNull and repeat are exclusive")
	}
	if raw, ok := obj["column"]; ok {
		list, isList := raw.([]any)
		if !isList || len(list) == 0 {
			p.fail(path+".column", "must be a non-empty array")
			return nil
		}
		for i, item := range list {
			c := p.column(fmt.Sprintf("%s.column[%d]", path, i), item)
			if p.err != nil {
				return nil
			}
			s.columns = append(s.columns, c)
		}
	}
	s.selects = p.selectList(path+".select", obj["select"], false)
	s.unionAll = p.selectList(path+".unionAll", obj["unionAll"], false)
	if _, ok := obj["unionAll"]; ok && len(s.unionAll) == 0 {
		p.fail(path+".unionAll", "must not be empty")
	}
	if p.err != nil {
		return nil
	}
	if len(s.columns) == 0 && len(s.selects) == 0 && len(s.unionAll) == 0 {
		p.fail(path, "has no column, select or unionAll")
		return nil
	}
	if len(s.unionAll) > 0 {
		first := appendColumns(nil, s.unionAll[0])
		for i, b := range s.unionAll[1:] {
			other := appendColumns(nil, b)
			if !sameNames(first, other) {
				p.fail(fmt.Sprintf("%s.unionAll[%d]", path, i+1),
					"columns %s differ from unionAll[0]'s %s (names and order must match)", names(other), names(first))
				return nil
			}
		}
	}
	s.width = len(appendColumns(nil, s))
	return s
}

func (p *parser) column(path string, raw any) columnNode {
	obj, ok := raw.(map[string]any)
	if !ok {
		p.fail(path, "must be an object")
		return columnNode{}
	}
	p.unknownKeys(path, obj, columnKeys)
	var c columnNode
	c.path = path
	name, ok := obj["name"].(string)
	if !ok || !columnName.MatchString(name) {
		p.fail(path+".name", "required: a letter, then letters, digits or underscores")
		return c
	}
	c.Name = name
	c.expr = p.fhirpath(path+".path", obj["path"], true)
	if c.expr != nil {
		c.Path = c.expr.src
	}
	if t, ok := obj["type"]; ok {
		s, isStr := t.(string)
		if !isStr || s == "" {
			p.fail(path+".type", "must be a FHIR type name")
		}
		c.Type = s
	}
	if d, ok := obj["description"]; ok {
		s, isStr := d.(string)
		if !isStr {
			p.fail(path+".description", "must be a string")
		}
		c.Description = s
	}
	if col, ok := obj["collection"]; ok {
		b, isBool := col.(bool)
		if !isBool {
			p.fail(path+".collection", "must be a boolean")
		}
		c.Collection = b
	}
	if t, ok := obj["tag"]; ok {
		if _, isList := t.([]any); !isList {
			p.fail(path+".tag", "must be an array")
		}
	}
	return c
}

// appendColumns appends the columns of s in row order.
func appendColumns(dst []Column, s *selectNode) []Column {
	for _, c := range s.columns {
		dst = append(dst, c.Column)
	}
	for _, sub := range s.selects {
		dst = appendColumns(dst, sub)
	}
	if len(s.unionAll) > 0 {
		dst = appendColumns(dst, s.unionAll[0])
	}
	return dst
}

func sameNames(a, b []Column) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Name != b[i].Name {
			return false
		}
	}
	return true
}

func names(cols []Column) string {
	s := make([]string, len(cols))
	for i, c := range cols {
		s[i] = c.Name
	}
	return "[" + strings.Join(s, ", ") + "]"
}

// Name is the view's name element, "" if it has none.
func (v *View) Name() string { return v.name }

// Resource is the FHIR resource type the view reads; Run gives no rows for
// other resources.
func (v *View) Resource() string { return v.resource }

// Columns returns the view's columns in row order. The slice is a copy.
func (v *View) Columns() []Column {
	return append([]Column(nil), v.columns...)
}

// errNotObject is returned by Run for input that is not one JSON object.
var errNotObject = errors.New("views: resource is not a JSON object")
