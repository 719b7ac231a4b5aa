package fhirtest

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
)

// TestValidationIssueOrder checks that the issues of a 422 come in one
// order, sorted by expression, although google/fhir/go finds them in map
// order (which made "every problem is reported" flaky).
func TestValidationIssueOrder(t *testing.T) {
	t.Parallel()
	_, c := setup(t)
	var members, want []string
	for i := 12; i >= 1; i-- { // Patient.x1 ... Patient.x12, sent in reverse
		members = append(members, fmt.Sprintf(`"x%d":%d`, i, i))
	}
	for i := 1; i <= 12; i++ {
		want = append(want, fmt.Sprintf("Patient.x%d", i))
	}
	body := `{"resourceType":"Patient",` + strings.Join(members, ",") + `}`
	for run := 0; run < 20; run++ {
		r := c.do("POST", "/Patient", body)
		if r.status != 422 {
			t.Fatalf("status %d: %s", r.status, r.body)
		}
		var oo struct {
			Issue []issue `json:"issue"`
		}
		if err := json.Unmarshal(r.body, &oo); err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, is := range oo.Issue {
			got = append(got, strings.Join(is.Expression, ","))
		}
		if !slices.Equal(got, want) {
			t.Fatalf("run %d: issue expressions %v, want %v", run, got, want)
		}
	}
}

func TestSortIssues(t *testing.T) {
	t.Parallel()
	in := []issue{
		{Code: "structure", Diagnostics: "b", Expression: []string{"Bundle.entry[10].resource"}},
		{Code: "value", Expression: []string{"Bundle.entry[2].resource.status"}},
		{Code: "structure", Diagnostics: "a", Expression: []string{"Bundle.entry[10].resource"}},
		{Code: "invariant", Expression: []string{"Bundle.entry[2].resource.status"}},
		{Code: "required"},
		{Code: "structure", Expression: []string{"Bundle.entry[2].resource"}},
	}
	sortIssues(in)
	var got []string
	for _, is := range in {
		got = append(got, strings.Join(is.Expression, ",")+" "+is.Code+" "+is.Diagnostics)
	}
	want := []string{
		" required ",
		"Bundle.entry[2].resource structure ",
		"Bundle.entry[2].resource.status invariant ",
		"Bundle.entry[2].resource.status value ",
		"Bundle.entry[10].resource structure a",
		"Bundle.entry[10].resource structure b",
	}
	if !slices.Equal(got, want) {
		t.Errorf("sorted\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestComparePaths(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		a, b string
		want int
	}{
		{"Patient.a", "Patient.b", -1},
		{"entry[2]", "entry[10]", -1},
		{"entry[10]", "entry[10]", 0},
		{"entry[010]", "entry[10]", 1}, // equal numbers: the shorter text first
		{"entry[1]", "entry[1].resource", -1},
		{"x9y", "x10a", -1},
		{"", "a", -1},
	} {
		if got := comparePaths(tc.a, tc.b); got != tc.want {
			t.Errorf("comparePaths(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
		if got := comparePaths(tc.b, tc.a); got != -tc.want {
			t.Errorf("comparePaths(%q, %q) = %d, want %d", tc.b, tc.a, got, -tc.want)
		}
	}
}
