package mapping

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"
)

// colType says how a CSV cell becomes a JSON value.
type colType int

const (
	colString     colType = iota // the cell's text
	colNumber                    // a JSON number if the cell is one, else its text (rejected by the checks)
	colStringList                // ";"-separated strings
	colNumberList                // ";"-separated numbers
	colVitals                    // ";"-separated at|systolic|diastolic|heart_rate|spo2 groups
)

// csvColumns lists the columns of each kind, in the order of DESIGN.md
// section 2; a nested field is one column per member ("dose.value").
var csvColumns = map[Kind][]string{
	KindPatient: {"mrn", "family", "given", "birth_date", "sex", "phone", "email", "updated_at"},
	KindOrder: {"order_id", "mrn", "status", "authored_at", "prescriber.npi", "prescriber.name",
		"medication", "route", "dose.value", "dose.unit", "sessions", "frequency", "diagnoses", "note", "updated_at"},
	KindAdministration: {"admin_id", "order_id", "mrn", "status", "started_at", "ended_at", "dose.value", "dose.unit",
		"route", "performer.npi", "performer.name", "site", "lot", "lot_expires", "session", "weight_kg", "vitals",
		"adverse_events", "not_done_reason", "note", "updated_at"},
	KindScore: {"score_id", "mrn", "instrument", "taken_at", "total", "items", "admin_id",
		"performer.npi", "performer.name", "updated_at"},
}

// csvRequired lists the columns a single-kind CSV file must have: those of
// the kind's required fields.
var csvRequired = map[Kind][]string{
	KindPatient: {"mrn", "family", "given", "birth_date", "sex"},
	KindOrder: {"order_id", "mrn", "status", "authored_at", "prescriber.npi", "prescriber.name",
		"medication", "route", "dose.value", "dose.unit"},
	KindAdministration: {"admin_id", "order_id", "mrn", "status", "started_at", "dose.value", "dose.unit",
		"route", "performer.npi", "performer.name"},
	KindScore: {"score_id", "mrn", "instrument", "taken_at", "total"},
}

// csvTypes gives the type of every column that is not a plain string. A
// column has the same type in every kind that has it.
var csvTypes = map[string]colType{
	"given":          colStringList,
	"diagnoses":      colStringList,
	"adverse_events": colStringList,
	"items":          colNumberList,
	"vitals":         colVitals,
	"dose.value":     colNumber,
	"sessions":       colNumber,
	"session":        colNumber,
	"weight_kg":      colNumber,
	"total":          colNumber,
}

// vitalParts are the members of one vitals group, in order.
var vitalParts = []string{"at", "systolic", "diastolic", "heart_rate", "spo2"}

// CSVReader reads local records from a CSV file (RFC 4180: "," between
// cells, cells with "," or line breaks or quotes in double quotes, a quote
// in a quoted cell doubled) whose first row names the columns. See the
// package documentation for the columns. Every row goes through the same
// checks as an NDJSON record. A malformed row (a stray quote, a cell count
// that differs from the header, more than MaxRecordBytes) is reported as a
// *RecordError and skipped, its bytes never held in memory beyond the
// limit; the rows after it are read.
type CSVReader struct {
	p      *Parser
	kind   Kind // the file's kind; "" when every row names it
	header []string
	s      csvScanner
	err    error
}

// NewCSVReader reads the header row of a CSV file of records of the given
// kind and returns a reader of its rows. With kind "" the file must have a
// "kind" column naming each row's kind; otherwise a "kind" column is
// optional and a row's kind, when given, must be kind. Unknown, duplicate
// and (for a single kind) missing required columns are reported as a
// *CSVHeaderError. An empty file yields a reader whose Next returns io.EOF.
func (p *Parser) NewCSVReader(r io.Reader, kind Kind) (*CSVReader, error) {
	if kind != "" && !kind.Valid() {
		return nil, fmt.Errorf("mapping: unknown record kind %s", safeText(string(kind), 32))
	}
	cr := &CSVReader{p: p, kind: kind, s: csvScanner{br: bufio.NewReaderSize(r, readBufferSize), max: p.MaxRecordBytes}}
	for {
		row, err := cr.s.readRow()
		if err == io.EOF {
			cr.err = io.EOF
			return cr, nil
		}
		if err != nil {
			return nil, fmt.Errorf("mapping: reading CSV header: %w", err)
		}
		if row.blank() && row.problem == "" {
			continue
		}
		if row.problem != "" {
			return nil, &CSVHeaderError{Problems: []FieldError{{Reason: row.problem}}}
		}
		if len(row.cells) > 0 {
			row.cells[0] = strings.TrimPrefix(row.cells[0], string(utf8BOM))
		}
		if err := cr.setHeader(row.cells); err != nil {
			return nil, err
		}
		return cr, nil
	}
}

// setHeader checks the header cells and keeps them.
func (cr *CSVReader) setHeader(cells []string) error {
	known := make(map[string]bool)
	kinds := Kinds
	if cr.kind != "" {
		kinds = []Kind{cr.kind}
	}
	for _, k := range kinds {
		for _, c := range csvColumns[k] {
			known[c] = true
		}
	}
	known["kind"] = true
	e := &CSVHeaderError{}
	seen := make(map[string]bool, len(cells))
	nKnown := 0
	for i, c := range cells {
		c = strings.TrimSpace(c)
		cells[i] = c
		col := "column " + strconv.Itoa(i+1)
		switch {
		case c == "":
			e.Problems = append(e.Problems, FieldError{Field: col, Reason: "empty column name"})
		case !known[c]:
			e.Problems = append(e.Problems, FieldError{Field: col, Reason: "unknown column"})
			e.Diagnostics = append(e.Diagnostics, col+": "+strconv.Quote(truncateUTF8(c, maxDiagValue)))
		case seen[c]:
			e.Problems = append(e.Problems, FieldError{Field: col, Reason: "duplicate column " + c})
		default:
			nKnown++
		}
		seen[c] = true
	}
	if nKnown == 0 {
		e.Problems = append(e.Problems, FieldError{Reason: "no known column (is the header row missing?)"})
	}
	if cr.kind == "" && !seen["kind"] {
		e.Problems = append(e.Problems, FieldError{Field: "kind", Reason: "column required when the file's kind is not given"})
	}
	if cr.kind != "" {
		for _, c := range csvRequired[cr.kind] {
			if !seen[c] {
				e.Problems = append(e.Problems, FieldError{Field: c, Reason: "missing required column"})
			}
		}
	}
	if len(e.Problems) > 0 {
		return e
	}
	cr.header = cells
	return nil
}

// Header returns the column names of the file; nil for an empty file.
func (cr *CSVReader) Header() []string { return cr.header }

// Line returns the number of lines read so far.
func (cr *CSVReader) Line() int { return cr.s.line }

// Offset returns the number of bytes of the input consumed so far.
func (cr *CSVReader) Offset() int64 { return cr.s.offset }

// Next returns the record of the next row; see Reader. Rows whose cells are
// all empty are skipped.
func (cr *CSVReader) Next() (*Record, error) {
	for {
		if cr.err != nil {
			return nil, cr.err
		}
		row, err := cr.s.readRow()
		if err != nil {
			if err != io.EOF {
				err = fmt.Errorf("mapping: reading CSV after line %d: %w", cr.s.line, err)
			}
			cr.err = err
			return nil, err
		}
		switch {
		case row.problem != "":
			return nil, &RecordError{Line: row.line, Kind: cr.kind, Problems: []FieldError{{Reason: row.problem}}}
		case row.blank():
			continue
		case len(row.cells) != len(cr.header):
			return nil, &RecordError{Line: row.line, Kind: cr.kind,
				Problems:    []FieldError{{Reason: "cell count differs from the header"}},
				Diagnostics: []string{fmt.Sprintf("row has %d cells, header has %d", len(row.cells), len(cr.header))}}
		}
		var pr fieldProblems
		obj := cr.rowObject(row.cells, &pr)
		return cr.p.parseObject(obj, row.line, &pr)
	}
}

// rowObject turns a row into the object the same record would be in
// NDJSON. Empty cells are absent members. Problems that only a CSV row can
// have (a malformed vitals group, invalid UTF-8) go to pr.
func (cr *CSVReader) rowObject(cells []string, pr *fieldProblems) *jsonObject {
	obj := &jsonObject{}
	for i, cell := range cells {
		col := cr.header[i]
		cell = strings.TrimSpace(cell)
		if cell == "" {
			continue
		}
		if !utf8.ValidString(cell) {
			pr.add(col, "invalid UTF-8")
			continue
		}
		if col == "kind" {
			if cr.kind != "" && cell != string(cr.kind) {
				pr.add("kind", "does not match the file's kind")
				continue
			}
			obj.set("kind", cell)
			continue
		}
		var val any
		switch csvTypes[col] {
		case colString:
			val = cell
		case colNumber:
			val = csvNumber(cell)
		case colStringList:
			parts := strings.Split(cell, ";")
			l := make([]any, len(parts))
			for j, s := range parts {
				l[j] = strings.TrimSpace(s)
			}
			val = l
		case colNumberList:
			parts := strings.Split(cell, ";")
			l := make([]any, len(parts))
			for j, s := range parts {
				l[j] = csvNumber(s)
			}
			val = l
		case colVitals:
			val = csvVitals(col, cell, pr)
		}
		parent, name, nested := strings.Cut(col, ".")
		if !nested {
			obj.set(col, val)
			continue
		}
		sub := obj
		if j := obj.index(parent); j >= 0 {
			sub = obj.vals[j].(*jsonObject)
		} else {
			sub = &jsonObject{}
			obj.set(parent, sub)
		}
		sub.set(name, val)
	}
	if cr.kind != "" && obj.index("kind") < 0 && !pr.blocked("kind") {
		obj.set("kind", string(cr.kind))
	}
	return obj
}

// csvNumber returns the cell as a json.Number when it is a JSON number,
// else as a string (which the checks reject as "not a number").
func csvNumber(cell string) any {
	cell = strings.TrimSpace(cell)
	if isJSONNumber(cell) {
		return json.Number(cell)
	}
	return cell
}

// csvVitals parses a vitals cell: groups separated by ";", each
// at|systolic|diastolic|heart_rate|spo2 with empty parts absent.
func csvVitals(col, cell string, pr *fieldProblems) any {
	groups := strings.Split(cell, ";")
	l := make([]any, len(groups))
	for i, g := range groups {
		parts := strings.Split(g, "|")
		if len(parts) != len(vitalParts) {
			pr.add(col+"["+strconv.Itoa(i)+"]", "not at|systolic|diastolic|heart_rate|spo2")
			l[i] = &jsonObject{}
			continue
		}
		o := &jsonObject{}
		for j, part := range parts {
			part = strings.TrimSpace(part)
			switch {
			case part == "":
			case j == 0:
				o.set(vitalParts[j], part)
			default:
				o.set(vitalParts[j], csvNumber(part))
			}
		}
		l[i] = o
	}
	return l
}

// isJSONNumber reports whether s is a number in JSON syntax.
func isJSONNumber(s string) bool {
	i := 0
	if i < len(s) && s[i] == '-' {
		i++
	}
	switch {
	case i < len(s) && s[i] == '0':
		i++
	case i < len(s) && s[i] >= '1' && s[i] <= '9':
		for i < len(s) && asciiDigit(s[i]) {
			i++
		}
	default:
		return false
	}
	if i < len(s) && s[i] == '.' {
		i++
		if i == len(s) || !asciiDigit(s[i]) {
			return false
		}
		for i < len(s) && asciiDigit(s[i]) {
			i++
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		if i == len(s) || !asciiDigit(s[i]) {
			return false
		}
		for i < len(s) && asciiDigit(s[i]) {
			i++
		}
	}
	return i == len(s)
}

// csvRow is one row as read by csvScanner.
type csvRow struct {
	cells   []string
	line    int    // the line the row starts on
	problem string // a fixed reason when the row is malformed
}

// blank reports whether every cell is empty or spaces.
func (r csvRow) blank() bool {
	for _, c := range r.cells {
		if strings.TrimSpace(c) != "" {
			return false
		}
	}
	return true
}

// csvScanner splits a stream into CSV rows, holding at most max bytes of a
// row: the bytes of a longer row are scanned (to find where it ends) but
// not kept.
type csvScanner struct {
	br     *bufio.Reader
	max    int
	line   int // lines consumed
	offset int64

	buf  []byte // the cells' bytes
	ends []int  // end of each cell in buf
}

// The states of the CSV scanner.
const (
	csvCellStart    = iota // at the start of a cell
	csvUnquoted            // in an unquoted cell
	csvQuoted              // in a quoted cell
	csvQuoteInQuote        // just after a quote in a quoted cell: a doubled quote or the end
	csvAfterQuote          // after the closing quote of a cell
)

// maxCSVCells bounds the cells of a row; the record format has about 20
// fields, so a longer row is garbage and is not kept.
const maxCSVCells = 1024

// readRow returns the next row. It returns io.EOF when no byte is left and
// another error when the underlying reader fails.
func (s *csvScanner) readRow() (csvRow, error) {
	s.buf = s.buf[:0]
	s.ends = s.ends[:0]
	row := csvRow{line: s.line + 1}
	state := csvCellStart
	size := 0      // bytes of the row so far
	overflow := "" // why the row is not kept, once it is too big
	read := 0
	endCell := func() {
		if overflow != "" {
			return
		}
		if len(s.ends) == maxCSVCells {
			overflow = "row with more than " + strconv.Itoa(maxCSVCells) + " cells"
			s.buf, s.ends = s.buf[:0], s.ends[:0]
			return
		}
		s.ends = append(s.ends, len(s.buf))
	}
	add := func(c byte) {
		if overflow == "" {
			s.buf = append(s.buf, c)
		}
	}
	trimCR := func() { // a "\r\n" line end leaves "\r" at the end of an unquoted cell
		start := 0
		if n := len(s.ends); n > 0 {
			start = s.ends[n-1]
		}
		if overflow == "" && len(s.buf) > start && s.buf[len(s.buf)-1] == '\r' {
			s.buf = s.buf[:len(s.buf)-1]
		}
	}
	setProblem := func(p string) {
		if row.problem == "" {
			row.problem = p
		}
	}
	for {
		chunk, err := s.br.ReadSlice('\n')
		read += len(chunk)
		s.offset += int64(len(chunk))
		for i := 0; i < len(chunk); i++ {
			c := chunk[i]
			size++
			if size > s.max+len("\r\n") && overflow == "" {
				overflow = "row longer than " + strconv.Itoa(s.max) + " bytes"
				s.buf, s.ends = s.buf[:0], s.ends[:0]
			}
			if c == '\n' {
				s.line++
			}
			switch state {
			case csvCellStart:
				switch c {
				case '"':
					state = csvQuoted
				case ',':
					endCell()
				case '\n':
					endCell()
					return s.finish(row, overflow)
				default:
					add(c)
					state = csvUnquoted
				}
			case csvUnquoted:
				switch c {
				case ',':
					endCell()
					state = csvCellStart
				case '\n':
					trimCR()
					endCell()
					return s.finish(row, overflow)
				case '"':
					setProblem("quote in an unquoted cell")
					add(c)
				default:
					add(c)
				}
			case csvQuoted:
				if c == '"' {
					state = csvQuoteInQuote
				} else {
					add(c)
				}
			case csvQuoteInQuote:
				switch c {
				case '"':
					add(c)
					state = csvQuoted
				case ',':
					endCell()
					state = csvCellStart
				case '\n':
					endCell()
					return s.finish(row, overflow)
				case '\r':
					state = csvAfterQuote
				default:
					setProblem("text after the closing quote of a cell")
					add(c)
					state = csvUnquoted
				}
			case csvAfterQuote:
				switch c {
				case ',':
					endCell()
					state = csvCellStart
				case '\n':
					endCell()
					return s.finish(row, overflow)
				case '\r':
				default:
					setProblem("text after the closing quote of a cell")
					add(c)
					state = csvUnquoted
				}
			}
		}
		switch {
		case err == nil:
		case errors.Is(err, bufio.ErrBufferFull):
		case err == io.EOF:
			if read == 0 {
				return csvRow{}, io.EOF
			}
			s.line++ // the last line had no line end
			switch state {
			case csvQuoted:
				setProblem("quoted cell not closed before the end of the file")
			case csvUnquoted:
				trimCR()
			}
			endCell()
			return s.finish(row, overflow)
		default:
			return csvRow{}, err
		}
	}
}

// finish completes a row: its cells from buf, or the reason it was not
// kept.
func (s *csvScanner) finish(row csvRow, overflow string) (csvRow, error) {
	if overflow == "" && len(s.buf) > s.max {
		overflow = "row longer than " + strconv.Itoa(s.max) + " bytes"
	}
	if overflow != "" {
		row.problem = overflow
		return row, nil
	}
	row.cells = make([]string, len(s.ends))
	start := 0
	for i, end := range s.ends {
		row.cells[i] = string(s.buf[start:end])
		start = end
	}
	return row, nil
}
