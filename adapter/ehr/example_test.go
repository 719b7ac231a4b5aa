package ehr_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"

	"github.com/ketamine-fhir/ketamine-fhir/adapter/ehr"
)

// A conditional update by business identifier, then a rejected write.
func Example() {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			w.WriteHeader(http.StatusUnprocessableEntity)
			io.WriteString(w, `{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"required","diagnostics":"Observation.status missing","expression":["Observation.status"]}]}`)
			return
		}
		w.Header().Set("Location", "http://"+r.Host+"/fhir/R4/Observation/obs-1/_history/2")
		w.WriteHeader(http.StatusCreated)
	}))
	defer srv.Close()

	c, err := ehr.New(ehr.Config{BaseURL: srv.URL + "/fhir/R4"})
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx := context.Background()
	resp, err := c.Do(ctx, ehr.Request{
		Method:       http.MethodPut,
		Path:         "Observation?identifier=https%3A%2F%2Fclinic.example%2Fscore%7Cs-17",
		ResourceType: "Observation",
		Body:         []byte(`{"resourceType":"Observation","status":"final"}`),
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(resp.Status, resp.ID, resp.Version)

	_, err = c.Do(ctx, ehr.Request{Method: http.MethodPost, Path: "Observation", ResourceType: "Observation", Body: []byte(`{}`)})
	fmt.Println(err)
	fmt.Println(ehr.Classify(err), ehr.Reason(err))
	// Output:
	// 201 obs-1 2
	// ehr: POST Observation rejected: 422 (1 issue: error required at Observation.status)
	// permanent http_422
}
