// Package metrics defines the adapter's Prometheus metrics. They are
// created against a registry passed in (never the global one), so a process
// or a test owns its own. Names follow ketamine_fhir_<noun>_<unit>; no label
// carries patient data or an unbounded value: labels are record kinds,
// outbox states, FHIR resource types, HTTP methods and status codes, and
// the bounded reason classes of mapping and adapter/ehr.
package metrics

import (
	"context"
	"runtime"
	"runtime/debug"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Namespace prefixes every metric name.
const Namespace = "ketamine_fhir"

// Metrics holds the adapter's collectors. A nil *Metrics is valid and
// records nothing, so packages can take one optionally.
type Metrics struct {
	RecordsReceived *prometheus.CounterVec   // kind
	RecordsRejected *prometheus.CounterVec   // kind, reason
	RecordsMapped   *prometheus.CounterVec   // kind
	RecordsSynced   *prometheus.CounterVec   // kind
	DeadLetters     *prometheus.CounterVec   // kind, reason
	EHRRequests     *prometheus.CounterVec   // resource_type, method, code
	EHRLatency      *prometheus.HistogramVec // resource_type, method
	Retries         *prometheus.CounterVec   // reason
	TokenRefreshes  *prometheus.CounterVec   // result
	LastSync        prometheus.Gauge
	APIRequests     *prometheus.CounterVec // route, code
	Paused          *prometheus.GaugeVec   // reason
	PacerRate       prometheus.Gauge
	EHRInFlight     prometheus.Gauge
	QueueDepth      prometheus.Gauge
	EHRUp           prometheus.Gauge
}

// New creates the metrics and registers them, with a build_info gauge, on
// reg. It panics if reg already holds metrics of the same names, like
// prometheus.MustRegister.
func New(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		RecordsReceived: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "records_received_total",
			Help: "Local records received from files or the HTTP API, by kind (before checks).",
		}, []string{"kind"}),
		RecordsRejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "records_rejected_total",
			Help: "Local records rejected by the format checks, by kind and reason class.",
		}, []string{"kind", "reason"}),
		RecordsMapped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "records_mapped_total",
			Help: "Local records mapped to validated FHIR R4 resources, by kind.",
		}, []string{"kind"}),
		RecordsSynced: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "records_synced_total",
			Help: "Local records delivered to the EHR, by kind.",
		}, []string{"kind"}),
		DeadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "dead_letters_total",
			Help: "Records moved to the dead letters, by kind and reason class.",
		}, []string{"kind", "reason"}),
		EHRRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "ehr_requests_total",
			Help: "HTTP requests sent to the EHR, by FHIR resource type, method and status code (0: no response).",
		}, []string{"resource_type", "method", "code"}),
		EHRLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: Namespace, Name: "ehr_request_duration_seconds",
			Help:    "Latency of HTTP requests to the EHR, by FHIR resource type and method.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"resource_type", "method"}),
		Retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "retries_total",
			Help: "Retries of EHR requests and records, by reason class.",
		}, []string{"reason"}),
		TokenRefreshes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "token_refreshes_total",
			Help: "OAuth2 token requests to the EHR's authorization server, by result.",
		}, []string{"result"}),
		LastSync: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: Namespace, Name: "last_successful_sync_timestamp_seconds",
			Help: "Unix time of the last record delivered to the EHR.",
		}),
		APIRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "api_requests_total",
			Help: "Requests to the adapter's HTTP API, by route and status code.",
		}, []string{"route", "code"}),
		Paused: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: Namespace, Name: "delivery_paused",
			Help: "1 while delivery is paused for a reason (auth: the EHR refused the adapter's authorization), else 0.",
		}, []string{"reason"}),
		PacerRate: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: Namespace, Name: "ehr_request_rate_limit",
			Help: "The pacer's current request rate to the EHR, in requests per second (+Inf: not limited).",
		}),
		EHRInFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: Namespace, Name: "ehr_requests_in_flight",
			Help: "Requests sent to the EHR and not yet answered.",
		}),
		QueueDepth: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: Namespace, Name: "delivery_queue_depth",
			Help: "Rows claimed by the delivery pipeline and not yet completed (claim-ahead queue, delayed, parked, in delivery).",
		}),
		EHRUp: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: Namespace, Name: "ehr_up",
			Help: "1 if the EHR answered the adapter's last probe of its capability statement, else 0 (also before the first probe).",
		}),
	}
	build := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: Namespace, Name: "build_info",
		Help: "Build information; the value is always 1.",
	}, []string{"version", "goversion"})
	build.WithLabelValues(buildVersion(), runtime.Version()).Set(1)
	reg.MustRegister(m.RecordsReceived, m.RecordsRejected, m.RecordsMapped, m.RecordsSynced,
		m.DeadLetters, m.EHRRequests, m.EHRLatency, m.Retries, m.TokenRefreshes, m.LastSync,
		m.APIRequests, m.Paused, m.PacerRate, m.EHRInFlight, m.QueueDepth, m.EHRUp, build)
	return m
}

func buildVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "unknown"
}

// Received counts a record received.
func (m *Metrics) Received(kind string) {
	if m != nil {
		m.RecordsReceived.WithLabelValues(kind).Inc()
	}
}

// Rejected counts a record rejected by the checks.
func (m *Metrics) Rejected(kind, reason string) {
	if m != nil {
		m.RecordsRejected.WithLabelValues(kind, reason).Inc()
	}
}

// Mapped counts a record mapped to FHIR.
func (m *Metrics) Mapped(kind string) {
	if m != nil {
		m.RecordsMapped.WithLabelValues(kind).Inc()
	}
}

// Synced counts a record delivered and sets the last sync time.
func (m *Metrics) Synced(kind string, at time.Time) {
	if m != nil {
		m.RecordsSynced.WithLabelValues(kind).Inc()
		m.LastSync.Set(float64(at.UnixNano()) / 1e9)
	}
}

// Dead counts a record moved to the dead letters.
func (m *Metrics) Dead(kind, reason string) {
	if m != nil {
		m.DeadLetters.WithLabelValues(kind, reason).Inc()
	}
}

// Retry counts a retry.
func (m *Metrics) Retry(reason string) {
	if m != nil {
		m.Retries.WithLabelValues(reason).Inc()
	}
}

// EHRRequest records one HTTP request to the EHR; status 0 means no response.
func (m *Metrics) EHRRequest(resourceType, method string, status int, elapsed time.Duration) {
	if m == nil {
		return
	}
	if resourceType == "" {
		resourceType = "none"
	}
	m.EHRRequests.WithLabelValues(resourceType, method, strconv.Itoa(status)).Inc()
	m.EHRLatency.WithLabelValues(resourceType, method).Observe(elapsed.Seconds())
}

// TokenRefresh counts a token request; err nil is a success.
func (m *Metrics) TokenRefresh(err error) {
	if m == nil {
		return
	}
	result := "ok"
	if err != nil {
		result = "error"
	}
	m.TokenRefreshes.WithLabelValues(result).Inc()
}

// APIRequest counts a request to the HTTP API.
func (m *Metrics) APIRequest(route string, status int) {
	if m != nil {
		m.APIRequests.WithLabelValues(route, strconv.Itoa(status)).Inc()
	}
}

// DeliveryPaused sets whether delivery is paused for reason.
func (m *Metrics) DeliveryPaused(reason string, paused bool) {
	if m != nil {
		v := 0.0
		if paused {
			v = 1
		}
		m.Paused.WithLabelValues(reason).Set(v)
	}
}

// Pipeline sets the delivery pipeline's gauges: the pacer's rate
// (requests per second, +Inf when unlimited), the requests in flight and
// the rows the pipeline holds.
func (m *Metrics) Pipeline(rate float64, inFlight, queued int) {
	if m != nil {
		m.PacerRate.Set(rate)
		m.EHRInFlight.Set(float64(inFlight))
		m.QueueDepth.Set(float64(queued))
	}
}

// SetEHRUp records whether the EHR answered the last probe.
func (m *Metrics) SetEHRUp(up bool) {
	if m == nil {
		return
	}
	v := 0.0
	if up {
		v = 1
	}
	m.EHRUp.Set(v)
}

// OutboxSource is what the outbox collector reads at scrape time.
type OutboxSource interface {
	// Depth returns the number of rows per kind and state.
	Depth(ctx context.Context) (map[string]map[string]int, error)
	// OldestPending returns the creation time of the oldest undelivered row.
	OldestPending(ctx context.Context) (time.Time, bool, error)
}

// outboxCollector reads the outbox at scrape time, so the gauges are never
// stale and nothing has to keep them up to date.
type outboxCollector struct {
	src     OutboxSource
	now     func() time.Time
	timeout time.Duration
	depth   *prometheus.Desc
	oldest  *prometheus.Desc
	up      *prometheus.Desc
}

// RegisterOutbox registers a scrape-time collector of the outbox depth by
// kind and state (ketamine_fhir_outbox_records), the age of the oldest
// undelivered row (ketamine_fhir_outbox_oldest_pending_age_seconds, 0 when
// none) and whether the store answered (ketamine_fhir_outbox_up).
func RegisterOutbox(reg prometheus.Registerer, src OutboxSource, now func() time.Time) error {
	if now == nil {
		now = time.Now
	}
	return reg.Register(&outboxCollector{
		src: src, now: now, timeout: 5 * time.Second,
		depth: prometheus.NewDesc(Namespace+"_outbox_records",
			"Rows in the outbox, by record kind and state.", []string{"kind", "state"}, nil),
		oldest: prometheus.NewDesc(Namespace+"_outbox_oldest_pending_age_seconds",
			"Age of the oldest row not yet synced or dead (pending, waiting or retrying); 0 when none.", nil, nil),
		up: prometheus.NewDesc(Namespace+"_outbox_up",
			"1 if the outbox store answered the last scrape, else 0.", nil, nil),
	})
}

func (c *outboxCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.depth
	ch <- c.oldest
	ch <- c.up
}

func (c *outboxCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	depth, err := c.src.Depth(ctx)
	if err != nil {
		ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, 0)
		return
	}
	for kind, states := range depth {
		for state, n := range states {
			ch <- prometheus.MustNewConstMetric(c.depth, prometheus.GaugeValue, float64(n), kind, state)
		}
	}
	age := 0.0
	if t, ok, err := c.src.OldestPending(ctx); err == nil && ok {
		age = c.now().Sub(t).Seconds()
	}
	ch <- prometheus.MustNewConstMetric(c.oldest, prometheus.GaugeValue, age)
	ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, 1)
}
