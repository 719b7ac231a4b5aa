package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestProfilesFromEnvironment(t *testing.T) {
	dir := t.TempDir()
	env := map[string]string{
		envCPUProfile: filepath.Join(dir, "cpu.prof"),
		envMemProfile: filepath.Join(dir, "mem.prof"),
	}
	var stderr bytes.Buffer
	stop := startProfiles(func(k string) string { return env[k] }, &stderr)
	if r := runCLI(t, "", "generate", "--patients", "2"); r.code != exitOK {
		t.Fatalf("generate: exit code %d: %s", r.code, r.stderr)
	}
	stop()
	if strings.Contains(stderr.String(), "already in use") {
		t.Skip("the test binary is being CPU-profiled already")
	}
	if stderr.Len() > 0 {
		t.Fatalf("stderr: %s", stderr.String())
	}
	for _, path := range env {
		fi, err := os.Stat(path)
		switch {
		case err != nil:
			t.Errorf("%s: %v", filepath.Base(path), err)
		case fi.Size() == 0:
			t.Errorf("%s is empty; want a profile", filepath.Base(path))
		}
	}
}

func TestNoProfilesByDefault(t *testing.T) {
	var stderr bytes.Buffer
	startProfiles(func(string) string { return "" }, &stderr)()
	if stderr.Len() > 0 {
		t.Fatalf("stderr: %s", stderr.String())
	}
}
