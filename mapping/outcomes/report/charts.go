package report

import (
	"bytes"
	"fmt"
	"image/color"
	"math"
	"strconv"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgsvg"

	"github.com/ketamine-fhir/ketamine-fhir/mapping/outcomes"
)

// Chart size in points.
const (
	chartW = 6.5 * vg.Inch
	chartH = 3.4 * vg.Inch
)

var (
	lineColor  = color.RGBA{R: 0x1f, G: 0x5f, B: 0x99, A: 0xff}
	afterColor = color.RGBA{R: 0xc0, G: 0x50, B: 0x20, A: 0xff}
)

// medianIQR is the points of a trajectory with their IQR as error bars.
type medianIQR struct {
	plotter.XYs
	plotter.YErrors
}

// trajectoryChart draws the weekly median and IQR of an instrument's
// scores, for the weeks that are shown; "" when no week is.
func trajectoryChart(in outcomes.InstrumentOutcomes, max float64) (string, error) {
	var pts medianIQR
	for _, w := range in.Trajectory {
		if w.Scores == nil {
			continue
		}
		pts.XYs = append(pts.XYs, plotter.XY{X: float64(w.Week), Y: w.Scores.Median})
		pts.YErrors = append(pts.YErrors, struct{ Low, High float64 }{w.Scores.Median - w.Scores.Q1, w.Scores.Q3 - w.Scores.Median})
	}
	if len(pts.XYs) == 0 {
		return "", nil
	}
	p := plot.New()
	p.Title.Text = in.Instrument + " total by week since the first session (median and IQR)"
	p.X.Label.Text = "week since the first session (0 = baseline)"
	p.Y.Label.Text = in.Instrument + " total"
	p.Y.Min, p.Y.Max = 0, max
	p.Y.Tick.Marker = stepTicks(5)
	p.X.Min = -0.5
	p.X.Tick.Marker = stepTicks(1)
	p.Add(plotter.NewGrid())
	line, points, err := plotter.NewLinePoints(pts.XYs)
	if err != nil {
		return "", err
	}
	line.Color, points.Color = lineColor, lineColor
	points.Shape = draw.CircleGlyph{}
	bars, err := plotter.NewYErrorBars(pts)
	if err != nil {
		return "", err
	}
	bars.Color = lineColor
	p.Add(line, points, bars)
	return svg(p)
}

// bloodPressureChart draws the median blood pressure before and after the
// dose, with IQR error bars, systolic and diastolic side by side.
func bloodPressureChart(bp outcomes.BloodPressure) (string, error) {
	if bp.Systolic == nil || bp.Diastolic == nil {
		return "", nil
	}
	p := plot.New()
	p.Title.Text = "Blood pressure before and after the dose (median and IQR, per session)"
	p.Y.Label.Text = "mm[Hg]"
	p.X.Min, p.X.Max = -0.5, 1.5
	p.Add(plotter.NewGrid())
	for _, side := range []struct {
		name  string
		c     color.Color
		dx    float64
		s, d  outcomes.Quartiles
		shape draw.GlyphDrawer
	}{
		{"before the dose", lineColor, -0.12, bp.Systolic.Before, bp.Diastolic.Before, draw.CircleGlyph{}},
		{"after the dose", afterColor, 0.12, bp.Systolic.After, bp.Diastolic.After, draw.BoxGlyph{}},
	} {
		var pts medianIQR
		for x, q := range []outcomes.Quartiles{side.s, side.d} {
			pts.XYs = append(pts.XYs, plotter.XY{X: float64(x) + side.dx, Y: q.Median})
			pts.YErrors = append(pts.YErrors, struct{ Low, High float64 }{q.Median - q.Q1, q.Q3 - q.Median})
		}
		sc, err := plotter.NewScatter(pts.XYs)
		if err != nil {
			return "", err
		}
		sc.Color, sc.Shape, sc.Radius = side.c, side.shape, vg.Points(4)
		eb, err := plotter.NewYErrorBars(pts)
		if err != nil {
			return "", err
		}
		eb.Color = side.c
		p.Add(sc, eb)
		p.Legend.Add(side.name, sc)
	}
	p.Legend.Top = true
	p.NominalX("systolic", "diastolic")
	return svg(p)
}

// stepTicks labels every multiple of step with an integer.
func stepTicks(step float64) plot.Ticker {
	return plot.TickerFunc(func(min, max float64) []plot.Tick {
		var ts []plot.Tick
		for v := math.Ceil(min/step) * step; v <= max; v += step {
			if v == 0 {
				v = 0 // math.Ceil(-0.5) is -0, which would read "-0"
			}
			ts = append(ts, plot.Tick{Value: v, Label: strconv.FormatFloat(v, 'f', -1, 64)})
		}
		return ts
	})
}

// svg renders p as an SVG element for inline use: no XML prolog, no
// embedded or linked fonts (the viewer's own fonts are used).
func svg(p *plot.Plot) (string, error) {
	c := vgsvg.New(chartW, chartH)
	p.Draw(draw.New(c))
	var b bytes.Buffer
	if _, err := c.WriteTo(&b); err != nil {
		return "", fmt.Errorf("rendering a chart: %w", err)
	}
	s := b.String()
	i := strings.Index(s, "<svg")
	if i < 0 {
		return "", fmt.Errorf("rendering a chart: no <svg> element")
	}
	return s[i:], nil
}
