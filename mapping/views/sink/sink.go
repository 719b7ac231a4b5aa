package sink

import (
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/ketamine-fhir/ketamine-fhir/mapping/views"
)

// Writer receives the rows of one view, in order. Write may keep a
// bounded buffer; Close flushes it and finishes the output (a footer, a
// commit) but does not close the io.Writer the writer was made with.
// After an error from Write the output is incomplete; Close still
// releases what the writer holds.
type Writer interface {
	Write(views.Row) error
	Close() error
}

// ValueError reports a value that cannot be written in its column's type.
// It names the column and the types, never the value (rows may carry
// patient data).
type ValueError struct {
	Column string
	Type   string // the column's declared FHIR type
	Got    string // the Go type of the value
}

func (e *ValueError) Error() string {
	return fmt.Sprintf("sink: column %s (%s): cannot write a %s value", e.Column, e.Type, e.Got)
}

// kind is how a column is stored.
type kind int

const (
	kindText kind = iota
	kindBool
	kindInt
	kindFloat
)

// columnKind maps a declared FHIR type to a storage kind; collections are
// JSON text whatever their element type.
func columnKind(c views.Column) kind {
	if c.Collection {
		return kindText
	}
	switch c.Type {
	case "boolean":
		return kindBool
	case "integer", "positiveInt", "unsignedInt", "integer64":
		return kindInt
	case "decimal":
		return kindFloat
	}
	return kindText
}

// text returns a non-nil value as text: strings as they are, complex
// values and collections as JSON.
func text(v any) (string, error) {
	switch x := v.(type) {
	case string:
		return x, nil
	case bool:
		return strconv.FormatBool(x), nil
	case int64:
		return strconv.FormatInt(x, 10), nil
	case json.Number:
		return string(x), nil
	case json.RawMessage:
		return string(x), nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return "", err
	}
	return string(b), nil
}

// convert returns a non-nil value as the Go type of k: string, bool, int64
// or float64.
func convert(c views.Column, k kind, v any) (any, error) {
	bad := func() error { return &ValueError{Column: c.Name, Type: c.Type, Got: fmt.Sprintf("%T", v)} }
	switch k {
	case kindBool:
		switch x := v.(type) {
		case bool:
			return x, nil
		case string:
			b, err := strconv.ParseBool(x)
			if err != nil {
				return nil, bad()
			}
			return b, nil
		}
		return nil, bad()
	case kindInt:
		switch x := v.(type) {
		case int64:
			return x, nil
		case json.Number:
			n, err := x.Int64()
			if err != nil {
				return nil, bad()
			}
			return n, nil
		case string:
			n, err := strconv.ParseInt(x, 10, 64)
			if err != nil {
				return nil, bad()
			}
			return n, nil
		}
		return nil, bad()
	case kindFloat:
		switch x := v.(type) {
		case int64:
			return float64(x), nil
		case json.Number:
			f, err := x.Float64()
			if err != nil {
				return nil, bad()
			}
			return f, nil
		case string:
			f, err := strconv.ParseFloat(x, 64)
			if err != nil {
				return nil, bad()
			}
			return f, nil
		}
		return nil, bad()
	}
	s, err := text(v)
	if err != nil {
		return nil, bad()
	}
	return s, nil
}

// checkWidth reports a row whose length is not the number of columns.
func checkWidth(r views.Row, cols []views.Column) error {
	if len(r) != len(cols) {
		return fmt.Errorf("sink: row has %d values for %d columns", len(r), len(cols))
	}
	return nil
}
