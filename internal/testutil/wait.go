package testutil

import (
	"testing"
	"time"
)

// WaitFor calls cond until it returns true, and fails t with "timed out
// waiting for <what>" once timeout has passed without it. Use it for a
// state another goroutine or process reaches (rows synced, a line logged,
// a server listening) when nothing signals it; prefer a channel when
// something can. It polls every few milliseconds, backing off to 20ms.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	pause := time.Millisecond
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
			return
		}
		time.Sleep(pause)
		if pause < 20*time.Millisecond {
			pause *= 2
		}
	}
}
