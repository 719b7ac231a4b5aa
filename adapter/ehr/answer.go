package ehr

import (
	"context"
	"errors"
	"io"
	"net/http"
	"sync"
	"time"
)

// An EHR, or a proxy or network in front of it, may take a request and
// never answer: the connection stays open and silent. A client that waits
// out its whole Timeout (30s by default) for each of those holds a request
// slot all that time; 5% of such answers then stall a sync (measured 49x
// slower behind a proxy that held 5% of the answers; BENCHMARKS.md section
// 6.5). So an attempt whose answer is much later than the answers to the
// same kind of request usually are is taken for lost, abandoned and tried
// again, as TCP retransmits after its retransmission timeout (RFC 6298):
// the wait is the mean of the recent answer times plus four deviations, at
// least AnswerTimeoutMin, doubled for every attempt of that kind taken for
// lost since the last answer, and at most Timeout.
//
// The writes tried again are conditional (DESIGN.md section 4), so an
// abandoned write that the EHR did carry out is not repeated.

// answerSamples is how many answers of a kind are timed before their
// times alone bound its attempts: until then an attempt waits
// unknownKindFactor times what the answers of every kind together say
// (coldFactor times the least wait while none is timed).
const answerSamples = 8

// maxAnswerDoublings bounds the doublings of a kind's wait.
const maxAnswerDoublings = 16

// errAnswerLost is the cause of an attempt abandoned by answerTransport.
var errAnswerLost = errors.New("no answer within the time answers to such requests take")

// answerTimes times the answers of each kind of request (method and
// resource type) and gives the wait after which an attempt of that kind
// is taken for lost. It is safe for concurrent use.
type answerTimes struct {
	min, max time.Duration

	mu    sync.Mutex
	kinds map[string]*answerKind
}

// answerKind is RFC 6298's state for one kind of request.
type answerKind struct {
	srtt, rttvar time.Duration
	samples      int
	doublings    int // attempts taken for lost since the last answer
}

func newAnswerTimes(minWait, maxWait time.Duration) *answerTimes {
	return &answerTimes{min: minWait, max: maxWait, kinds: make(map[string]*answerKind)}
}

// anyKind is the key of the answers of every kind together.
const anyKind = ""

// unknownKindFactor multiplies the wait of every kind together for a kind
// with too few answers timed: its answers may well take longer (a Bundle
// of 50 entries after single writes), but a lost one among its first
// should not cost the whole Timeout.
const unknownKindFactor = 4

// coldFactor multiplies the least wait while no answer has been timed.
const coldFactor = 10

// wait returns how long an attempt of kind waits for its answer.
// provisional is true while the kind has too few answers timed for its
// own times to say: the wait then rests on other kinds' answers, or on
// none, and shrinks as answers come in.
func (a *answerTimes) wait(kind string) (d time.Duration, provisional bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	k, factor := a.kinds[kind], time.Duration(1)
	if k == nil || k.samples < answerSamples {
		k, factor, provisional = a.kinds[anyKind], unknownKindFactor, true
	}
	switch {
	case k == nil || k.samples == 0:
		// Nothing timed yet. An EHR's first answers can be slow (cold
		// caches, a JIT warming up, a validator loading its
		// definitions): 10s at the default least wait, where RFC
		// 6298 2.1 starts TCP from 1s.
		d = coldFactor * a.min
	case k.samples < answerSamples:
		d = factor * max(a.min, k.srtt+4*k.rttvar, 2*k.srtt)
	default:
		d = factor * max(a.min, k.srtt+4*k.rttvar)
	}
	doublings := 0
	if k != nil {
		doublings = k.doublings
	}
	for range doublings {
		if d >= a.max {
			break
		}
		d *= 2
	}
	return min(d, a.max), provisional
}

// answered records the time an attempt of kind took to its answer's
// headers.
func (a *answerTimes) answered(kind string, took time.Duration) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.kindLocked(kind).answered(took)
	a.kindLocked(anyKind).answered(took)
}

func (a *answerTimes) kindLocked(kind string) *answerKind {
	k := a.kinds[kind]
	if k == nil {
		k = &answerKind{}
		a.kinds[kind] = k
	}
	return k
}

// answered updates the estimate with one answer's time (RFC 6298 2.2,
// 2.3).
func (k *answerKind) answered(took time.Duration) {
	if k.samples == 0 {
		k.srtt, k.rttvar = took, took/2
	} else {
		diff := k.srtt - took
		if diff < 0 {
			diff = -diff
		}
		k.rttvar = (3*k.rttvar + diff) / 4
		k.srtt = (7*k.srtt + took) / 8
	}
	k.samples++
	k.doublings = 0
}

// lost records an attempt of kind taken for lost: the next wait of the
// kind (and, for kinds timed too little, of every kind) doubles.
func (a *answerTimes) lost(kind string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, key := range []string{kind, anyKind} {
		if k := a.kindLocked(key); k.doublings < maxAnswerDoublings {
			k.doublings++
		}
	}
}

// answerKindKey carries the kind of request (method and resource type
// label) to answerTransport; requests without it (token requests, pings)
// wait the whole Timeout.
type answerKindKey struct{}

// answerTransport abandons an attempt whose answer's headers take longer
// than its kind's wait, with an error that is a timeout (retried as one).
// It sits next to the wire, under the slots and the pacer, so the wait
// counts from the moment the request is sent.
//
// A provisional wait is looked at again every least wait while the
// attempt is out: an attempt sent before any answer was timed would
// otherwise wait ten times the least wait however fast the answers that
// came meanwhile, and under lost answers the first requests of a sync
// are as likely to be lost as any (BENCHMARKS.md section 6.6).
type answerTransport struct {
	rt    http.RoundTripper
	times *answerTimes
	now   func() time.Time
}

// answerWatch is one attempt's state, shared by RoundTrip and its timer.
type answerWatch struct {
	mu   sync.Mutex
	done bool          // the attempt ended: the timer must not cancel it
	lost bool          // the timer took it for lost and canceled it
	wait time.Duration // the wait it was taken for lost after
}

func (t answerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	kind, _ := r.Context().Value(answerKindKey{}).(string)
	if kind == "" {
		return t.rt.RoundTrip(r)
	}
	wait, provisional := t.times.wait(kind)
	if wait >= t.times.max && !provisional {
		// The client's own Timeout applies; time the answer only.
		start := t.now()
		resp, err := t.rt.RoundTrip(r)
		if err == nil {
			t.times.answered(kind, t.now().Sub(start))
		}
		return resp, err
	}
	ctx, cancel := context.WithCancelCause(r.Context())
	var w answerWatch
	var timer *time.Timer
	start := t.now()
	check := func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		if w.done {
			return
		}
		wait, provisional := t.times.wait(kind)
		elapsed := t.now().Sub(start)
		switch {
		case wait >= t.times.max:
			// The client's own Timeout applies, unless answers timed
			// meanwhile shorten the wait.
			if provisional && elapsed < wait {
				timer.Reset(min(wait-elapsed, t.times.min))
			}
		case elapsed >= wait:
			w.lost, w.wait = true, wait
			cancel(errAnswerLost)
		case provisional:
			timer.Reset(min(wait-elapsed, t.times.min))
		default:
			timer.Reset(wait - elapsed)
		}
	}
	first := wait
	if provisional {
		first = min(wait, t.times.min)
	}
	w.mu.Lock() // check must not run before timer is set
	timer = time.AfterFunc(first, check)
	w.mu.Unlock()
	resp, err := t.rt.RoundTrip(r.WithContext(ctx))
	w.mu.Lock()
	w.done = true
	lost, lostWait := w.lost, w.wait
	w.mu.Unlock()
	timer.Stop()
	if lost {
		// Taken for lost, even if the headers came just then: the body
		// would be cut off by the canceled context.
		if err == nil {
			resp.Body.Close()
		}
		t.times.lost(kind)
		return nil, &lostAnswerError{wait: lostWait}
	}
	if err != nil {
		cancel(nil)
		return nil, err
	}
	t.times.answered(kind, t.now().Sub(start))
	resp.Body = &cancelBody{ReadCloser: resp.Body, cancel: cancel}
	return resp, nil
}

// cancelBody releases its attempt's context when the body is closed.
type cancelBody struct {
	io.ReadCloser
	cancel context.CancelCauseFunc
}

func (b *cancelBody) Close() error {
	err := b.ReadCloser.Close()
	b.cancel(nil)
	return err
}

// lostAnswerError is an attempt abandoned by answerTransport. It is a
// net.Error timeout, retried as any timeout is.
type lostAnswerError struct{ wait time.Duration }

func (e *lostAnswerError) Error() string {
	return "ehr: no answer within " + e.wait.String() + ", the time answers to such requests take: taken for lost"
}

// Timeout reports true: the attempt timed out.
func (e *lostAnswerError) Timeout() bool { return true }

// Temporary reports true (net.Error).
func (e *lostAnswerError) Temporary() bool { return true }
