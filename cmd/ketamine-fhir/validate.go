package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/ketamine-fhir/ketamine-fhir/mapping"
)

// maxValidateLine bounds one NDJSON line of validate input.
const maxValidateLine = 64 << 20

func runValidate(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := newFlags("validate", "FILE... (- for stdin)", stderr)
	quiet := fs.Bool("quiet", false, "print only invalid resources, no summary")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	files := fs.Args()
	if len(files) == 0 {
		fs.Usage()
		return exitUsage
	}
	total, invalid := 0, 0
	for _, name := range files {
		n, bad, err := validateFile(ctx, name, stdin, stdout)
		total += n
		invalid += bad
		if err != nil {
			fmt.Fprintf(stderr, "ketamine-fhir validate: %v\n", err)
			return exitFailed
		}
	}
	if !*quiet {
		fmt.Fprintf(stderr, "%d resources, %d invalid\n", total, invalid)
	}
	if invalid > 0 {
		return exitFailed
	}
	return exitOK
}

// validateFile validates one file: a JSON resource or Bundle, or NDJSON
// (one resource or Bundle per line). It prints one line per invalid
// resource with the FHIR path of each issue.
func validateFile(ctx context.Context, name string, stdin io.Reader, stdout io.Writer) (total, invalid int, err error) {
	var r io.Reader = stdin
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return 0, 0, fmt.Errorf("opening %s: %w", name, errors.Unwrap(err))
		}
		defer f.Close()
		r = f
	}
	br := bufio.NewReaderSize(r, 1<<20)
	// A document whose first line is not a whole JSON value is one
	// (pretty-printed) document; otherwise it is NDJSON.
	first, err := br.Peek(1)
	if err == io.EOF || len(first) == 0 {
		return 0, 0, nil
	}
	data, err := io.ReadAll(io.LimitReader(br, maxValidateLine+1))
	if err != nil {
		return 0, 0, fmt.Errorf("reading %s: %w", name, err)
	}
	if len(data) > maxValidateLine {
		return 0, 0, fmt.Errorf("%s: larger than %d MiB; split it into NDJSON lines", name, maxValidateLine>>20)
	}
	var docs [][]byte
	var lines []int
	trimmed := bytes.TrimSpace(data)
	if isNDJSON(trimmed) {
		for i, line := range bytes.Split(data, []byte("\n")) {
			if len(bytes.TrimSpace(line)) == 0 {
				continue
			}
			docs = append(docs, line)
			lines = append(lines, i+1)
		}
	} else {
		docs, lines = [][]byte{trimmed}, []int{1}
	}
	for i, doc := range docs {
		if err := ctx.Err(); err != nil {
			return total, invalid, err
		}
		results := mapping.ValidateJSON(doc)
		// A Bundle's own result comes first with Index -1; a single
		// resource's Index is 0 and names no entry.
		bundle := len(results) > 0 && results[0].Index == -1
		for _, res := range results {
			total++
			if res.Valid() {
				continue
			}
			invalid++
			where := fmt.Sprintf("%s:%d", name, lines[i])
			if bundle && res.Index >= 0 {
				where += fmt.Sprintf(" entry[%d]", res.Index)
			}
			what := res.ResourceType
			if what == "" {
				what = "document"
			}
			if res.ID != "" {
				what += "/" + res.ID
			}
			var issues []string
			for _, is := range res.Issues {
				if is.Path == "" {
					issues = append(issues, is.Message)
				} else {
					issues = append(issues, is.Path+": "+is.Message)
				}
			}
			fmt.Fprintf(stdout, "%s %s: %s\n", where, what, strings.Join(issues, "; "))
		}
	}
	return total, invalid, nil
}

// isNDJSON reports whether data is NDJSON: more than one line, the first
// of which is a whole JSON value (a pretty-printed document's first line,
// "{", is not). Every line is then validated on its own, so one bad line
// is reported as that line.
func isNDJSON(data []byte) bool {
	first, rest, ok := bytes.Cut(data, []byte("\n"))
	if !ok || len(bytes.TrimSpace(rest)) == 0 {
		return false
	}
	return json.Valid(bytes.TrimSpace(first))
}
