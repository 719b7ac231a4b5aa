// Package storetest is the conformance suite of store.Store: every driver
// (sqlite, postgres) runs Exercise from its own tests, so that the engine can
// rely on the documented behaviour whichever store a clinic configures.
//
// The suite covers every state transition, the Claim order, lease
// exclusivity under concurrent Claims, lease expiry, Renew and Rescue,
// waking waiters (with no lost wake-up), re-ingest of unchanged and changed
// content in every state, SentHash and Derived through every move, FinishMany
// item by item against Finish, Requeue, Resync, Counts, OldestPending, List
// paging, GetMany and Renew beyond 200 keys, Meta and the sentinel errors.
// Run it with -race: several subtests are concurrent.
//
// Usage, in a driver's tests:
//
//	func TestConformance(t *testing.T) {
//		storetest.Exercise(t, func(t *testing.T) store.Store {
//			s, err := Open(context.Background(), filepath.Join(t.TempDir(), "outbox.db"))
//			if err != nil {
//				t.Fatal(err)
//			}
//			t.Cleanup(func() { s.Close() })
//			return s
//		})
//	}
package storetest
