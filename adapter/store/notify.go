package store

import (
	"context"
	"time"
)

// Notifier is implemented by stores that several processes share
// (postgres): Notify returns a channel that receives a value, coalesced,
// whenever another process (or this one) made rows claimable: records
// arrived, a dependency was synced and woke its waiters, leases were
// rescued. The engine claims when it fires, and still polls as a fallback
// (a notification can be lost while the store reconnects). The channel is
// never closed; it stops firing when the store is closed.
type Notifier interface {
	Notify() <-chan struct{}
}

// Instances is implemented by stores that several processes share: each
// delivering process records itself with Heartbeat, and learns how many
// are live, so that they can share the EHR's request rate.
type Instances interface {
	// Heartbeat records owner as live until now+ttl, forgets instances
	// whose time has passed, and returns the number of live instances
	// (owner included, so at least 1).
	Heartbeat(ctx context.Context, owner string, now time.Time, ttl time.Duration) (int, error)
	// Leave forgets owner at once (a clean shutdown), so the others take
	// its share of the rate without waiting for its heartbeat to expire.
	Leave(ctx context.Context, owner string) error
}
