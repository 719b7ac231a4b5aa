package ehr

import (
	"context"
	"errors"
	"net/http"
	"reflect"
	"sync/atomic"
	"testing"
	"time"
)

func TestAnswerTimesWait(t *testing.T) {
	const minWait, maxWait = 10 * time.Millisecond, 30 * time.Second
	a := newAnswerTimes(minWait, maxWait)
	const put, bundle = "PUT Observation", "POST Bundle"

	// Nothing timed: ten times the least wait (a cold EHR's first
	// answers can be slow), provisionally.
	if _, provisional := a.wait(put); !provisional {
		t.Error("no answers timed: the wait is not provisional")
	}
	if got := waitOf(a, put); got != coldFactor*minWait {
		t.Errorf("no answers timed: wait %v, want %v", got, coldFactor*minWait)
	}

	// Eight answers of 50ms: the mean plus four deviations, the
	// deviation decaying from 25ms by 3/4 an answer.
	for range answerSamples {
		a.answered(put, 50*time.Millisecond)
	}
	want := 50*time.Millisecond + 4*(25*time.Millisecond*2187/16384) // 25ms x (3/4)^7
	if got := waitOf(a, put); got < want-time.Millisecond || got > want+time.Millisecond {
		t.Errorf("after 8 answers of 50ms: wait %v, want about %v", got, want)
	}

	if _, provisional := a.wait(put); provisional {
		t.Error("after 8 answers: the wait is still provisional")
	}

	// A kind with too few answers waits four times what every kind
	// together says, provisionally.
	if _, provisional := a.wait(bundle); !provisional {
		t.Error("a kind never timed: the wait is not provisional")
	}
	pooled := waitOf(a, put)
	if got := waitOf(a, bundle); got != unknownKindFactor*pooled {
		t.Errorf("a kind never timed: wait %v, want %d x %v", got, unknownKindFactor, pooled)
	}

	// Each attempt taken for lost doubles the wait; an answer resets it.
	base := waitOf(a, put)
	a.lost(put)
	if got := waitOf(a, put); got != 2*base {
		t.Errorf("after one lost: wait %v, want %v", got, 2*base)
	}
	a.lost(put)
	if got := waitOf(a, put); got != 4*base {
		t.Errorf("after two lost: wait %v, want %v", got, 4*base)
	}
	for range 40 {
		a.lost(put)
	}
	if got := waitOf(a, put); got != maxWait {
		t.Errorf("after many lost: wait %v, want the Timeout %v", got, maxWait)
	}
	a.answered(put, 50*time.Millisecond)
	if got := waitOf(a, put); got > 2*base {
		t.Errorf("after an answer: wait %v, want back near %v", got, base)
	}

	// Slow answers raise the wait: the EHR slowing down is not loss.
	for range 20 {
		a.answered(put, 2*time.Second)
	}
	if got := waitOf(a, put); got < 2*time.Second {
		t.Errorf("after answers of 2s: wait %v, want at least 2s", got)
	}

	// The least wait holds however fast the answers.
	b := newAnswerTimes(time.Second, maxWait)
	for range answerSamples {
		b.answered(put, time.Millisecond)
	}
	if got := waitOf(b, put); got != time.Second {
		t.Errorf("answers of 1ms with a least wait of 1s: wait %v", got)
	}
}

// waitOf is a.wait(kind) without its provisional flag.
func waitOf(a *answerTimes, kind string) time.Duration {
	d, _ := a.wait(kind)
	return d
}

// TestClientAbandonsLostAnswer: an EHR that keeps one request and never
// answers it. Once answers of that kind are timed, the attempt is taken
// for lost long before Timeout and tried again, as a timeout.
func TestClientAbandonsLostAnswer(t *testing.T) {
	t.Parallel()
	var held atomic.Int32
	e := setup(t, func(w http.ResponseWriter, r *http.Request, n int) {
		if n == answerSamples+1 {
			held.Add(1)
			<-r.Context().Done() // the client gave up
			return
		}
		w.WriteHeader(http.StatusOK)
	}, func(c *Config) {
		c.Timeout = time.Minute // the test would stall, then fail, without the wait
		// Far above the fake EHR's answers (a millisecond or so, tens
		// under the race detector on a busy machine), so that only
		// the held request is taken for lost.
		c.AnswerTimeoutMin = 200 * time.Millisecond
	})
	req := Request{Method: http.MethodPut, Path: "Observation?identifier=x", ResourceType: "Observation",
		Body: []byte(`{"resourceType":"Observation"}`)}
	for i := range answerSamples + 1 {
		if _, err := e.c.Do(ctxT(t), req); err != nil {
			t.Fatalf("request %d: %v", i+1, err)
		}
	}
	if held.Load() != 1 {
		t.Fatalf("the EHR held %d requests, want 1", held.Load())
	}
	reqs := e.ehr.requests()
	if len(reqs) != answerSamples+2 {
		t.Errorf("%d requests reached the EHR, want %d: the held one tried again once", len(reqs), answerSamples+2)
	}
	_, retries, _ := e.hooks.snapshot()
	if want := []string{"answer_timeout"}; !reflect.DeepEqual(retries, want) {
		t.Errorf("OnRetry = %q, want %q", retries, want)
	}
}

// TestClientAnswerTimeoutOff: with a negative AnswerTimeoutMin an attempt
// waits for its answer up to Timeout, however quick the answers before;
// the same late answer with a least wait of 200ms is taken for lost.
func TestClientAnswerTimeoutOff(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		min     time.Duration
		retries []string
	}{
		{-1, nil},
		{200 * time.Millisecond, []string{"answer_timeout"}},
	} {
		e := setup(t, func(w http.ResponseWriter, r *http.Request, n int) {
			if n == answerSamples+1 {
				time.Sleep(time.Second) // far beyond what the others took
			}
			w.WriteHeader(http.StatusOK)
		}, func(c *Config) {
			c.AnswerTimeoutMin = tc.min
		})
		req := Request{Method: http.MethodPut, Path: "Observation?identifier=x", ResourceType: "Observation",
			Body: []byte(`{"resourceType":"Observation"}`)}
		for i := range answerSamples + 1 {
			if _, err := e.c.Do(ctxT(t), req); err != nil {
				t.Fatalf("AnswerTimeoutMin %v: request %d: %v", tc.min, i+1, err)
			}
		}
		if _, retries, _ := e.hooks.snapshot(); !reflect.DeepEqual(retries, tc.retries) {
			t.Errorf("AnswerTimeoutMin %v: OnRetry = %q, want %q", tc.min, retries, tc.retries)
		}
	}
}

// TestAnswerColdWaitShrinks: an attempt sent before any answer was timed
// waits ten times the least wait only while nothing is timed. When other
// answers are timed meanwhile, it is looked at again and taken for lost
// after the wait those answers give (four times theirs, as for a kind
// with too few answers), not after the cold wait.
func TestAnswerColdWaitShrinks(t *testing.T) {
	t.Parallel()
	const minWait = 100 * time.Millisecond
	times := newAnswerTimes(minWait, time.Minute)
	held := make(chan struct{})
	tr := answerTransport{
		times: times,
		now:   time.Now,
		rt: answerRT(func(r *http.Request) (*http.Response, error) {
			close(held)
			<-r.Context().Done() // never answered: held until abandoned
			return nil, context.Cause(r.Context())
		}),
	}
	req, err := http.NewRequestWithContext(context.WithValue(ctxT(t), answerKindKey{}, "POST Bundle"),
		http.MethodPost, "http://ehr.invalid/fhir", nil)
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() {
		_, err := tr.RoundTrip(req)
		errc <- err
	}()
	<-held
	// Other requests' answers, timed while the Bundle is out.
	for range answerSamples {
		times.answered("PUT Observation", time.Millisecond)
	}
	err = <-errc
	var lost *lostAnswerError
	if !errors.As(err, &lost) {
		t.Fatalf("RoundTrip error %v, want a lostAnswerError", err)
	}
	if want := unknownKindFactor * minWait; lost.wait != want {
		t.Errorf("taken for lost after %v, want %v (four times the least wait), not the cold %v",
			lost.wait, want, coldFactor*minWait)
	}
}

// answerRT is a RoundTripper from a function.
type answerRT func(*http.Request) (*http.Response, error)

func (f answerRT) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
