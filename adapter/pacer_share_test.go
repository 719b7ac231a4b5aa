package adapter

import (
	"math"
	"testing"
	"time"

	"golang.org/x/time/rate"
)

func TestPacerSetShare(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	p := NewPacer(PacerConfig{MaxRate: 100, Now: func() time.Time { return now }})
	if got := p.State().Rate; got != 100 {
		t.Fatalf("rate %v, want 100", got)
	}
	for _, tc := range []struct {
		n    int
		want float64
	}{
		{4, 25},   // four instances: a quarter each
		{4, 25},   // unchanged
		{2, 50},   // one left: the rest share more
		{0, 100},  // below 1 counts as 1
		{1000, 1}, // never below MinRate
	} {
		p.SetShare(tc.n)
		if got := p.State().Rate; math.Abs(got-tc.want) > 1e-9 {
			t.Errorf("SetShare(%d): rate %v, want %v", tc.n, got, tc.want)
		}
	}
	// The ceiling is divided too: additive increase stops at it.
	p.SetShare(4)
	if p.cfg.MaxRate != 25 {
		t.Errorf("ceiling %v with 4 instances, want 25", p.cfg.MaxRate)
	}

	// A rate the AIMD lowered is scaled, not reset to the ceiling.
	q := NewPacer(PacerConfig{MaxRate: 100, Now: func() time.Time { return now }})
	q.mu.Lock()
	q.setLimit(now, 60)
	q.mu.Unlock()
	q.SetShare(3)
	if got := q.State().Rate; math.Abs(got-20) > 1e-9 {
		t.Errorf("rate 60 shared by 3: %v, want 20", got)
	}

	// No ceiling and an unlimited rate: nothing to divide.
	u := NewPacer(PacerConfig{})
	u.mu.Lock()
	u.setLimit(now, rate.Inf)
	u.mu.Unlock()
	u.SetShare(2)
	if got := u.State().Rate; !math.IsInf(got, 1) || u.Share() != 2 {
		t.Errorf("unlimited rate shared by 2: %v (share %d), want +Inf (2)", got, u.Share())
	}
}
