package main

import "runtime/debug"

// deliveryGCPercent is the garbage collector's target for the commands that
// deliver to the EHR when GOGC is not set: collect when the heap has grown
// by twice the live heap, not once.
//
// Delivery allocates fast (a mapped resource, its request and its answer
// are garbage a few milliseconds later) and keeps little live: its RSS
// stays flat however large the outbox (BENCHMARKS.md section 4). At Go's
// default of 100 the collector took 6-9% of a sync's CPU samples; at 200
// the sync used about 8% less CPU on average (five pairs, noisy) for
// 17-25 MB more peak RSS (section 5.1). A GOGC set in the environment is
// left alone, and GOMEMLIMIT still applies.
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
