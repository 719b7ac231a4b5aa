package main

import "runtime/debug"

// deliveryGCPercent is the garbage collector's target for the commands that
// deliver to the EHR when GOGC is not set: collect when the heap has grown
// by twice the live heap, not once.
//
// Delivery allocates fast (a mapped resource, its request and its answer
// are garbage a few milliseconds later) and keeps little live: about 35 MB
// at any outbox size. At Go's default of 100 the collector took 8-9% of a
// sync's CPU; at 200, the sync used about 11% less CPU in all for 20-25 MB
// more peak RSS (BENCHMARKS.md section 5). GOGC and GOMEMLIMIT in the
// environment still win.
const deliveryGCPercent = 200

// tuneGC sets the collector for command, once, before it runs.
func tuneGC(command string, getenv func(string) string) {
	switch command {
	case "sync", "serve", "demo":
	default:
		return
	}
	if getenv("GOGC") == "" {
		debug.SetGCPercent(deliveryGCPercent)
	}
}
