package pgtest

import (
	"fmt"
	"strings"
	"testing"
)

// recorder is a testing.TB whose Skipf and Fatalf record the message and
// stop the helper (as the real ones do, by a panic recovered below).
type recorder struct {
	testing.TB
	skipped, failed string
}

type stopped struct{}

func (r *recorder) Helper() {}
func (r *recorder) Skipf(format string, args ...any) {
	r.skipped = fmt.Sprintf(format, args...)
	panic(stopped{})
}
func (r *recorder) Fatalf(format string, args ...any) {
	r.failed = fmt.Sprintf(format, args...)
	panic(stopped{})
}

func schemaOf(t *testing.T) *recorder {
	r := &recorder{TB: t}
	func() {
		defer func() {
			if v := recover(); v != nil {
				if _, ok := v.(stopped); !ok {
					panic(v)
				}
			}
		}()
		Schema(r)
	}()
	return r
}

// TestUnreachable: without a reachable PostgreSQL the tests skip with a
// message that says how to start it, and under CI=true they fail.
func TestUnreachable(t *testing.T) {
	t.Setenv(EnvDSN, "postgres://postgres:s3cret@127.0.0.1:1/test?connect_timeout=2")
	t.Setenv("CI", "")
	r := schemaOf(t)
	if r.skipped == "" || r.failed != "" {
		t.Fatalf("outside CI: skipped %q, failed %q; want a skip", r.skipped, r.failed)
	}
	for _, want := range []string{"not reachable", "pg_ctlcluster", EnvDSN, "CI=true"} {
		if !strings.Contains(r.skipped, want) {
			t.Errorf("skip message %q lacks %q", r.skipped, want)
		}
	}
	if strings.Contains(r.skipped, "s3cret") {
		t.Errorf("skip message shows the password: %q", r.skipped)
	}
	t.Setenv("CI", "true")
	r = schemaOf(t)
	if r.failed == "" || r.skipped != "" {
		t.Fatalf("CI=true: skipped %q, failed %q; want a failure", r.skipped, r.failed)
	}
}
