package views

import (
	"encoding/json"
	"fmt"

	"github.com/gofhir/fhirpath/eval"
	"github.com/gofhir/fhirpath/types"
)

// maxRepeatDepth bounds the recursion of a repeat directive, so that
// "repeat": ["$this"] or hostile nesting ends in an error, not a hang.
const maxRepeatDepth = 64

// EvalError reports a resource the view could not be evaluated on: a
// where path that is not boolean, a column that is not a collection but
// has several values, a FHIRPath runtime error. Path is the element of the
// ViewDefinition ("select[1].column[0].path"). The message holds no
// resource values, only the view's own text.
type EvalError struct {
	Path   string
	Reason string
}

func (e *EvalError) Error() string {
	if e.Path == "" {
		return "view evaluation: " + e.Reason
	}
	return "view evaluation: " + e.Path + ": " + e.Reason
}

// Run evaluates the view on one FHIR resource (JSON) and calls emit for
// each row, in order. A resource of another type than Resource() gives no
// rows and no error. Run keeps nothing between calls, so a stream of any
// length runs in the memory of its largest resource. An error from emit
// stops Run and is returned as is; a resource the view cannot be evaluated
// on gives an *EvalError; input that is not a JSON object gives an error.
//
// A panic inside the FHIRPath engine on hostile input becomes an
// *EvalError for that resource, so that one resource cannot end a long
// export; a panic in emit is the caller's and is not recovered.
func (v *View) Run(resource []byte, emit func(Row) error) (err error) {
	inEmit := false
	defer func() {
		if p := recover(); p != nil {
			if inEmit {
				panic(p)
			}
			err = &EvalError{Path: "", Reason: fmt.Sprintf("FHIRPath engine failed: %v", p)}
		}
	}()
	emitRow := func(r Row) error {
		inEmit = true
		defer func() { inEmit = false }()
		return emit(r)
	}
	if !json.Valid(resource) {
		return errNotObject
	}
	r := &run{view: v, ctx: eval.NewContext(resource)}
	root := r.ctx.Root()
	if len(root) != 1 {
		return errNotObject
	}
	obj, ok := root[0].(*types.ObjectValue)
	if !ok {
		return errNotObject
	}
	rt, ok := obj.Get("resourceType")
	if !ok || rt == nil || primitiveText(rt) != v.resource {
		return nil
	}
	for _, c := range v.constants {
		r.ctx.SetVariable(c.name, types.Collection{c.value})
	}
	for _, w := range v.where {
		ok, err := r.where(w, root)
		if err != nil {
			return err
		}
		if !ok {
			return nil
		}
	}
	// The top-level selects combine as a cross product, like the selects
	// nested in one select.
	parts := make([][][]any, len(v.selects))
	for i, s := range v.selects {
		rows, err := r.selectRows(s, root, 0)
		if err != nil {
			return err
		}
		if len(rows) == 0 {
			return nil
		}
		parts[i] = rows
	}
	return product(parts, len(v.columns), func(row []any) error { return emitRow(Row(row)) })
}

// RunValue is Run for a resource already decoded with encoding/json.
func (v *View) RunValue(resource map[string]any, emit func(Row) error) error {
	data, err := json.Marshal(resource)
	if err != nil {
		return fmt.Errorf("views: encoding resource: %w", err)
	}
	return v.Run(data, emit)
}

// Rows runs the view on one resource and returns its rows.
func (v *View) Rows(resource []byte) ([]Row, error) {
	var rows []Row
	err := v.Run(resource, func(r Row) error {
		rows = append(rows, r)
		return nil
	})
	return rows, err
}

// run is the state of one Run: the resource's evaluation context.
type run struct {
	view *View
	ctx  *eval.Context
}

func (r *run) eval(e *expr, focus types.Collection, rowIndex int, path string) (types.Collection, error) {
	r.ctx.SetVariable("rowIndex", types.Collection{types.NewInteger(int64(rowIndex))})
	out, err := e.eval(r.ctx, focus)
	if err != nil {
		return nil, &EvalError{Path: path, Reason: fmt.Sprintf("FHIRPath %q: %v", e.src, err)}
	}
	return out, nil
}

func (r *run) where(w whereClause, root types.Collection) (bool, error) {
	out, err := r.eval(w.expr, root, 0, w.path)
	if err != nil {
		return false, err
	}
	switch len(out) {
	case 0:
		return false, nil
	case 1:
		if b, ok := out[0].(types.Boolean); ok {
			return b.Bool(), nil
		}
	}
	return false, &EvalError{Path: w.path, Reason: fmt.Sprintf("FHIRPath %q must give one boolean or nothing", w.expr.src)}
}

// focus is one node a select is evaluated on, with its %rowIndex.
type focus struct {
	node  types.Collection
	index int
}

// foci returns the nodes s is evaluated on, given its parent's node.
func (r *run) foci(s *selectNode, node types.Collection, rowIndex int) ([]focus, error) {
	var e *expr
	var path string
	switch {
	case s.forEach != nil:
		e, path = s.forEach, s.path+".forEach"
	case s.forEachOrNull != nil:
		e, path = s.forEachOrNull, s.path+".forEachOrNull"
	case len(s.repeat) > 0:
		var out []focus
		err := r.repeat(s, node, 0, &out)
		return out, err
	default:
		return []focus{{node: node, index: rowIndex}}, nil
	}
	items, err := r.eval(e, node, rowIndex, path)
	if err != nil {
		return nil, err
	}
	if len(items) == 0 && s.forEachOrNull != nil {
		// One row of nulls: the select's expressions see an empty focus,
		// and %rowIndex is 0 as the official suite expects.
		return []focus{{node: types.Collection{}, index: 0}}, nil
	}
	out := make([]focus, len(items))
	for i, item := range items {
		out[i] = focus{node: types.Collection{item}, index: i}
	}
	return out, nil
}

// repeat collects, depth first and in document order, every node reached
// from node by one or more steps of the repeat paths; %rowIndex counts
// them in that order.
func (r *run) repeat(s *selectNode, node types.Collection, depth int, out *[]focus) error {
	if depth >= maxRepeatDepth {
		return &EvalError{Path: s.path + ".repeat", Reason: fmt.Sprintf("nested deeper than %d levels", maxRepeatDepth)}
	}
	for i, e := range s.repeat {
		items, err := r.eval(e, node, 0, fmt.Sprintf("%s.repeat[%d]", s.path, i))
		if err != nil {
			return err
		}
		for _, item := range items {
			child := types.Collection{item}
			*out = append(*out, focus{node: child, index: len(*out)})
			if err := r.repeat(s, child, depth+1, out); err != nil {
				return err
			}
		}
	}
	return nil
}

// selectRows returns the partial rows (s.width values each) that s gives
// on node.
func (r *run) selectRows(s *selectNode, node types.Collection, rowIndex int) ([][]any, error) {
	foci, err := r.foci(s, node, rowIndex)
	if err != nil {
		return nil, err
	}
	var rows [][]any
	for _, f := range foci {
		parts := make([][][]any, 0, 2+len(s.selects))
		if len(s.columns) > 0 {
			vals := make([]any, len(s.columns))
			for i, c := range s.columns {
				v, err := r.column(c, f)
				if err != nil {
					return nil, err
				}
				vals[i] = v
			}
			parts = append(parts, [][]any{vals})
		}
		empty := false
		for _, sub := range s.selects {
			subRows, err := r.selectRows(sub, f.node, f.index)
			if err != nil {
				return nil, err
			}
			if len(subRows) == 0 {
				empty = true
				break
			}
			parts = append(parts, subRows)
		}
		if empty {
			continue
		}
		if len(s.unionAll) > 0 {
			var union [][]any
			for _, b := range s.unionAll {
				bRows, err := r.selectRows(b, f.node, f.index)
				if err != nil {
					return nil, err
				}
				union = append(union, bRows...)
			}
			if len(union) == 0 {
				continue
			}
			parts = append(parts, union)
		}
		err := product(parts, s.width, func(row []any) error {
			rows = append(rows, row)
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return rows, nil
}

func (r *run) column(c columnNode, f focus) (any, error) {
	out, err := r.eval(c.expr, f.node, f.index, c.path+".path")
	if err != nil {
		return nil, err
	}
	if c.Collection {
		vals := make([]any, len(out))
		for i, v := range out {
			vals[i] = goValue(v)
		}
		return vals, nil
	}
	switch len(out) {
	case 0:
		return nil, nil
	case 1:
		return goValue(out[0]), nil
	}
	return nil, &EvalError{Path: c.path + ".path", Reason: fmt.Sprintf(
		"column %q: FHIRPath %q gave %d values; a column without \"collection\": true holds at most one", c.Name, c.expr.src, len(out))}
}

// product calls emit with every concatenation of one partial row from each
// part, in order (the first part varies slowest). Each emitted row is a
// new slice of width values.
func product(parts [][][]any, width int, emit func([]any) error) error {
	row := make([]any, 0, width)
	var rec func(i int, row []any) error
	rec = func(i int, row []any) error {
		if i == len(parts) {
			out := make([]any, len(row), width)
			copy(out, row)
			return emit(out)
		}
		for _, p := range parts[i] {
			if err := rec(i+1, append(row, p...)); err != nil {
				return err
			}
		}
		return nil
	}
	return rec(0, row)
}
