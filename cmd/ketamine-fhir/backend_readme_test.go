package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// readmeSection returns the fenced code blocks of a README section, with
// their language.
func readmeSection(t *testing.T, title string) (blocks [][2]string) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, sec, ok := strings.Cut(string(raw), "\n## "+title+"\n")
	if !ok {
		t.Fatalf("README has no section %q", title)
	}
	sec, _, _ = strings.Cut(sec, "\n## ")
	for {
		var lang, body string
		_, rest, ok := strings.Cut(sec, "\n```")
		if !ok {
			return blocks
		}
		lang, rest, _ = strings.Cut(rest, "\n")
		body, sec, ok = strings.Cut(rest, "\n```")
		if !ok {
			t.Fatal("unterminated code block")
		}
		blocks = append(blocks, [2]string{lang, body})
	}
}

// TestReadmeBackendServiceWalkthrough runs the commands of the README
// section "Registering with an EHR as a backend service", in order, in a
// temporary directory: keys generate, the test EHR registering the
// generated JWKS, config check, generate, import and sync. The only
// change is the EHR's port (a free one instead of 8090).
func TestReadmeBackendServiceWalkthrough(t *testing.T) {
	blocks := readmeSection(t, "Registering with an EHR as a backend service")
	t.Chdir(t.TempDir()) // not parallel: the commands use relative paths
	var base string
	ran := map[string]bool{}
	for _, b := range blocks {
		lang, body := b[0], b[1]
		if lang == "yaml" {
			if base == "" {
				t.Fatal("the config block comes before the EHR is started")
			}
			cfg := strings.Replace(body, "http://127.0.0.1:8090/fhir/R4", base, 1)
			if cfg == body {
				t.Fatal("the config does not point at the EHR of the walk-through")
			}
			if err := os.WriteFile("backend.yaml", []byte(cfg), 0o600); err != nil {
				t.Fatal(err)
			}
			continue
		}
		for _, line := range strings.Split(body, "\n") {
			args := strings.Fields(line)
			if len(args) == 0 || args[0] != "ketamine-fhir" {
				continue
			}
			args = args[1:]
			ran[args[0]] = true
			if args[0] == "ehr" {
				var rest []string
				for i := 1; i < len(args); i++ {
					if args[i] == "--addr" {
						i++ // startEHR picks a free port
						continue
					}
					rest = append(rest, args[i])
				}
				var stdout *lineWriter
				base, _, stdout, _ = startEHR(t, rest...)
				if line := <-stdout.lines; !strings.Contains(line, "client clinic-adapter") {
					t.Errorf("ehr banner %q", line)
				}
				continue
			}
			var out string
			if i := indexOf(args, ">"); i >= 0 {
				out, args = args[i+1], args[:i]
			}
			r := runCLI(t, "", args...)
			r.want(t, exitOK, line)
			if out != "" {
				if err := os.WriteFile(out, []byte(r.stdout), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			// The EHR answers 401 to any request without its token, so a
			// sync with every record synced went through the SMART flow.
			if args[0] == "sync" && (!strings.Contains(r.stdout, " synced (") || !strings.Contains(r.stdout, " 0 retrying, 0 waiting, 0 dead")) {
				t.Errorf("sync output:\n%s", r.stdout)
			}
			for _, leak := range []string{"PRIVATE KEY", "eyJ"} {
				if strings.Contains(r.stdout+r.stderr, leak) {
					t.Errorf("%s printed a key or an assertion", line)
				}
			}
		}
	}
	for _, cmd := range []string{"keys", "ehr", "config", "generate", "import", "sync"} {
		if !ran[cmd] {
			t.Errorf("the walk-through does not run %s", cmd)
		}
	}
	if fi, err := os.Stat(filepath.Join("keys", "private.pem")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("keys/private.pem: %v, mode %v; want 0600", err, fi.Mode().Perm())
	}
}

func indexOf(s []string, v string) int {
	for i, x := range s {
		if x == v {
			return i
		}
	}
	return -1
}
