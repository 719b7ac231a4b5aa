package sink

import (
	"io"

	"github.com/parquet-go/parquet-go"

	"github.com/ketamine-fhir/ketamine-fhir/mapping/views"
)

// ParquetRowGroup is the number of rows of one Parquet row group: the
// writer flushes a row group every ParquetRowGroup rows, so it holds at
// most that many rows in memory.
const ParquetRowGroup = 10000

// ParquetWriter writes a view's rows as one Parquet file. Every column is
// optional (missing values are nulls); the physical types are in the
// package doc.
type ParquetWriter struct {
	cols   []views.Column
	kinds  []kind
	index  []int // index[i]: the Parquet leaf column of cols[i]
	w      *parquet.Writer
	batch  []parquet.Row
	inRG   int
	closed bool
}

// ParquetSchema returns the Parquet schema of cols, named name.
func ParquetSchema(name string, cols []views.Column) *parquet.Schema {
	g := parquet.Group{}
	for _, c := range cols {
		var n parquet.Node
		switch columnKind(c) {
		case kindBool:
			n = parquet.Leaf(parquet.BooleanType)
		case kindInt:
			n = parquet.Int(64)
		case kindFloat:
			n = parquet.Leaf(parquet.DoubleType)
		default:
			n = parquet.String()
		}
		g[c.Name] = parquet.Optional(n)
	}
	return parquet.NewSchema(name, g)
}

// NewParquet returns the writer of cols' rows to w as a Parquet file named
// name (the schema's name; the view's name is a good one).
func NewParquet(w io.Writer, name string, cols []views.Column) (*ParquetWriter, error) {
	schema := ParquetSchema(name, cols)
	p := &ParquetWriter{cols: cols, kinds: make([]kind, len(cols)), index: make([]int, len(cols))}
	leaf := map[string]int{}
	for i, path := range schema.Columns() {
		leaf[path[0]] = i
	}
	for i, c := range cols {
		p.kinds[i] = columnKind(c)
		p.index[i] = leaf[c.Name]
	}
	p.w = parquet.NewWriter(w, schema, parquet.MaxRowsPerRowGroup(ParquetRowGroup))
	return p, nil
}

// Write adds one row; every ParquetRowGroup rows the row group is flushed
// to the output.
func (p *ParquetWriter) Write(r views.Row) error {
	if err := checkWidth(r, p.cols); err != nil {
		return err
	}
	row := make(parquet.Row, len(p.cols))
	for i, v := range r {
		idx := p.index[i]
		if v == nil {
			row[idx] = parquet.Value{}.Level(0, 0, idx)
			continue
		}
		x, err := convert(p.cols[i], p.kinds[i], v)
		if err != nil {
			return err
		}
		var val parquet.Value
		switch x := x.(type) {
		case bool:
			val = parquet.BooleanValue(x)
		case int64:
			val = parquet.Int64Value(x)
		case float64:
			val = parquet.DoubleValue(x)
		case string:
			val = parquet.ByteArrayValue([]byte(x))
		}
		row[idx] = val.Level(0, 1, idx)
	}
	p.batch = append(p.batch, row)
	if len(p.batch) >= 256 {
		if err := p.writeBatch(); err != nil {
			return err
		}
	}
	return nil
}

func (p *ParquetWriter) writeBatch() error {
	if len(p.batch) == 0 {
		return nil
	}
	if _, err := p.w.WriteRows(p.batch); err != nil {
		return err
	}
	p.inRG += len(p.batch)
	p.batch = p.batch[:0]
	if p.inRG >= ParquetRowGroup {
		p.inRG = 0
		return p.w.Flush()
	}
	return nil
}

// Close writes the rows still buffered and the file footer.
func (p *ParquetWriter) Close() error {
	if p.closed {
		return nil
	}
	p.closed = true
	if err := p.writeBatch(); err != nil {
		p.w.Close()
		return err
	}
	return p.w.Close()
}
