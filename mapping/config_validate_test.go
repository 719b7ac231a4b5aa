package mapping

import (
	"errors"
	"strings"
	"testing"
)

func TestDefaultConfigIsValid(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestConfigValidate(t *testing.T) {
	cases := []struct {
		name   string
		change func(c *Config)
		want   []string
	}{
		{"empty base", func(c *Config) { c.Identifiers.Base = "" }, []string{"identifiers.base: empty"}},
		{"relative base", func(c *Config) { c.Identifiers.Base = "clinic/sid" }, []string{`identifiers.base: not an absolute URI: "clinic/sid"`}},
		{"base with trailing slash", func(c *Config) { c.Identifiers.Base = "https://clinic.example.org/sid/" }, []string{`identifiers.base: must not end with "/"`}},
		{"base with pipe", func(c *Config) { c.Identifiers.Base = "https://clinic.example.org/a|b" }, []string{`identifiers.base: must not contain spaces or "|": "https://clinic.example.org/a|b"`}},
		{"base with query", func(c *Config) { c.Identifiers.Base = "https://clinic.example.org/sid?x=1" }, []string{`identifiers.base: must not have a query or fragment: "https://clinic.example.org/sid?x=1"`}},
		{"base without host", func(c *Config) { c.Identifiers.Base = "https:///sid" }, []string{`identifiers.base: no host: "https:///sid"`}},
		{"urn base", func(c *Config) { c.Identifiers.Base = "urn:oid:2.16.840.1.113883.3.9999" }, nil},
		{"bad clinic code system", func(c *Config) { c.Identifiers.ClinicCodeSystem = "instrument" }, []string{`identifiers.clinic_code_system: not an absolute URI: "instrument"`}},
		{"empty formulary", func(c *Config) { c.Formulary = nil }, []string{"formulary: empty: at least one product is needed"}},
		{"bad route", func(c *Config) {
			p := c.Formulary["ketamine-10mg-ml"]
			p.Routes = []string{"XX", "IM", "IM"}
			c.Formulary["ketamine-10mg-ml"] = p
		}, []string{`formulary.ketamine-10mg-ml.routes[0]: unknown route "XX"`, `formulary.ketamine-10mg-ml.routes[2]: repeated route "IM"`}},
		{"bad product", func(c *Config) {
			c.Formulary["ketamine 5"] = Product{RxNorm: "RX1", NDC: "123", StrengthMg: -1, Form: "pill", Ingredient: "ketamin"}
		}, []string{
			`formulary."ketamine 5".display: empty`,
			`formulary."ketamine 5".rxnorm: not an RxNorm code (RxCUI digits): "RX1"`,
			`formulary."ketamine 5".ndc: not an NDC (4-4, 5-3, 5-4 digits, optional package): "123"`,
			`formulary."ketamine 5".ingredient: unknown ingredient "ketamin" (ketamine or esketamine)`,
			`formulary."ketamine 5".strength_mg: must be positive`,
			`formulary."ketamine 5".strength_per_ml: must be positive`,
			`formulary."ketamine 5".form: unknown form "pill" (injection-solution or nasal-spray)`,
			`formulary."ketamine 5".routes: empty: at least one route is needed`,
		}},
		{"product code with space", func(c *Config) {
			c.Formulary[" k"] = c.Formulary["ketamine-10mg-ml"]
		}, []string{`formulary." k": code with leading or trailing space or a control character`}},
		{"adverse event without display", func(c *Config) { c.AdverseEvents["itching"] = " " }, []string{"adverse_events.itching: empty display"}},
		// not_done_reason is optional (DESIGN.md section 2), so a clinic
		// may configure no codes, as it may configure no adverse events.
		{"no not-done reasons", func(c *Config) { c.NotDoneReasons = map[string]string{} }, nil},
		{"no adverse events", func(c *Config) { c.AdverseEvents = nil }, nil},
		{"limits", func(c *Config) { c.Limits = Limits{MaxDoseMg: 0, MaxDoseMgPerKg: -1, ClockSkewSeconds: -5} }, []string{
			"limits.max_dose_mg: must be positive", "limits.max_dose_mg_per_kg: must be positive", "limits.clock_skew_seconds: must not be negative"}},
		{"zero skew", func(c *Config) { c.Limits.ClockSkewSeconds = 0 }, nil},
		{"unknown time zone", func(c *Config) { c.TimeZone = "Mars/Olympus" }, []string{`time_zone: unknown time zone "Mars/Olympus"`}},
		{"local time zone", func(c *Config) { c.TimeZone = "Local" }, []string{`time_zone: "Local" depends on the host: name an IANA zone`}},
		{"empty time zone", func(c *Config) { c.TimeZone = "" }, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultConfig()
			tc.change(c)
			err := c.Validate()
			if tc.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("error %v, want a *ConfigError", err)
			}
			if strings.Join(ce.Problems, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("problems\n%s\nwant\n%s", strings.Join(ce.Problems, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}

func TestConfigValidateReportsEverything(t *testing.T) {
	c := &Config{}
	err := c.Validate()
	var ce *ConfigError
	if !errors.As(err, &ce) {
		t.Fatalf("error %v", err)
	}
	for _, key := range []string{"identifiers.base", "formulary", "limits.max_dose_mg", "limits.max_dose_mg_per_kg"} {
		if !strings.Contains(err.Error(), key+": ") {
			t.Errorf("%q does not name %s", err, key)
		}
	}
	if len(ce.Problems) != 4 {
		t.Errorf("problems %q", ce.Problems)
	}
}
