package ticker

import (
	"context"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// TestLoop: a call at once and one per interval; a second Start does
// nothing; Stop cancels the call in progress and waits for it; a stopped
// Loop starts again; Stop of a stopped Loop does nothing.
func TestLoop(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var l Loop
		var calls atomic.Int32
		fn := func(context.Context) { calls.Add(1) }
		l.Start(t.Context(), time.Second, fn)
		l.Start(t.Context(), time.Millisecond, fn) // running: ignored
		synctest.Wait()
		if n := calls.Load(); n != 1 {
			t.Fatalf("%d calls at once, want 1", n)
		}
		time.Sleep(2500 * time.Millisecond)
		synctest.Wait()
		if n := calls.Load(); n != 3 {
			t.Fatalf("%d calls after 2.5 intervals, want 3", n)
		}
		if err := l.Stop(t.Context()); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Second)
		if n := calls.Load(); n != 3 {
			t.Fatalf("%d calls after Stop, want 3", n)
		}
		if err := l.Stop(t.Context()); err != nil {
			t.Fatalf("second Stop: %v", err)
		}

		// Stop cancels a call in progress and waits for it to return.
		canceled := make(chan struct{})
		l.Start(t.Context(), time.Second, func(ctx context.Context) {
			<-ctx.Done()
			close(canceled)
		})
		synctest.Wait()
		if err := l.Stop(t.Context()); err != nil {
			t.Fatal(err)
		}
		select {
		case <-canceled:
		default:
			t.Fatal("Stop returned before the call in progress ended")
		}
	})
}
