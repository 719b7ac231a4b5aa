package adapter

import (
	"bytes"
	"errors"
	"fmt"
	"net/url"
	"os"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/ketamine-fhir/ketamine-fhir/adapter/ehr"
	"github.com/ketamine-fhir/ketamine-fhir/mapping"
)

// EnvPrefix prefixes the environment variables that override config keys:
// ehr.base_url is overridden by KETAMINE_FHIR_EHR_BASE_URL.
const EnvPrefix = "KETAMINE_FHIR_"

// Config is the adapter's whole configuration, one YAML file documented
// field by field in configs/default.yaml. Start from DefaultConfig (or
// LoadConfig, which starts from it) so unset keys keep their defaults.
type Config struct {
	// Store is where the outbox lives: "sqlite:PATH" or "postgres://...".
	// Defaults to "sqlite:ketamine-fhir.db".
	Store string `yaml:"store"`
	// Postgres tunes the PostgreSQL outbox (store: postgres://...).
	Postgres PostgresConfig `yaml:"postgres"`
	// EHR is the receiving EHR and how to talk to it.
	EHR EHRConfig `yaml:"ehr"`
	// Patients says what to do with patients unknown to the EHR.
	Patients PatientsConfig `yaml:"patients"`
	// Sync tunes delivery.
	Sync SyncConfig `yaml:"sync"`
	// API configures the HTTP API of `serve`.
	API APIConfig `yaml:"api"`
	// Log configures logging.
	Log LogConfig `yaml:"log"`
	// Report configures `report outcomes`.
	Report ReportConfig `yaml:"report"`
	// Mapping holds the clinic's identifier systems, formulary, code lists,
	// limits and time zone; its keys sit at the top level of the file.
	Mapping mapping.Config `yaml:",inline"`
}

// EHRConfig describes the receiving EHR.
type EHRConfig struct {
	// BaseURL is the EHR's FHIR base. Defaults to
	// "http://127.0.0.1:8090/fhir/R4" (`ketamine-fhir ehr`).
	BaseURL string `yaml:"base_url"`
	// Timeout bounds one HTTP attempt. Defaults to 30s.
	Timeout Duration `yaml:"timeout"`
	// AnswerTimeoutMin: an attempt whose answer takes much longer than
	// answers to the same kind of request usually do (their mean plus
	// four deviations) is taken for lost and tried again, each time
	// waiting twice as long, up to Timeout; this is the least it waits.
	// 0 turns it off: every attempt waits up to Timeout. Defaults to 1s.
	AnswerTimeoutMin Duration `yaml:"answer_timeout_min"`
	// RetryMax is how many times a request is tried again in memory (in
	// the pipeline's delayed set, holding no worker) since the record's
	// last request that went through, before the record goes back to the
	// outbox, where a retry starts the record over. 0 means none. Defaults
	// to 8.
	RetryMax int `yaml:"retry_max"`
	// RetryWaitMin is the first wait before a request the EHR gave no
	// Retry-After is tried again in memory (doubling per such try in a
	// row, with jitter, up to RetryWaitMax; a RetryWaitMin above
	// RetryWaitMax means RetryWaitMax). Defaults to 250ms.
	RetryWaitMin Duration `yaml:"retry_wait_min"`
	// RetryWaitMax caps the backoff between short retries and any
	// Retry-After the EHR asks for: a longer wait sends the record back to
	// the outbox. Defaults to 30s.
	RetryWaitMax Duration `yaml:"retry_wait_max"`
	// Auth says how to authenticate.
	Auth AuthConfig `yaml:"auth"`
	// TLS adds mutual TLS and a CA bundle, with any auth mode.
	TLS EHRTLSConfig `yaml:"tls"`
	// WriteStrategy maps a FHIR resource type (or "default") to
	// "conditional-update", "conditional-create" or "transaction". Defaults
	// to conditional-update for every type.
	WriteStrategy map[string]string `yaml:"write_strategy"`
	// TransactionSize is the most entries one transaction Bundle carries
	// (write strategy transaction). Defaults to 50.
	TransactionSize int `yaml:"transaction_size"`
	// TransactionLinger is how long a patient's Bundle waits to fill up
	// before it is sent anyway (a Patient's own row goes at once: nothing
	// can join it). Defaults to 20ms.
	TransactionLinger Duration `yaml:"transaction_linger"`
	// MaxRate caps the requests per second sent to the EHR (its API
	// gateway's limit, say); the pacer starts from it. 0 means no cap: the
	// pacer starts at 10 requests per second and doubles the rate while
	// the EHR keeps up (slow start), finding a rate limit from 429
	// answers. Defaults to 0.
	MaxRate float64 `yaml:"max_rate"`
	// PauseThreshold: a Retry-After longer than this (an outage, a
	// maintenance window) pauses every request until it ends; a shorter one
	// holds back only the request that got it. Defaults to 30s.
	PauseThreshold Duration `yaml:"pause_threshold"`
}

// AuthConfig says how to authenticate to the EHR. Secrets accept ${ENV}
// and file: references.
type AuthConfig struct {
	// Mode is "none", "bearer", "client-secret" or "smart-backend".
	// Defaults to "none".
	Mode string `yaml:"mode"`
	// Token is the static bearer token (mode bearer). Secret.
	Token string `yaml:"token" secret:"true"`
	// ClientID is the OAuth2 client id.
	ClientID string `yaml:"client_id"`
	// ClientSecret is the OAuth2 client secret (mode client-secret). Secret.
	ClientSecret string `yaml:"client_secret" secret:"true"`
	// PrivateKey is the PEM private key (mode smart-backend), normally a
	// file: reference. Secret.
	PrivateKey string `yaml:"private_key" secret:"true"`
	// PrivateKey may hold several keys (a rotation): the first signs,
	// all are published at api.jwks_path.
	//
	// KeyID is the "kid" of the first key, as registered with the EHR.
	// Defaults to its RFC 7638 thumbprint, the kid `keys generate` writes.
	KeyID string `yaml:"key_id"`
	// Scopes are space-separated scopes, e.g. "system/*.write".
	Scopes string `yaml:"scopes"`
	// TokenURL is the OAuth2 token endpoint of modes client-secret and
	// smart-backend. It may be empty: the EHR client (adapter/ehr) then
	// reads token_endpoint from BaseURL + "/.well-known/smart-configuration"
	// at its first token request and keeps it for the life of the process;
	// a failed discovery is tried again at the next token request.
	TokenURL string `yaml:"token_url"`
}

// EHRTLSConfig configures TLS to the EHR. The files are re-read when
// they change (renewed certificates), without a restart.
type EHRTLSConfig struct {
	// ClientCert and ClientKey are PEM files of the client certificate
	// and key for mutual TLS; set both or neither.
	ClientCert string `yaml:"client_cert"`
	ClientKey  string `yaml:"client_key"`
	// CABundle is a PEM file of the CAs trusted for the EHR's certificate
	// instead of the system roots.
	CABundle string `yaml:"ca_bundle"`
}

// PatientsConfig says what to do with a patient the EHR does not know.
type PatientsConfig struct {
	// Create creates unknown patients in the EHR (true) or holds their
	// records as waiting until the EHR knows the MRN (false). Defaults to
	// true.
	Create bool `yaml:"create"`
}

// SyncConfig tunes delivery.
type SyncConfig struct {
	// Concurrency is the most requests in flight to the EHR. Defaults to 8.
	Concurrency int `yaml:"concurrency"`
	// BatchSize is how many rows one claim leases. Defaults to 64.
	BatchSize int `yaml:"batch_size"`
	// Lease is how long a claimed row stays leased; a crashed worker's rows
	// come back after it. Defaults to 2m.
	Lease Duration `yaml:"lease"`
	// RetryMin and RetryBackoffMax bound the outbox backoff between
	// attempts of a record (doubling from RetryMin, with jitter). Defaults
	// to 1s and 5m. RetryBackoffMax was sync.retry_max, a name that
	// ehr.retry_max (a count) also has; the old key is an error that names
	// the new one.
	RetryMin        Duration `yaml:"retry_min"`
	RetryBackoffMax Duration `yaml:"retry_backoff_max"`
	// Deadline bounds one `sync` run; 0 means until nothing is pending or
	// retrying. Defaults to 0.
	Deadline Duration `yaml:"deadline"`
	// PollInterval is how often `serve` looks for new work when idle.
	// Defaults to 1s.
	PollInterval Duration `yaml:"poll_interval"`
	// HeldRecheck is how often `serve` re-checks records held for a patient
	// the EHR does not know. Defaults to 15m.
	HeldRecheck Duration `yaml:"held_recheck"`
	// ShutdownTimeout bounds the wait for in-flight deliveries on SIGTERM.
	// Defaults to 30s.
	ShutdownTimeout Duration `yaml:"shutdown_timeout"`
	// AuthProbe is how often `serve`, paused because the EHR refused the
	// adapter's authorization, tries one record to see whether it works
	// again. Defaults to 30s.
	AuthProbe Duration `yaml:"auth_probe"`
	// StaleDerived says what happens to a derived resource (a vital-sign
	// or adverse-event Observation) that a record's new version no longer
	// produces: "entered-in-error" marks it so in the EHR, "delete"
	// deletes it. Defaults to "entered-in-error".
	StaleDerived string `yaml:"stale_derived"`
}

// APIConfig configures the HTTP API of `serve`.
type APIConfig struct {
	// Addr is where the API listens. Defaults to "127.0.0.1:8080".
	Addr string `yaml:"addr"`
	// Token is the bearer token every /v1 call must carry. Secret; required
	// by serve.
	Token string `yaml:"token" secret:"true"`
	// UIToken is a second secret that signs in to the operator console at
	// /ui only (the API token signs in too), so that console users need
	// not hold the API token. Secret; optional. Defaults to "" (only
	// api.token signs in).
	UIToken string `yaml:"ui_token" secret:"true"`
	// MaxBodyBytes caps a request body. Defaults to 10 MiB.
	MaxBodyBytes int64 `yaml:"max_body_bytes"`
	// TLSCert and TLSKey are PEM files; both set turns TLS on.
	TLSCert string `yaml:"tls_cert"`
	TLSKey  string `yaml:"tls_key"`
	// JWKSPath, when set, is where serve publishes the public JWK Set of
	// ehr.auth.private_key (every key of a rotation), unauthenticated, for
	// an EHR that registers the client by JWKS URL. E.g.
	// "/.well-known/jwks.json". Empty publishes nothing.
	JWKSPath string `yaml:"jwks_path"`
	// ReadyTimeout bounds the store check of /readyz and each probe of
	// the EHR. Defaults to 2s.
	ReadyTimeout Duration `yaml:"ready_timeout"`
	// EHRProbeInterval is how often serve checks that the EHR answers (for
	// /v1/status and ketamine_fhir_ehr_up; not for /readyz). Defaults to
	// 30s.
	EHRProbeInterval Duration `yaml:"ehr_probe_interval"`
}

// LogConfig configures logging.
type LogConfig struct {
	// Format is "json", "text" or "auto" (text on a terminal, JSON
	// otherwise). Defaults to "auto".
	Format string `yaml:"format"`
	// Level is "debug", "info", "warn" or "error". Defaults to "info".
	Level string `yaml:"level"`
}

// ReportConfig configures the outcomes report (`report outcomes`).
type ReportConfig struct {
	// MinCell is the smallest count of patients the report shows; smaller
	// cells (and cells they could be derived from) are suppressed. At
	// least 1. Defaults to 11.
	MinCell int `yaml:"min_cell"`
	// MADRSRemission is the highest MADRS total counted as remission, 1 to
	// 60. Defaults to 10 (Zimmerman et al. 2004); the esketamine phase-3
	// trials used 12.
	MADRSRemission int `yaml:"madrs_remission"`
}

// Duration is a time.Duration written as "30s" in YAML.
type Duration time.Duration

// UnmarshalYAML reads a Go duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return err
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		// A *yaml.TypeError lets the decoder go on and report the other
		// problems of the file too.
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: %q is not a duration (like 30s or 5m)", n.Line, s)}}
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML writes the duration as a string.
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// DefaultConfig returns the defaults documented on each field.
func DefaultConfig() *Config {
	return &Config{
		Store:    "sqlite:ketamine-fhir.db",
		Postgres: PostgresConfig{PoolSize: 8, Heartbeat: Duration(5 * time.Second)},
		EHR: EHRConfig{
			BaseURL:          "http://127.0.0.1:8090/fhir/R4",
			Timeout:          Duration(30 * time.Second),
			AnswerTimeoutMin: Duration(time.Second),
			RetryMax:         8,
			RetryWaitMin:     Duration(250 * time.Millisecond),
			RetryWaitMax:     Duration(30 * time.Second),
			Auth:             AuthConfig{Mode: "none"},
			// As configs/default.yaml writes it.
			WriteStrategy:     map[string]string{"default": "conditional-update"},
			TransactionSize:   50,
			TransactionLinger: Duration(20 * time.Millisecond),
			PauseThreshold:    Duration(30 * time.Second),
		},
		Patients: PatientsConfig{Create: true},
		Sync: SyncConfig{
			Concurrency: 8, BatchSize: 64,
			Lease:    Duration(2 * time.Minute),
			RetryMin: Duration(time.Second), RetryBackoffMax: Duration(5 * time.Minute),
			PollInterval:    Duration(time.Second),
			HeldRecheck:     Duration(15 * time.Minute),
			ShutdownTimeout: Duration(30 * time.Second),
			AuthProbe:       Duration(30 * time.Second),
			StaleDerived:    "entered-in-error",
		},
		API: APIConfig{
			Addr: "127.0.0.1:8080", MaxBodyBytes: 10 << 20,
			ReadyTimeout:     Duration(2 * time.Second),
			EHRProbeInterval: Duration(30 * time.Second),
		},
		Log:     LogConfig{Format: "auto", Level: "info"},
		Report:  ReportConfig{MinCell: 11, MADRSRemission: 10},
		Mapping: *mapping.DefaultConfig(),
	}
}

// ConfigError lists every problem of a configuration, each naming its key.
type ConfigError struct {
	Problems []string
}

func (e *ConfigError) Error() string {
	return "config: " + strings.Join(e.Problems, "; ")
}

// LoadConfig reads the YAML file at path (an empty path means defaults
// only), applies KETAMINE_FHIR_* environment overrides, resolves ${ENV} and
// file: references, and validates the result. getenv is os.Getenv in
// production. Unknown keys are errors. Every problem is reported at once in
// a *ConfigError.
func LoadConfig(path string, getenv func(string) string) (*Config, error) {
	cfg := DefaultConfig()
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, &ConfigError{Problems: []string{fmt.Sprintf("reading %s: %v", path, errors.Unwrap(err))}}
		}
		if err := decodeYAML(data, cfg); err != nil {
			return nil, &ConfigError{Problems: yamlProblems(path, data, err)}
		}
	}
	problems := renamedEnv(getenv)
	problems = append(problems, applyEnv(reflect.ValueOf(cfg).Elem(), nil, getenv)...)
	problems = append(problems, resolveRefs(reflect.ValueOf(cfg).Elem(), nil, getenv)...)
	if err := cfg.Validate(); err != nil {
		var ce *ConfigError
		if errors.As(err, &ce) {
			problems = append(problems, ce.Problems...)
		} else {
			problems = append(problems, err.Error())
		}
	}
	if len(problems) > 0 {
		return nil, &ConfigError{Problems: problems}
	}
	return cfg, nil
}

func decodeYAML(data []byte, cfg *Config) error {
	// Maps given in the file replace the defaults rather than merging into
	// them, so a clinic's formulary is exactly what it wrote.
	var probe map[string]any
	if err := yaml.Unmarshal(data, &probe); err != nil {
		return err
	}
	for key, field := range map[string]any{
		"formulary": &cfg.Mapping.Formulary, "adverse_events": &cfg.Mapping.AdverseEvents,
		"not_done_reasons": &cfg.Mapping.NotDoneReasons,
	} {
		if _, ok := probe[key]; ok {
			reflect.ValueOf(field).Elem().SetZero()
		}
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(cfg); err != nil && err.Error() != "EOF" {
		return err
	}
	return nil
}

// applyEnv sets every scalar field whose KETAMINE_FHIR_<PATH> variable is
// set.
func applyEnv(v reflect.Value, path []string, getenv func(string) string) []string {
	var problems []string
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, inline := yamlName(f)
		if name == "-" {
			continue
		}
		fv := v.Field(i)
		p := path
		if !inline {
			p = append(append([]string(nil), path...), name)
		}
		if fv.Kind() == reflect.Struct {
			problems = append(problems, applyEnv(fv, p, getenv)...)
			continue
		}
		env := EnvPrefix + strings.ToUpper(strings.Join(p, "_"))
		raw := getenv(env)
		if raw == "" {
			continue
		}
		if err := setScalar(fv, raw); err != nil {
			problems = append(problems, fmt.Sprintf("%s (from %s): %v", strings.Join(p, "."), env, err))
		}
	}
	return problems
}

func yamlName(f reflect.StructField) (name string, inline bool) {
	tag := f.Tag.Get("yaml")
	parts := strings.Split(tag, ",")
	for _, o := range parts[1:] {
		if o == "inline" {
			return "", true
		}
	}
	if parts[0] == "" {
		return strings.ToLower(f.Name), false
	}
	return parts[0], false
}

var durationType = reflect.TypeOf(Duration(0))

func setScalar(fv reflect.Value, raw string) error {
	if fv.Type() == durationType {
		d, err := time.ParseDuration(raw)
		if err != nil {
			return fmt.Errorf("%q is not a duration", raw)
		}
		fv.SetInt(int64(d))
		return nil
	}
	switch fv.Kind() {
	case reflect.String:
		fv.SetString(raw)
	case reflect.Bool:
		b, err := strconv.ParseBool(raw)
		if err != nil {
			return fmt.Errorf("%q is not true or false", raw)
		}
		fv.SetBool(b)
	case reflect.Int, reflect.Int64:
		n, err := strconv.ParseInt(raw, 10, 64)
		if err != nil {
			return fmt.Errorf("%q is not a whole number", raw)
		}
		fv.SetInt(n)
	case reflect.Float64:
		x, err := strconv.ParseFloat(raw, 64)
		if err != nil {
			return fmt.Errorf("%q is not a number", raw)
		}
		fv.SetFloat(x)
	default:
		return fmt.Errorf("cannot be set from the environment")
	}
	return nil
}

var envRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)(?::([^}]*))?\}`)

// resolveRefs expands ${VAR} and ${VAR:default} in every string field and
// reads file: references in secret fields. Values are never echoed in
// problems.
func resolveRefs(v reflect.Value, path []string, getenv func(string) string) []string {
	var problems []string
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, inline := yamlName(f)
		fv := v.Field(i)
		p := path
		if !inline {
			p = append(append([]string(nil), path...), name)
		}
		key := strings.Join(p, ".")
		switch fv.Kind() {
		case reflect.Struct:
			problems = append(problems, resolveRefs(fv, p, getenv)...)
		case reflect.String:
			s := fv.String()
			var missing []string
			s = envRef.ReplaceAllStringFunc(s, func(m string) string {
				sub := envRef.FindStringSubmatch(m)
				if val := getenv(sub[1]); val != "" {
					return val
				}
				if strings.Contains(m, ":") {
					return sub[2]
				}
				missing = append(missing, sub[1])
				return ""
			})
			for _, name := range missing {
				problems = append(problems, fmt.Sprintf("%s: environment variable %s is not set", key, name))
			}
			if f.Tag.Get("secret") == "true" && strings.HasPrefix(s, "file:") {
				file := strings.TrimPrefix(s, "file:")
				data, err := os.ReadFile(file)
				if err != nil {
					problems = append(problems, fmt.Sprintf("%s: cannot read %s: %v", key, file, errors.Unwrap(err)))
					s = ""
				} else {
					s = strings.TrimRight(string(data), "\r\n")
				}
			}
			fv.SetString(s)
		}
	}
	return problems
}

// Validate returns a *ConfigError listing every problem, or nil.
func (c *Config) Validate() error {
	var p []string
	add := func(format string, args ...any) { p = append(p, fmt.Sprintf(format, args...)) }
	if _, _, err := ParseStore(c.Store); err != nil {
		add("store: %v", err)
	}
	c.Postgres.validate(add)
	if u, err := url.Parse(c.EHR.BaseURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		add("ehr.base_url: must be an absolute http or https URL")
	}
	if c.EHR.Timeout <= 0 {
		add("ehr.timeout: must be positive")
	}
	if c.EHR.AnswerTimeoutMin < 0 {
		add("ehr.answer_timeout_min: must not be negative (0 turns it off)")
	}
	if c.EHR.RetryMax < 0 {
		add("ehr.retry_max: must not be negative")
	}
	if c.EHR.RetryWaitMax <= 0 {
		add("ehr.retry_wait_max: must be positive")
	}
	a := c.EHR.Auth
	switch a.Mode {
	case "none":
	case "bearer":
		if a.Token == "" {
			add("ehr.auth.token: required with mode bearer")
		}
	case "client-secret":
		if a.ClientID == "" {
			add("ehr.auth.client_id: required with mode client-secret")
		}
		if a.ClientSecret == "" {
			add("ehr.auth.client_secret: required with mode client-secret")
		}
	case "smart-backend":
		if a.ClientID == "" {
			add("ehr.auth.client_id: required with mode smart-backend")
		}
		if a.PrivateKey == "" {
			add("ehr.auth.private_key: required with mode smart-backend (a file: reference to a PEM key)")
		} else if _, err := ehr.PublicJWKS([]byte(a.PrivateKey), a.KeyID); err != nil {
			add("ehr.auth.private_key: %v", err)
		}
	default:
		add("ehr.auth.mode: %q is not one of none, bearer, client-secret, smart-backend", a.Mode)
	}
	keys := make([]string, 0, len(c.EHR.WriteStrategy))
	for k := range c.EHR.WriteStrategy {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if _, ok := strategies[c.EHR.WriteStrategy[k]]; !ok {
			add("ehr.write_strategy.%s: %q is not one of conditional-update, conditional-create, transaction", k, c.EHR.WriteStrategy[k])
		}
		if !writeStrategyTypes[k] {
			add("ehr.write_strategy.%s: not a resource type the adapter writes (default, Patient, MedicationRequest, MedicationAdministration, Observation)", k)
		}
	}
	s := c.Sync
	if s.Concurrency < 1 || s.Concurrency > 256 {
		add("sync.concurrency: must be between 1 and 256")
	}
	if s.BatchSize < 1 || s.BatchSize > 10000 {
		add("sync.batch_size: must be between 1 and 10000")
	}
	// Leases are renewed every third of their length while a row is held,
	// so a delivery may take any time; but one request attempt (up to
	// ehr.timeout) must fit in a lease, or a renewal missed while it is
	// under way (a busy store) would let another process deliver the row
	// at the same time.
	if s.Lease < Duration(time.Second) || s.Lease <= c.EHR.Timeout {
		add("sync.lease: must be at least 1s and longer than ehr.timeout (%s), the longest one request to the EHR can take", c.EHR.Timeout.D())
	}
	if s.AuthProbe <= 0 {
		add("sync.auth_probe: must be positive")
	}
	switch s.StaleDerived {
	case "entered-in-error", "delete":
	default:
		add("sync.stale_derived: %q is not one of entered-in-error, delete", s.StaleDerived)
	}
	if c.EHR.TransactionSize < 1 || c.EHR.TransactionSize > 1000 {
		add("ehr.transaction_size: must be between 1 and 1000")
	}
	if c.EHR.TransactionLinger < 0 {
		add("ehr.transaction_linger: must not be negative")
	}
	if c.EHR.MaxRate < 0 {
		add("ehr.max_rate: must not be negative (0 means no cap)")
	}
	if c.EHR.PauseThreshold <= 0 {
		add("ehr.pause_threshold: must be positive")
	}
	if c.EHR.RetryWaitMin <= 0 {
		add("ehr.retry_wait_min: must be positive")
	}
	if s.RetryMin <= 0 || s.RetryBackoffMax < s.RetryMin {
		add("sync.retry_min, sync.retry_backoff_max: need 0 < retry_min <= retry_backoff_max")
	}
	if s.Deadline < 0 {
		add("sync.deadline: must not be negative")
	}
	if s.PollInterval <= 0 || s.HeldRecheck <= 0 || s.ShutdownTimeout <= 0 {
		add("sync.poll_interval, sync.held_recheck, sync.shutdown_timeout: must be positive")
	}
	if c.API.Addr == "" {
		add("api.addr: required")
	}
	if c.API.MaxBodyBytes < 1024 {
		add("api.max_body_bytes: must be at least 1024")
	}
	if c.API.EHRProbeInterval <= 0 {
		add("api.ehr_probe_interval: must be positive")
	}
	if c.API.UIToken != "" && len(c.API.UIToken) < 16 {
		add("api.ui_token: at least 16 characters when set (it signs in to the console)")
	}
	if c.API.UIToken != "" && c.API.UIToken == c.API.Token {
		add("api.ui_token: must differ from api.token (leave it empty to sign in with api.token)")
	}
	if t := c.EHR.TLS; (t.ClientCert == "") != (t.ClientKey == "") {
		add("ehr.tls.client_cert, ehr.tls.client_key: set both or neither")
	}
	if c.API.JWKSPath != "" && (!strings.HasPrefix(c.API.JWKSPath, "/") || strings.HasPrefix(c.API.JWKSPath, "/v1/")) {
		add("api.jwks_path: must be a path starting with / outside /v1/, e.g. /.well-known/jwks.json")
	}
	if c.API.JWKSPath != "" && c.EHR.Auth.Mode != "smart-backend" {
		add("api.jwks_path: needs ehr.auth.mode smart-backend (it publishes the public keys of ehr.auth.private_key)")
	}
	if (c.API.TLSCert == "") != (c.API.TLSKey == "") {
		add("api.tls_cert, api.tls_key: set both or neither")
	}
	switch c.Log.Format {
	case "auto", "json", "text":
	default:
		add("log.format: %q is not one of auto, json, text", c.Log.Format)
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		add("log.level: %q is not one of debug, info, warn, error", c.Log.Level)
	}
	if c.Report.MinCell < 1 {
		add("report.min_cell: must be at least 1")
	}
	if c.Report.MADRSRemission < 1 || c.Report.MADRSRemission > 60 {
		add("report.madrs_remission: must be a MADRS total from 1 to 60")
	}
	if err := c.Mapping.Validate(); err != nil {
		var me interface{ Unwrap() []error }
		if errors.As(err, &me) {
			for _, e := range me.Unwrap() {
				p = append(p, e.Error())
			}
		} else {
			p = append(p, err.Error())
		}
	}
	if len(p) > 0 {
		return &ConfigError{Problems: p}
	}
	return nil
}

var strategies = map[string]bool{"conditional-update": true, "conditional-create": true, "transaction": true}

var writeStrategyTypes = map[string]bool{
	"default": true, "Patient": true, "MedicationRequest": true,
	"MedicationAdministration": true, "Observation": true,
}

// Strategy returns the write strategy for a resource type.
func (c *EHRConfig) Strategy(resourceType string) string {
	if s, ok := c.WriteStrategy[resourceType]; ok {
		return s
	}
	if s, ok := c.WriteStrategy["default"]; ok {
		return s
	}
	return "conditional-update"
}

// ParseStore splits a store URL into its driver and the driver's argument:
// "sqlite:PATH" gives ("sqlite", PATH), "postgres://..." gives ("postgres",
// the whole URL).
func ParseStore(s string) (driver, arg string, err error) {
	driver, arg, ok := strings.Cut(s, ":")
	if !ok || arg == "" {
		return "", "", fmt.Errorf("%q is not sqlite:PATH", s)
	}
	switch driver {
	case "sqlite":
		return driver, arg, nil
	case "postgres", "postgresql":
		return parsePostgresStore(s)
	}
	return "", "", fmt.Errorf("unknown store driver %q (want sqlite:PATH or postgres://...)", driver)
}

var unknownField = regexp.MustCompile(`field (\S+) not found in type \S+`)

// renamedKeys maps keys that were renamed to their new names. An old key,
// in a file or as its environment variable, is an error naming the new
// key (not a bare "unknown key", and never silently ignored).
var renamedKeys = map[string]string{
	// The outbox backoff cap, a duration; ehr.retry_max is a count.
	"sync.retry_max": "sync.retry_backoff_max",
}

// yamlProblems splits a YAML decoding error of the file at path, whose
// content is data, into one problem per key; unknown keys are worded
// without Go type names, renamed keys name their new key.
func yamlProblems(path string, data []byte, err error) []string {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return []string{fmt.Sprintf("%s: %v", path, err)}
	}
	renamed := renamedInFile(data)
	out := make([]string, len(te.Errors))
	for i, e := range te.Errors {
		var line int
		if _, err := fmt.Sscanf(e, "line %d:", &line); err == nil && renamed[line] != "" && unknownField.MatchString(e) {
			out[i] = fmt.Sprintf("%s: line %d: %s", path, line, renamed[line])
			continue
		}
		out[i] = path + ": " + unknownField.ReplaceAllString(e, "unknown key $1")
	}
	return out
}

// renamedInFile finds the renamed keys of a YAML file and returns, by the
// line of each, the problem to report.
func renamedInFile(data []byte) map[int]string {
	var doc yaml.Node
	if yaml.Unmarshal(data, &doc) != nil || len(doc.Content) == 0 {
		return nil
	}
	out := map[int]string{}
	var walk func(n *yaml.Node, prefix string)
	walk = func(n *yaml.Node, prefix string) {
		if n.Kind != yaml.MappingNode {
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			key := prefix + n.Content[i].Value
			if to, ok := renamedKeys[key]; ok {
				out[n.Content[i].Line] = fmt.Sprintf("%s was renamed to %s; rename the key (the value stays the same)", key, to)
			}
			walk(n.Content[i+1], key+".")
		}
	}
	walk(doc.Content[0], "")
	return out
}

// renamedEnv reports the environment variables of renamed keys.
func renamedEnv(getenv func(string) string) []string {
	olds := make([]string, 0, len(renamedKeys))
	for old := range renamedKeys {
		olds = append(olds, old)
	}
	sort.Strings(olds)
	var problems []string
	for _, old := range olds {
		if name := envName(old); getenv(name) != "" {
			problems = append(problems, fmt.Sprintf("%s: %s was renamed to %s; set %s instead",
				name, old, renamedKeys[old], envName(renamedKeys[old])))
		}
	}
	return problems
}

// envName is the environment variable that overrides a key.
func envName(key string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
}
