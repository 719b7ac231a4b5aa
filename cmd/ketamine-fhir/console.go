package main

import (
	"fmt"
	"net/url"
	"strings"

	"github.com/ketamine-fhir/ketamine-fhir/adapter"
	"github.com/ketamine-fhir/ketamine-fhir/adapter/api"
	"github.com/ketamine-fhir/ketamine-fhir/adapter/api/ui"
)

// consoleEHR adapts the EHR prober's last result for the console.
func consoleEHR(p *api.EHRProber) func() ui.EHRState {
	return func() ui.EHRState {
		st := p.Status()
		out := ui.EHRState{Reachable: st.Reachable, ErrorClass: st.ErrorClass}
		if st.CheckedAt != nil {
			out.Checked, out.CheckedAt = true, *st.CheckedAt
		}
		return out
	}
}

// consoleSettings is the config summary the console's overview shows:
// what an operator checks first, with no secret (no token, password,
// key, or user info or query of a URL).
func consoleSettings(cfg *adapter.Config) []ui.Setting {
	storeKind, _, _ := strings.Cut(cfg.Store, ":")
	writes := "conditional-update"
	if s, ok := cfg.EHR.WriteStrategy["default"]; ok && s != "" {
		writes = s
	}
	maxRate := "no cap"
	if cfg.EHR.MaxRate > 0 {
		maxRate = fmt.Sprintf("%g requests/s", cfg.EHR.MaxRate)
	}
	uiToken := "not set (sign in with api.token)"
	if cfg.API.UIToken != "" {
		uiToken = "set"
	}
	return []ui.Setting{
		{Key: "store", Value: storeKind},
		{Key: "ehr.base_url", Value: redactURL(cfg.EHR.BaseURL)},
		{Key: "ehr.auth.mode", Value: cfg.EHR.Auth.Mode},
		{Key: "ehr.write_strategy (default)", Value: writes},
		{Key: "ehr.max_rate", Value: maxRate},
		{Key: "patients.create", Value: fmt.Sprint(cfg.Patients.Create)},
		{Key: "sync.concurrency", Value: fmt.Sprint(cfg.Sync.Concurrency)},
		{Key: "api.addr", Value: cfg.API.Addr},
		{Key: "api.tls", Value: fmt.Sprint(cfg.API.TLSCert != "")},
		{Key: "api.ui_token", Value: uiToken},
	}
}

// redactURL keeps a URL's scheme, host and path: user info and the query
// may hold secrets.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		return "(not a URL)"
	}
	return (&url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}).String()
}
