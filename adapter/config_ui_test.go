package adapter

import "testing"

// TestConfigUIToken: api.ui_token is optional; when set it is long enough
// and not the API token, and KETAMINE_FHIR_API_UI_TOKEN overrides it.
func TestConfigUIToken(t *testing.T) {
	cfg, err := LoadConfig("", env(map[string]string{"KETAMINE_FHIR_API_UI_TOKEN": "console-token-0123456789"}))
	if err != nil {
		t.Fatalf("LoadConfig: %v", err)
	}
	if cfg.API.UIToken != "console-token-0123456789" {
		t.Errorf("api.ui_token from the environment: %q", cfg.API.UIToken)
	}
	requireProblem(t, configProblems(t, writeConfig(t, "api:\n  ui_token: short\n"), env(nil)), "api.ui_token", "16 characters")
	same := "api:\n  token: same-token-0123456789\n  ui_token: same-token-0123456789\n"
	requireProblem(t, configProblems(t, writeConfig(t, same), env(nil)), "api.ui_token", "differ from api.token")
}
