package ui

import (
	"fmt"
	"net/http"
	"sort"
	"time"

	"github.com/ketamine-fhir/ketamine-fhir/adapter"
	"github.com/ketamine-fhir/ketamine-fhir/adapter/store"
)

// OverviewRefresh is how often the overview updates itself, in seconds
// (static/refresh.js, until the operator pauses it).
const OverviewRefresh = 15

// kindCounts is one row of the overview's count table.
type kindCounts struct {
	Kind   string
	Counts []int // in the order of store.States
	Total  int
}

// overviewData is what the overview shows.
type overviewData struct {
	States      []string
	Kinds       []kindCounts
	Totals      kindCounts
	Dead        int
	Waiting     int
	Chart       chartData
	HaveChart   bool
	EHR         EHRState
	Delivery    adapter.DeliveryStatus
	RateText    string
	LastSync    time.Time
	OldestAge   string
	Oldest      *waitingRow
	Version     string
	Settings    []Setting
	RefreshSecs int
}

// overview is GET /ui/.
func (c *Console) overview(w http.ResponseWriter, r *http.Request, se *session) {
	ctx := r.Context()
	st := c.b.Store()
	counts, err := st.Counts(ctx)
	if err != nil {
		c.internalError(w, r, se, "reading the outbox counts", err)
		return
	}
	d := overviewData{Version: c.opts.Version, Settings: c.opts.Settings, RefreshSecs: OverviewRefresh,
		Delivery: c.b.Delivery(), LastSync: c.b.LastSync()}
	d.Totals = kindCounts{Kind: "all kinds", Counts: make([]int, len(store.States))}
	for _, s := range store.States {
		d.States = append(d.States, string(s))
	}
	names := make([]string, 0, len(counts))
	for k := range counts {
		names = append(names, k)
	}
	sort.Slice(names, func(i, j int) bool { return kindOrder(names[i]) < kindOrder(names[j]) })
	for _, k := range names {
		kc := kindCounts{Kind: k, Counts: make([]int, len(store.States))}
		for i, s := range store.States {
			kc.Counts[i] = counts[k][s]
			kc.Total += counts[k][s]
			d.Totals.Counts[i] += counts[k][s]
			d.Totals.Total += counts[k][s]
		}
		d.Dead += counts[k][store.StateDead]
		d.Waiting += counts[k][store.StateWaiting]
		d.Kinds = append(d.Kinds, kc)
	}
	if c.opts.Sampler != nil {
		d.HaveChart = true
		d.Chart = buildChart(c.opts.Sampler.Points(), c.opts.Sampler.Interval())
	}
	if c.opts.EHR != nil {
		d.EHR = c.opts.EHR()
	}
	if d.Delivery.RateLimit != nil {
		d.RateText = fmt.Sprintf("%.1f requests/s", *d.Delivery.RateLimit)
	} else {
		d.RateText = "not limited"
	}
	oldest, ok, err := st.OldestPending(ctx)
	if err != nil {
		c.internalError(w, r, se, "reading the oldest pending record", err)
		return
	}
	if ok {
		d.OldestAge = c.now().Sub(oldest).Round(time.Second).String()
	}
	if d.Waiting > 0 {
		rows, err := st.List(ctx, store.StateWaiting, 0, 1)
		if err != nil {
			c.internalError(w, r, se, "listing waiting records", err)
			return
		}
		if len(rows) == 1 {
			wr, err := c.waitingRows(ctx, rows)
			if err != nil {
				c.internalError(w, r, se, "reading a dependency", err)
				return
			}
			d.Oldest = &wr[0]
		}
	}
	c.render(w, r, se, http.StatusOK, "overview", page{Title: "Overview", Nav: "overview", Refresh: OverviewRefresh, Data: d})
}

// kindOrder sorts kinds in dependency order, unknown kinds last.
func kindOrder(k string) string {
	for i, known := range kinds() {
		if k == known {
			return fmt.Sprint(i)
		}
	}
	return "9" + k
}
