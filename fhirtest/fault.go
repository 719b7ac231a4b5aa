package fhirtest

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"time"
)

// LoseMode says how a lost response is lost. In both modes the server has
// already committed the write when the response is lost: this is the case
// in which a client that retries blindly creates duplicates.
type LoseMode int

const (
	// LoseDrop commits, then closes the connection without an answer (by
	// aborting the handler with http.ErrAbortHandler, so it needs a real
	// HTTP server around the handler; over HTTP/2 only the request's
	// stream is reset).
	LoseDrop LoseMode = iota + 1
	// Lose503 commits, then answers 503 Service Unavailable with Retry-After.
	Lose503
	// LoseHang commits, then never answers: the connection stays open and
	// silent until the client gives up (its timeout) or the server closes,
	// as a proxy or network that swallows the answer does.
	LoseHang
)

// String returns "drop", "503" or "hang", the --lose-mode flag values.
func (m LoseMode) String() string {
	switch m {
	case LoseDrop:
		return "drop"
	case Lose503:
		return "503"
	case LoseHang:
		return "hang"
	}
	return fmt.Sprintf("LoseMode(%d)", int(m))
}

// Fault names the fault injected into a request, as recorded in RequestLog.
type Fault string

const (
	// FaultNone means the request was served normally.
	FaultNone Fault = ""
	// FaultRateLimit means the rate limit answered 429 without processing.
	FaultRateLimit Fault = "rate-limit"
	// FaultStatus means an injected status (FailNext, SetFailureRate)
	// answered without processing.
	FaultStatus Fault = "status"
	// FaultDrop means the connection was closed before processing.
	FaultDrop Fault = "drop"
	// FaultLoseDrop means the request was processed, then the connection
	// was closed instead of answering.
	FaultLoseDrop Fault = "lose-drop"
	// FaultLose503 means the request was processed, then answered 503.
	FaultLose503 Fault = "lose-503"
	// FaultLoseHang means the request was processed, then never answered
	// (until the client gave up or the server closed).
	FaultLoseHang Fault = "lose-hang"
	// FaultExportPollTooFast means an export status poll came sooner than
	// SetExportPollInterval allows and was answered 429.
	FaultExportPollTooFast Fault = "export-poll-too-fast"
	// FaultExportLinkExpired means an export file link had expired
	// (SetExportLinkExpiry) and was answered 410.
	FaultExportLinkExpired Fault = "export-link-expired"
	// FaultExportFailed means a status poll of a failed export job
	// (FailNextExport) was answered 500.
	FaultExportFailed Fault = "export-failed"
	// FaultExportTruncated means an export file download was cut in the
	// middle of a line (TruncateExportFiles).
	FaultExportTruncated Fault = "export-truncated"
	// FaultRejected means a create, update or transaction was refused with
	// 422 by the RejectWrites rule.
	FaultRejected Fault = "rejected"
)

// DefaultSeed is the seed of the fault generator unless WithSeed or
// SetSeed says otherwise, so fault sequences repeat by default.
const DefaultSeed = 1

// faults is the fault configuration and state of a server.
type faults struct {
	mu  sync.Mutex
	rng *rand.Rand

	failNext       int
	failNextStatus int
	failRate       float64
	failStatuses   []int

	latMin, latMax time.Duration

	dropNext int
	dropRate float64

	loseNext     int
	loseNextMode LoseMode
	loseRate     float64
	loseMode     LoseMode

	rps        float64
	burst      float64
	tokens     float64
	lastRefill time.Time

	retryAfter time.Duration
}

func newFaults(seed int64) *faults {
	f := &faults{retryAfter: time.Second}
	f.seed(seed)
	return f
}

func (f *faults) seed(seed int64) {
	f.rng = rand.New(rand.NewPCG(uint64(seed), uint64(seed)^0x9e3779b97f4a7c15))
}

// faultPlan is what happens to one request.
type faultPlan struct {
	rateLimited bool
	retryAfter  time.Duration // for rate-limited, injected 429/503 and Lose503
	delay       time.Duration
	drop        bool
	status      int
	lose        LoseMode
}

// plan draws the faults of one request. Random draws happen in a fixed
// order (latency, drop, status, lost response) so a seed gives the same
// sequence for the same sequence of requests.
func (f *faults) plan(now time.Time, write bool) faultPlan {
	f.mu.Lock()
	defer f.mu.Unlock()
	p := faultPlan{retryAfter: f.retryAfter}
	if f.rps > 0 {
		elapsed := now.Sub(f.lastRefill).Seconds()
		if elapsed > 0 {
			f.tokens = math.Min(f.burst, f.tokens+elapsed*f.rps)
			f.lastRefill = now
		}
		if f.tokens < 1 {
			p.rateLimited = true
			wait := math.Ceil((1 - f.tokens) / f.rps)
			p.retryAfter = time.Duration(math.Max(1, wait)) * time.Second
			return p
		}
		f.tokens--
	}
	p.delay = f.latMin
	if f.latMax > f.latMin {
		p.delay += time.Duration(f.rng.Int64N(int64(f.latMax-f.latMin) + 1))
	}
	dropDraw := f.dropRate > 0 && f.rng.Float64() < f.dropRate
	failDraw := f.failRate > 0 && f.rng.Float64() < f.failRate
	failStatus := 0
	if failDraw {
		failStatus = f.failStatuses[0]
		if len(f.failStatuses) > 1 {
			failStatus = f.failStatuses[f.rng.IntN(len(f.failStatuses))]
		}
	}
	loseDraw := write && f.loseRate > 0 && f.rng.Float64() < f.loseRate

	switch {
	case f.dropNext > 0:
		f.dropNext--
		p.drop = true
		return p
	case dropDraw:
		p.drop = true
		return p
	}
	switch {
	case f.failNext > 0:
		f.failNext--
		p.status = f.failNextStatus
		return p
	case failDraw:
		p.status = failStatus
		return p
	}
	if write {
		switch {
		case f.loseNext > 0:
			f.loseNext--
			p.lose = f.loseNextMode
		case loseDraw:
			p.lose = f.loseMode
		}
	}
	return p
}

func checkRate(method string, rate float64) {
	if rate < 0 || rate > 1 || math.IsNaN(rate) {
		panic(fmt.Sprintf("fhirtest: %s: rate %v outside [0, 1]", method, rate))
	}
}

func checkStatus(method string, status int) {
	if status < 400 || status > 599 {
		panic(fmt.Sprintf("fhirtest: %s: status %d is not an error status (400-599)", method, status))
	}
}

func checkLoseMode(method string, mode LoseMode) {
	if mode != LoseDrop && mode != Lose503 && mode != LoseHang {
		panic(fmt.Sprintf("fhirtest: %s: unknown LoseMode %d", method, int(mode)))
	}
}

// FailNext makes the next n requests fail with status (400-599) before
// they are processed. 429 and 503 carry a Retry-After header. It replaces
// any count left from an earlier FailNext; n <= 0 cancels it.
func (s *Server) FailNext(n int, status int) {
	checkStatus("FailNext", status)
	s.faults.mu.Lock()
	defer s.faults.mu.Unlock()
	s.faults.failNext = max(n, 0)
	s.faults.failNextStatus = status
}

// SetFailureRate makes each request fail before processing with
// probability rate, answering one of statuses picked at random (503 when
// none are given). A rate of 0 turns it off.
func (s *Server) SetFailureRate(rate float64, statuses ...int) {
	checkRate("SetFailureRate", rate)
	if len(statuses) == 0 {
		statuses = []int{503}
	}
	for _, st := range statuses {
		checkStatus("SetFailureRate", st)
	}
	s.faults.mu.Lock()
	defer s.faults.mu.Unlock()
	s.faults.failRate = rate
	s.faults.failStatuses = append([]int(nil), statuses...)
}

// SetLatency delays every request (faulty ones included) by a duration
// drawn uniformly from [min, max]; min == max gives a fixed latency and
// zero turns it off. A request whose client goes away, or a server that is
// closed, stops waiting.
func (s *Server) SetLatency(min, max time.Duration) {
	if min < 0 || max < min {
		panic(fmt.Sprintf("fhirtest: SetLatency: want 0 <= min <= max, got %v, %v", min, max))
	}
	s.faults.mu.Lock()
	defer s.faults.mu.Unlock()
	s.faults.latMin, s.faults.latMax = min, max
}

// DropNext closes the connection of the next n requests without processing
// them or answering. n <= 0 cancels it. Dropping aborts the handler with
// http.ErrAbortHandler, so it needs a real HTTP server around the handler.
// Over HTTP/2 (StartTLS) that resets the request's stream: the client sees
// the request fail, while the connection and its other requests go on.
func (s *Server) DropNext(n int) {
	s.faults.mu.Lock()
	defer s.faults.mu.Unlock()
	s.faults.dropNext = max(n, 0)
}

// SetDropRate closes the connection of each request with probability rate,
// before processing it.
func (s *Server) SetDropRate(rate float64) {
	checkRate("SetDropRate", rate)
	s.faults.mu.Lock()
	defer s.faults.mu.Unlock()
	s.faults.dropRate = rate
}

// LoseNext loses the responses of the next n write requests (POST other
// than _search, PUT, PATCH, DELETE): each is processed and committed, then
// its response is lost as mode says. Reads are not affected (a lost read
// is a dropped connection, see DropNext). n <= 0 cancels it.
func (s *Server) LoseNext(n int, mode LoseMode) {
	checkLoseMode("LoseNext", mode)
	s.faults.mu.Lock()
	defer s.faults.mu.Unlock()
	s.faults.loseNext = max(n, 0)
	s.faults.loseNextMode = mode
}

// SetLoseRate loses the response of each write request with probability
// rate, after committing it, as mode says. A rate of 0 turns it off.
func (s *Server) SetLoseRate(rate float64, mode LoseMode) {
	checkRate("SetLoseRate", rate)
	checkLoseMode("SetLoseRate", mode)
	s.faults.mu.Lock()
	defer s.faults.mu.Unlock()
	s.faults.loseRate = rate
	s.faults.loseMode = mode
}

// SetRateLimit allows rps requests per second with bursts of up to burst
// requests (a token bucket that starts full); requests beyond it are
// answered 429 Too Many Requests with Retry-After (whole seconds until a
// request would be allowed) and are not processed. burst < 1 means one
// second's worth (at least 1). rps <= 0 removes the limit. The limit uses
// the server's clock (WithClock).
func (s *Server) SetRateLimit(rps float64, burst int) {
	s.faults.mu.Lock()
	defer s.faults.mu.Unlock()
	if rps <= 0 || math.IsNaN(rps) {
		s.faults.rps = 0
		return
	}
	b := float64(burst)
	if burst < 1 {
		b = math.Max(1, math.Ceil(rps))
	}
	s.faults.rps, s.faults.burst, s.faults.tokens = rps, b, b
	s.faults.lastRefill = s.now()
}

// SetRetryAfter sets the Retry-After of injected 429 and 503 answers
// (rounded up to whole seconds, at least 1). Defaults to 1s.
func (s *Server) SetRetryAfter(d time.Duration) {
	s.faults.mu.Lock()
	defer s.faults.mu.Unlock()
	s.faults.retryAfter = d
}

// SetSeed restarts the fault generator from seed: the same configuration
// and the same sequence of requests then get the same faults.
func (s *Server) SetSeed(seed int64) {
	s.faults.mu.Lock()
	defer s.faults.mu.Unlock()
	s.faults.seed(seed)
}

// ClearFaults removes every fault, latency and the rate limit, the
// RejectWrites rule, and the export faults (SetExportPollInterval,
// SetExportLinkExpiry, FailNextExport, TruncateExportFiles). The seed's
// sequence continues.
func (s *Server) ClearFaults() {
	s.exports.clearFaults()
	s.faults.mu.Lock()
	defer s.faults.mu.Unlock()
	f := s.faults
	f.failNext, f.failRate, f.failStatuses = 0, 0, nil
	f.latMin, f.latMax = 0, 0
	f.dropNext, f.dropRate = 0, 0
	f.loseNext, f.loseRate = 0, 0
	f.rps = 0
	s.reject.Store(nil)
}

// retryAfterSeconds renders a Retry-After value: whole seconds, at least 1.
func retryAfterSeconds(d time.Duration) string {
	secs := int64(math.Ceil(d.Seconds()))
	if secs < 1 {
		secs = 1
	}
	return fmt.Sprint(secs)
}
