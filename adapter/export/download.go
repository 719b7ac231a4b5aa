package export

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"

	"github.com/ketamine-fhir/ketamine-fhir/adapter/ehr"
)

// errExpired is a file link that expired (410, 404): the manifest must be
// polled again.
var errExpired = errors.New("file link expired")

// errRetry marks a download failure worth another attempt.
type errRetry struct {
	reason string
	err    error // the ehr error, for its Retry-After; may be nil
}

func (e *errRetry) Error() string { return e.reason }

// download fetches parts with a bounded pool of workers. report is
// called after each attempt at a part. It returns errExpired when a link
// expired (after the other workers finished), or the first other error.
func (x *Exporter) download(ctx context.Context, job string, withToken bool, todo []*part, report func(*part, partState)) error {
	if len(todo) == 0 {
		return nil
	}
	if err := os.MkdirAll(filepath.Join(x.opts.OutDir, partsDir), 0o755); err != nil {
		return fmt.Errorf("export job %s: %w", job, err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	jobs := make(chan *part)
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
		expired  bool
	)
	for range min(x.opts.Workers, len(todo)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for p := range jobs {
				err := x.fetchPart(ctx, job, withToken, p, report)
				if err == nil {
					continue
				}
				mu.Lock()
				if errors.Is(err, errExpired) {
					expired = true
				} else if firstErr == nil {
					firstErr = err
					cancel()
				}
				mu.Unlock()
			}
		}()
	}
feed:
	for _, p := range todo {
		select {
		case jobs <- p:
		case <-ctx.Done():
			break feed
		}
	}
	close(jobs)
	wg.Wait()
	switch {
	case firstErr != nil:
		return firstErr
	case expired:
		return errExpired
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("export job %s: %w", job, err)
	}
	return nil
}

// fetchPart downloads one part, resuming what an earlier attempt or run
// left in its part file.
func (x *Exporter) fetchPart(ctx context.Context, job string, withToken bool, p *part, report func(*part, partState)) error {
	name := partPath(x.opts.OutDir, p)
	what := func() string { return fmt.Sprintf("export job %s: file %s (%s)", job, p.key, p.typ) }
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("%s: %w", what(), err)
	}
	defer f.Close()
	// The part file is the truth: keep its complete lines only.
	offset, lines, err := scanPart(f, p.typ)
	if err != nil {
		return fmt.Errorf("%s: %w", what(), err)
	}
	if err := f.Truncate(offset); err != nil {
		return fmt.Errorf("%s: %w", what(), err)
	}
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return fmt.Errorf("%s: %w", what(), err)
	}
	if p.count >= 0 && lines == p.count {
		return x.finishPart(f, p, lines, offset, report, what)
	}
	for attempt := 0; ; attempt++ {
		n, nb, complete, err := x.fetchOnce(ctx, withToken, p, f, offset)
		lines += n
		offset += nb
		if n > 0 {
			x.setProgress(func(pr *Progress) { pr.Lines += int64(n) })
		}
		if complete {
			return x.finishPart(f, p, lines, offset, report, what)
		}
		report(p, partState{Lines: lines, Bytes: offset})
		var re *errRetry
		if errors.Is(err, errExpired) {
			return err
		}
		if cerr := ctx.Err(); cerr != nil {
			return fmt.Errorf("%s: %w", what(), cerr)
		}
		if !errors.As(err, &re) {
			return fmt.Errorf("%s: %w", what(), err)
		}
		if attempt+1 >= x.opts.MaxAttempts {
			return fmt.Errorf("%s: gave up after %d attempts: %s", what(), attempt+1, re.reason)
		}
		if err := x.sleep(ctx, x.waitFor(re.err, attempt)); err != nil {
			return fmt.Errorf("%s: %w", what(), err)
		}
	}
}

func (x *Exporter) finishPart(f *os.File, p *part, lines int, offset int64, report func(*part, partState), what func() string) error {
	if err := f.Sync(); err != nil {
		return fmt.Errorf("%s: %w", what(), err)
	}
	if p.count >= 0 && lines != p.count {
		return fmt.Errorf("%s: %d lines, the manifest says %d", what(), lines, p.count)
	}
	report(p, partState{Done: true, Lines: lines, Bytes: offset})
	return nil
}

// scanPart reads a part file and returns the end of its last complete
// line and the number of complete lines, checking each line's type.
func scanPart(f *os.File, typ string) (offset int64, lines int, err error) {
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return 0, 0, err
	}
	r := bufio.NewReader(f)
	for {
		line, err := r.ReadBytes('\n')
		if err != nil {
			return offset, lines, nil // EOF: a partial last line is dropped
		}
		if err := checkLine(line, typ, lines+1); err != nil {
			return 0, 0, err
		}
		offset += int64(len(line))
		lines++
	}
}

// checkLine checks that a line is a resource of type typ. Its error
// names the line number, never its content.
func checkLine(line []byte, typ string, n int) error {
	var r struct {
		ResourceType string `json:"resourceType"`
	}
	if err := json.Unmarshal(line, &r); err != nil {
		return fmt.Errorf("line %d is not a JSON object", n)
	}
	if r.ResourceType != typ {
		// The value found is not shown: a broken file could put anything
		// there.
		return fmt.Errorf("line %d is not a %s", n, typ)
	}
	return nil
}

// fetchOnce makes one request for the part from offset and appends the
// complete lines it reads to f. It returns the lines and bytes appended,
// whether the part is complete, and why not (an *errRetry, errExpired or
// a permanent error).
func (x *Exporter) fetchOnce(ctx context.Context, withToken bool, p *part, f *os.File, offset int64) (lines int, n int64, complete bool, err error) {
	h := http.Header{}
	h.Set("Accept", "application/fhir+ndjson")
	if offset > 0 {
		h.Set("Range", "bytes="+strconv.FormatInt(offset, 10)+"-")
		h.Set("Accept-Encoding", "identity")
	} else {
		h.Set("Accept-Encoding", "gzip")
	}
	resp, err := x.c.Open(ctx, p.url, h, withToken)
	if err != nil {
		if ehr.Classify(err) == ehr.ClassTransient {
			return 0, 0, false, &errRetry{reason: ehr.Reason(err), err: err}
		}
		return 0, 0, false, err
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusGone, resp.StatusCode == http.StatusNotFound:
		return 0, 0, false, errExpired
	case resp.StatusCode == http.StatusRequestedRangeNotSatisfiable && offset > 0:
		// Nothing after offset: the part was complete.
		return 0, 0, true, nil
	case resp.StatusCode == http.StatusUnauthorized, resp.StatusCode == http.StatusForbidden:
		return 0, 0, false, &ehr.AuthError{Status: resp.StatusCode, Reason: "file download refused", Method: http.MethodGet, ResourceType: p.typ}
	case resp.StatusCode == http.StatusTooManyRequests, resp.StatusCode >= 500:
		te := &ehr.TransientError{Status: resp.StatusCode, Reason: "http_" + strconv.Itoa(resp.StatusCode),
			RetryAfter: parseRetryAfter(resp.Header.Get("Retry-After"), x.now())}
		return 0, 0, false, &errRetry{reason: te.Reason, err: te}
	case resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusPartialContent:
		return 0, 0, false, fmt.Errorf("download answered %d", resp.StatusCode)
	}
	var body io.Reader = resp.Body
	if resp.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(resp.Body)
		if err != nil {
			return 0, 0, false, &errRetry{reason: "gzip: " + err.Error()}
		}
		body = zr
	}
	if offset > 0 && resp.StatusCode == http.StatusOK {
		// The server ignored Range: skip what we have.
		if _, err := io.CopyN(io.Discard, body, offset); err != nil {
			return 0, 0, false, &errRetry{reason: "connection lost"}
		}
	}
	r := bufio.NewReaderSize(body, 64<<10)
	w := bufio.NewWriterSize(f, 64<<10)
	defer func() {
		if ferr := w.Flush(); ferr != nil && err == nil {
			complete, err = false, ferr
		}
	}()
	for {
		line, rerr := r.ReadBytes('\n')
		if rerr == io.EOF && len(bytes.TrimSpace(line)) > 0 {
			// A last line without a newline is complete at a clean end.
			line = append(line, '\n')
			rerr = nil
		}
		if rerr != nil {
			if rerr == io.EOF {
				return lines, n, true, nil
			}
			// io.ErrUnexpectedEOF and other read errors: the partial line
			// is dropped and the next attempt resumes after the last
			// complete one.
			if ctx.Err() != nil {
				return lines, n, false, ctx.Err()
			}
			reason := "connection lost"
			if errors.Is(rerr, io.ErrUnexpectedEOF) {
				reason = "truncated"
			}
			return lines, n, false, &errRetry{reason: reason}
		}
		if len(bytes.TrimSpace(line)) == 0 {
			continue // blank lines are not resources
		}
		if err := checkLine(line, p.typ, lines+1); err != nil {
			return lines, n, false, err
		}
		if _, err := w.Write(line); err != nil {
			return lines, n, false, err
		}
		lines++
		n += int64(len(line))
	}
}

// joinParts writes the parts, in order, to dir/name and returns the
// number of lines.
func joinParts(dir, name string, ps []*part) (int, error) {
	lines := 0
	err := writeAtomic(filepath.Join(dir, name), func(out *os.File) error {
		for _, p := range ps {
			in, err := os.Open(partPath(dir, p))
			if err != nil {
				return err
			}
			n, err := copyCount(out, in)
			in.Close()
			if err != nil {
				return err
			}
			lines += n
		}
		return nil
	})
	return lines, err
}

func copyCount(w io.Writer, r io.Reader) (int, error) {
	buf := make([]byte, 64<<10)
	n := 0
	for {
		k, err := r.Read(buf)
		n += bytes.Count(buf[:k], []byte{'\n'})
		if _, werr := w.Write(buf[:k]); werr != nil {
			return n, werr
		}
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}
