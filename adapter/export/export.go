package export

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ketamine-fhir/ketamine-fhir/adapter/ehr"
	"github.com/ketamine-fhir/ketamine-fhir/adapter/store"
)

// Level is the level of an export kick-off.
type Level string

const (
	// LevelSystem exports every resource: GET [base]/$export.
	LevelSystem Level = "system"
	// LevelPatient exports the Patient compartments of all patients:
	// GET [base]/Patient/$export.
	LevelPatient Level = "patient"
	// LevelGroup exports the compartments of a Group's patients:
	// GET [base]/Group/[id]/$export.
	LevelGroup Level = "group"
)

// Meta keys in the store.
const (
	metaJob       = "export:job"      // the job being downloaded (jobState JSON), "" when none
	metaLastPrefx = "export:last_tx:" // + request scope: transactionTime of the last completed export
)

// partsDir is where part files are kept until every part is complete.
const partsDir = ".export-parts"

// Options configure an Exporter. The zero value of an optional field
// means its default.
type Options struct {
	// OutDir is the directory the NDJSON files are written to; it is
	// created when missing. Required.
	OutDir string
	// Level is the kick-off level. Defaults to LevelSystem.
	Level Level
	// Group is the Group id of LevelGroup.
	Group string
	// Types are the resource types to export (_type); nil means all.
	Types []string
	// Since exports only resources changed after it (_since); zero means
	// everything.
	Since time.Time
	// Incremental uses the transactionTime of the last completed export
	// of the same level (and group) as Since; it overrides Since when
	// there was one.
	Incremental bool
	// TypeFilters are _typeFilter queries, e.g.
	// "Observation?category=vital-signs".
	TypeFilters []string
	// Workers is how many files are downloaded at once. Defaults to 4.
	Workers int
	// PollWait is the wait between status polls when the server sends
	// no Retry-After. Defaults to 2s.
	PollWait time.Duration
	// MaxPollWait caps any Retry-After and backoff. Defaults to 1m.
	MaxPollWait time.Duration
	// MaxAttempts bounds the attempts at one file, and the consecutive
	// failed polls, before the export fails. Defaults to 8.
	MaxAttempts int
	// KeepJobOnCancel leaves the job on the server when ctx is canceled,
	// so a later run resumes it (as after a crash). By default a
	// canceled export DELETEs the job and forgets it.
	KeepJobOnCancel bool
	// Progress, when set, is called with the export's progress. It is
	// called from one goroutine at a time.
	Progress func(Progress)
}

// Progress is a snapshot of an export's progress.
type Progress struct {
	// Phase is "kick-off", "polling", "downloading", "writing" or "done".
	Phase string
	// Server is the server's X-Progress text while polling ("" if none).
	Server string
	// FilesDone and FilesTotal count the manifest's files.
	FilesDone, FilesTotal int
	// Lines is the lines downloaded so far by this run.
	Lines int64
}

// Result is what a completed export wrote.
type Result struct {
	// Job is the id of the export job (the status URL's last segment);
	// "" for the search fallback.
	Job string
	// TransactionTime is the manifest's transactionTime (the fallback's
	// start time).
	TransactionTime time.Time
	// Since is the _since used; zero for none.
	Since time.Time
	// Counts is the number of resources written per resource type.
	Counts map[string]int
	// Deleted and Errors count the lines of deleted.ndjson and
	// errors.ndjson.
	Deleted, Errors int
	// Resumed is true when the run resumed a job of an earlier run.
	Resumed bool
	// Fallback is true when the EHR has no $export and searches were
	// used instead.
	Fallback bool
}

// Exporter runs Bulk Data exports with an EHR client, keeping its resume
// state in a store.
type Exporter struct {
	c     *ehr.Client
	st    store.Store
	opts  Options
	now   func() time.Time
	pmu   sync.Mutex
	prog  Progress
	sleep func(ctx context.Context, d time.Duration) error
}

// ErrJobFailed is returned when the server reports the export job failed.
var ErrJobFailed = errors.New("export job failed")

var typeRE = regexp.MustCompile(`^[A-Z][A-Za-z]{1,63}$`)
var groupRE = regexp.MustCompile(`^[A-Za-z0-9\-.]{1,64}$`)

// New returns an Exporter. It checks opts; it makes no network call.
func New(c *ehr.Client, st store.Store, opts Options) (*Exporter, error) {
	if c == nil || st == nil {
		return nil, errors.New("export: a client and a store are required")
	}
	if opts.OutDir == "" {
		return nil, errors.New("export: OutDir is required")
	}
	if opts.Level == "" {
		opts.Level = LevelSystem
	}
	switch opts.Level {
	case LevelSystem, LevelPatient:
		if opts.Group != "" {
			return nil, errors.New("export: Group is only for the group level")
		}
	case LevelGroup:
		if !groupRE.MatchString(opts.Group) {
			return nil, errors.New("export: the group level needs a valid Group id")
		}
	default:
		return nil, fmt.Errorf("export: level %q is not system, patient or group", opts.Level)
	}
	for _, t := range opts.Types {
		if !typeRE.MatchString(t) {
			return nil, fmt.Errorf("export: %q is not a resource type", t)
		}
	}
	for _, f := range opts.TypeFilters {
		t, _, ok := strings.Cut(f, "?")
		if !ok || !typeRE.MatchString(t) {
			return nil, errors.New("export: a type filter must look like Type?query")
		}
	}
	if opts.Workers <= 0 {
		opts.Workers = 4
	}
	if opts.PollWait <= 0 {
		opts.PollWait = 2 * time.Second
	}
	if opts.MaxPollWait <= 0 {
		opts.MaxPollWait = time.Minute
	}
	if opts.MaxAttempts <= 0 {
		opts.MaxAttempts = 8
	}
	return &Exporter{c: c, st: st, opts: opts, now: time.Now, sleep: sleepCtx}, nil
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// scope names the request's level for the incremental key.
func (x *Exporter) scope() string {
	if x.opts.Level == LevelGroup {
		return "group/" + x.opts.Group
	}
	return string(x.opts.Level)
}

// jobState is the resume state kept under metaJob.
type jobState struct {
	StatusURL   string               `json:"status_url"`
	Fingerprint string               `json:"fingerprint"`
	Since       string               `json:"since,omitempty"`
	Parts       map[string]partState `json:"parts,omitempty"`
}

// partState is what was downloaded of one manifest file.
type partState struct {
	Done  bool  `json:"done"`
	Lines int   `json:"lines"`
	Bytes int64 `json:"bytes"`
}

func (x *Exporter) setProgress(f func(p *Progress)) {
	x.pmu.Lock()
	defer x.pmu.Unlock()
	f(&x.prog)
	if x.opts.Progress != nil {
		x.opts.Progress(x.prog)
	}
}

// Run runs one export to completion (or resumes the one an earlier run
// left) and returns what it wrote.
func (x *Exporter) Run(ctx context.Context) (*Result, error) {
	if err := os.MkdirAll(x.opts.OutDir, 0o755); err != nil {
		return nil, fmt.Errorf("export: output directory: %w", err)
	}
	since := x.opts.Since
	if x.opts.Incremental {
		v, err := x.st.Meta(ctx, metaLastPrefx+x.scope())
		switch {
		case err == nil && v != "":
			t, perr := time.Parse(time.RFC3339Nano, v)
			if perr != nil {
				return nil, fmt.Errorf("export: the last transaction time in the store is unreadable")
			}
			since = t
		case err != nil && !errors.Is(err, store.ErrNotFound):
			return nil, fmt.Errorf("export: reading the last transaction time: %w", err)
		}
	}
	has, err := x.hasExport(ctx)
	if err != nil {
		return nil, err
	}
	if !has {
		return x.fallback(ctx, since)
	}
	return x.bulk(ctx, since)
}

// fingerprint identifies a request, so a resumed job is one of the same
// request into the same directory.
func (x *Exporter) fingerprint(since time.Time) string {
	abs, _ := filepath.Abs(x.opts.OutDir)
	parts := []string{string(x.opts.Level), x.opts.Group, strings.Join(x.opts.Types, ","),
		strings.Join(x.opts.TypeFilters, "\x00"), abs}
	if !since.IsZero() {
		parts = append(parts, since.UTC().Format(time.RFC3339Nano))
	}
	return strings.Join(parts, "\x01")
}

func (x *Exporter) loadState(ctx context.Context) (*jobState, error) {
	v, err := x.st.Meta(ctx, metaJob)
	if errors.Is(err, store.ErrNotFound) || err == nil && v == "" {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("export: reading the resume state: %w", err)
	}
	var s jobState
	if err := json.Unmarshal([]byte(v), &s); err != nil || s.StatusURL == "" {
		return nil, nil // unreadable: start afresh
	}
	return &s, nil
}

func (x *Exporter) saveState(ctx context.Context, s *jobState) error {
	v := ""
	if s != nil {
		b, err := json.Marshal(s)
		if err != nil {
			return err
		}
		v = string(b)
	}
	// Saved even when ctx is canceled: the resume state must survive.
	if err := x.st.SetMeta(context.WithoutCancel(ctx), metaJob, v); err != nil {
		return fmt.Errorf("export: saving the resume state: %w", err)
	}
	return nil
}

// kickoffPath builds the kick-off path and query.
func (x *Exporter) kickoffPath(since time.Time) string {
	p := "$export"
	switch x.opts.Level {
	case LevelPatient:
		p = "Patient/$export"
	case LevelGroup:
		p = "Group/" + x.opts.Group + "/$export"
	}
	q := url.Values{}
	q.Set("_outputFormat", "application/fhir+ndjson")
	if len(x.opts.Types) > 0 {
		q.Set("_type", strings.Join(x.opts.Types, ","))
	}
	if !since.IsZero() {
		q.Set("_since", since.UTC().Format(time.RFC3339Nano))
	}
	for _, f := range x.opts.TypeFilters {
		q.Add("_typeFilter", f)
	}
	return p + "?" + q.Encode()
}

// jobID names a job in messages: the status URL's _jobId parameter
// (as in [base]/$export-poll-status?_jobId=...) or its last path segment;
// never the rest of its query.
func jobID(statusURL string) string {
	u, err := url.Parse(statusURL)
	if err != nil {
		return "?"
	}
	if id := u.Query().Get("_jobId"); id != "" && len(id) <= 64 && groupRE.MatchString(id) {
		return id
	}
	return path.Base(u.Path)
}

// wait returns how long to wait after a transient failure: its
// Retry-After, else a doubling backoff, capped.
func (x *Exporter) waitFor(err error, attempt int) time.Duration {
	var te *ehr.TransientError
	if errors.As(err, &te) && te.RetryAfter > 0 {
		return min(te.RetryAfter, x.opts.MaxPollWait)
	}
	d := 100 * time.Millisecond << min(attempt, 10)
	return min(d, x.opts.MaxPollWait)
}

func (x *Exporter) kickoff(ctx context.Context, since time.Time) (string, error) {
	x.setProgress(func(p *Progress) { p.Phase = "kick-off" })
	req := ehr.Request{Method: http.MethodGet, Path: x.kickoffPath(since), ResourceType: "$export", Prefer: "respond-async"}
	for attempt := 0; ; attempt++ {
		resp, err := x.c.Do(ctx, req)
		if err == nil {
			loc := resp.Header.Get("Content-Location")
			if resp.Status != http.StatusAccepted || loc == "" {
				return "", fmt.Errorf("export: kick-off answered %d without a status URL", resp.Status)
			}
			return loc, nil
		}
		if ehr.Classify(err) != ehr.ClassTransient || attempt+1 >= x.opts.MaxAttempts {
			return "", fmt.Errorf("export: kick-off: %w", err)
		}
		if err := x.sleep(ctx, x.waitFor(err, attempt)); err != nil {
			return "", fmt.Errorf("export: kick-off: %w", err)
		}
	}
}

// manifest is a Bulk Data complete-status body.
type manifest struct {
	TransactionTime     string         `json:"transactionTime"`
	Request             string         `json:"request"`
	RequiresAccessToken bool           `json:"requiresAccessToken"`
	Output              []manifestFile `json:"output"`
	Deleted             []manifestFile `json:"deleted,omitempty"`
	Error               []manifestFile `json:"error"`
}

type manifestFile struct {
	Type  string `json:"type"`
	URL   string `json:"url"`
	Count *int   `json:"count,omitempty"`
}

// errJobGone is a status URL answering 404: the job no longer exists.
var errJobGone = errors.New("export job no longer exists")

// poll polls the status URL until the manifest is ready.
func (x *Exporter) poll(ctx context.Context, statusURL string) (*manifest, error) {
	id := jobID(statusURL)
	req := ehr.Request{Method: http.MethodGet, ResourceType: "export-status"}
	failures := 0
	for {
		resp, err := x.c.DoURL(ctx, req, statusURL)
		switch {
		case err == nil && resp.Status == http.StatusOK:
			var m manifest
			if err := json.Unmarshal(resp.Body, &m); err != nil {
				return nil, fmt.Errorf("export job %s: the manifest is not readable JSON", id)
			}
			return &m, nil
		case err == nil:
			failures = 0
			prog := resp.Header.Get("X-Progress")
			if len(prog) > 100 {
				prog = prog[:100]
			}
			x.setProgress(func(p *Progress) { p.Phase, p.Server = "polling", prog })
			d := x.opts.PollWait
			if ra := parseRetryAfter(resp.Header.Get("Retry-After"), x.now()); ra > 0 {
				d = ra
			}
			if err := x.sleep(ctx, min(d, x.opts.MaxPollWait)); err != nil {
				return nil, fmt.Errorf("export job %s: %w", id, err)
			}
			continue
		}
		var rej *ehr.RejectedError
		if errors.As(err, &rej) && (rej.Status == http.StatusNotFound || rej.Status == http.StatusGone) {
			return nil, fmt.Errorf("export job %s: %w", id, errJobGone)
		}
		var te *ehr.TransientError
		isTransient := errors.As(err, &te)
		if !isTransient {
			if errors.As(err, &rej) {
				return nil, fmt.Errorf("export job %s: %w (%d)", id, ErrJobFailed, rej.Status)
			}
			return nil, fmt.Errorf("export job %s: %w", id, err)
		}
		failures++
		// 429 and 503 say "later"; any other 5xx after a few tries says
		// the job failed.
		slow := te.Status == http.StatusTooManyRequests || te.Status == http.StatusServiceUnavailable || te.Status == 0
		if !slow && failures >= 3 || failures >= x.opts.MaxAttempts*4 {
			return nil, fmt.Errorf("export job %s: %w (%s)", id, ErrJobFailed, ehr.Reason(err))
		}
		if err := x.sleep(ctx, x.waitFor(err, failures)); err != nil {
			return nil, fmt.Errorf("export job %s: %w", id, err)
		}
	}
}

// parseRetryAfter reads Retry-After: seconds or an HTTP date; 0 when
// absent or unreadable.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n < 0 {
			return 0
		}
		return time.Duration(min(n, 86400)) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return min(t.Sub(now), 24*time.Hour)
	}
	return 0
}

// deleteJob asks the server to cancel or clean up a job, best effort.
func (x *Exporter) deleteJob(ctx context.Context, statusURL string) {
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	_, _ = x.c.DoURL(dctx, ehr.Request{Method: http.MethodDelete, ResourceType: "export-status"}, statusURL)
}

// hasExport reads the CapabilityStatement for an export operation.
func (x *Exporter) hasExport(ctx context.Context) (bool, error) {
	resp, err := x.c.Do(ctx, ehr.Request{Method: http.MethodGet, Path: "metadata", ResourceType: "CapabilityStatement"})
	if err != nil {
		return false, fmt.Errorf("export: reading the CapabilityStatement: %w", err)
	}
	var cs struct {
		Instantiates []string `json:"instantiates"`
		Rest         []struct {
			Operation []struct {
				Name       string `json:"name"`
				Definition string `json:"definition"`
			} `json:"operation"`
			Resource []struct {
				Type      string `json:"type"`
				Operation []struct {
					Name       string `json:"name"`
					Definition string `json:"definition"`
				} `json:"operation"`
			} `json:"resource"`
		} `json:"rest"`
	}
	if err := json.Unmarshal(resp.Body, &cs); err != nil {
		return false, fmt.Errorf("export: the CapabilityStatement is not readable JSON")
	}
	isExport := func(name, def string) bool {
		return name == "export" || strings.HasSuffix(def, "/export") ||
			strings.Contains(def, "-export")
	}
	for _, r := range cs.Rest {
		for _, o := range r.Operation {
			if isExport(o.Name, o.Definition) && x.opts.Level == LevelSystem {
				return true, nil
			}
		}
		for _, res := range r.Resource {
			for _, o := range res.Operation {
				if !isExport(o.Name, o.Definition) {
					continue
				}
				if res.Type == "Patient" && x.opts.Level == LevelPatient || res.Type == "Group" && x.opts.Level == LevelGroup {
					return true, nil
				}
			}
		}
	}
	return false, nil
}

// bulk runs (or resumes) a Bulk Data export job.
func (x *Exporter) bulk(ctx context.Context, since time.Time) (res *Result, err error) {
	fp := x.fingerprint(since)
	st, err := x.loadState(ctx)
	if err != nil {
		return nil, err
	}
	parts := filepath.Join(x.opts.OutDir, partsDir)
	resumed := st != nil && st.Fingerprint == fp
	if resumed && !since.IsZero() {
		st.Since = since.UTC().Format(time.RFC3339Nano)
	}
	for {
		if !resumed {
			// A new job: parts of any earlier job are stale.
			if err := os.RemoveAll(parts); err != nil {
				return nil, fmt.Errorf("export: clearing old parts: %w", err)
			}
			loc, err := x.kickoff(ctx, since)
			if err != nil {
				return nil, err
			}
			st = &jobState{StatusURL: loc, Fingerprint: fp, Parts: map[string]partState{}}
			if err := x.saveState(ctx, st); err != nil {
				x.deleteJob(ctx, loc)
				return nil, err
			}
		}
		if st.Parts == nil {
			st.Parts = map[string]partState{}
		}
		res, err = x.runJob(ctx, st, since)
		if resumed && errors.Is(err, errJobGone) {
			// The job an earlier run left is gone: start a new one.
			resumed = false
			continue
		}
		if err != nil && ctx.Err() != nil && !x.opts.KeepJobOnCancel {
			x.deleteJob(ctx, st.StatusURL)
			_ = x.saveState(ctx, nil)
			os.RemoveAll(parts)
		}
		if err != nil && errors.Is(err, ErrJobFailed) {
			x.deleteJob(ctx, st.StatusURL)
			_ = x.saveState(ctx, nil)
		}
		if res != nil {
			res.Resumed = resumed
		}
		return res, err
	}
}

// part is one manifest file to download.
type part struct {
	key   string // kind/type/n, stable across manifests
	kind  string // output, deleted, error
	typ   string
	url   string
	count int // -1 when the manifest gave none
}

func partsOf(m *manifest) []*part {
	var out []*part
	n := map[string]int{}
	add := func(kind string, fs []manifestFile) {
		for _, f := range fs {
			k := kind + "/" + f.Type
			c := -1
			if f.Count != nil {
				c = *f.Count
			}
			out = append(out, &part{key: k + "/" + strconv.Itoa(n[k]), kind: kind, typ: f.Type, url: f.URL, count: c})
			n[k]++
		}
	}
	add("output", m.Output)
	add("deleted", m.Deleted)
	add("error", m.Error)
	return out
}

// runJob polls the job and downloads its files, re-polling for fresh
// links when they expire, then writes the output.
func (x *Exporter) runJob(ctx context.Context, st *jobState, since time.Time) (*Result, error) {
	id := jobID(st.StatusURL)
	var m *manifest
	var ps []*part
	var stMu sync.Mutex
	// Links may expire while others download: re-poll as often as
	// needed while files get done, but not forever without progress.
	stale := 0
	for {
		var err error
		if m, err = x.poll(ctx, st.StatusURL); err != nil {
			return nil, err
		}
		ps = partsOf(m)
		for _, p := range ps {
			if p.typ == "" || !typeRE.MatchString(p.typ) {
				return nil, fmt.Errorf("export job %s: file %s has no valid resource type", id, p.key)
			}
		}
		var todo []*part
		done := 0
		for _, p := range ps {
			if st.Parts[p.key].Done {
				done++
			} else {
				todo = append(todo, p)
			}
		}
		x.setProgress(func(pr *Progress) { pr.Phase, pr.FilesDone, pr.FilesTotal = "downloading", done, len(ps) })
		err = x.download(ctx, id, m.RequiresAccessToken, todo, func(p *part, ps partState) {
			stMu.Lock()
			defer stMu.Unlock()
			st.Parts[p.key] = ps
			_ = x.saveState(ctx, st)
			if ps.Done {
				x.setProgress(func(pr *Progress) { pr.FilesDone++ })
			}
		})
		if errors.Is(err, errExpired) {
			now := 0
			for _, p := range ps {
				if st.Parts[p.key].Done {
					now++
				}
			}
			if now == done {
				stale++
			} else {
				stale = 0
			}
			if stale < x.opts.MaxAttempts {
				continue
			}
			return nil, fmt.Errorf("export job %s: file links keep expiring before any file is done", id)
		}
		if err != nil {
			return nil, err
		}
		break
	}
	x.setProgress(func(p *Progress) { p.Phase = "writing" })
	res, err := x.assemble(id, m, ps, since)
	if err != nil {
		return nil, err
	}
	if err := x.st.SetMeta(context.WithoutCancel(ctx), metaLastPrefx+x.scope(), res.TransactionTime.UTC().Format(time.RFC3339Nano)); err != nil {
		return nil, fmt.Errorf("export job %s: recording the transaction time: %w", id, err)
	}
	if err := x.saveState(ctx, nil); err != nil {
		return nil, err
	}
	os.RemoveAll(filepath.Join(x.opts.OutDir, partsDir))
	// The files are ours now: let the server clean up.
	x.deleteJob(ctx, st.StatusURL)
	x.setProgress(func(p *Progress) { p.Phase = "done" })
	return res, nil
}

// outName is the output file of a part's kind and type.
func outName(p *part) string {
	switch p.kind {
	case "deleted":
		return "deleted.ndjson"
	case "error":
		return "errors.ndjson"
	}
	return p.typ + ".ndjson"
}

func partPath(dir string, p *part) string {
	return filepath.Join(dir, partsDir, strings.ReplaceAll(p.key, "/", "-")+".ndjson")
}

// assemble joins the parts into the output files and writes
// manifest.json.
func (x *Exporter) assemble(id string, m *manifest, ps []*part, since time.Time) (*Result, error) {
	tx, err := time.Parse(time.RFC3339Nano, m.TransactionTime)
	if err != nil {
		return nil, fmt.Errorf("export job %s: the manifest's transactionTime is not an instant", id)
	}
	res := &Result{Job: id, TransactionTime: tx, Since: since, Counts: map[string]int{}}
	var names []string
	byName := map[string][]*part{}
	for _, p := range ps {
		n := outName(p)
		if byName[n] == nil {
			names = append(names, n)
		}
		byName[n] = append(byName[n], p)
	}
	for _, n := range names {
		lines, err := joinParts(x.opts.OutDir, n, byName[n])
		if err != nil {
			return nil, fmt.Errorf("export job %s: writing %s: %w", id, n, err)
		}
		switch byName[n][0].kind {
		case "deleted":
			res.Deleted = lines
		case "error":
			res.Errors = lines
		default:
			res.Counts[byName[n][0].typ] = lines
		}
	}
	if err := writeManifest(x.opts.OutDir, m, res, names, byName); err != nil {
		return nil, fmt.Errorf("export job %s: writing manifest.json: %w", id, err)
	}
	return res, nil
}

func writeManifest(dir string, m *manifest, res *Result, names []string, byName map[string][]*part) error {
	type file struct {
		Type  string `json:"type"`
		URL   string `json:"url"`
		Count int    `json:"count"`
	}
	out := struct {
		TransactionTime     string `json:"transactionTime"`
		Request             string `json:"request"`
		RequiresAccessToken bool   `json:"requiresAccessToken"`
		Output              []file `json:"output"`
		Deleted             []file `json:"deleted,omitempty"`
		Error               []file `json:"error"`
	}{TransactionTime: m.TransactionTime, Request: m.Request, Output: []file{}, Error: []file{}}
	for _, n := range names {
		p := byName[n][0]
		switch p.kind {
		case "deleted":
			out.Deleted = append(out.Deleted, file{p.typ, n, res.Deleted})
		case "error":
			out.Error = append(out.Error, file{p.typ, n, res.Errors})
		default:
			out.Output = append(out.Output, file{p.typ, n, res.Counts[p.typ]})
		}
	}
	slices.SortStableFunc(out.Output, func(a, b file) int { return strings.Compare(a.Type, b.Type) })
	b, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		return err
	}
	return writeAtomic(filepath.Join(dir, "manifest.json"), func(f *os.File) error {
		_, err := f.Write(append(b, '\n'))
		return err
	})
}

// writeAtomic writes a file through a temporary file and a rename.
func writeAtomic(name string, write func(f *os.File) error) error {
	f, err := os.CreateTemp(filepath.Dir(name), "."+filepath.Base(name)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if err := write(f); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), name)
}
