package ui

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestBuildChart(t *testing.T) {
	at := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	pts := []Point{{at, 2}, {at.Add(time.Minute), 0}, {at.Add(2 * time.Minute), 5}}
	c := buildChart(pts, time.Minute)
	if len(c.Bars) != 3 {
		t.Fatalf("%d bars, want 3", len(c.Bars))
	}
	// The newest bar ends at the right edge; the highest fills the plot.
	last := c.Bars[2]
	if last.H != "106.0" || last.Y != "12.0" || last.X != "583.4" {
		t.Errorf("newest bar %+v: want height 106 (the plot), y 12, x 583.4 (the last of 60 slots)", last)
	}
	if c.Bars[1].H != "0.0" || c.Bars[0].H != "42.4" {
		t.Errorf("bars %+v: want heights 42.4 and 0", c.Bars[:2])
	}
	if c.Summary != "7 records delivered in the last 3 samples (one every 1m0s); peak 5 in one sample." {
		t.Errorf("summary %q", c.Summary)
	}
	if c.Bars[0].Title != "12:00 UTC: 2 delivered" {
		t.Errorf("bar title %q", c.Bars[0].Title)
	}

	var buf bytes.Buffer
	d := overviewData{HaveChart: true, Chart: c}
	if err := parsePages()["overview"].ExecuteTemplate(&buf, "content", page{Data: d}); err != nil {
		t.Fatal(err)
	}
	svg := buf.String()
	if n := strings.Count(svg, `<rect class="bar"`); n != 3 {
		t.Errorf("the SVG has %d bars, want 3", n)
	}
	if !strings.Contains(svg, `role="img" aria-labelledby="chart-title chart-desc"`) || !strings.Contains(svg, `<desc id="chart-desc">7 records delivered`) {
		t.Error("the SVG lacks its accessible name and description")
	}

	if empty := buildChart(nil, time.Minute); len(empty.Bars) != 0 || !strings.HasPrefix(empty.Summary, "No samples yet") {
		t.Errorf("no points: %+v", empty)
	}
}
