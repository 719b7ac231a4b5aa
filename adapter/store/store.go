package store

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// State is where an outbox row is in its life. Rows move only as documented
// on each constant; every move is committed in the store.
type State string

const (
	// StatePending: ingested (or re-queued, or resynced) and ready to
	// deliver. The engine moves it to in_flight with Claim.
	StatePending State = "pending"
	// StateWaiting: held until a record it depends on is synced (WaitKind and
	// WaitID name it), or held by policy (an unknown patient with
	// patients.create false). Finish with a synced outcome for the dependency
	// moves its waiters back to pending in the same transaction; Requeue
	// moves it by hand.
	StateWaiting State = "waiting"
	// StateInFlight: claimed by one worker (LeaseOwner) until LeaseExpires,
	// which Renew extends while the delivery is in progress. The worker
	// moves it to synced, retrying, waiting or dead; Rescue moves it back to
	// retrying when the lease has expired (a crashed worker).
	StateInFlight State = "in_flight"
	// StateRetrying: a transient failure; claimable again from NextAttemptAt.
	// The engine moves it with Claim, like pending.
	StateRetrying State = "retrying"
	// StateSynced: the EHR holds the current content (EHRID, EHRVersion).
	// Upsert moves it back to pending when the record's content changes;
	// Resync moves it back to pending by hand (to map it again after a
	// mapping change), keeping what the EHR holds.
	StateSynced State = "synced"
	// StateDead: the EHR rejected the content permanently (ErrorClass,
	// ErrorDetail). Requeue moves it to pending; Upsert of changed content too.
	StateDead State = "dead"
)

// States lists every state, in the order of the life of a row.
var States = []State{StatePending, StateWaiting, StateInFlight, StateRetrying, StateSynced, StateDead}

// Sentinel errors. Drivers return them (possibly wrapped); callers branch
// with errors.Is.
var (
	// ErrNotFound: no row has that id or key.
	ErrNotFound = errors.New("store: not found")
	// ErrLeaseLost: the row is no longer leased to the caller (the lease
	// expired and another worker claimed it, or it was re-ingested); the
	// caller's outcome is discarded, nothing changed.
	ErrLeaseLost = errors.New("store: lease lost")
)

// Key names a row by kind and local id.
type Key struct{ Kind, LocalID string }

// NewRecord is a record offered to the outbox by ingest.
type NewRecord struct {
	// Kind is the record kind ("patient", "order", "administration", "score").
	Kind string
	// LocalID is the record's local id, unique within its kind.
	LocalID string
	// Hash identifies the content (a hex SHA-256 of Payload is typical).
	Hash string
	// Payload is the record as stored and later mapped (canonical JSON).
	Payload []byte
}

// UpsertOutcome says what Upsert did with one NewRecord.
type UpsertOutcome string

const (
	// Inserted: a new row, pending.
	Inserted UpsertOutcome = "inserted"
	// Updated: the content changed; the row is pending again with attempts
	// reset (a row in flight keeps its lease and state; its worker's Finish
	// for the old hash leaves the new content pending).
	Updated UpsertOutcome = "updated"
	// Unchanged: same hash; nothing changed.
	Unchanged UpsertOutcome = "unchanged"
)

// Record is one outbox row.
type Record struct {
	ID            int64
	Kind          string
	LocalID       string
	Hash          string
	Payload       []byte
	State         State
	Attempts      int
	NextAttemptAt time.Time
	LeaseOwner    string
	LeaseExpires  time.Time
	// WaitKind and WaitID name the dependency a waiting row waits for; both
	// empty for a row held by policy.
	WaitKind string
	WaitID   string
	// ErrorClass is a bounded, PHI-free class of the last failure
	// ("http_503", "timeout", "rejected_422", "dependency_dead", ...).
	ErrorClass string
	// ErrorDetail is the EHR's diagnostics (OperationOutcome issues as JSON)
	// or a reason text. It may echo submitted values: never log it.
	ErrorDetail string
	// EHRID and EHRVersion identify the resource in the EHR once synced.
	EHRID      string
	EHRVersion string
	// SyncedHash is the hash of the content last synced ("" if never).
	SyncedHash string
	// SentHash is the hash of the FHIR content last delivered for this row,
	// as a synced Outcome reported it ("" if none): the engine compares it
	// with the hash of freshly mapped FHIR so that unchanged output is not
	// sent again.
	SentHash string
	// Derived lists opaque keys (the engine uses "Type|system|value") of the
	// derived resources the EHR holds as current data for this row, in the
	// order a synced Outcome last set them; nil if none.
	Derived   []string
	CreatedAt time.Time
	UpdatedAt time.Time
	SyncedAt  time.Time // zero if never synced
}

// Outcome is what a worker reports for a row it holds.
type Outcome struct {
	// State is the new state: synced, retrying, waiting or dead.
	State State
	// Hash is the hash of the content that was delivered (the claimed
	// Record.Hash); required. An outcome for a hash that is no longer the
	// row's (the content changed while in flight) leaves the row pending
	// with attempts reset; a synced one still records EHRID, EHRVersion,
	// SyncedHash, SentHash and Derived and wakes the row's waiters, since
	// the resource now exists.
	Hash string
	// NextAttemptAt is when a retrying row may be claimed again.
	NextAttemptAt time.Time
	// WaitKind and WaitID for a waiting row.
	WaitKind, WaitID string
	// ErrorClass and ErrorDetail for retrying, waiting and dead rows.
	ErrorClass, ErrorDetail string
	// EHRID and EHRVersion identify the resource the delivery wrote in the
	// EHR; empty keeps the known value. A synced outcome carries them; any
	// other outcome may too and then records them as well, stale or not.
	// The engine sets them on a retrying outcome when the primary write
	// succeeded and a derived write failed, so that the retry updates the
	// resource in place.
	EHRID, EHRVersion string
	// SentHash, for a synced outcome, is the hash of the FHIR content
	// delivered; empty keeps the stored value. Other states ignore it.
	SentHash string
	// Derived, when SetDerived is true on a synced outcome, replaces the
	// row's Derived list (nil or empty: none). With SetDerived false the
	// stored list is kept. Other states ignore both.
	Derived    []string
	SetDerived bool
	// RequestID is the X-Request-Id the adapter sent with the attempt's
	// requests to the EHR ("" if it made none), recorded in the row's
	// History so an operator can find the attempt in the EHR's logs.
	RequestID string
}

// ErrorClassLeaseExpired is the ErrorClass Rescue gives the rows it returns
// to retrying, and the one their History records.
const ErrorClassLeaseExpired = "lease_expired"

// KindRank is the Claim order of a kind: dependencies first, since a
// MedicationRequest references its Patient, a MedicationAdministration its
// MedicationRequest and an Observation its MedicationAdministration.
// Unknown kinds come last. Drivers store it with each row at insert.
func KindRank(kind string) int {
	switch kind {
	case "patient":
		return 0
	case "order":
		return 1
	case "administration":
		return 2
	case "score":
		return 3
	}
	return 9
}

// Validate reports what makes an outcome one that Finish must refuse: a
// state other than synced, retrying, waiting or dead, no Hash, or a
// waiting outcome that names half a dependency.
func (out Outcome) Validate() error {
	switch out.State {
	case StateSynced, StateRetrying, StateDead:
	case StateWaiting:
		if (out.WaitKind == "") != (out.WaitID == "") {
			return errors.New("waiting outcome names half a dependency (WaitKind and WaitID are both set or both empty)")
		}
	default:
		return fmt.Errorf("outcome state %q is not synced, retrying, waiting or dead", out.State)
	}
	if out.Hash == "" {
		return errors.New("outcome has no hash")
	}
	return nil
}

// HistoryLimit is how many attempts a store keeps per row: the newest.
const HistoryLimit = 20

// Attempt is one recorded outcome of a row's delivery, as Finish,
// FinishMany or Rescue recorded it. It holds no payload; ErrorDetail may
// echo submitted values, as Record.ErrorDetail may.
type Attempt struct {
	// At is when the outcome was recorded.
	At time.Time
	// Attempt is the row's Attempts when the outcome was recorded: 1 for
	// the outcome of the first claim (Requeue and Resync reset it).
	Attempt int
	// State is the state the outcome asked for: synced, retrying, waiting
	// or dead (Rescue records retrying with ErrorClassLeaseExpired).
	// An outcome for content the row no longer holds left the row pending
	// but is recorded with the state it asked for.
	State State
	// ErrorClass and ErrorDetail as the outcome gave them.
	ErrorClass, ErrorDetail string
	// WaitKind and WaitID for a waiting outcome.
	WaitKind, WaitID string
	// EHRID and EHRVersion as the outcome gave them ("" if it had none).
	EHRID, EHRVersion string
	// RequestID as the outcome gave it.
	RequestID string
}

// Completion is one outcome for FinishMany.
type Completion struct {
	// ID is the row the outcome is for.
	ID int64
	// Outcome is what Finish would be given for the row.
	Outcome Outcome
}

// Counts is the number of rows per kind and state.
type Counts map[string]map[State]int

// Store is the durable outbox. Implementations are safe for concurrent use.
type Store interface {
	// Upsert offers records in one transaction: all are committed or none.
	// It reports an outcome per record, in order.
	Upsert(ctx context.Context, recs []NewRecord) ([]UpsertOutcome, error)
	// Claim leases up to n deliverable rows (pending, or retrying with
	// NextAttemptAt <= now) to owner until now+lease, moving them to
	// in_flight and incrementing Attempts. Rows come in dependency order of
	// kinds (patient, order, administration, score, then any other kind),
	// then by id.
	Claim(ctx context.Context, owner string, n int, now time.Time, lease time.Duration) ([]Record, error)
	// Finish records the outcome of a row leased to owner. A synced outcome
	// also moves rows waiting on (kind, local id) back to pending. A waiting
	// outcome whose dependency is already synced leaves the row pending, so
	// a wake-up is never lost to a race. It returns ErrLeaseLost when the row
	// is not in_flight with owner as LeaseOwner (an expired lease that nobody
	// re-claimed is still the owner's), ErrNotFound when no row has id.
	Finish(ctx context.Context, id int64, owner string, out Outcome, now time.Time) error
	// FinishMany records several outcomes of rows leased to owner in one
	// transaction (group commit). Each item is handled exactly as Finish
	// would handle it; per-item errors (ErrLeaseLost, ErrNotFound, an invalid
	// outcome) are returned at the item's index and do not stop the others.
	// The error is non-nil only when the transaction itself failed; then
	// nothing was recorded.
	FinishMany(ctx context.Context, owner string, items []Completion, now time.Time) ([]error, error)
	// Renew extends to now+lease the leases of the rows in ids that are
	// in_flight with owner as LeaseOwner, and reports how many it extended.
	Renew(ctx context.Context, owner string, ids []int64, now time.Time, lease time.Duration) (int, error)
	// Rescue moves in_flight rows whose lease expired before now to
	// retrying, claimable at once, with ErrorClassLeaseExpired, and
	// reports how many it moved.
	Rescue(ctx context.Context, now time.Time) (int, error)
	// Get returns the row of kind and local id, or ErrNotFound.
	Get(ctx context.Context, kind, localID string) (Record, error)
	// GetMany returns the rows of the keys that exist (absent keys are
	// simply missing from the map), in as few queries as practical.
	GetMany(ctx context.Context, keys []Key) (map[Key]Record, error)
	// GetByID returns the row with id, or ErrNotFound.
	GetByID(ctx context.Context, id int64) (Record, error)
	// List returns up to limit rows in state with id > afterID, by id.
	List(ctx context.Context, state State, afterID int64, limit int) ([]Record, error)
	// Requeue moves a dead or waiting row to pending with attempts reset,
	// or returns ErrNotFound if no dead or waiting row has id.
	Requeue(ctx context.Context, id int64, now time.Time) error
	// RequeueAll moves every dead row to pending and reports how many.
	RequeueAll(ctx context.Context, now time.Time) (int, error)
	// Resync moves synced rows back to pending (attempts reset) so they are
	// mapped and compared again, keeping EHRID, EHRVersion, SentHash and
	// Derived. kind "" means every kind; a non-zero since keeps only rows
	// whose SyncedAt is at or after since. It reports how many it moved.
	Resync(ctx context.Context, kind string, since time.Time, now time.Time) (int, error)
	// History returns the recorded attempts of row id, oldest first: the
	// newest HistoryLimit of them. It returns ErrNotFound when no row has
	// id, and an empty slice for a row with no recorded attempt.
	History(ctx context.Context, id int64) ([]Attempt, error)
	// Counts returns the number of rows per kind and state.
	Counts(ctx context.Context) (Counts, error)
	// OldestPending returns the creation time of the oldest row that is
	// pending, retrying or waiting, or ok false when there is none.
	OldestPending(ctx context.Context) (t time.Time, ok bool, err error)
	// Meta returns the value stored under key, or ErrNotFound.
	Meta(ctx context.Context, key string) (string, error)
	// SetMeta stores value under key (insert or replace).
	SetMeta(ctx context.Context, key, value string) error
	// Ping checks that the store is reachable.
	Ping(ctx context.Context) error
	// Close releases the store.
	Close() error
}
