package metrics_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"go.yaml.in/yaml/v3"

	"github.com/ketamine-fhir/ketamine-fhir/adapter/metrics"
)

// documented lists every metric the adapter exports, with its type: the
// contract with dashboards, alert rules and docs/operations.md.
var documented = map[string]dto.MetricType{
	"ketamine_fhir_records_received_total":                 dto.MetricType_COUNTER,
	"ketamine_fhir_records_rejected_total":                 dto.MetricType_COUNTER,
	"ketamine_fhir_records_mapped_total":                   dto.MetricType_COUNTER,
	"ketamine_fhir_records_synced_total":                   dto.MetricType_COUNTER,
	"ketamine_fhir_dead_letters_total":                     dto.MetricType_COUNTER,
	"ketamine_fhir_ehr_requests_total":                     dto.MetricType_COUNTER,
	"ketamine_fhir_ehr_request_duration_seconds":           dto.MetricType_HISTOGRAM,
	"ketamine_fhir_retries_total":                          dto.MetricType_COUNTER,
	"ketamine_fhir_token_refreshes_total":                  dto.MetricType_COUNTER,
	"ketamine_fhir_last_successful_sync_timestamp_seconds": dto.MetricType_GAUGE,
	"ketamine_fhir_api_requests_total":                     dto.MetricType_COUNTER,
	"ketamine_fhir_ehr_up":                                 dto.MetricType_GAUGE,
	"ketamine_fhir_build_info":                             dto.MetricType_GAUGE,
	"ketamine_fhir_outbox_records":                         dto.MetricType_GAUGE,
	"ketamine_fhir_outbox_oldest_pending_age_seconds":      dto.MetricType_GAUGE,
	"ketamine_fhir_outbox_up":                              dto.MetricType_GAUGE,
	"ketamine_fhir_delivery_paused":                        dto.MetricType_GAUGE,
	"ketamine_fhir_ehr_request_rate_limit":                 dto.MetricType_GAUGE,
	"ketamine_fhir_ehr_requests_in_flight":                 dto.MetricType_GAUGE,
	"ketamine_fhir_delivery_queue_depth":                   dto.MetricType_GAUGE,
}

// fakeSource is a hand-written metrics.OutboxSource.
type fakeSource struct {
	depth    map[string]map[string]int
	oldest   time.Time
	hasOld   bool
	depthErr error
	oldErr   error
}

func (f *fakeSource) Depth(context.Context) (map[string]map[string]int, error) {
	return f.depth, f.depthErr
}

func (f *fakeSource) OldestPending(context.Context) (time.Time, bool, error) {
	return f.oldest, f.hasOld, f.oldErr
}

var t0 = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

// fullRegistry builds a registry with every metric registered and every
// vector holding a child, so that Gather lists them all.
func fullRegistry(t *testing.T) (*prometheus.Registry, *metrics.Metrics) {
	t.Helper()
	reg := prometheus.NewRegistry()
	m := metrics.New(reg)
	src := &fakeSource{
		depth:  map[string]map[string]int{"order": {"pending": 2, "synced": 5}},
		oldest: t0.Add(-90 * time.Second), hasOld: true,
	}
	if err := metrics.RegisterOutbox(reg, src, func() time.Time { return t0 }); err != nil {
		t.Fatalf("RegisterOutbox: %v", err)
	}
	m.Received("order")
	m.Rejected("order", "invalid_record")
	m.Mapped("order")
	m.Synced("order", t0)
	m.Dead("order", "http_422")
	m.Retry("http_503")
	m.EHRRequest("MedicationRequest", "PUT", 201, 30*time.Millisecond)
	m.TokenRefresh(nil)
	m.APIRequest("/v1/records", 202)
	m.DeliveryPaused("auth", true)
	m.Pipeline(40, 3, 12)
	return reg, m
}

func gatherTypes(t *testing.T, g prometheus.Gatherer) map[string]dto.MetricType {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatalf("Gather: %v", err)
	}
	got := make(map[string]dto.MetricType, len(mfs))
	for _, mf := range mfs {
		got[mf.GetName()] = mf.GetType()
	}
	return got
}

func TestNewRegistersEveryDocumentedMetric(t *testing.T) {
	reg, _ := fullRegistry(t)
	got := gatherTypes(t, reg)
	for name, typ := range documented {
		gt, ok := got[name]
		if !ok {
			t.Errorf("metric %s is not registered", name)
			continue
		}
		if gt != typ {
			t.Errorf("metric %s has type %v, documented %v", name, gt, typ)
		}
	}
	for name := range got {
		if _, ok := documented[name]; !ok {
			t.Errorf("metric %s is registered but not documented (add it to docs/operations.md and this test)", name)
		}
	}
}

func TestMetricsPassPromlint(t *testing.T) {
	reg, _ := fullRegistry(t)
	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatalf("GatherAndLint: %v", err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
}

func TestNamesFollowTheConvention(t *testing.T) {
	valid := regexp.MustCompile(`^ketamine_fhir_[a-z][a-z0-9_]*[a-z0-9]$`)
	for name, typ := range documented {
		if !valid.MatchString(name) {
			t.Errorf("%s does not match ketamine_fhir_<noun>_<unit>", name)
		}
		if typ == dto.MetricType_COUNTER && !strings.HasSuffix(name, "_total") {
			t.Errorf("counter %s does not end in _total", name)
		}
	}
}

func TestCountersAndLabels(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := metrics.New(reg)
	m.Received("patient")
	m.Received("patient")
	m.Received("score")
	m.Rejected("score", "invalid_record")
	m.Dead("order", "http_422")
	m.Retry("http_429")
	m.Retry("http_429")
	m.TokenRefresh(nil)
	m.TokenRefresh(errors.New("boom"))
	m.APIRequest("/v1/records", 202)
	m.APIRequest("/v1/records", 401)
	m.EHRRequest("", "GET", 0, time.Second) // no resource type, no response

	const want = `
# HELP ketamine_fhir_records_received_total Local records received from files or the HTTP API, by kind (before checks).
# TYPE ketamine_fhir_records_received_total counter
ketamine_fhir_records_received_total{kind="patient"} 2
ketamine_fhir_records_received_total{kind="score"} 1
# HELP ketamine_fhir_records_rejected_total Local records rejected by the format checks, by kind and reason class.
# TYPE ketamine_fhir_records_rejected_total counter
ketamine_fhir_records_rejected_total{kind="score",reason="invalid_record"} 1
# HELP ketamine_fhir_dead_letters_total Records moved to the dead letters, by kind and reason class.
# TYPE ketamine_fhir_dead_letters_total counter
ketamine_fhir_dead_letters_total{kind="order",reason="http_422"} 1
# HELP ketamine_fhir_retries_total Retries of EHR requests and records, by reason class.
# TYPE ketamine_fhir_retries_total counter
ketamine_fhir_retries_total{reason="http_429"} 2
# HELP ketamine_fhir_token_refreshes_total OAuth2 token requests to the EHR's authorization server, by result.
# TYPE ketamine_fhir_token_refreshes_total counter
ketamine_fhir_token_refreshes_total{result="error"} 1
ketamine_fhir_token_refreshes_total{result="ok"} 1
# HELP ketamine_fhir_api_requests_total Requests to the adapter's HTTP API, by route and status code.
# TYPE ketamine_fhir_api_requests_total counter
ketamine_fhir_api_requests_total{code="202",route="/v1/records"} 1
ketamine_fhir_api_requests_total{code="401",route="/v1/records"} 1
# HELP ketamine_fhir_ehr_requests_total HTTP requests sent to the EHR, by FHIR resource type, method and status code (0: no response).
# TYPE ketamine_fhir_ehr_requests_total counter
ketamine_fhir_ehr_requests_total{code="0",method="GET",resource_type="none"} 1
`
	err := testutil.GatherAndCompare(reg, strings.NewReader(want),
		"ketamine_fhir_records_received_total", "ketamine_fhir_records_rejected_total",
		"ketamine_fhir_dead_letters_total", "ketamine_fhir_retries_total",
		"ketamine_fhir_token_refreshes_total", "ketamine_fhir_api_requests_total",
		"ketamine_fhir_ehr_requests_total")
	if err != nil {
		t.Error(err)
	}
}

func TestEHRLatencyHistogram(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := metrics.New(reg)
	m.EHRRequest("Patient", "PUT", 200, 30*time.Millisecond)
	m.EHRRequest("Patient", "PUT", 503, 2*time.Second)
	const want = `
# HELP ketamine_fhir_ehr_request_duration_seconds Latency of HTTP requests to the EHR, by FHIR resource type and method.
# TYPE ketamine_fhir_ehr_request_duration_seconds histogram
ketamine_fhir_ehr_request_duration_seconds_bucket{method="PUT",resource_type="Patient",le="0.005"} 0
ketamine_fhir_ehr_request_duration_seconds_bucket{method="PUT",resource_type="Patient",le="0.01"} 0
ketamine_fhir_ehr_request_duration_seconds_bucket{method="PUT",resource_type="Patient",le="0.025"} 0
ketamine_fhir_ehr_request_duration_seconds_bucket{method="PUT",resource_type="Patient",le="0.05"} 1
ketamine_fhir_ehr_request_duration_seconds_bucket{method="PUT",resource_type="Patient",le="0.1"} 1
ketamine_fhir_ehr_request_duration_seconds_bucket{method="PUT",resource_type="Patient",le="0.25"} 1
ketamine_fhir_ehr_request_duration_seconds_bucket{method="PUT",resource_type="Patient",le="0.5"} 1
ketamine_fhir_ehr_request_duration_seconds_bucket{method="PUT",resource_type="Patient",le="1"} 1
ketamine_fhir_ehr_request_duration_seconds_bucket{method="PUT",resource_type="Patient",le="2.5"} 2
ketamine_fhir_ehr_request_duration_seconds_bucket{method="PUT",resource_type="Patient",le="5"} 2
ketamine_fhir_ehr_request_duration_seconds_bucket{method="PUT",resource_type="Patient",le="10"} 2
ketamine_fhir_ehr_request_duration_seconds_bucket{method="PUT",resource_type="Patient",le="30"} 2
ketamine_fhir_ehr_request_duration_seconds_bucket{method="PUT",resource_type="Patient",le="+Inf"} 2
ketamine_fhir_ehr_request_duration_seconds_sum{method="PUT",resource_type="Patient"} 2.03
ketamine_fhir_ehr_request_duration_seconds_count{method="PUT",resource_type="Patient"} 2
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "ketamine_fhir_ehr_request_duration_seconds"); err != nil {
		t.Error(err)
	}
	const codes = `
# HELP ketamine_fhir_ehr_requests_total HTTP requests sent to the EHR, by FHIR resource type, method and status code (0: no response).
# TYPE ketamine_fhir_ehr_requests_total counter
ketamine_fhir_ehr_requests_total{code="200",method="PUT",resource_type="Patient"} 1
ketamine_fhir_ehr_requests_total{code="503",method="PUT",resource_type="Patient"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(codes), "ketamine_fhir_ehr_requests_total"); err != nil {
		t.Error(err)
	}
}

func TestSyncedSetsLastSync(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := metrics.New(reg)
	if got := testutil.ToFloat64(m.LastSync); got != 0 {
		t.Fatalf("last sync before any sync = %v, want 0", got)
	}
	at := time.Date(2025, 6, 1, 12, 0, 0, 500_000_000, time.UTC)
	m.Synced("administration", at)
	m.Synced("administration", at)
	if got, want := testutil.ToFloat64(m.LastSync), float64(at.Unix())+0.5; got != want {
		t.Errorf("last sync = %v, want %v", got, want)
	}
	if got := testutil.ToFloat64(m.RecordsSynced.WithLabelValues("administration")); got != 2 {
		t.Errorf("records synced = %v, want 2", got)
	}
}

func TestBuildInfo(t *testing.T) {
	reg := prometheus.NewRegistry()
	metrics.New(reg)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "ketamine_fhir_build_info" {
			continue
		}
		if len(mf.Metric) != 1 || mf.Metric[0].GetGauge().GetValue() != 1 {
			t.Fatalf("build_info = %v, want one series of value 1", mf.Metric)
		}
		labels := map[string]string{}
		for _, l := range mf.Metric[0].GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		if labels["goversion"] != runtime.Version() || labels["version"] == "" {
			t.Errorf("build_info labels = %v", labels)
		}
		return
	}
	t.Fatal("no ketamine_fhir_build_info")
}

func TestNewTwiceOnOneRegistryPanics(t *testing.T) {
	reg := prometheus.NewRegistry()
	metrics.New(reg)
	defer func() {
		if recover() == nil {
			t.Error("second New on the same registry did not panic")
		}
	}()
	metrics.New(reg)
}

func TestOutboxCollector(t *testing.T) {
	src := &fakeSource{
		depth: map[string]map[string]int{
			"patient": {"pending": 1, "synced": 3},
			"order":   {"dead": 2, "retrying": 0},
		},
		oldest: t0.Add(-150 * time.Second), hasOld: true,
	}
	reg := prometheus.NewRegistry()
	if err := metrics.RegisterOutbox(reg, src, func() time.Time { return t0 }); err != nil {
		t.Fatal(err)
	}
	const want = `
# HELP ketamine_fhir_outbox_records Rows in the outbox, by record kind and state.
# TYPE ketamine_fhir_outbox_records gauge
ketamine_fhir_outbox_records{kind="order",state="dead"} 2
ketamine_fhir_outbox_records{kind="order",state="retrying"} 0
ketamine_fhir_outbox_records{kind="patient",state="pending"} 1
ketamine_fhir_outbox_records{kind="patient",state="synced"} 3
# HELP ketamine_fhir_outbox_oldest_pending_age_seconds Age of the oldest row not yet synced or dead (pending, waiting or retrying); 0 when none.
# TYPE ketamine_fhir_outbox_oldest_pending_age_seconds gauge
ketamine_fhir_outbox_oldest_pending_age_seconds 150
# HELP ketamine_fhir_outbox_up 1 if the outbox store answered the last scrape, else 0.
# TYPE ketamine_fhir_outbox_up gauge
ketamine_fhir_outbox_up 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want)); err != nil {
		t.Error(err)
	}

	// Read at scrape time: a change in the source shows at the next scrape.
	src.depth["patient"]["pending"] = 0
	src.hasOld = false
	const after = `
# HELP ketamine_fhir_outbox_oldest_pending_age_seconds Age of the oldest row not yet synced or dead (pending, waiting or retrying); 0 when none.
# TYPE ketamine_fhir_outbox_oldest_pending_age_seconds gauge
ketamine_fhir_outbox_oldest_pending_age_seconds 0
# HELP ketamine_fhir_outbox_records Rows in the outbox, by record kind and state.
# TYPE ketamine_fhir_outbox_records gauge
ketamine_fhir_outbox_records{kind="order",state="dead"} 2
ketamine_fhir_outbox_records{kind="order",state="retrying"} 0
ketamine_fhir_outbox_records{kind="patient",state="pending"} 0
ketamine_fhir_outbox_records{kind="patient",state="synced"} 3
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(after),
		"ketamine_fhir_outbox_records", "ketamine_fhir_outbox_oldest_pending_age_seconds"); err != nil {
		t.Error(err)
	}
}

func TestOutboxCollectorStoreDown(t *testing.T) {
	src := &fakeSource{depthErr: errors.New("database is locked")}
	reg := prometheus.NewRegistry()
	if err := metrics.RegisterOutbox(reg, src, nil); err != nil {
		t.Fatal(err)
	}
	const want = `
# HELP ketamine_fhir_outbox_up 1 if the outbox store answered the last scrape, else 0.
# TYPE ketamine_fhir_outbox_up gauge
ketamine_fhir_outbox_up 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want)); err != nil {
		t.Error(err)
	}
}

func TestOutboxCollectorOldestFails(t *testing.T) {
	// Depth answered, the oldest-age query did not: the age reads 0 and
	// the store counts as up (the depth is real).
	src := &fakeSource{depth: map[string]map[string]int{}, oldErr: errors.New("timeout")}
	reg := prometheus.NewRegistry()
	if err := metrics.RegisterOutbox(reg, src, func() time.Time { return t0 }); err != nil {
		t.Fatal(err)
	}
	const want = `
# HELP ketamine_fhir_outbox_oldest_pending_age_seconds Age of the oldest row not yet synced or dead (pending, waiting or retrying); 0 when none.
# TYPE ketamine_fhir_outbox_oldest_pending_age_seconds gauge
ketamine_fhir_outbox_oldest_pending_age_seconds 0
# HELP ketamine_fhir_outbox_up 1 if the outbox store answered the last scrape, else 0.
# TYPE ketamine_fhir_outbox_up gauge
ketamine_fhir_outbox_up 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want)); err != nil {
		t.Error(err)
	}
}

func TestRegisterOutboxTwiceFails(t *testing.T) {
	reg := prometheus.NewRegistry()
	src := &fakeSource{}
	if err := metrics.RegisterOutbox(reg, src, nil); err != nil {
		t.Fatal(err)
	}
	if err := metrics.RegisterOutbox(reg, src, nil); err == nil {
		t.Error("second RegisterOutbox on the same registry succeeded")
	}
}

func TestNilMetricsIsANoOp(t *testing.T) {
	var m *metrics.Metrics
	// None of these may panic.
	m.Received("order")
	m.Rejected("order", "invalid_record")
	m.Mapped("order")
	m.Synced("order", t0)
	m.Dead("order", "http_422")
	m.Retry("http_503")
	m.EHRRequest("Patient", "GET", 200, time.Millisecond)
	m.TokenRefresh(errors.New("x"))
	m.APIRequest("/healthz", 200)
	m.SetEHRUp(true)
}

func TestEHRUp(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := metrics.New(reg)
	for _, tc := range []struct {
		name string
		set  func()
		want float64
	}{
		{"before the first probe", func() {}, 0},
		{"up", func() { m.SetEHRUp(true) }, 1},
		{"down", func() { m.SetEHRUp(false) }, 0},
		{"up again", func() { m.SetEHRUp(true) }, 1},
	} {
		tc.set()
		if got := testutil.ToFloat64(m.EHRUp); got != tc.want {
			t.Errorf("%s: ketamine_fhir_ehr_up = %v, want %v", tc.name, got, tc.want)
		}
	}
	const want = `
# HELP ketamine_fhir_ehr_up 1 if the EHR answered the adapter's last probe of its capability statement, else 0 (also before the first probe).
# TYPE ketamine_fhir_ehr_up gauge
ketamine_fhir_ehr_up 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "ketamine_fhir_ehr_up"); err != nil {
		t.Error(err)
	}
}

// metricRef finds ketamine_fhir_* names in dashboards, rules and docs.
var metricRef = regexp.MustCompile(`ketamine_fhir_[a-z0-9_]*[a-z0-9]`)

// TestOperatorAssetsUseRegisteredMetrics checks that every metric the
// Grafana dashboard, the alert rules and the operator guide name exists
// (allowing the _bucket, _sum and _count series of histograms), and that
// the dashboard is valid JSON.
func TestOperatorAssetsUseRegisteredMetrics(t *testing.T) {
	reg, _ := fullRegistry(t)
	series := map[string]bool{}
	for name, typ := range gatherTypes(t, reg) {
		series[name] = true
		if typ == dto.MetricType_HISTOGRAM {
			for _, suffix := range []string{"_bucket", "_sum", "_count"} {
				series[name+suffix] = true
			}
		}
	}
	files := []string{
		"../../configs/grafana-dashboard.json",
		"../../configs/prometheus-alerts.yaml",
		"../../docs/operations.md",
	}
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Errorf("%v", err)
			continue
		}
		if strings.HasSuffix(file, ".json") {
			var dash struct {
				Title  string            `json:"title"`
				Panels []json.RawMessage `json:"panels"`
			}
			if err := json.Unmarshal(data, &dash); err != nil {
				t.Errorf("%s is not valid JSON: %v", file, err)
			} else if dash.Title == "" || len(dash.Panels) == 0 {
				t.Errorf("%s: no title or no panels", file)
			}
		}
		refs := map[string]bool{}
		for _, name := range metricRef.FindAllString(string(data), -1) {
			refs[name] = true
		}
		if len(refs) == 0 {
			t.Errorf("%s names no ketamine_fhir_ metric", file)
		}
		var unknown []string
		for name := range refs {
			if !series[name] {
				unknown = append(unknown, name)
			}
		}
		sort.Strings(unknown)
		for _, name := range unknown {
			t.Errorf("%s uses %s, which the adapter does not export", file, name)
		}
	}
}

// TestAlertRules checks the shape of configs/prometheus-alerts.yaml: every
// rule has a name, an expression, a severity, a summary and a runbook link
// to a section of docs/operations.md that exists.
func TestAlertRules(t *testing.T) {
	data, err := os.ReadFile("../../configs/prometheus-alerts.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var file struct {
		Groups []struct {
			Name  string `yaml:"name"`
			Rules []struct {
				Alert       string            `yaml:"alert"`
				Expr        string            `yaml:"expr"`
				For         string            `yaml:"for"`
				Labels      map[string]string `yaml:"labels"`
				Annotations map[string]string `yaml:"annotations"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	dec := yaml.NewDecoder(strings.NewReader(string(data)))
	dec.KnownFields(true)
	if err := dec.Decode(&file); err != nil {
		t.Fatalf("prometheus-alerts.yaml: %v", err)
	}
	doc, err := os.ReadFile("../../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	anchors := markdownAnchors(string(doc))
	seen := map[string]bool{}
	n := 0
	for _, g := range file.Groups {
		for _, r := range g.Rules {
			n++
			if r.Alert == "" || strings.TrimSpace(r.Expr) == "" {
				t.Errorf("group %s: a rule without alert or expr: %+v", g.Name, r)
				continue
			}
			if seen[r.Alert] {
				t.Errorf("alert %s defined twice", r.Alert)
			}
			seen[r.Alert] = true
			switch r.Labels["severity"] {
			case "critical", "warning", "info":
			default:
				t.Errorf("alert %s: severity %q", r.Alert, r.Labels["severity"])
			}
			if r.For != "" {
				if _, err := time.ParseDuration(r.For); err != nil {
					t.Errorf("alert %s: for %q: %v", r.Alert, r.For, err)
				}
			}
			if r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
				t.Errorf("alert %s: summary or description missing", r.Alert)
			}
			link := r.Annotations["runbook_url"]
			file, anchor, _ := strings.Cut(link, "#")
			if file != "docs/operations.md" || !anchors[anchor] {
				t.Errorf("alert %s: runbook_url %q is not a section of docs/operations.md", r.Alert, link)
			}
			if strings.Count(r.Expr, "(") != strings.Count(r.Expr, ")") {
				t.Errorf("alert %s: unbalanced parentheses in expr", r.Alert)
			}
		}
	}
	if n < 5 {
		t.Errorf("only %d alert rules", n)
	}
}

// markdownAnchors returns the GitHub anchors of the headings of a
// Markdown text.
func markdownAnchors(md string) map[string]bool {
	out := map[string]bool{}
	inCode := false
	for _, line := range strings.Split(md, "\n") {
		if strings.HasPrefix(line, "```") {
			inCode = !inCode
		}
		if inCode || !strings.HasPrefix(line, "#") {
			continue
		}
		title := strings.TrimSpace(strings.TrimLeft(line, "#"))
		var b strings.Builder
		for _, r := range strings.ToLower(title) {
			switch {
			case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-', r == '_':
				b.WriteRune(r)
			case r == ' ':
				b.WriteByte('-')
			}
		}
		out[b.String()] = true
	}
	return out
}
