package sink

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"encoding/json"
	"io"

	"github.com/ketamine-fhir/ketamine-fhir/mapping/views"
)

// CSVWriter writes a view's rows as CSV (RFC 4180): a header of column
// names, then one record per row. A missing value is an empty field; a
// collection or complex value is its JSON text.
type CSVWriter struct {
	cols   []views.Column
	buf    *bufio.Writer
	w      *csv.Writer
	fields []string
}

// NewCSV writes the header for cols to w and returns the writer of the
// rows.
func NewCSV(w io.Writer, cols []views.Column) (*CSVWriter, error) {
	buf := bufio.NewWriterSize(w, 64<<10)
	c := &CSVWriter{cols: cols, buf: buf, w: csv.NewWriter(buf), fields: make([]string, len(cols))}
	for i, col := range cols {
		c.fields[i] = col.Name
	}
	if err := c.w.Write(c.fields); err != nil {
		return nil, err
	}
	return c, nil
}

// Write writes one row.
func (c *CSVWriter) Write(r views.Row) error {
	if err := checkWidth(r, c.cols); err != nil {
		return err
	}
	for i, v := range r {
		if v == nil {
			c.fields[i] = ""
			continue
		}
		s, err := text(v)
		if err != nil {
			return &ValueError{Column: c.cols[i].Name, Type: c.cols[i].Type, Got: "collection"}
		}
		c.fields[i] = s
	}
	return c.w.Write(c.fields)
}

// Close flushes what is buffered.
func (c *CSVWriter) Close() error {
	c.w.Flush()
	if err := c.w.Error(); err != nil {
		return err
	}
	return c.buf.Flush()
}

// NDJSONWriter writes a view's rows as NDJSON: one JSON object per line
// with exactly the view's columns, in order; a missing value is null, a
// collection a JSON array, a complex value its JSON object.
type NDJSONWriter struct {
	cols  []views.Column
	names [][]byte // `"name":` per column, encoded once
	buf   *bufio.Writer
	line  bytes.Buffer
}

// NewNDJSON returns the writer of cols' rows to w.
func NewNDJSON(w io.Writer, cols []views.Column) (*NDJSONWriter, error) {
	n := &NDJSONWriter{cols: cols, buf: bufio.NewWriterSize(w, 64<<10)}
	for _, c := range cols {
		b, err := json.Marshal(c.Name)
		if err != nil {
			return nil, err
		}
		n.names = append(n.names, append(b, ':'))
	}
	return n, nil
}

// Write writes one row as one line.
func (n *NDJSONWriter) Write(r views.Row) error {
	if err := checkWidth(r, n.cols); err != nil {
		return err
	}
	n.line.Reset()
	n.line.WriteByte('{')
	for i, v := range r {
		if i > 0 {
			n.line.WriteByte(',')
		}
		n.line.Write(n.names[i])
		if v == nil {
			n.line.WriteString("null")
			continue
		}
		b, err := json.Marshal(v)
		if err != nil {
			return &ValueError{Column: n.cols[i].Name, Type: n.cols[i].Type, Got: "unencodable"}
		}
		n.line.Write(b)
	}
	n.line.WriteString("}\n")
	_, err := n.buf.Write(n.line.Bytes())
	return err
}

// Close flushes what is buffered.
func (n *NDJSONWriter) Close() error { return n.buf.Flush() }
