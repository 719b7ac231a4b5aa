package views

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/antlr4-go/antlr/v4"
	"github.com/gofhir/fhirpath/eval"
	"github.com/gofhir/fhirpath/funcs"
	"github.com/gofhir/fhirpath/parser/grammar"
	"github.com/gofhir/fhirpath/types"
)

// expr is one compiled FHIRPath expression of a view: its source text and
// the parse tree that github.com/gofhir/fhirpath evaluates.
//
// We parse with the library's own grammar instead of fhirpath.Compile
// because its *Expression keeps the tree private and always evaluates with
// the library's global function registry; the view functions below
// (getResourceKey, a spec-faithful getReferenceKey) must be looked up first
// without changing the library's registry for every other user in the
// process.
type expr struct {
	src  string
	tree *grammar.EntireExpressionContext
}

type syntaxErrors struct {
	*antlr.DefaultErrorListener
	msgs []string
}

func (l *syntaxErrors) SyntaxError(_ antlr.Recognizer, _ any, line, column int, msg string, _ antlr.RecognitionException) {
	l.msgs = append(l.msgs, fmt.Sprintf("%d:%d %s", line, column, msg))
}

// compile parses src as FHIRPath. The error gives the parser's messages,
// which quote the expression (view text, never patient data).
func compile(src string) (*expr, error) {
	if strings.TrimSpace(src) == "" {
		return nil, fmt.Errorf("empty FHIRPath expression")
	}
	errs := &syntaxErrors{DefaultErrorListener: antlr.NewDefaultErrorListener()}
	lexer := grammar.NewfhirpathLexer(antlr.NewInputStream(src))
	lexer.RemoveErrorListeners()
	lexer.AddErrorListener(errs)
	parser := grammar.NewfhirpathParser(antlr.NewCommonTokenStream(lexer, antlr.TokenDefaultChannel))
	parser.RemoveErrorListeners()
	parser.AddErrorListener(errs)
	tree := parser.EntireExpression()
	if len(errs.msgs) > 0 {
		return nil, fmt.Errorf("invalid FHIRPath %q: %s", src, strings.Join(errs.msgs, "; "))
	}
	t, ok := tree.(*grammar.EntireExpressionContext)
	if !ok {
		return nil, fmt.Errorf("invalid FHIRPath %q", src)
	}
	return &expr{src: src, tree: t}, nil
}

// unknownFunction returns the name of the first function e calls that
// neither the library nor this package defines, or "".
func (e *expr) unknownFunction() string {
	var found string
	var walk func(t antlr.Tree)
	walk = func(t antlr.Tree) {
		if f, ok := t.(*grammar.FunctionContext); ok && found == "" {
			if id := f.Identifier(); id != nil {
				name := strings.Trim(id.GetText(), "`")
				if _, ok := registry.Get(name); !ok {
					found = name
				}
			}
		}
		for _, child := range t.GetChildren() {
			walk(child)
		}
	}
	walk(e.tree)
	return found
}

// externalConstants returns the names of the %constants src refers to.
func (e *expr) externalConstants() []string {
	var names []string
	var walk func(t antlr.Tree)
	walk = func(t antlr.Tree) {
		if c, ok := t.(*grammar.ExternalConstantContext); ok {
			var name string
			if id := c.Identifier(); id != nil {
				name = strings.Trim(id.GetText(), "`")
			} else if s := c.STRING(); s != nil {
				name = strings.Trim(s.GetText(), "'")
			}
			names = append(names, name)
		}
		for _, child := range t.GetChildren() {
			walk(child)
		}
	}
	walk(e.tree)
	return names
}

// eval evaluates e with focus as $this in the resource context ctx.
func (e *expr) eval(ctx *eval.Context, focus types.Collection) (types.Collection, error) {
	return eval.NewEvaluator(ctx.WithThis(focus), registry).Evaluate(e.tree)
}

// viewFuncs are the functions of the SQL on FHIR v2 shareable profile that
// github.com/gofhir/fhirpath v1.4.0 lacks or implements differently. They
// are consulted before the library's registry.
var viewFuncs = map[string]eval.FuncDef{
	// getResourceKey() is not in the library at all (it is a SQL on FHIR
	// function, not FHIRPath).
	"getResourceKey": {Name: "getResourceKey", MinArgs: 0, MaxArgs: 0, Fn: fnGetResourceKey},
	// getReferenceKey([type]): the library's version takes a string part
	// ('type', 'id') instead of a type specifier and returns "Type/id", so
	// it never equals getResourceKey() and ignores a type filter; the spec
	// wants the referenced resource's key, empty when the type differs.
	"getReferenceKey": {Name: "getReferenceKey", MinArgs: 0, MaxArgs: 1, Fn: fnGetReferenceKey, TypeArgs: []int{0}},
}

type viewRegistry struct{ lib *funcs.Registry }

func (r viewRegistry) Get(name string) (eval.FuncDef, bool) {
	if f, ok := viewFuncs[name]; ok {
		return f, true
	}
	return r.lib.Get(name)
}

var registry eval.FuncRegistry = viewRegistry{lib: funcs.GetRegistry()}

// fnGetResourceKey returns the key of each resource in the input: its
// logical id, the value getReferenceKey() returns for a reference to it.
// Resources without an id have no key.
func fnGetResourceKey(_ *eval.Context, input types.Collection, _ []any) (types.Collection, error) {
	out := types.Collection{}
	for _, item := range input {
		obj, ok := item.(*types.ObjectValue)
		if !ok {
			continue
		}
		if _, ok := obj.Get("resourceType"); !ok {
			continue
		}
		// The id is read as text whatever its look: the library's
		// heuristics turn an id like "2020" into a Date.
		if id, ok := obj.Get("id"); ok && id != nil {
			if s := primitiveText(id); s != "" {
				out = append(out, types.NewString(s))
			}
		}
	}
	return out, nil
}

// fnGetReferenceKey returns, for each Reference in the input, the key
// (logical id) of the resource it points to, as getResourceKey() gives it.
// Literal references "Type/id", absolute ".../Type/id" and versioned
// ".../Type/id/_history/v" forms are understood; contained ("#id"),
// urn:uuid: and logical (identifier-only) references have no key. With a
// type argument, references to other resource types give nothing.
func fnGetReferenceKey(_ *eval.Context, input types.Collection, args []any) (types.Collection, error) {
	want := ""
	if len(args) > 0 {
		if col, ok := args[0].(types.Collection); ok && len(col) > 0 {
			want = strings.TrimPrefix(col[0].String(), "FHIR.")
		}
	}
	out := types.Collection{}
	for _, item := range input {
		var ref string
		switch v := item.(type) {
		case *types.ObjectValue:
			r, ok := v.Get("reference")
			if !ok {
				continue
			}
			if r == nil {
				continue
			}
			ref = primitiveText(r)
		case types.String:
			ref = v.Value()
		default:
			continue
		}
		typ, id, ok := splitReference(ref)
		if !ok || (want != "" && typ != want) {
			continue
		}
		out = append(out, types.NewString(id))
	}
	return out, nil
}

// primitiveText is the text of a primitive value.
func primitiveText(v types.Value) string {
	if s, ok := v.(types.String); ok {
		return s.Value()
	}
	if _, ok := v.(*types.ObjectValue); ok {
		return ""
	}
	return v.String()
}

// splitReference returns the resource type and id of a literal reference.
func splitReference(ref string) (typ, id string, ok bool) {
	if ref == "" || strings.HasPrefix(ref, "#") || strings.HasPrefix(ref, "urn:") {
		return "", "", false
	}
	parts := strings.Split(ref, "/")
	if n := len(parts); n >= 4 && parts[n-2] == "_history" {
		parts = parts[:n-2]
	}
	n := len(parts)
	if n < 2 || parts[n-2] == "" || parts[n-1] == "" {
		return "", "", false
	}
	typ, id = parts[n-2], parts[n-1]
	if typ[0] < 'A' || typ[0] > 'Z' {
		return "", "", false
	}
	return typ, id, true
}

// goValue turns one FHIRPath value into the Go value a Row holds: bool,
// int64, string, json.Number (decimals, keeping their digits),
// json.RawMessage (complex types: the element's JSON) or, for dates,
// times and quantities, their FHIRPath text.
func goValue(v types.Value) any {
	switch x := v.(type) {
	case types.Boolean:
		return x.Bool()
	case types.Integer:
		return x.Value()
	case types.Decimal:
		return json.Number(x.String())
	case types.String:
		return x.Value()
	case *types.ObjectValue:
		return json.RawMessage(x.Data())
	default:
		return v.String()
	}
}

// constantValue turns a ViewDefinition constant's value[x] into the
// FHIRPath value %name stands for.
func constantValue(field string, raw any) (types.Value, error) {
	typ := strings.TrimPrefix(field, "value")
	switch typ {
	case "Boolean":
		b, ok := raw.(bool)
		if !ok {
			return nil, fmt.Errorf("%s must be a boolean", field)
		}
		return types.NewBoolean(b), nil
	case "Integer", "PositiveInt", "UnsignedInt", "Integer64":
		n, ok := raw.(json.Number)
		if !ok {
			if s, isStr := raw.(string); isStr && typ == "Integer64" {
				n, ok = json.Number(s), true
			}
		}
		if !ok {
			return nil, fmt.Errorf("%s must be an integer", field)
		}
		i, err := n.Int64()
		if err != nil {
			return nil, fmt.Errorf("%s must be an integer", field)
		}
		return types.NewInteger(i), nil
	case "Decimal":
		n, ok := raw.(json.Number)
		if !ok {
			return nil, fmt.Errorf("%s must be a number", field)
		}
		d, err := types.NewDecimal(n.String())
		if err != nil {
			return nil, fmt.Errorf("%s must be a number", field)
		}
		return d, nil
	}
	s, ok := raw.(string)
	if !ok {
		return nil, fmt.Errorf("%s must be a string", field)
	}
	switch typ {
	case "Date":
		d, err := types.NewDate(s)
		if err != nil {
			return nil, fmt.Errorf("%s is not a date", field)
		}
		return d, nil
	case "DateTime", "Instant":
		d, err := types.NewDateTime(s)
		if err != nil {
			return nil, fmt.Errorf("%s is not a dateTime", field)
		}
		return d, nil
	case "Time":
		t, err := types.NewTime(s)
		if err != nil {
			return nil, fmt.Errorf("%s is not a time", field)
		}
		return t, nil
	case "Base64Binary", "Canonical", "Code", "Id", "Oid", "String", "Uri", "Url", "Uuid", "Markdown":
		return types.NewString(s), nil
	}
	return nil, fmt.Errorf("%s: unsupported constant type", field)
}
