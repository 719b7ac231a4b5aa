package mapping

import (
	"fmt"
	"math"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Validate checks c and returns nil or a *ConfigError listing every
// problem, each naming its key as in the YAML file, for example
// `formulary.ketamine-10mg-ml.routes[0]: unknown route "XX"`.
//
// It checks: identifiers.base (and clinic_code_system when set) is an
// absolute URI without query, fragment, spaces or "|" (base also without a
// trailing "/"); the formulary is not empty and each product has a code
// usable in records, a display, a known ingredient and form, positive
// strengths, known routes without repeats, and an RxNorm code and NDC of
// the right shape when given; the adverse_events and not_done_reasons
// codes are usable in records and have a display (either list may be
// empty: not_done_reason is optional); the limits are positive (the clock
// skew may be 0); time_zone is an IANA zone name known to this system (""
// means UTC).
func (c *Config) Validate() error {
	var v configValidator
	v.uri("identifiers.base", c.Identifiers.Base, true)
	if strings.HasSuffix(c.Identifiers.Base, "/") {
		v.add("identifiers.base", `must not end with "/"`)
	}
	v.uri("identifiers.clinic_code_system", c.Identifiers.ClinicCodeSystem, false)

	if len(c.Formulary) == 0 {
		v.add("formulary", "empty: at least one product is needed")
	}
	for _, code := range sortedConfigKeys(c.Formulary) {
		v.product("formulary."+safeText(code, 64), code, c.Formulary[code])
	}

	for _, code := range sortedConfigKeys(c.AdverseEvents) {
		key := "adverse_events." + safeText(code, 64)
		v.code(key, code)
		if strings.TrimSpace(c.AdverseEvents[code]) == "" {
			v.add(key, "empty display")
		}
	}
	for _, code := range sortedConfigKeys(c.NotDoneReasons) {
		key := "not_done_reasons." + safeText(code, 64)
		v.code(key, code)
		if strings.TrimSpace(c.NotDoneReasons[code]) == "" {
			v.add(key, "empty display")
		}
	}

	v.positive("limits.max_dose_mg", c.Limits.MaxDoseMg)
	v.positive("limits.max_dose_mg_per_kg", c.Limits.MaxDoseMgPerKg)
	if c.Limits.ClockSkewSeconds < 0 {
		v.add("limits.clock_skew_seconds", "must not be negative")
	}

	switch tz := c.TimeZone; {
	case tz == "":
	case tz == "Local":
		v.add("time_zone", `"Local" depends on the host: name an IANA zone`)
	default:
		if _, err := time.LoadLocation(tz); err != nil {
			v.add("time_zone", fmt.Sprintf("unknown time zone %q", tz))
		}
	}
	if len(v.problems) > 0 {
		return &ConfigError{Problems: v.problems}
	}
	return nil
}

// configValidator collects the problems of a Config.
type configValidator struct {
	problems []string
}

func (v *configValidator) add(key, reason string) {
	v.problems = append(v.problems, key+": "+reason)
}

// uri checks an identifier system URI.
func (v *configValidator) uri(key, s string, required bool) {
	if s == "" {
		if required {
			v.add(key, "empty")
		}
		return
	}
	u, err := url.Parse(s)
	switch {
	case err != nil || u.Scheme == "":
		v.add(key, fmt.Sprintf("not an absolute URI: %q", s))
	case strings.ContainsAny(s, " \t\r\n|"):
		v.add(key, fmt.Sprintf(`must not contain spaces or "|": %q`, s))
	case u.RawQuery != "" || u.Fragment != "" || strings.ContainsAny(s, "?#"):
		v.add(key, fmt.Sprintf("must not have a query or fragment: %q", s))
	case (u.Scheme == "http" || u.Scheme == "https") && u.Host == "":
		v.add(key, fmt.Sprintf("no host: %q", s))
	}
}

// code checks a local code used as a map key: it must be usable in a
// record field (an id-like string).
func (v *configValidator) code(key, code string) {
	switch {
	case code == "":
		v.add(key, "empty code")
	case len(code) > DefaultMaxFieldBytes:
		v.add(key, "code longer than "+strconv.Itoa(DefaultMaxFieldBytes)+" bytes")
	case strings.TrimSpace(code) != code || strings.ContainsFunc(code, func(r rune) bool { return r < ' ' || r == 0x7f }):
		v.add(key, "code with leading or trailing space or a control character")
	}
}

func (v *configValidator) positive(key string, x float64) {
	if !(x > 0) || math.IsInf(x, 0) {
		v.add(key, "must be positive")
	}
}

var (
	rxNormPattern      = regexp.MustCompile(`^[0-9]{1,10}$`)
	ndcPattern         = regexp.MustCompile(`^[0-9]{4,5}-[0-9]{3,4}(-[0-9]{1,2})?$`)
	productForms       = stringSet("injection-solution", "nasal-spray")
	productIngredients = stringSet("ketamine", "esketamine")
)

func (v *configValidator) product(key, code string, p Product) {
	v.code(key, code)
	if strings.TrimSpace(p.Display) == "" {
		v.add(key+".display", "empty")
	}
	if p.RxNorm != "" && !rxNormPattern.MatchString(p.RxNorm) {
		v.add(key+".rxnorm", fmt.Sprintf("not an RxNorm code (RxCUI digits): %q", p.RxNorm))
	}
	if p.NDC != "" && !ndcPattern.MatchString(p.NDC) {
		v.add(key+".ndc", fmt.Sprintf("not an NDC (4-4, 5-3, 5-4 digits, optional package): %q", p.NDC))
	}
	if !productIngredients[p.Ingredient] {
		v.add(key+".ingredient", fmt.Sprintf("unknown ingredient %q (ketamine or esketamine)", p.Ingredient))
	}
	v.positive(key+".strength_mg", p.StrengthMg)
	v.positive(key+".strength_per_ml", p.StrengthPerML)
	if !productForms[p.Form] {
		v.add(key+".form", fmt.Sprintf("unknown form %q (injection-solution or nasal-spray)", p.Form))
	}
	if len(p.Routes) == 0 {
		v.add(key+".routes", "empty: at least one route is needed")
	}
	for i, r := range p.Routes {
		rk := key + ".routes[" + strconv.Itoa(i) + "]"
		switch {
		case !routeCodes[r]:
			v.add(rk, fmt.Sprintf("unknown route %q", r))
		case slices.Contains(p.Routes[:i], r):
			v.add(rk, fmt.Sprintf("repeated route %q", r))
		}
	}
}

func sortedConfigKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
