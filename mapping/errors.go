package mapping

import (
	"strconv"
	"strings"
)

// FieldError is one problem with one field of a local record.
//
// Field is the path of the field in the record, in the form of the NDJSON
// format: "dose.value", "vitals[2].systolic", "given[0]". It is "" for a
// problem with the record as a whole (malformed JSON, a line that is too
// long). Reason is a fixed text that never contains the field's value, so
// a FieldError may be logged even when the field holds patient data.
type FieldError struct {
	Field  string
	Reason string
}

// Error returns "field F: reason", or the reason alone when Field is "".
func (e FieldError) Error() string {
	if e.Field == "" {
		return e.Reason
	}
	return "field " + e.Field + ": " + e.Reason
}

// maxPrintedProblems is how many problems RecordError.Error lists before
// it summarises the rest as "and N more".
const maxPrintedProblems = 10

// RecordError reports a local record that was rejected: it failed to
// parse or failed a check. It lists every problem found in the record, not
// just the first. A reader that returns a RecordError goes on with the next
// record.
//
// Error never contains patient data: it names the line, the kind, the
// record id (except for a patient record, whose id is the MRN) and each
// problem's field and fixed reason. Raw values, when kept for the operator,
// are in Diagnostics, which Error never prints and which must not be
// logged.
type RecordError struct {
	// Line is the 1-based line of the record in its file (for a CSV file
	// the line its row starts on, the header being line 1); zero when the
	// record did not come from a file.
	Line int
	// Kind is the record's kind; "" when it could not be told (malformed
	// JSON, a missing or unknown kind).
	Kind Kind
	// RecordID is the record's local id (for a patient, the MRN) when the
	// id itself passed its checks; "" otherwise.
	RecordID string
	// Problems lists every problem found, at most one per field.
	Problems []FieldError
	// Diagnostics holds details that may contain patient data: raw
	// values, the JSON decoder's message. Error never prints them; show
	// them only to an operator entitled to see the record.
	Diagnostics []string
}

// Error returns for example
//
//	line 7: patient record: field birth_date: not a date (YYYY-MM-DD)
//	line 9: order ord-17: field dose.value: above the dose ceiling; field route: unknown route
//
// A patient record is named by its kind only, never by its MRN.
func (e *RecordError) Error() string {
	var b strings.Builder
	if e.Line > 0 {
		b.WriteString("line ")
		b.WriteString(strconv.Itoa(e.Line))
		b.WriteString(": ")
	}
	switch {
	case e.Kind == "":
		b.WriteString("record")
	case e.Kind == KindPatient || e.RecordID == "":
		b.WriteString(safeText(string(e.Kind), 32))
		b.WriteString(" record")
	default:
		b.WriteString(safeText(string(e.Kind), 32))
		b.WriteByte(' ')
		b.WriteString(safeText(e.RecordID, 0))
	}
	if len(e.Problems) == 0 {
		b.WriteString(": invalid")
		return b.String()
	}
	for i, p := range e.Problems {
		if i == maxPrintedProblems {
			b.WriteString("; and ")
			b.WriteString(strconv.Itoa(len(e.Problems) - i))
			b.WriteString(" more")
			break
		}
		if i == 0 {
			b.WriteString(": ")
		} else {
			b.WriteString("; ")
		}
		b.WriteString(p.Error())
	}
	return b.String()
}

// safeText returns s as is when it is short plain text, else quoted with
// Go escapes and cut to max bytes (0 means no cut), so that an error
// message stays on one line whatever the input held.
func safeText(s string, max int) string {
	plain := s != ""
	for i := 0; i < len(s) && plain; i++ {
		c := s[i]
		plain = c > ' ' && c < 0x7f && c != '"' && c != '\\'
	}
	if plain && (max == 0 || len(s) <= max) {
		return s
	}
	if max > 0 && len(s) > max {
		s = truncateUTF8(s, max) + "..."
	}
	return strconv.QuoteToASCII(s)
}

// truncateUTF8 cuts s to at most n bytes without splitting a UTF-8
// sequence.
func truncateUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && n < len(s) && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n]
}

// CSVHeaderError reports a CSV file whose header row is unusable: unknown,
// duplicate or missing columns. The file is not read. Field of each
// problem names a column by its 1-based position ("column 3"), never by
// its text, because a file exported without a header row has patient data
// in its first row; the texts are in Diagnostics.
type CSVHeaderError struct {
	Problems    []FieldError
	Diagnostics []string
}

// Error lists every header problem.
func (e *CSVHeaderError) Error() string {
	var b strings.Builder
	b.WriteString("CSV header")
	for i, p := range e.Problems {
		if i == maxPrintedProblems {
			b.WriteString("; and ")
			b.WriteString(strconv.Itoa(len(e.Problems) - i))
			b.WriteString(" more")
			break
		}
		if i == 0 {
			b.WriteString(": ")
		} else {
			b.WriteString("; ")
		}
		if p.Field != "" {
			b.WriteString(p.Field)
			b.WriteString(": ")
		}
		b.WriteString(p.Reason)
	}
	return b.String()
}

// ConfigError reports every problem of a Config at once. Each problem
// names the configuration key, for example
// `formulary.ketamine-10mg-ml.routes[0]: unknown route "XX"`.
type ConfigError struct {
	Problems []string
}

// Error returns "invalid mapping config: " and the problems separated by
// "; ".
func (e *ConfigError) Error() string {
	return "invalid mapping config: " + strings.Join(e.Problems, "; ")
}
