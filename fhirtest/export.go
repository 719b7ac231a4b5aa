package fhirtest

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// FHIR Bulk Data Access IG v2 (https://hl7.org/fhir/uv/bulkdata/): the
// $export kick-off, status polling, manifest, output files and deletion.

// Canonical URLs of the IG's $export OperationDefinitions and of its
// CapabilityStatement, as the CapabilityStatement declares them.
const (
	exportOpSystem  = "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export"
	exportOpPatient = "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/patient-export"
	exportOpGroup   = "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/group-export"
	bulkDataCapStmt = "http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data"
)

const (
	// exportSeg is the first path segment, under the base path, of status
	// URLs ([base]/_export/{job}) and file URLs
	// ([base]/_export/{job}/{link generation}/{file name}).
	exportSeg       = "_export"
	contentNDJSON   = "application/fhir+ndjson"
	contentManifest = "application/json"
)

// ExportLevel is the level of an $export kick-off.
type ExportLevel string

const (
	// ExportSystem is GET [base]/$export: every resource on the server.
	ExportSystem ExportLevel = "system"
	// ExportPatient is GET [base]/Patient/$export: the Patient compartments
	// of all patients.
	ExportPatient ExportLevel = "patient"
	// ExportGroup is GET [base]/Group/[id]/$export: the Patient
	// compartments of the Group's patient members.
	ExportGroup ExportLevel = "group"
)

// ExportState is the state of an export job.
type ExportState string

const (
	// ExportInProgress is a job just kicked off: status polls answer 202
	// with X-Progress and Retry-After until the simulated work is done
	// (SetExportDelay); the poll that finds it done moves it on.
	ExportInProgress ExportState = "in-progress"
	// ExportComplete is a finished job: status polls answer 200 with the
	// manifest and its files can be downloaded. Only DELETE moves it out.
	ExportComplete ExportState = "complete"
	// ExportFailed is a job that failed (FailNextExport): status polls
	// answer 500 with an OperationOutcome. Only DELETE moves it out.
	ExportFailed ExportState = "failed"
	// ExportCancelled is a job the client deleted (DELETE on its status
	// URL): its status URL and files answer 404. It is final.
	ExportCancelled ExportState = "cancelled"
)

// Kinds of export files, as in ExportFile.Kind and the manifest arrays.
const (
	ExportOutput  = "output"
	ExportDeleted = "deleted"
	ExportError   = "error"
)

// ExportJob describes one export job, for tests (see ExportJobs).
type ExportJob struct {
	// ID is the job's id, the last segment of its status URL. Jobs are
	// numbered from "1" (Reset restarts the numbering).
	ID string
	// Level is the kick-off level; Group is the Group id of ExportGroup.
	Level ExportLevel
	Group string
	// Request is the kick-off URL, query included.
	Request string
	// State is the job's state now.
	State ExportState
	// TransactionTime is the instant of the job's snapshot, taken at
	// kick-off.
	TransactionTime time.Time
	// Since is the _since instant; zero without one.
	Since time.Time
	// Types are the resource types asked for with _type (nil: all).
	Types []string
	// Polls counts the status requests answered 202, 200 or 500 (not
	// those answered 429 for polling too fast).
	Polls int
	// Files are the job's files, output first, then deleted, then error.
	Files []ExportFile
}

// ExportFile is one NDJSON file of an export job.
type ExportFile struct {
	// Kind is ExportOutput, ExportDeleted or ExportError.
	Kind string
	// Type is the resource type of its lines: the exported type, Bundle
	// for deleted files, OperationOutcome for error files.
	Type string
	// Name is the file's name, the last segment of its URL.
	Name string
	// Count is the number of lines (resources) in the file.
	Count int
	// Requests counts the requests for the file that were answered.
	Requests int
}

// exports holds the export jobs, settings and faults of a server.
type exports struct {
	mu     sync.Mutex
	jobs   map[string]*exportJob
	order  []*exportJob
	nextID int

	delayPolls    int
	delayDur      time.Duration
	maxLines      int
	requiresToken bool

	pollInterval time.Duration
	linkTTL      time.Duration
	failNext     int
	truncate     bool
}

func newExports() *exports {
	return &exports{jobs: map[string]*exportJob{}}
}

type exportJob struct {
	id       string
	level    ExportLevel
	group    string
	request  string
	types    []string
	since    time.Time
	txTime   int64 // Unix microseconds
	kickoff  time.Time
	state    ExportState
	polls    int
	lastPoll time.Time

	// Captured at kick-off.
	needPolls     int
	needDur       time.Duration
	fail          bool
	requiresToken bool

	files  []*exportFile
	byName map[string]*exportFile
	gen    int               // current link generation
	gens   map[int]time.Time // link generation -> expiry (zero: never)
}

type exportFile struct {
	kind, typ, name string
	data            []byte
	count           int
	requests        int
	truncated       bool // the truncation fault has cut it once
}

// refresh moves an in-progress job on when its simulated work is done.
func (j *exportJob) refresh(now time.Time) {
	if j.state != ExportInProgress || j.polls < j.needPolls || now.Sub(j.kickoff) < j.needDur {
		return
	}
	if j.fail {
		j.state = ExportFailed
		return
	}
	j.state = ExportComplete
}

func (j *exportJob) public(now time.Time) ExportJob {
	j.refresh(now)
	out := ExportJob{
		ID: j.id, Level: j.level, Group: j.group, Request: j.request, State: j.state,
		TransactionTime: time.UnixMicro(j.txTime).UTC(), Since: j.since,
		Types: append([]string(nil), j.types...), Polls: j.polls,
	}
	for _, f := range j.files {
		out.Files = append(out.Files, ExportFile{Kind: f.kind, Type: f.typ, Name: f.name, Count: f.count, Requests: f.requests})
	}
	return out
}

// ExportJobs returns every export job kicked off since the server started
// or was Reset, oldest first, cancelled ones included.
func (s *Server) ExportJobs() []ExportJob {
	now := s.now()
	s.exports.mu.Lock()
	defer s.exports.mu.Unlock()
	out := make([]ExportJob, 0, len(s.exports.order))
	for _, j := range s.exports.order {
		out = append(out, j.public(now))
	}
	return out
}

// SetExportDelay sets how long a job kicked off from now on stays in
// progress: its status polls answer 202 Accepted (with X-Progress and
// Retry-After) until it has answered polls of them and d has passed
// since the kick-off by the server's clock (WithClock); then it is
// complete (ExportJobs) and the next poll gets the manifest. Defaults to
// 0 and 0: the first poll gets the manifest.
func (s *Server) SetExportDelay(polls int, d time.Duration) {
	s.exports.mu.Lock()
	defer s.exports.mu.Unlock()
	s.exports.delayPolls, s.exports.delayDur = max(polls, 0), max(d, 0)
}

// SetExportFileLines sets the largest number of resources in one export
// file of a job kicked off from now on; more resources of a type are
// split into several files. Defaults to 0, no limit: one file per type.
func (s *Server) SetExportFileLines(n int) {
	s.exports.mu.Lock()
	defer s.exports.mu.Unlock()
	s.exports.maxLines = max(n, 0)
}

// SetExportRequiresAccessToken sets the manifest's requiresAccessToken for
// jobs kicked off from now on. The server checks no tokens either way.
// Defaults to false.
func (s *Server) SetExportRequiresAccessToken(on bool) {
	s.exports.mu.Lock()
	defer s.exports.mu.Unlock()
	s.exports.requiresToken = on
}

// SetExportPollInterval makes a status poll that comes sooner than d after
// the job's previous answered poll get 429 Too Many Requests with
// Retry-After (the whole seconds left) and an OperationOutcome with code
// throttled, as the IG asks of servers polled too often. A 429 does not
// count as a poll. In-progress answers then carry a Retry-After of at
// least d. Zero turns it off.
func (s *Server) SetExportPollInterval(d time.Duration) {
	s.exports.mu.Lock()
	defer s.exports.mu.Unlock()
	s.exports.pollInterval = max(d, 0)
}

// SetExportLinkExpiry makes file links expire d after the manifest that
// issued them, by the server's clock: each manifest answered then issues
// fresh links (and an Expires header), and a request for an expired link
// gets 410 Gone with an OperationOutcome. A client recovers by polling the
// status URL again, as the IG says. Zero turns it off: links never expire
// and stay the same from one manifest to the next.
func (s *Server) SetExportLinkExpiry(d time.Duration) {
	s.exports.mu.Lock()
	defer s.exports.mu.Unlock()
	s.exports.linkTTL = max(d, 0)
}

// FailNextExport makes the next n jobs kicked off fail: when their work
// would be done their status polls answer 500 Internal Server Error with
// an OperationOutcome, as an export that fails does. n <= 0 cancels it.
func (s *Server) FailNextExport(n int) {
	s.exports.mu.Lock()
	defer s.exports.mu.Unlock()
	s.exports.failNext = max(n, 0)
}

// TruncateExportFiles, when on, cuts the first full download (a GET
// without Range; HEAD is never cut) of each export file in the middle of
// a line, once: the response declares the whole length, sends the bytes
// up to the cut and then closes the connection (over HTTP/2, resets the
// stream), so the client reads part of a line and then
// io.ErrUnexpectedEOF. A client can resume with a Range request
// (answered 206) or download again.
func (s *Server) TruncateExportFiles(on bool) {
	s.exports.mu.Lock()
	defer s.exports.mu.Unlock()
	s.exports.truncate = on
}

func (e *exports) clearFaults() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.pollInterval, e.linkTTL, e.failNext, e.truncate = 0, 0, 0, false
}

func (e *exports) reset() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.jobs, e.order, e.nextID = map[string]*exportJob{}, nil, 0
}

// exportRequest is a parsed kick-off.
type exportRequest struct {
	level    ExportLevel
	group    string
	types    []string                  // nil: all
	since    time.Time                 // zero: none
	filters  map[string][]*searchQuery // _typeFilter by type, ORed
	warnings []issue                   // parameters ignored under handling=lenient
}

// patientCompartment lists the R4 resource types of the Patient
// compartment (http://hl7.org/fhir/R4/compartmentdefinition-patient.html).
var patientCompartment = map[string]bool{}

func init() {
	for _, t := range strings.Fields(`Account AdverseEvent AllergyIntolerance Appointment
		AppointmentResponse AuditEvent Basic BodyStructure CarePlan CareTeam ChargeItem
		Claim ClaimResponse ClinicalImpression Communication CommunicationRequest
		Composition Condition Consent Coverage CoverageEligibilityRequest
		CoverageEligibilityResponse DetectedIssue DeviceRequest DeviceUseStatement
		DiagnosticReport DocumentManifest DocumentReference Encounter EnrollmentRequest
		EpisodeOfCare ExplanationOfBenefit FamilyMemberHistory Flag Goal Group
		ImagingStudy Immunization ImmunizationEvaluation ImmunizationRecommendation
		Invoice List MeasureReport Media MedicationAdministration MedicationDispense
		MedicationRequest MedicationStatement MolecularSequence NutritionOrder
		Observation Patient Person Procedure Provenance QuestionnaireResponse
		RelatedPerson RequestGroup ResearchSubject RiskAssessment Schedule
		ServiceRequest Specimen SupplyDelivery SupplyRequest VisionPrescription`) {
		patientCompartment[t] = true
	}
}

// preferTokens returns the Prefer header's preferences, such as
// "respond-async" and "handling=lenient".
func preferTokens(r *http.Request) map[string]bool {
	out := map[string]bool{}
	for _, h := range r.Header.Values("Prefer") {
		for _, part := range strings.Split(h, ",") {
			k, v, hasV := strings.Cut(strings.TrimSpace(part), "=")
			k = strings.TrimSpace(k)
			if hasV {
				k += "=" + strings.Trim(strings.TrimSpace(v), `"`)
			}
			out[k] = true
		}
	}
	return out
}

// unsupported reports an unsupported kick-off parameter: an error, or
// with Prefer: handling=lenient a warning for the error file.
func (er *exportRequest) unsupported(lenient bool, format string, args ...any) *fhirError {
	msg := fmt.Sprintf(format, args...)
	if lenient {
		er.warnings = append(er.warnings, issue{Severity: "warning", Code: "not-supported", Diagnostics: msg + "; ignored (Prefer: handling=lenient)"})
		return nil
	}
	return errorf(400, "not-supported", "%s", msg)
}

// parseExport reads the kick-off parameters. Diagnostics name parameters
// and resource types, never search values (a _typeFilter may hold an
// identifier).
func (s *Server) parseExport(ctx *reqCtx, query url.Values, lenient bool, er *exportRequest) *fhirError {
	keys := make([]string, 0, len(query))
	for k := range query {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var filterVals []string
	for _, k := range keys {
		vals := query[k]
		switch k {
		case "_outputFormat":
			for _, v := range vals {
				switch v {
				case "application/fhir+ndjson", "application/ndjson", "ndjson":
				default:
					return errorf(400, "not-supported", "_outputFormat %q is not supported; use application/fhir+ndjson", truncate(v, 40))
				}
			}
		case "_since":
			v := vals[len(vals)-1]
			t, err := time.Parse(time.RFC3339Nano, v)
			if err != nil || !strings.Contains(v, "T") {
				return errorf(400, "value", "_since must be a FHIR instant (such as 2024-01-02T03:04:05Z)")
			}
			er.since = t
		case "_type":
			seen := map[string]bool{}
			for _, v := range vals {
				for _, t := range strings.Split(v, ",") {
					t = strings.TrimSpace(t)
					switch {
					case t == "" || seen[t]:
						continue
					case !isResourceType(t):
						if ferr := er.unsupported(lenient, "_type %q is not an R4 resource type", truncate(t, 64)); ferr != nil {
							return ferr
						}
						continue
					case er.level != ExportSystem && !patientCompartment[t]:
						if ferr := er.unsupported(lenient, "_type %s is not in the Patient compartment, so a %s-level export has none", t, er.level); ferr != nil {
							return ferr
						}
						continue
					}
					seen[t] = true
					er.types = append(er.types, t)
				}
			}
			if len(er.types) == 0 {
				// Every type was ignored: export nothing rather than all.
				er.types = []string{}
			}
		case "_typeFilter":
			filterVals = append(filterVals, vals...)
		case paramFormat, paramPretty:
			// Handled with the request's Accept; _pretty is ignored.
		case "patient":
			if ferr := er.unsupported(lenient, "parameter patient is only defined for POST kick-offs, which this server does not support"); ferr != nil {
				return ferr
			}
		default:
			if ferr := er.unsupported(lenient, "parameter %s is not supported", truncate(k, 64)); ferr != nil {
				return ferr
			}
		}
	}
	n := 0
	for _, v := range filterVals {
		for _, f := range splitTypeFilter(v) {
			n++
			typ, raw, _ := strings.Cut(f, "?")
			if !isResourceType(typ) {
				if ferr := er.unsupported(lenient, "_typeFilter query %d does not start with an R4 resource type and ?", n); ferr != nil {
					return ferr
				}
				continue
			}
			params, err := url.ParseQuery(raw)
			var q *searchQuery
			var ferr *fhirError
			if err != nil {
				ferr = errorf(400, "invalid", "bad query")
			} else {
				q, ferr = s.parseSearch(typ, params, true, true, ctx.bases)
			}
			if ferr != nil {
				names := make([]string, 0, len(params))
				for name := range params {
					names = append(names, truncate(name, 32))
				}
				sort.Strings(names)
				if ferr := er.unsupported(lenient, "_typeFilter query %d on %s (parameters %s) is not a supported search: only search parameters the CapabilityStatement lists, with valid values, are", n, typ, strings.Join(names, ", ")); ferr != nil {
					return ferr
				}
				continue
			}
			if er.filters == nil {
				er.filters = map[string][]*searchQuery{}
			}
			er.filters[typ] = append(er.filters[typ], q)
		}
	}
	return nil
}

// splitTypeFilter splits a _typeFilter value into its queries: at commas
// followed by a resource type and "?", so a comma inside a query (a search
// value's alternatives) stays in it.
func splitTypeFilter(v string) []string {
	var out []string
	start := 0
	for i := 0; i < len(v); i++ {
		if v[i] != ',' {
			continue
		}
		rest := v[i+1:]
		if t, _, ok := strings.Cut(rest, "?"); ok && isResourceType(t) {
			out = append(out, v[start:i])
			start = i + 1
		}
	}
	out = append(out, v[start:])
	for i := range out {
		out[i] = strings.TrimSpace(out[i])
	}
	return out
}

// exportKickoff is GET [base]/$export, [base]/Patient/$export and
// [base]/Group/[id]/$export.
func (s *Server) exportKickoff(r *http.Request, ctx *reqCtx, query url.Values, level ExportLevel, group string) *response {
	if r.Method != http.MethodGet {
		return errResponse(methodNotAllowed("GET"))
	}
	prefer := preferTokens(r)
	if !prefer["respond-async"] {
		return errResponse(errorf(400, "required", "$export is asynchronous: the kick-off needs Prefer: respond-async"))
	}
	lenient := prefer["handling=lenient"]
	er := &exportRequest{level: level, group: group}
	if ferr := s.parseExport(ctx, query, lenient, er); ferr != nil {
		return errResponse(ferr)
	}

	e := s.exports
	e.mu.Lock()
	job := &exportJob{
		level: level, group: group, types: er.types, since: er.since,
		state: ExportInProgress, needPolls: e.delayPolls, needDur: e.delayDur,
		requiresToken: e.requiresToken, byName: map[string]*exportFile{},
		gen: 1, gens: map[int]time.Time{1: {}},
	}
	maxLines := e.maxLines
	e.mu.Unlock()

	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	job.request = scheme + "://" + r.Host + r.URL.RequestURI()

	snap, ferr := s.exportSnapshot(ctx, er)
	if ferr != nil {
		return errResponse(ferr)
	}
	job.txTime = snap.txTime
	job.kickoff = s.now()
	job.addFiles(ExportOutput, snap.output, maxLines)
	if !er.since.IsZero() {
		job.addFiles(ExportDeleted, snap.deleted, maxLines)
	}
	if len(er.warnings) > 0 {
		var lines []exportLine
		for _, w := range er.warnings {
			lines = append(lines, exportLine{"OperationOutcome", outcomeJSON([]issue{w})})
		}
		job.addFiles(ExportError, lines, maxLines)
	}

	e.mu.Lock()
	if e.failNext > 0 {
		e.failNext--
		job.fail = true
	}
	e.nextID++
	job.id = strconv.Itoa(e.nextID)
	e.jobs[job.id] = job
	e.order = append(e.order, job)
	e.mu.Unlock()

	issues := append([]issue{{Severity: "information", Code: "informational", Diagnostics: "export job " + job.id + " accepted; poll the Content-Location URL for its status"}}, er.warnings...)
	resp := newResponse(http.StatusAccepted, outcomeJSON(issues))
	resp.header.Set("Content-Location", ctx.base+"/"+exportSeg+"/"+job.id)
	return resp
}

// exportLine is one NDJSON line and the resource type it holds.
type exportLine struct {
	typ  string
	body []byte
}

// addFiles splits lines into files of at most maxLines (0: no limit) lines
// of one type each.
func (j *exportJob) addFiles(kind string, lines []exportLine, maxLines int) {
	counter := map[string]int{}
	var cur *exportFile
	for _, l := range lines {
		if cur == nil || cur.typ != l.typ || maxLines > 0 && cur.count >= maxLines {
			counter[l.typ]++
			name := fmt.Sprintf("%s-%d.ndjson", l.typ, counter[l.typ])
			if kind != ExportOutput {
				name = kind + "-" + name
			}
			cur = &exportFile{kind: kind, typ: l.typ, name: name}
			j.files = append(j.files, cur)
			j.byName[name] = cur
		}
		cur.data = append(cur.data, l.body...)
		cur.data = append(cur.data, '\n')
		cur.count++
	}
}

type exportSnap struct {
	txTime  int64
	output  []exportLine
	deleted []exportLine
}

// exportSnapshot selects the resources of an export under the store's
// lock, so the export is one consistent snapshot at its transactionTime.
// Writes after it get a later lastUpdated, so an export _since this
// transactionTime finds them.
func (s *Server) exportSnapshot(ctx *reqCtx, er *exportRequest) (*exportSnap, *fhirError) {
	st := s.store
	st.mu.Lock()
	defer st.mu.Unlock()

	var members map[string]bool // patient ids in scope; nil: any patient
	if er.level == ExportGroup {
		g := st.lookup("Group", er.group)
		if g == nil || !g.live() {
			return nil, errorf(http.StatusNotFound, "not-found", "Group/%s is not known", er.group)
		}
		members = groupPatients(g.current().body, ctx.bases)
	}

	snap := &exportSnap{txTime: s.now().UnixMilli() * 1000}
	if snap.txTime < st.lastTS {
		snap.txTime = st.lastTS
	}
	st.lastTS = snap.txTime + 1000

	types := er.types
	if types == nil {
		for name := range st.types {
			if er.level == ExportSystem || patientCompartment[name] {
				types = append(types, name)
			}
		}
	}
	types = append([]string(nil), types...)
	sort.Strings(types)
	since := int64(math.MinInt64)
	if !er.since.IsZero() {
		since = er.since.UnixMicro()
	}
	for _, typ := range types {
		ts := st.types[typ]
		if ts == nil {
			continue
		}
		filters := er.filters[typ]
		for _, r := range ts.order {
			if r.live() {
				if r.current().updated > since && inExportScope(er.level, members, r) && matchesAny(filters, r) {
					snap.output = append(snap.output, exportLine{typ, r.current().body})
				}
				continue
			}
			if er.since.IsZero() || r.current().updated <= since {
				continue
			}
			// Deleted since _since: judge the last live version.
			last := lastLiveVersion(r)
			if last < 0 {
				continue
			}
			tree, err := decodeJSONObject(r.versions[last].body)
			if err != nil {
				continue
			}
			old := &resource{typ: r.typ, id: r.id, versions: r.versions[:last+1], idx: extractIndex(typ, tree, ctx.bases)}
			if inExportScope(er.level, members, old) && matchesAny(filters, old) {
				snap.deleted = append(snap.deleted, exportLine{"Bundle", deletedBundle(r)})
			}
		}
	}
	return snap, nil
}

func lastLiveVersion(r *resource) int {
	for i := len(r.versions) - 1; i >= 0; i-- {
		if r.versions[i].body != nil {
			return i
		}
	}
	return -1
}

// deletedBundle is a line of a deleted file: a transaction Bundle with one
// DELETE entry, its lastUpdated the time of the delete.
func deletedBundle(r *resource) []byte {
	b := []byte(`{"resourceType":"Bundle","meta":{"lastUpdated":`)
	b = appendJSONString(b, instant(r.current().updated))
	b = append(b, `},"type":"transaction","entry":[{"request":{"method":"DELETE","url":`...)
	b = appendJSONString(b, r.typ+"/"+r.id)
	return append(b, `}}]}`...)
}

func matchesAny(filters []*searchQuery, r *resource) bool {
	if len(filters) == 0 {
		return true
	}
	for _, q := range filters {
		if q.matches(r) {
			return true
		}
	}
	return false
}

// inExportScope reports whether r belongs to the export: anything for a
// system-level export; for Patient and Group level, a Patient in scope or
// a resource of a Patient-compartment type that references one (at any
// element: this server reads the compartment's criteria as "refers to the
// patient"). members nil means every patient is in scope.
func inExportScope(level ExportLevel, members map[string]bool, r *resource) bool {
	if level == ExportSystem {
		return true
	}
	if r.typ == "Patient" {
		return members == nil || members[r.id]
	}
	if !patientCompartment[r.typ] {
		return false
	}
	for _, rv := range r.idx.refs {
		if t, id, ok := splitTarget(rv.target); ok && t == "Patient" && (members == nil || members[id]) {
			return true
		}
	}
	return false
}

// groupPatients returns the ids of a Group's active Patient members.
func groupPatients(body []byte, bases []string) map[string]bool {
	out := map[string]bool{}
	tree, err := decodeJSONObject(body)
	if err != nil {
		return out
	}
	for _, m := range walkPath(tree, "member") {
		mm, ok := m.(map[string]any)
		if !ok || mm["inactive"] == true {
			continue
		}
		for _, e := range walkPath(mm, "entity.reference") {
			ref, _ := e.(string)
			if t, id, ok := splitTarget(normalizeRef(ref, bases)); ok && t == "Patient" {
				out[id] = true
			}
		}
	}
	return out
}

// serveExportJob serves [base]/_export/{job} (status and DELETE) and
// [base]/_export/{job}/{gen}/{name} (files).
func (s *Server) serveExportJob(r *http.Request, ctx *reqCtx, segs []string) *response {
	now := s.now()
	e := s.exports
	e.mu.Lock()
	defer e.mu.Unlock()
	var job *exportJob
	if len(segs) > 0 {
		job = e.jobs[segs[0]]
	}
	if job == nil || job.state == ExportCancelled || len(segs) != 1 && len(segs) != 3 {
		return errResponse(errorf(http.StatusNotFound, "not-found", "no such export job or file"))
	}
	if len(segs) == 3 {
		return s.serveExportFile(r, job, segs[1], segs[2], now)
	}
	switch r.Method {
	case http.MethodDelete:
		job.state = ExportCancelled
		return newResponse(http.StatusAccepted, infoOutcome("export job %s cancelled; its files are deleted", job.id))
	case http.MethodGet, http.MethodHead:
	default:
		return errResponse(methodNotAllowed("GET", "HEAD", "DELETE"))
	}
	if e.pollInterval > 0 && !job.lastPoll.IsZero() {
		if wait := e.pollInterval - now.Sub(job.lastPoll); wait > 0 {
			resp := errResponse(errorf(http.StatusTooManyRequests, "throttled", "status polled too often; wait at least %s between polls", e.pollInterval))
			resp.header.Set("Retry-After", retryAfterSeconds(wait))
			resp.fault = FaultExportPollTooFast
			return resp
		}
	}
	job.lastPoll = now
	job.refresh(now)
	job.polls++
	switch job.state {
	case ExportInProgress:
		resp := newResponse(http.StatusAccepted, nil)
		resp.header.Set("X-Progress", job.progress(now))
		wait := max(job.needDur-now.Sub(job.kickoff), e.pollInterval)
		resp.header.Set("Retry-After", retryAfterSeconds(wait))
		return resp
	case ExportFailed:
		resp := errResponse(errorf(http.StatusInternalServerError, "exception", "export job %s failed", job.id))
		resp.fault = FaultExportFailed
		return resp
	}
	// Complete: issue links.
	if exp := job.gens[job.gen]; e.linkTTL > 0 || !exp.IsZero() {
		job.gen++
		job.gens[job.gen] = time.Time{}
		if e.linkTTL > 0 {
			job.gens[job.gen] = now.Add(e.linkTTL)
		}
	}
	resp := newResponse(http.StatusOK, job.manifest(ctx.base))
	resp.contentType = contentManifest
	if exp := job.gens[job.gen]; !exp.IsZero() {
		resp.header.Set("Expires", exp.UTC().Format(http.TimeFormat))
	}
	return resp
}

// progress is the X-Progress text of an in-progress job.
func (j *exportJob) progress(now time.Time) string {
	pct := 99
	if j.needPolls > 0 {
		pct = min(pct, 100*(j.polls-1)/j.needPolls)
	}
	if j.needDur > 0 {
		pct = min(pct, int(100*now.Sub(j.kickoff)/j.needDur))
	}
	return fmt.Sprintf("%d%% complete", max(pct, 0))
}

type manifestFile struct {
	Type  string `json:"type"`
	URL   string `json:"url"`
	Count int    `json:"count"`
}

// manifest renders the complete-status body with links of the current
// generation.
func (j *exportJob) manifest(base string) []byte {
	m := struct {
		TransactionTime     string          `json:"transactionTime"`
		Request             string          `json:"request"`
		RequiresAccessToken bool            `json:"requiresAccessToken"`
		Output              []manifestFile  `json:"output"`
		Deleted             *[]manifestFile `json:"deleted,omitempty"`
		Error               []manifestFile  `json:"error"`
	}{
		TransactionTime:     instant(j.txTime),
		Request:             j.request,
		RequiresAccessToken: j.requiresToken,
		Output:              []manifestFile{},
		Error:               []manifestFile{},
	}
	deleted := []manifestFile{}
	for _, f := range j.files {
		mf := manifestFile{Type: f.typ, URL: base + "/" + exportSeg + "/" + j.id + "/" + strconv.Itoa(j.gen) + "/" + f.name, Count: f.count}
		switch f.kind {
		case ExportOutput:
			m.Output = append(m.Output, mf)
		case ExportDeleted:
			deleted = append(deleted, mf)
		case ExportError:
			m.Error = append(m.Error, mf)
		}
	}
	if !j.since.IsZero() {
		m.Deleted = &deleted
	}
	b, err := json.Marshal(m)
	if err != nil {
		panic("fhirtest: marshal export manifest: " + err.Error())
	}
	return b
}

// serveExportFile serves one file of a job. The caller holds e.mu.
func (s *Server) serveExportFile(r *http.Request, job *exportJob, genSeg, name string, now time.Time) *response {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return errResponse(methodNotAllowed("GET", "HEAD"))
	}
	gen, err := strconv.Atoi(genSeg)
	exp, known := job.gens[gen]
	f := job.byName[name]
	if err != nil || !known || f == nil || job.state != ExportComplete {
		return errResponse(errorf(http.StatusNotFound, "not-found", "no such export file"))
	}
	if !exp.IsZero() && !now.Before(exp) {
		resp := errResponse(errorf(http.StatusGone, "expired", "this file link has expired; poll the status URL for fresh links"))
		resp.fault = FaultExportLinkExpired
		return resp
	}
	f.requests++
	data := f.data
	resp := newResponse(http.StatusOK, nil)
	resp.contentType = contentNDJSON
	resp.header.Set("Accept-Ranges", "bytes")
	resp.header.Set("Vary", "Accept-Encoding")
	if rng := r.Header.Get("Range"); rng != "" {
		lo, hi, ok := parseByteRange(rng, len(data))
		if !ok {
			resp := errResponse(errorf(http.StatusRequestedRangeNotSatisfiable, "value", "the Range is not satisfiable"))
			resp.header.Set("Content-Range", "bytes */"+strconv.Itoa(len(data)))
			return resp
		}
		resp.status = http.StatusPartialContent
		resp.header.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", lo, hi-1, len(data)))
		resp.body = data[lo:hi]
		return resp
	}
	cut := -1
	if s.exports.truncate && !f.truncated && r.Method == http.MethodGet && len(data) > 1 {
		f.truncated = true
		cut = midLine(data)
	}
	if !acceptsGzip(r.Header.Get("Accept-Encoding")) {
		resp.body = data
		resp.cut = cut
		return resp
	}
	// gzip, flushed at the cut, so the bytes before the cut decompress to
	// exactly the data before it.
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if cut >= 0 {
		_, _ = zw.Write(data[:cut])
		_ = zw.Flush()
		resp.cut = buf.Len()
		_, _ = zw.Write(data[cut:])
	} else {
		_, _ = zw.Write(data)
	}
	_ = zw.Close()
	resp.body = buf.Bytes()
	resp.header.Set("Content-Encoding", "gzip")
	return resp
}

// midLine returns an offset in the middle of the file's middle line.
func midLine(data []byte) int {
	lines := bytes.Count(data, []byte{'\n'})
	start := 0
	for i := 0; i < lines/2; i++ {
		start += bytes.IndexByte(data[start:], '\n') + 1
	}
	end := bytes.IndexByte(data[start:], '\n')
	if end < 0 {
		end = len(data) - start
	}
	return start + max(end/2, 1)
}

// parseByteRange reads a single "bytes=lo-hi", "bytes=lo-" or
// "bytes=-n" range of a body of size n, returning [lo, hi).
func parseByteRange(h string, n int) (lo, hi int, ok bool) {
	spec, found := strings.CutPrefix(strings.TrimSpace(h), "bytes=")
	if !found || strings.Contains(spec, ",") {
		return 0, 0, false
	}
	a, b, found := strings.Cut(strings.TrimSpace(spec), "-")
	if !found {
		return 0, 0, false
	}
	switch {
	case a == "":
		k, err := strconv.Atoi(b)
		if err != nil || k <= 0 {
			return 0, 0, false
		}
		return max(n-k, 0), n, n > 0
	default:
		l, err := strconv.Atoi(a)
		if err != nil || l < 0 || l >= n {
			return 0, 0, false
		}
		h := n
		if b != "" {
			e, err := strconv.Atoi(b)
			if err != nil || e < l {
				return 0, 0, false
			}
			h = min(e+1, n)
		}
		return l, h, true
	}
}

// acceptsGzip reports whether an Accept-Encoding header allows gzip.
func acceptsGzip(h string) bool {
	for _, part := range strings.Split(h, ",") {
		enc, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		if strings.EqualFold(strings.TrimSpace(enc), "gzip") {
			q := strings.ReplaceAll(strings.TrimSpace(params), " ", "")
			return q != "q=0" && q != "q=0.0" && q != "q=0.00" && q != "q=0.000"
		}
	}
	return false
}
