// Package report renders an outcomes.Report: one self-contained HTML page
// (inline CSS, charts as inline SVG drawn with gonum.org/v1/plot, nothing
// loaded from the network) or JSON for scripts (the outcomes.Report
// schema, outcomes.Schema).
//
// The page shows only what the Report holds, aggregates whose small cells
// are already suppressed; it adds no patient data.
package report

import (
	"embed"
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"sort"

	"github.com/ketamine-fhir/ketamine-fhir/mapping/outcomes"
)

//go:embed page.html
var pageFS embed.FS

var page = template.Must(template.New("page.html").Funcs(template.FuncMap{
	"count":    countText,
	"share":    shareText,
	"quart":    quartText,
	"rate":     rateText,
	"sorted":   sortedCounts,
	"suppress": suppressedText,
	"addr":     func(q outcomes.Quartiles) *outcomes.Quartiles { return &q },
}).ParseFS(pageFS, "page.html"))

// JSON writes rep as indented JSON.
func JSON(w io.Writer, rep *outcomes.Report) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(rep)
}

// pageData is what the template sees.
type pageData struct {
	*outcomes.Report
	Charts map[string]template.HTML
}

// HTML writes rep as one self-contained HTML page.
func HTML(w io.Writer, rep *outcomes.Report) error {
	d := pageData{Report: rep, Charts: map[string]template.HTML{}}
	for _, in := range rep.Instruments {
		max := 27.0
		if in.Instrument == outcomes.MADRS {
			max = 60
		}
		s, err := trajectoryChart(in, max)
		if err != nil {
			return err
		}
		// The SVG is drawn by gonum/plot from numbers alone; texts in it
		// are this package's.
		d.Charts[in.Instrument] = template.HTML(s)
	}
	s, err := bloodPressureChart(rep.BloodPressure)
	if err != nil {
		return err
	}
	d.Charts["bp"] = template.HTML(s)
	return page.Execute(w, d)
}

func suppressedText(min int) string { return fmt.Sprintf("suppressed (n < %d)", min) }

// countText shows a count of patients, or why it is not shown.
func countText(n *int, min int) string {
	if n == nil {
		return suppressedText(min)
	}
	return fmt.Sprint(*n)
}

func shareText(s outcomes.Share, min int) string {
	switch {
	case s.Count != nil && s.Rate != nil:
		return fmt.Sprintf("%.1f%% (%d)", 100**s.Rate, *s.Count)
	case s.Suppressed:
		return suppressedText(min)
	}
	return "–"
}

func quartText(q *outcomes.Quartiles) string {
	if q == nil {
		return "–"
	}
	return fmt.Sprintf("%g (IQR %g–%g)", q.Median, q.Q1, q.Q3)
}

func rateText(r *float64) string {
	if r == nil {
		return "–"
	}
	return fmt.Sprintf("%.1f", *r)
}

type namedCount struct {
	Name  string
	Count int
}

func sortedCounts(m map[string]int) []namedCount {
	out := make([]namedCount, 0, len(m))
	for k, v := range m {
		out = append(out, namedCount{k, v})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}
