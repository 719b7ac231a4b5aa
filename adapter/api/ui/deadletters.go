package ui

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ketamine-fhir/ketamine-fhir/adapter/store"
	"github.com/ketamine-fhir/ketamine-fhir/mapping"
)

// Dead-letter paging.
const (
	deadLetterPage = 50   // rows per page
	scanBatch      = 500  // rows per store.List call
	maxScan        = 5000 // rows one page request reads at most
)

// classRE is what an error class looks like ("http_422", "mapping").
var classRE = regexp.MustCompile(`^[a-z0-9_.-]{0,64}$`)

// filter selects dead letters by kind, error class and the day they died
// (UTC, both ends included).
type filter struct {
	Kind, Class, From, To string
	from, to              time.Time
}

// parseFilter reads a filter from form or query values; it returns a
// message naming the bad field.
func parseFilter(v url.Values) (filter, string) {
	f := filter{Kind: strings.TrimSpace(v.Get("kind")), Class: strings.TrimSpace(v.Get("class")),
		From: strings.TrimSpace(v.Get("from")), To: strings.TrimSpace(v.Get("to"))}
	if f.Kind != "" && !slices.Contains(kinds(), f.Kind) {
		return filter{}, "kind: not one of " + strings.Join(kinds(), ", ")
	}
	if !classRE.MatchString(f.Class) {
		return filter{}, "error class: at most 64 lower-case letters, digits and _ . -"
	}
	var err error
	if f.From != "" {
		if f.from, err = time.Parse(time.DateOnly, f.From); err != nil {
			return filter{}, "from: not a date (YYYY-MM-DD)"
		}
	}
	if f.To != "" {
		if f.to, err = time.Parse(time.DateOnly, f.To); err != nil {
			return filter{}, "to: not a date (YYYY-MM-DD)"
		}
		f.to = f.to.AddDate(0, 0, 1) // the whole day
	}
	if !f.from.IsZero() && !f.to.IsZero() && !f.from.Before(f.to) {
		return filter{}, "from: after to"
	}
	return f, ""
}

func (f filter) empty() bool { return f.Kind == "" && f.Class == "" && f.From == "" && f.To == "" }

func (f filter) match(r store.Record) bool {
	switch {
	case f.Kind != "" && r.Kind != f.Kind,
		f.Class != "" && r.ErrorClass != f.Class,
		!f.from.IsZero() && r.UpdatedAt.Before(f.from),
		!f.to.IsZero() && !r.UpdatedAt.Before(f.to):
		return false
	}
	return true
}

// query is the filter as URL query values (empty fields left out).
func (f filter) query() url.Values {
	q := url.Values{}
	for k, v := range map[string]string{"kind": f.Kind, "class": f.Class, "from": f.From, "to": f.To} {
		if v != "" {
			q.Set(k, v)
		}
	}
	return q
}

// scan reads dead letters with id > after that match f, by id, until it
// has want of them (0: no limit) or has read max rows (0: no limit). next
// is the after= of the following page, 0 at the end; capped says the scan
// stopped at max before filling the page.
func scan(ctx context.Context, st store.Store, f filter, after int64, want, max int) (rows []store.Record, next int64, capped bool, err error) {
	scanned := 0
	for {
		batch, err := st.List(ctx, store.StateDead, after, scanBatch)
		if err != nil {
			return nil, 0, false, err
		}
		for _, r := range batch {
			after = r.ID
			scanned++
			if f.match(r) {
				if want > 0 && len(rows) == want {
					return rows, rows[len(rows)-1].ID, false, nil
				}
				rows = append(rows, r)
			}
			if max > 0 && scanned >= max {
				return rows, after, true, nil
			}
		}
		if len(batch) < scanBatch {
			return rows, 0, false, nil
		}
	}
}

// issue is one issue of the EHR's OperationOutcome, as the engine keeps
// it in a dead row's ErrorDetail.
type issue struct {
	Severity    string   `json:"severity"`
	Code        string   `json:"code"`
	Details     string   `json:"details"`
	Diagnostics string   `json:"diagnostics"`
	Expression  []string `json:"expression"`
}

// outcome is a row's ErrorDetail: the EHR's status and issues, or a text.
type outcome struct {
	Status int
	Issues []issue
	Text   string
}

func parseDetail(detail string) outcome {
	if detail == "" {
		return outcome{}
	}
	var o struct {
		Status int     `json:"status"`
		Issues []issue `json:"issues"`
	}
	if err := json.Unmarshal([]byte(detail), &o); err == nil && (o.Status != 0 || len(o.Issues) > 0) {
		return outcome{Status: o.Status, Issues: o.Issues}
	}
	return outcome{Text: detail}
}

// rowView is an outbox row as a page shows it: never the payload, and no
// local id for a patient (it is the MRN).
type rowView struct {
	ID         int64
	Kind       string
	LocalID    string
	State      string
	ErrorClass string
	Attempts   int
	Updated    time.Time
	Outcome    outcome
}

func viewRow(r store.Record) rowView {
	v := rowView{ID: r.ID, Kind: r.Kind, State: string(r.State), ErrorClass: r.ErrorClass,
		Attempts: r.Attempts, Updated: r.UpdatedAt, Outcome: parseDetail(r.ErrorDetail)}
	if r.Kind != string(mapping.KindPatient) {
		v.LocalID = r.LocalID
	}
	return v
}

// deadLettersData is what the dead-letter page shows.
type deadLettersData struct {
	Filter    filter
	FilterErr string
	Rows      []rowView
	NextURL   string
	FirstURL  string
	Capped    bool
	Kinds     []string
	Classes   []string
	After     int64
}

// deadLetters is GET /ui/deadletters?kind=&class=&from=&to=&after=.
func (c *Console) deadLetters(w http.ResponseWriter, r *http.Request, se *session) {
	q := r.URL.Query()
	d := deadLettersData{Kinds: kinds()}
	f, msg := parseFilter(q)
	d.Filter = f
	p := page{Title: "Dead letters", Nav: "deadletters", Data: &d}
	if n := q.Get("requeued"); n != "" {
		if k, err := strconv.Atoi(n); err == nil {
			p.Flash = strconv.Itoa(k) + " dead letter(s) re-queued for delivery."
		}
	}
	if msg != "" {
		d.FilterErr = msg
		c.render(w, r, se, http.StatusBadRequest, "deadletters", p)
		return
	}
	if v := q.Get("after"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			d.FilterErr = "after: not an outbox id"
			c.render(w, r, se, http.StatusBadRequest, "deadletters", p)
			return
		}
		d.After = n
	}
	rows, next, capped, err := scan(r.Context(), c.b.Store(), f, d.After, deadLetterPage, maxScan)
	if err != nil {
		c.internalError(w, r, se, "listing dead letters", err)
		return
	}
	for _, row := range rows {
		d.Rows = append(d.Rows, viewRow(row))
	}
	d.Capped = capped
	if next != 0 {
		nq := f.query()
		nq.Set("after", strconv.FormatInt(next, 10))
		d.NextURL = Prefix + "/deadletters?" + nq.Encode()
	}
	if d.After != 0 {
		d.FirstURL = Prefix + "/deadletters?" + f.query().Encode()
	}
	c.render(w, r, se, http.StatusOK, "deadletters", p)
}

// kinds lists the record kinds for the filter.
func kinds() []string {
	return []string{string(mapping.KindPatient), string(mapping.KindOrder),
		string(mapping.KindAdministration), string(mapping.KindScore)}
}

// confirmData is what the retry confirmation page shows.
type confirmData struct {
	One     *rowView
	Filter  filter
	Count   int
	Capped  bool
	Hidden  [][2]string // form fields to send again
	BackURL string
}

// retry is POST /ui/retry: re-queue one dead letter (id) or every dead
// letter a filter matches. Without confirm=yes it shows what would be
// re-queued and asks; with it, it acts, logs who did it and goes back.
func (c *Console) retry(w http.ResponseWriter, r *http.Request, se *session) {
	ctx := r.Context()
	st := c.b.Store()
	confirmed := r.PostFormValue("confirm") == "yes"
	if v := r.PostFormValue("id"); v != "" {
		id, err := strconv.ParseInt(v, 10, 64)
		if err != nil || id < 1 {
			c.errorPage(w, r, se, http.StatusBadRequest, "id: not an outbox id.")
			return
		}
		row, err := st.GetByID(ctx, id)
		switch {
		case errors.Is(err, store.ErrNotFound) || (err == nil && row.State != store.StateDead):
			c.errorPage(w, r, se, http.StatusNotFound, "No dead letter has outbox id "+v+" (it may have been re-queued already).")
			return
		case err != nil:
			c.internalError(w, r, se, "reading the outbox", err)
			return
		}
		if !confirmed {
			rv := viewRow(row)
			c.render(w, r, se, http.StatusOK, "confirm", page{Title: "Confirm retry", Nav: "deadletters", Data: confirmData{
				One: &rv, Count: 1, Hidden: [][2]string{{"id", v}},
				BackURL: Prefix + "/records/" + v}})
			return
		}
		if err := st.Requeue(ctx, id, c.now()); err != nil {
			if errors.Is(err, store.ErrNotFound) {
				c.errorPage(w, r, se, http.StatusNotFound, "No dead letter has outbox id "+v+" (it may have been re-queued already).")
				return
			}
			c.internalError(w, r, se, "re-queueing a dead letter", err)
			return
		}
		c.b.Wake()
		c.log.Info("console: dead letter re-queued", "who", se.principal, "session", se.tag,
			"outbox_id", id, "kind", row.Kind, "request_id", reqID(w))
		http.Redirect(w, r, Prefix+"/records/"+v+"?requeued=1", http.StatusSeeOther)
		return
	}

	f, msg := parseFilter(r.PostForm)
	if msg != "" {
		c.errorPage(w, r, se, http.StatusBadRequest, "Filter: "+msg+".")
		return
	}
	if !confirmed {
		rows, _, capped, err := scan(ctx, st, f, 0, 0, 0)
		if err != nil {
			c.internalError(w, r, se, "counting dead letters", err)
			return
		}
		var hidden [][2]string
		for _, k := range []string{"kind", "class", "from", "to"} {
			if v := f.query().Get(k); v != "" {
				hidden = append(hidden, [2]string{k, v})
			}
		}
		c.render(w, r, se, http.StatusOK, "confirm", page{Title: "Confirm retry", Nav: "deadletters", Data: confirmData{
			Filter: f, Count: len(rows), Capped: capped, Hidden: hidden,
			BackURL: Prefix + "/deadletters?" + f.query().Encode()}})
		return
	}
	var n int
	if f.empty() {
		var err error
		if n, err = st.RequeueAll(ctx, c.now()); err != nil {
			c.internalError(w, r, se, "re-queueing dead letters", err)
			return
		}
	} else {
		rows, _, _, err := scan(ctx, st, f, 0, 0, 0)
		if err != nil {
			c.internalError(w, r, se, "listing dead letters", err)
			return
		}
		for _, row := range rows {
			switch err := st.Requeue(ctx, row.ID, c.now()); {
			case errors.Is(err, store.ErrNotFound): // no longer dead
			case err != nil:
				c.log.Info("console: dead letters re-queued before a failure", "who", se.principal, "session", se.tag,
					"count", n, "request_id", reqID(w))
				c.internalError(w, r, se, "re-queueing dead letters", err)
				return
			default:
				n++
			}
		}
	}
	c.b.Wake()
	c.log.Info("console: dead letters re-queued", "who", se.principal, "session", se.tag, "count", n,
		"filter_kind", f.Kind, "filter_class", f.Class, "filter_from", f.From, "filter_to", f.To, "request_id", reqID(w))
	http.Redirect(w, r, Prefix+"/deadletters?requeued="+strconv.Itoa(n), http.StatusSeeOther)
}
