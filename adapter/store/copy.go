package store

import "context"

// Copier is implemented by drivers that `ketamine-fhir store copy` can
// move an outbox between (sqlite and postgres). It is apart from Store
// because only that command needs it: it writes rows as they are, which
// the engine must never do.
type Copier interface {
	// MetaAll returns every Meta key and value.
	MetaAll(ctx context.Context) (map[string]string, error)
	// Load inserts recs exactly as given (id, state, attempts, lease, wait,
	// errors, EHR id and version, hashes, derived, times, payload), with
	// the History of each from history (by row id), in one transaction,
	// skipping any whose (kind, local id) is already present (and its
	// history), and stores meta (replacing values). It reports how many
	// rows it inserted. A row whose id is taken by another key is an error
	// and nothing is committed.
	Load(ctx context.Context, recs []Record, history map[int64][]Attempt, meta map[string]string) (int, error)
}
