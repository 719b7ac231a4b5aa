package views

import (
	"bytes"
	"fmt"
	"runtime"
	"testing"
)

// benchViews are views shaped like the suite's (and like the built-in
// views to come): plain columns, forEach, forEachOrNull, where, reference
// keys and choice types.
var benchViews = map[string]string{
	"patient": `{"resource":"Patient","select":[
	  {"column":[
	    {"name":"key","path":"getResourceKey()","type":"string"},
	    {"name":"gender","path":"gender","type":"code"},
	    {"name":"birth_year","path":"birthDate.toString().substring(0, 4)","type":"string"}]},
	  {"forEachOrNull":"name","column":[
	    {"name":"family","path":"family","type":"string"},
	    {"name":"given","path":"given.join(' ')","type":"string"}]}]}`,
	"observation": `{"resource":"Observation","select":[
	  {"column":[
	    {"name":"key","path":"getResourceKey()","type":"string"},
	    {"name":"patient","path":"subject.getReferenceKey(Patient)","type":"string"},
	    {"name":"effective","path":"effective.ofType(dateTime)","type":"dateTime"},
	    {"name":"value","path":"value.ofType(Quantity).value","type":"decimal"}]},
	  {"forEach":"code.coding","column":[
	    {"name":"system","path":"system","type":"uri"},
	    {"name":"code","path":"code","type":"code"}]}]}`,
	"phq9_where": `{"resource":"Observation",
	  "constant":[{"name":"phq9","valueCode":"44261-6"}],
	  "where":[{"path":"code.coding.where(system = 'http://loinc.org' and code = %phq9).exists()"}],
	  "select":[{"column":[
	    {"name":"patient","path":"subject.getReferenceKey(Patient)","type":"string"},
	    {"name":"score","path":"value.ofType(Quantity).value","type":"decimal"}]}]}`,
}

// benchResources is a synthetic export: one Patient per ten Observations
// (PHQ-9 scores and blood pressures), as FHIR R4 JSON.
func benchResources(n int) [][]byte {
	out := make([][]byte, 0, n)
	for i := 0; len(out) < n; i++ {
		if i%11 == 0 {
			out = append(out, fmt.Appendf(nil, `{"resourceType":"Patient","id":"p%d","meta":{"lastUpdated":"2025-01-02T03:04:05Z"},`+
				`"identifier":[{"system":"urn:mrn","value":"MRN%06d"}],"active":true,`+
				`"name":[{"use":"official","family":"Family%d","given":["Given%d","Middle"]}],"gender":"female","birthDate":"19%02d-05-17"}`,
				i/11, i, i, i, 40+i%50))
			continue
		}
		code, display, value := "44261-6", "PHQ-9 total score", fmt.Sprint(i%28)
		if i%2 == 0 {
			code, display, value = "8480-6", "Systolic blood pressure", fmt.Sprint(100+i%60)
		}
		out = append(out, fmt.Appendf(nil, `{"resourceType":"Observation","id":"o%d","status":"final",`+
			`"category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"survey"}]}],`+
			`"code":{"coding":[{"system":"http://loinc.org","code":"%s","display":"%s"}]},`+
			`"subject":{"reference":"Patient/p%d"},"effectiveDateTime":"2025-03-%02dT10:00:00-05:00",`+
			`"valueQuantity":{"value":%s,"unit":"{score}","system":"http://unitsofmeasure.org","code":"{score}"}}`,
			i, code, display, i/11, 1+i%28, value))
	}
	return out
}

// BenchmarkView runs each view over a stream of synthetic resources of its
// type (Patients or Observations), so resources/s is the cost of a
// resource the view reads; one of another type costs only a parse and a
// type check.
//
//	go test ./mapping/views -run '^$' -bench BenchmarkView -benchmem
func BenchmarkView(b *testing.B) {
	resources := benchResources(1100)
	for _, name := range []string{"patient", "observation", "phq9_where"} {
		view := MustParse([]byte(benchViews[name]))
		typ := []byte(`"resourceType":"` + view.Resource() + `"`)
		var input [][]byte
		for _, r := range resources {
			if bytes.Contains(r, typ) {
				input = append(input, r)
			}
		}
		b.Run(name, func(b *testing.B) {
			rows := 0
			emit := func(Row) error { rows++; return nil }
			n := 0
			for b.Loop() {
				if err := view.Run(input[n%len(input)], emit); err != nil {
					b.Fatal(err)
				}
				n++
			}
			b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "resources/s")
			b.ReportMetric(float64(rows)/b.Elapsed().Seconds(), "rows/s")
		})
	}
}

// TestRunBoundedMemory: Run keeps nothing between resources, so the live
// heap after ten times as many resources is the same.
func TestRunBoundedMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("runs 11,000 resources")
	}
	resources := benchResources(1100)
	view := MustParse([]byte(benchViews["observation"]))
	discard := func(Row) error { return nil }
	heapAfter := func(n int) uint64 {
		for i := range n {
			if err := view.Run(resources[i%len(resources)], discard); err != nil {
				t.Fatal(err)
			}
		}
		var m runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	before := heapAfter(1000)
	after := heapAfter(10000)
	if after > before+1<<20 {
		t.Errorf("live heap grew from %d to %d bytes over 10,000 resources", before, after)
	}
}
