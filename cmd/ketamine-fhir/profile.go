package main

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/pprof"
)

// Profiling of the real process, for BENCHMARKS.md: opt-in by environment
// variable, so that no command's flags change and a benchmark script can
// profile one command of several.
const (
	// envCPUProfile names a file to write a CPU profile of the whole run to.
	envCPUProfile = "KETAMINE_FHIR_CPUPROFILE"
	// envMemProfile names a file to write an allocation profile to at exit.
	envMemProfile = "KETAMINE_FHIR_MEMPROFILE"
)

// startProfiles starts the profiles the environment asks for and returns
// the function that writes them. Problems are reported on stderr and never
// stop the command.
func startProfiles(getenv func(string) string, stderr io.Writer) (stop func()) {
	var cpu *os.File
	if path := getenv(envCPUProfile); path != "" {
		f, err := os.Create(path)
		if err == nil {
			err = pprof.StartCPUProfile(f)
			if err != nil {
				f.Close()
			}
		}
		if err != nil {
			fmt.Fprintf(stderr, "ketamine-fhir: %s: %v\n", envCPUProfile, err)
		} else {
			cpu = f
		}
	}
	memPath := getenv(envMemProfile)
	return func() {
		if cpu != nil {
			pprof.StopCPUProfile()
			if err := cpu.Close(); err != nil {
				fmt.Fprintf(stderr, "ketamine-fhir: %s: %v\n", envCPUProfile, err)
			}
		}
		if memPath != "" {
			runtime.GC() // the profile reports allocations up to the last GC
			if err := writeHeapProfile(memPath); err != nil {
				fmt.Fprintf(stderr, "ketamine-fhir: %s: %v\n", envMemProfile, err)
			}
		}
	}
}

func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
