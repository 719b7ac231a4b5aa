package ui

import (
	"fmt"
	"math"
	"time"
)

// chart geometry, in SVG user units.
const (
	chartW, chartH      = 600, 150
	plotLeft, plotRight = 48, 592
	plotTop, plotBottom = 12, 118
	chartSlots          = SamplePoints
	chartSlotGap        = 1.0
)

// chartBar is one bar of the deliveries chart.
type chartBar struct {
	X, Y, W, H string
	Title      string
}

// chartData is what the chart template draws.
type chartData struct {
	W, H                   int
	PlotLeft, PlotRight    int
	PlotTop, PlotBottom    int
	LabelY, MaxLabelY      int
	Bars                   []chartBar
	Max                    string
	Total                  string
	Peak                   string
	Samples                int
	IntervalText           string
	Per                    string // "minute" for the default interval
	Summary                string
	XLabelLeft, XLabelRght string
}

// buildChart lays out points (oldest first) as bars, the newest at the
// right edge, scaled to the largest value.
func buildChart(points []Point, interval time.Duration) chartData {
	c := chartData{
		W: chartW, H: chartH, PlotLeft: plotLeft, PlotRight: plotRight,
		PlotTop: plotTop, PlotBottom: plotBottom, LabelY: plotBottom + 18, MaxLabelY: plotTop + 4,
		Samples: len(points), IntervalText: interval.String(), Per: "sample of " + interval.String(),
		XLabelLeft: fmt.Sprintf("%d samples ago", chartSlots), XLabelRght: "now",
	}
	if interval == time.Minute {
		c.Per = "minute"
	}
	var peak, total float64
	for _, p := range points {
		total += p.Delivered
		peak = math.Max(peak, p.Delivered)
	}
	c.Total, c.Peak = formatCount(total), formatCount(peak)
	scale := peak
	if scale < 1 {
		scale = 1
	}
	c.Max = formatCount(scale)
	slot := float64(plotRight-plotLeft) / chartSlots
	height := float64(plotBottom - plotTop)
	offset := chartSlots - len(points)
	for i, p := range points {
		h := p.Delivered / scale * height
		x := float64(plotLeft) + float64(offset+i)*slot
		c.Bars = append(c.Bars, chartBar{
			X: f1(x + chartSlotGap/2), W: f1(slot - chartSlotGap),
			Y: f1(float64(plotBottom) - h), H: f1(h),
			Title: fmt.Sprintf("%s: %s delivered", p.At.UTC().Format("15:04 UTC"), formatCount(p.Delivered)),
		})
	}
	switch {
	case len(points) == 0:
		c.Summary = "No samples yet: the first point appears one interval after start."
	default:
		c.Summary = fmt.Sprintf("%s records delivered in the last %d samples (one every %s); peak %s in one sample.",
			c.Total, len(points), c.IntervalText, c.Peak)
	}
	return c
}

func f1(v float64) string { return fmt.Sprintf("%.1f", v) }

func formatCount(v float64) string {
	if v == math.Trunc(v) {
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.1f", v)
}
