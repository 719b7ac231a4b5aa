package report_test

import (
	"bytes"
	"encoding/json"
	"regexp"
	"strings"
	"testing"

	"github.com/ketamine-fhir/ketamine-fhir/internal/testutil"
	"github.com/ketamine-fhir/ketamine-fhir/mapping"
	"github.com/ketamine-fhir/ketamine-fhir/mapping/outcomes"
	"github.com/ketamine-fhir/ketamine-fhir/mapping/outcomes/report"
	"github.com/ketamine-fhir/ketamine-fhir/mapping/synth"
)

type lookup map[string]*mapping.Order

func (lookup) Reference(mapping.Kind, string) string { return "" }
func (l lookup) Order(id string) *mapping.Order      { return l[id] }

// setup maps a generated clinic of n patients as `ketamine-fhir map`
// does, and returns its report and what the page must not show.
func setup(t *testing.T, n int, o outcomes.Options) (*outcomes.Report, *testutil.PHI) {
	t.Helper()
	m, err := mapping.NewMapper(mapping.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	lk := lookup{}
	c := outcomes.NewCollector(outcomes.DefaultCodes())
	phi := &testutil.PHI{}
	err = synth.Generate(synth.Options{Patients: n, Seed: 1}, func(rec *mapping.Record) error {
		if rec.Order != nil {
			lk[rec.Order.OrderID] = rec.Order
		}
		if p := rec.Patient; p != nil {
			phi.Values(p.MRN, p.BirthDate, p.Phone, p.Email)
			phi.Words(p.Family)
			phi.Words(p.Given...)
		}
		res, err := m.Map(rec, lk)
		if err != nil {
			return err
		}
		for _, r := range res {
			if err := c.Add(r.JSON); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return c.Compute(o), phi
}

// loaded matches what would make a browser fetch something: attributes
// that load a resource, elements that run or embed content, CSS imports
// and url().
var loaded = regexp.MustCompile(`(?i)\b(src|href|srcset|action|poster|data)\s*=|<\s*(script|link|iframe|img|object|embed|base|meta\s+http-equiv)|@import|url\(`)

// TestHTMLSelfContained: the page needs no network (nothing is loaded, the
// only URLs are SVG namespaces and code systems shown as text), carries
// its charts as inline SVG, states every definition with its source and
// shows no patient data.
func TestHTMLSelfContained(t *testing.T) {
	n := 60
	if raceEnabled {
		n = 25
	}
	rep, phi := setup(t, n, outcomes.Options{})
	var b bytes.Buffer
	if err := report.HTML(&b, rep); err != nil {
		t.Fatal(err)
	}
	page := b.String()
	if !strings.HasPrefix(page, "<!DOCTYPE html>") || !strings.Contains(page, "<style>") || !strings.HasSuffix(strings.TrimSpace(page), "</html>") {
		t.Errorf("not a whole HTML page with inline CSS")
	}
	if m := loaded.FindAllString(page, -1); len(m) > 0 {
		t.Errorf("the page loads resources: %q", m)
	}
	// PHQ-9 and MADRS trajectories and blood pressure.
	if n := strings.Count(page, "<svg"); n != 3 {
		t.Errorf("%d inline SVG charts, want 3", n)
	}
	if strings.Count(page, "</svg>") != strings.Count(page, "<svg") {
		t.Errorf("an SVG chart is not closed")
	}
	if strings.Contains(page, "<?xml") {
		t.Errorf("an XML prolog inside the HTML")
	}
	urls := regexp.MustCompile(`https?://[^\s"'<|]+`).FindAllString(page, -1)
	for _, u := range urls {
		switch u {
		case "http://www.w3.org/2000/svg", "http://www.w3.org/1999/xlink", "http://loinc.org", "https://clinic.example.org/fhir/sid/instrument":
		default:
			t.Errorf("unexpected URL %q on the page", u)
		}
	}
	for _, d := range rep.Definitions {
		if !strings.Contains(page, template(d.Text)) || !strings.Contains(page, template(d.Source)) {
			t.Errorf("definition %s or its source is not on the page", d.ID)
		}
	}
	for _, want := range []string{"CMS159", "NQF 1884", "Zimmerman", "per 100 sessions", "Sessions to first response", "End of the induction series", "12 weeks after the first session"} {
		if !strings.Contains(page, want) {
			t.Errorf("the page does not mention %q", want)
		}
	}
	if phi.Len() == 0 || len(phi.Find("MRN0000001")) == 0 {
		t.Fatal("the PHI checker finds nothing")
	}
	phi.Check(t, "the HTML report", page)
	var j bytes.Buffer
	if err := report.JSON(&j, rep); err != nil {
		t.Fatal(err)
	}
	phi.Check(t, "the JSON report", j.String())
}

// template escapes s as html/template does in text.
func template(s string) string {
	r := strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&#34;", "'", "&#39;", "+", "&#43;")
	return r.Replace(s)
}

// TestHTMLSuppressed: a clinic below the minimum cell size shows no figure,
// only "suppressed (n < 11)", and draws no chart.
func TestHTMLSuppressed(t *testing.T) {
	rep, _ := setup(t, 6, outcomes.Options{})
	var b bytes.Buffer
	if err := report.HTML(&b, rep); err != nil {
		t.Fatal(err)
	}
	page := b.String()
	if !strings.Contains(page, "suppressed (n &lt; 11)") {
		t.Errorf("the page does not say what is suppressed")
	}
	if strings.Contains(page, "<svg") {
		t.Errorf("a chart of suppressed figures")
	}
	if regexp.MustCompile(`IQR \d|\d\.\d% \(`).MatchString(page) {
		t.Errorf("a median or a rate of a suppressed cohort is on the page")
	}
	var j bytes.Buffer
	if err := report.JSON(&j, rep); err != nil {
		t.Fatal(err)
	}
	var back outcomes.Report
	if err := json.Unmarshal(j.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	if !back.Suppressed || back.Patients != nil || back.Schema != outcomes.Schema {
		t.Errorf("JSON: suppressed %v, patients %v, schema %q", back.Suppressed, back.Patients, back.Schema)
	}
}
