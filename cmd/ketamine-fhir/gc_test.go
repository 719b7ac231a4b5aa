package main

import (
	"runtime/debug"
	"testing"
)

// tuneGC raises GOGC for the delivery commands only, and never over the
// operator's GOGC.
func TestTuneGC(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	cases := []struct {
		command, gogc string
		want          int
	}{
		{"sync", "", deliveryGCPercent},
		{"serve", "", deliveryGCPercent},
		{"demo", "", deliveryGCPercent},
		{"sync", "50", 100}, // GOGC set: the runtime read it; tuneGC leaves it
		{"map", "", 100},
		{"import", "", 100},
	}
	for _, c := range cases {
		debug.SetGCPercent(100)
		tuneGC(c.command, func(k string) string {
			if k == "GOGC" {
				return c.gogc
			}
			return ""
		})
		if got := debug.SetGCPercent(100); got != c.want {
			t.Errorf("%s with GOGC=%q: GC percent %d, want %d", c.command, c.gogc, got, c.want)
		}
	}
}
