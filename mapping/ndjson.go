package mapping

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// Reader reads local records one at a time from a stream.
//
// Next returns the next good record; a *RecordError for a bad record, after
// which the caller calls Next again (a bad record never stops the rest of
// the stream); io.EOF at the end; any other error for a fatal problem of the
// underlying reader, which every later call returns again.
type Reader interface {
	Next() (*Record, error)
}

// readBufferSize is the buffer of the readers: lines and rows longer than
// this are read in pieces.
const readBufferSize = 64 << 10

// utf8BOM is the byte order mark some tools put at the start of a file.
var utf8BOM = []byte{0xEF, 0xBB, 0xBF}

// NDJSONReader reads newline-delimited JSON records, one object per line
// (DESIGN.md section 2). It holds at most one line in memory: a line
// longer than the Parser's MaxRecordBytes is skipped without being kept
// and reported as a *RecordError for that line. Blank lines are skipped; a
// final line without a newline is read; "\r\n" line ends and a UTF-8 byte
// order mark at the start are accepted.
type NDJSONReader struct {
	p      *Parser
	br     *bufio.Reader
	buf    []byte
	line   int
	offset int64
	err    error
}

// NewNDJSONReader returns a reader of the NDJSON records in r, parsed and
// checked by p.
func (p *Parser) NewNDJSONReader(r io.Reader) *NDJSONReader {
	return &NDJSONReader{p: p, br: bufio.NewReaderSize(r, readBufferSize)}
}

// Line returns the number of lines read so far: after Next, the line of
// the record or error it returned.
func (r *NDJSONReader) Line() int { return r.line }

// Offset returns the number of bytes of the input consumed so far.
func (r *NDJSONReader) Offset() int64 { return r.offset }

// Next returns the next record; see Reader.
func (r *NDJSONReader) Next() (*Record, error) {
	for {
		if r.err != nil {
			return nil, r.err
		}
		data, tooLong, err := r.readLine()
		if err != nil {
			if err != io.EOF {
				err = fmt.Errorf("mapping: reading NDJSON after line %d: %w", r.line, err)
			}
			r.err = err
			return nil, err
		}
		if tooLong {
			return nil, &RecordError{Line: r.line, Problems: []FieldError{{Reason: "line longer than " + strconv.Itoa(r.p.MaxRecordBytes) + " bytes"}}}
		}
		if r.line == 1 {
			data = bytes.TrimPrefix(data, utf8BOM)
		}
		if len(bytes.TrimSpace(data)) == 0 {
			continue
		}
		return r.p.Parse(data, r.line)
	}
}

// readLine reads the next line without its line end. When the line is
// longer than MaxRecordBytes it is consumed but not kept, and tooLong is
// true. It returns io.EOF only when no byte is left.
func (r *NDJSONReader) readLine() (data []byte, tooLong bool, err error) {
	r.buf = r.buf[:0]
	limit := r.p.MaxRecordBytes + len("\r\n")
	n := 0
	for {
		chunk, err := r.br.ReadSlice('\n')
		n += len(chunk)
		r.offset += int64(len(chunk))
		if !tooLong {
			if len(r.buf)+len(chunk) > limit {
				tooLong = true
				r.buf = r.buf[:0]
			} else {
				r.buf = append(r.buf, chunk...)
			}
		}
		switch {
		case err == nil:
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case err == io.EOF:
			if n == 0 {
				return nil, false, io.EOF
			}
		default:
			return nil, false, err
		}
		r.line++
		if tooLong {
			return nil, true, nil
		}
		data = bytes.TrimSuffix(r.buf, []byte("\n"))
		data = bytes.TrimSuffix(data, []byte("\r"))
		if len(data) > r.p.MaxRecordBytes {
			return nil, true, nil
		}
		return data, false, nil
	}
}
