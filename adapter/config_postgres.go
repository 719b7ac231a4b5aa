package adapter

import (
	"net/url"
	"regexp"
	"strings"
	"time"
)

// PostgresConfig tunes the PostgreSQL outbox (store: postgres://...). The
// lease of a claimed row is sync.lease, as with SQLite.
type PostgresConfig struct {
	// Password is the database password, overriding any in the store URL,
	// so that the URL can sit in the config file without the secret:
	// ${VAR} or "file:/path". Secret; never logged.
	Password string `yaml:"password" secret:"true"`
	// PoolSize is the most connections one instance opens (the listener
	// for notifications takes one more). Defaults to 8.
	PoolSize int `yaml:"pool_size"`
	// Heartbeat is how often an instance records itself as live in the
	// database; an instance is counted live for three heartbeats. The
	// pacer divides ehr.max_rate by the live instances. Defaults to 5s.
	Heartbeat Duration `yaml:"heartbeat"`
}

// validate adds the problems of the postgres keys.
func (pc PostgresConfig) validate(add func(format string, args ...any)) {
	if pc.PoolSize < 2 || pc.PoolSize > 1000 {
		add("postgres.pool_size: must be between 2 and 1000")
	}
	if pc.Heartbeat < Duration(100*time.Millisecond) {
		add("postgres.heartbeat: must be at least 100ms")
	}
}

// parsePostgresStore checks a postgres:// store URL without echoing it
// (it may hold a password).
func parsePostgresStore(s string) (driver, arg string, err error) {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" && u.Query().Get("host") == "" {
		return "", "", errInvalidPostgresURL
	}
	return "postgres", s, nil
}

type configProblem string

func (e configProblem) Error() string { return string(e) }

const errInvalidPostgresURL = configProblem("not a valid postgres://[user[:password]@]host[:port]/database URL (the URL is not shown: it may hold a password)")

var keyValuePassword = regexp.MustCompile(`(?i)(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)`)

// RedactStore returns the store setting fit for logs and messages: the
// password of a postgres URL (or key=value string) replaced by "xxxxx".
func RedactStore(s string) string {
	if strings.HasPrefix(s, "postgres://") || strings.HasPrefix(s, "postgresql://") {
		u, err := url.Parse(s)
		if err != nil {
			return "postgres://(invalid URL)"
		}
		q := u.Query()
		if q.Has("password") {
			q.Set("password", "xxxxx")
			u.RawQuery = q.Encode()
		}
		return u.Redacted()
	}
	return keyValuePassword.ReplaceAllString(s, "${1}xxxxx")
}
