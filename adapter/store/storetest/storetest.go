package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ketamine-fhir/ketamine-fhir/adapter/store"
)

// Exercise runs the conformance suite against the stores newStore returns.
// newStore is called once per subtest, possibly from several subtests at
// once (they run in parallel); each call must return a new, empty store and
// arrange its Close with t.Cleanup.
func Exercise(t *testing.T, newStore func(t *testing.T) store.Store) {
	t.Helper()
	tests := []struct {
		name string
		fn   func(t *testing.T, f *fixture)
	}{
		{"UpsertInsertsPending", testUpsertInsertsPending},
		{"UpsertUnchanged", testUpsertUnchanged},
		{"UpsertChangedResets", testUpsertChangedResets},
		{"UpsertChangedInFlight", testUpsertChangedInFlight},
		{"UpsertBatchOutcomesInOrder", testUpsertBatchOutcomesInOrder},
		{"UpsertBatchIsAtomic", testUpsertBatchIsAtomic},
		{"UpsertEmpty", testUpsertEmpty},
		{"ClaimOrder", testClaimOrder},
		{"ClaimLeases", testClaimLeases},
		{"ClaimSkipsUndeliverable", testClaimSkipsUndeliverable},
		{"ClaimRetryingWhenDue", testClaimRetryingWhenDue},
		{"ClaimArguments", testClaimArguments},
		{"ClaimConcurrentExclusive", testClaimConcurrentExclusive},
		{"FinishSynced", testFinishSynced},
		{"FinishSyncedKeepsKnownEHRID", testFinishSyncedKeepsKnownEHRID},
		{"FinishSyncedSentHashDerived", testFinishSyncedSentHashDerived},
		{"SentHashDerivedSurvive", testSentHashDerivedSurvive},
		{"FinishRetrying", testFinishRetrying},
		{"FinishDead", testFinishDead},
		{"FinishNotSyncedRecordsEHRID", testFinishNotSyncedRecordsEHRID},
		{"FinishWaitingThenWake", testFinishWaitingThenWake},
		{"FinishWaitingNoLostWakeup", testFinishWaitingNoLostWakeup},
		{"FinishWaitingPolicyHold", testFinishWaitingPolicyHold},
		{"FinishStaleOutcome", testFinishStaleOutcome},
		{"FinishLeaseLost", testFinishLeaseLost},
		{"FinishNotFound", testFinishNotFound},
		{"FinishInvalidOutcome", testFinishInvalidOutcome},
		{"FinishMany", testFinishMany},
		{"FinishManyAsFinish", testFinishManyAsFinish},
		{"FinishManyEmptyAndFailed", testFinishManyEmptyAndFailed},
		{"LeaseExpiryAndRescue", testLeaseExpiryAndRescue},
		{"Renew", testRenew},
		{"RenewMany", testRenewMany},
		{"RenewArguments", testRenewArguments},
		{"FinishAfterExpiryNotReclaimed", testFinishAfterExpiryNotReclaimed},
		{"Requeue", testRequeue},
		{"RequeueAll", testRequeueAll},
		{"Resync", testResync},
		{"Counts", testCounts},
		{"OldestPending", testOldestPending},
		{"ListPaging", testListPaging},
		{"GetNotFound", testGetNotFound},
		{"GetMany", testGetMany},
		{"Meta", testMeta},
		{"History", testHistory},
		{"HistoryLimit", testHistoryLimit},
		{"HistoryRescueAndFinishMany", testHistoryRescueAndFinishMany},
		{"ConcurrentPipeline", func(t *testing.T, f *fixture) { testConcurrentPipeline(t, f, false) }},
		{"ConcurrentPipelineFinishMany", func(t *testing.T, f *fixture) { testConcurrentPipeline(t, f, true) }},
		{"Ping", testPing},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.fn(t, &fixture{s: newStore(t), ctx: context.Background()})
		})
	}
}

// t0 is the suite's clock: Claim, Finish and the other calls that take a
// time get t0 plus an offset, so nothing depends on the wall clock.
var t0 = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

const lease = time.Minute

type fixture struct {
	s   store.Store
	ctx context.Context
}

func rec(kind, id, hash string) store.NewRecord {
	return store.NewRecord{
		Kind:    kind,
		LocalID: id,
		Hash:    hash,
		Payload: []byte(fmt.Sprintf(`{"kind":%q,"id":%q,"v":%q}`, kind, id, hash)),
	}
}

func (f *fixture) upsert(t *testing.T, recs ...store.NewRecord) []store.UpsertOutcome {
	t.Helper()
	out, err := f.s.Upsert(f.ctx, recs)
	if err != nil {
		t.Fatalf("Upsert: %v", err)
	}
	if len(out) != len(recs) {
		t.Fatalf("Upsert: %d outcomes for %d records", len(out), len(recs))
	}
	return out
}

func (f *fixture) get(t *testing.T, kind, id string) store.Record {
	t.Helper()
	r, err := f.s.Get(f.ctx, kind, id)
	if err != nil {
		t.Fatalf("Get(%s, %s): %v", kind, id, err)
	}
	return r
}

func (f *fixture) claim(t *testing.T, owner string, n int, now time.Time) []store.Record {
	t.Helper()
	recs, err := f.s.Claim(f.ctx, owner, n, now, lease)
	if err != nil {
		t.Fatalf("Claim(%s, %d): %v", owner, n, err)
	}
	return recs
}

// claimOne claims exactly one row and fails the test otherwise.
func (f *fixture) claimOne(t *testing.T, owner string, now time.Time) store.Record {
	t.Helper()
	recs := f.claim(t, owner, 1, now)
	if len(recs) != 1 {
		t.Fatalf("Claim(%s, 1) = %d rows, want 1", owner, len(recs))
	}
	return recs[0]
}

func (f *fixture) finish(t *testing.T, r store.Record, owner string, out store.Outcome, now time.Time) {
	t.Helper()
	if err := f.s.Finish(f.ctx, r.ID, owner, out, now); err != nil {
		t.Fatalf("Finish(%d, %s, %s): %v", r.ID, owner, out.State, err)
	}
}

// deliver claims the row of (kind, id), which must be the only deliverable
// row, and finishes it with out (Hash filled in from the claim).
func (f *fixture) deliver(t *testing.T, kind, id string, out store.Outcome, now time.Time) store.Record {
	t.Helper()
	r := f.claimOne(t, "deliver", now)
	if r.Kind != kind || r.LocalID != id {
		t.Fatalf("claimed %s/%s, want %s/%s", r.Kind, r.LocalID, kind, id)
	}
	if out.Hash == "" {
		out.Hash = r.Hash
	}
	f.finish(t, r, "deliver", out, now)
	return f.get(t, kind, id)
}

func synced(ehrID, version string) store.Outcome {
	return store.Outcome{State: store.StateSynced, EHRID: ehrID, EHRVersion: version}
}

func ids(recs []store.Record) []int64 {
	out := make([]int64, len(recs))
	for i, r := range recs {
		out[i] = r.ID
	}
	return out
}

func keys(recs []store.Record) []string {
	out := make([]string, len(recs))
	for i, r := range recs {
		out[i] = r.Kind + "/" + r.LocalID
	}
	return out
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// wantState fails the test unless the row of (kind, id) is in state.
func (f *fixture) wantState(t *testing.T, kind, id string, want store.State) store.Record {
	t.Helper()
	r := f.get(t, kind, id)
	if r.State != want {
		t.Fatalf("%s/%s state = %s, want %s", kind, id, r.State, want)
	}
	return r
}

// wantPendingClean checks the fields every move to pending resets.
func wantPendingClean(t *testing.T, r store.Record) {
	t.Helper()
	if r.State != store.StatePending {
		t.Errorf("state = %s, want pending", r.State)
	}
	if r.Attempts != 0 {
		t.Errorf("attempts = %d, want 0", r.Attempts)
	}
	if r.LeaseOwner != "" || !r.LeaseExpires.IsZero() {
		t.Errorf("lease = (%q, %v), want none", r.LeaseOwner, r.LeaseExpires)
	}
	if r.WaitKind != "" || r.WaitID != "" {
		t.Errorf("wait = (%q, %q), want none", r.WaitKind, r.WaitID)
	}
	if r.ErrorClass != "" || r.ErrorDetail != "" {
		t.Errorf("error = (%q, %q), want none", r.ErrorClass, r.ErrorDetail)
	}
}

func testUpsertInsertsPending(t *testing.T, f *fixture) {
	before := time.Now().Add(-time.Second)
	nr := rec("patient", "P1", "h1")
	if got := f.upsert(t, nr); got[0] != store.Inserted {
		t.Fatalf("outcome = %s, want inserted", got[0])
	}
	after := time.Now().Add(time.Second)
	r := f.get(t, "patient", "P1")
	if r.ID == 0 {
		t.Error("ID = 0, want an id")
	}
	if r.Kind != "patient" || r.LocalID != "P1" || r.Hash != "h1" {
		t.Errorf("key = %s/%s hash %s, want patient/P1 hash h1", r.Kind, r.LocalID, r.Hash)
	}
	if !bytes.Equal(r.Payload, nr.Payload) {
		t.Errorf("payload = %q, want %q", r.Payload, nr.Payload)
	}
	wantPendingClean(t, r)
	if r.EHRID != "" || r.EHRVersion != "" || r.SyncedHash != "" || !r.SyncedAt.IsZero() {
		t.Errorf("sync fields = (%q, %q, %q, %v), want empty", r.EHRID, r.EHRVersion, r.SyncedHash, r.SyncedAt)
	}
	if !r.NextAttemptAt.IsZero() {
		t.Errorf("NextAttemptAt = %v, want zero", r.NextAttemptAt)
	}
	if r.CreatedAt.Before(before) || r.CreatedAt.After(after) {
		t.Errorf("CreatedAt = %v, want between %v and %v", r.CreatedAt, before, after)
	}
	if r.UpdatedAt.Before(r.CreatedAt) {
		t.Errorf("UpdatedAt %v before CreatedAt %v", r.UpdatedAt, r.CreatedAt)
	}
	byID, err := f.s.GetByID(f.ctx, r.ID)
	if err != nil {
		t.Fatalf("GetByID: %v", err)
	}
	if byID.LocalID != "P1" || byID.ID != r.ID || !bytes.Equal(byID.Payload, nr.Payload) {
		t.Errorf("GetByID = %+v, want the row of patient/P1", byID)
	}
	// The same local id under another kind is another row.
	if got := f.upsert(t, rec("order", "P1", "h1")); got[0] != store.Inserted {
		t.Errorf("same local id, other kind: outcome = %s, want inserted", got[0])
	}
}

func testUpsertUnchanged(t *testing.T, f *fixture) {
	f.upsert(t, rec("patient", "P1", "h1"))
	// Move it to dead: an unchanged re-ingest must not revive it.
	f.deliver(t, "patient", "P1", store.Outcome{State: store.StateDead, ErrorClass: "rejected_422", ErrorDetail: "d"}, t0)
	before := f.get(t, "patient", "P1")

	nr := rec("patient", "P1", "h1")
	nr.Payload = []byte(`{"different":"bytes, same hash"}`)
	if got := f.upsert(t, nr); got[0] != store.Unchanged {
		t.Fatalf("outcome = %s, want unchanged", got[0])
	}
	after := f.get(t, "patient", "P1")
	if after.State != store.StateDead || after.ErrorClass != "rejected_422" || after.Attempts != before.Attempts {
		t.Errorf("after unchanged upsert: state %s class %q attempts %d, want dead rejected_422 %d",
			after.State, after.ErrorClass, after.Attempts, before.Attempts)
	}
	if !bytes.Equal(after.Payload, before.Payload) || !after.UpdatedAt.Equal(before.UpdatedAt) {
		t.Error("unchanged upsert rewrote the row")
	}
}

func testUpsertChangedResets(t *testing.T, f *fixture) {
	// One row per state it can be in when its content changes (in_flight
	// has its own test).
	f.upsert(t,
		rec("patient", "retrying", "h1"),
		rec("patient", "waiting", "h1"),
		rec("patient", "synced", "h1"),
		rec("patient", "dead", "h1"),
	)
	outcomes := map[string]store.Outcome{
		"retrying": {State: store.StateRetrying, NextAttemptAt: t0.Add(time.Hour), ErrorClass: "http_503", ErrorDetail: "busy"},
		"waiting":  {State: store.StateWaiting, WaitKind: "patient", WaitID: "never", ErrorClass: "dependency_pending"},
		"synced":   synced("Patient/9", "3"),
		"dead":     {State: store.StateDead, ErrorClass: "rejected_422", ErrorDetail: "bad"},
	}
	for _, r := range f.claim(t, "w", 10, t0) {
		out := outcomes[r.LocalID]
		out.Hash = r.Hash
		f.finish(t, r, "w", out, t0)
	}
	f.upsert(t, rec("patient", "pending", "h1"))

	for _, id := range []string{"pending", "retrying", "waiting", "synced", "dead"} {
		t.Run(id, func(t *testing.T) {
			before := f.get(t, "patient", id)
			nr := rec("patient", id, "h2")
			if got := f.upsert(t, nr); got[0] != store.Updated {
				t.Fatalf("outcome = %s, want updated", got[0])
			}
			r := f.get(t, "patient", id)
			wantPendingClean(t, r)
			if r.Hash != "h2" || !bytes.Equal(r.Payload, nr.Payload) {
				t.Errorf("hash %s payload %q, want h2 %q", r.Hash, r.Payload, nr.Payload)
			}
			if r.ID != before.ID || !r.CreatedAt.Equal(before.CreatedAt) {
				t.Errorf("id/created = %d/%v, want %d/%v (same row)", r.ID, r.CreatedAt, before.ID, before.CreatedAt)
			}
			// What the EHR holds is still known: the update goes to the same
			// resource, with If-Match on its version.
			if r.EHRID != before.EHRID || r.EHRVersion != before.EHRVersion || r.SyncedHash != before.SyncedHash {
				t.Errorf("sync fields = (%q, %q, %q), want kept (%q, %q, %q)",
					r.EHRID, r.EHRVersion, r.SyncedHash, before.EHRID, before.EHRVersion, before.SyncedHash)
			}
		})
	}
	if r := f.get(t, "patient", "synced"); r.EHRID != "Patient/9" || r.SyncedHash != "h1" {
		t.Errorf("changed synced row: EHRID %q SyncedHash %q, want Patient/9 h1", r.EHRID, r.SyncedHash)
	}
	// Changing a row back to the synced content still delivers it.
	if got := f.upsert(t, rec("patient", "synced", "h1")); got[0] != store.Updated {
		t.Errorf("change back: outcome = %s, want updated", got[0])
	}
	if r := f.get(t, "patient", "synced"); r.State != store.StatePending {
		t.Errorf("changed back: state = %s, want pending", r.State)
	}
}

func testUpsertChangedInFlight(t *testing.T, f *fixture) {
	f.upsert(t, rec("patient", "P1", "h1"))
	claimed := f.claimOne(t, "w1", t0)

	nr := rec("patient", "P1", "h2")
	if got := f.upsert(t, nr); got[0] != store.Updated {
		t.Fatalf("outcome = %s, want updated", got[0])
	}
	r := f.get(t, "patient", "P1")
	if r.State != store.StateInFlight || r.LeaseOwner != "w1" || !r.LeaseExpires.Equal(claimed.LeaseExpires) {
		t.Fatalf("after change in flight: state %s owner %q expires %v, want in_flight w1 %v",
			r.State, r.LeaseOwner, r.LeaseExpires, claimed.LeaseExpires)
	}
	if r.Hash != "h2" || !bytes.Equal(r.Payload, nr.Payload) {
		t.Errorf("hash %s payload %q, want the new content", r.Hash, r.Payload)
	}
	// Nobody else can claim it while w1 holds it.
	if got := f.claim(t, "w2", 10, t0); len(got) != 0 {
		t.Fatalf("claim while in flight = %v, want none", keys(got))
	}
	// w1 delivered h1: the EHR has h1, the row still needs h2.
	f.finish(t, claimed, "w1", store.Outcome{State: store.StateSynced, Hash: "h1", EHRID: "Patient/1", EHRVersion: "1"}, t0)
	r = f.get(t, "patient", "P1")
	wantPendingClean(t, r)
	if r.EHRID != "Patient/1" || r.EHRVersion != "1" || r.SyncedHash != "h1" || !r.SyncedAt.Equal(t0) {
		t.Errorf("after stale synced: EHR %q/%q SyncedHash %q SyncedAt %v, want Patient/1/1 h1 %v",
			r.EHRID, r.EHRVersion, r.SyncedHash, r.SyncedAt, t0)
	}
	again := f.claimOne(t, "w2", t0.Add(time.Second))
	if again.Hash != "h2" || !bytes.Equal(again.Payload, nr.Payload) {
		t.Errorf("re-claimed hash %s, want h2", again.Hash)
	}
	f.finish(t, again, "w2", store.Outcome{State: store.StateSynced, Hash: "h2", EHRVersion: "2"}, t0.Add(2*time.Second))
	r = f.wantState(t, "patient", "P1", store.StateSynced)
	if r.SyncedHash != "h2" || r.EHRID != "Patient/1" || r.EHRVersion != "2" {
		t.Errorf("after sync: SyncedHash %q EHR %q/%q, want h2 Patient/1/2", r.SyncedHash, r.EHRID, r.EHRVersion)
	}
}

func testUpsertBatchOutcomesInOrder(t *testing.T, f *fixture) {
	f.upsert(t, rec("patient", "A", "h1"), rec("patient", "B", "h1"))
	got := f.upsert(t,
		rec("patient", "A", "h1"), // unchanged
		rec("patient", "C", "h1"), // inserted
		rec("patient", "B", "h2"), // updated
		rec("patient", "C", "h1"), // unchanged: inserted earlier in this batch
		rec("patient", "C", "h2"), // updated within the batch
	)
	want := []store.UpsertOutcome{store.Unchanged, store.Inserted, store.Updated, store.Unchanged, store.Updated}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("outcome %d = %s, want %s", i, got[i], want[i])
		}
	}
	if r := f.get(t, "patient", "C"); r.Hash != "h2" {
		t.Errorf("C hash = %s, want h2 (last in batch wins)", r.Hash)
	}
}

func testUpsertBatchIsAtomic(t *testing.T, f *fixture) {
	bad := []store.NewRecord{
		{Kind: "", LocalID: "X", Hash: "h"},
		{Kind: "patient", LocalID: "", Hash: "h"},
		{Kind: "patient", LocalID: "X", Hash: ""},
	}
	for i, b := range bad {
		_, err := f.s.Upsert(f.ctx, []store.NewRecord{rec("patient", "good", "h1"), b})
		if err == nil {
			t.Errorf("bad record %d: Upsert succeeded, want an error", i)
		}
	}
	if _, err := f.s.Get(f.ctx, "patient", "good"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("a failed batch committed its valid record: Get err = %v, want ErrNotFound", err)
	}
}

func testUpsertEmpty(t *testing.T, f *fixture) {
	out, err := f.s.Upsert(f.ctx, nil)
	if err != nil || len(out) != 0 {
		t.Fatalf("Upsert(nil) = %v, %v; want no outcomes, nil", out, err)
	}
	// A nil payload is stored as empty.
	f.upsert(t, store.NewRecord{Kind: "patient", LocalID: "P", Hash: "h"})
	if r := f.get(t, "patient", "P"); len(r.Payload) != 0 {
		t.Errorf("payload = %q, want empty", r.Payload)
	}
}

func testClaimOrder(t *testing.T, f *fixture) {
	// Inserted in an order unlike the claim order; ids follow insertion.
	f.upsert(t,
		rec("score", "s1", "h"),
		rec("observation-extra", "u1", "h"), // unknown kind: last
		rec("administration", "a1", "h"),
		rec("order", "o1", "h"),
		rec("patient", "p1", "h"),
		rec("score", "s2", "h"),
		rec("patient", "p2", "h"),
		rec("order", "o2", "h"),
		rec("administration", "a2", "h"),
	)
	want := []string{
		"patient/p1", "patient/p2", "order/o1", "order/o2",
		"administration/a1", "administration/a2", "score/s1", "score/s2",
		"observation-extra/u1",
	}
	var got []string
	for _, n := range []int{3, 3, 3, 3} { // in batches: the order holds across claims
		got = append(got, keys(f.claim(t, "w", n, t0))...)
	}
	if !equalStrings(got, want) {
		t.Errorf("claim order = %v, want %v", got, want)
	}

	// Within a kind, by id: a retrying row claimed again keeps its place.
	g := &fixture{s: f.s, ctx: f.ctx}
	g.upsert(t, rec("patient", "p3", "h"), rec("patient", "p4", "h"))
	first := g.claim(t, "w", 2, t0)
	for _, r := range first {
		g.finish(t, r, "w", store.Outcome{State: store.StateRetrying, Hash: r.Hash, NextAttemptAt: t0}, t0)
	}
	if got := keys(g.claim(t, "w", 2, t0)); !equalStrings(got, []string{"patient/p3", "patient/p4"}) {
		t.Errorf("claim order of retrying rows = %v, want [patient/p3 patient/p4]", got)
	}
}

func testClaimLeases(t *testing.T, f *fixture) {
	f.upsert(t, rec("patient", "a", "h"), rec("patient", "b", "h"), rec("patient", "c", "h"))
	got, err := f.s.Claim(f.ctx, "w1", 2, t0, 90*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("Claim(2) = %d rows, want 2", len(got))
	}
	for _, r := range got {
		if r.State != store.StateInFlight || r.LeaseOwner != "w1" || !r.LeaseExpires.Equal(t0.Add(90*time.Second)) || r.Attempts != 1 {
			t.Errorf("claimed %s: state %s owner %q expires %v attempts %d, want in_flight w1 %v 1",
				r.LocalID, r.State, r.LeaseOwner, r.LeaseExpires, r.Attempts, t0.Add(90*time.Second))
		}
		if len(r.Payload) == 0 || r.Hash != "h" {
			t.Errorf("claimed %s: no payload or hash", r.LocalID)
		}
		stored := f.get(t, r.Kind, r.LocalID)
		if stored.State != store.StateInFlight || stored.LeaseOwner != "w1" || stored.Attempts != 1 {
			t.Errorf("stored %s: state %s owner %q attempts %d, want in_flight w1 1", r.LocalID, stored.State, stored.LeaseOwner, stored.Attempts)
		}
	}
	// A second owner gets only the rest.
	rest := f.claim(t, "w2", 10, t0)
	if k := keys(rest); !equalStrings(k, []string{"patient/c"}) {
		t.Errorf("second claim = %v, want [patient/c]", k)
	}
	if got := f.claim(t, "w3", 10, t0); len(got) != 0 {
		t.Errorf("third claim = %v, want none", keys(got))
	}
}

func testClaimSkipsUndeliverable(t *testing.T, f *fixture) {
	f.upsert(t, rec("patient", "waiting", "h"), rec("patient", "synced", "h"),
		rec("patient", "dead", "h"), rec("patient", "retrying", "h"), rec("patient", "inflight", "h"))
	for _, r := range f.claim(t, "w", 5, t0) {
		var out store.Outcome
		switch r.LocalID {
		case "waiting":
			out = store.Outcome{State: store.StateWaiting, WaitKind: "patient", WaitID: "other"}
		case "synced":
			out = synced("Patient/1", "1")
		case "dead":
			out = store.Outcome{State: store.StateDead, ErrorClass: "rejected_400"}
		case "retrying":
			out = store.Outcome{State: store.StateRetrying, NextAttemptAt: t0.Add(time.Hour)}
		case "inflight":
			continue
		}
		out.Hash = r.Hash
		f.finish(t, r, "w", out, t0)
	}
	if got := f.claim(t, "w2", 10, t0.Add(time.Minute-time.Second)); len(got) != 0 {
		t.Errorf("claim = %v, want nothing deliverable", keys(got))
	}
}

func testClaimRetryingWhenDue(t *testing.T, f *fixture) {
	f.upsert(t, rec("order", "o1", "h"))
	due := t0.Add(10 * time.Minute)
	f.deliver(t, "order", "o1", store.Outcome{State: store.StateRetrying, NextAttemptAt: due, ErrorClass: "http_429", ErrorDetail: "slow down"}, t0)
	r := f.wantState(t, "order", "o1", store.StateRetrying)
	if !r.NextAttemptAt.Equal(due) || r.ErrorClass != "http_429" || r.ErrorDetail != "slow down" || r.LeaseOwner != "" {
		t.Errorf("retrying row: next %v class %q detail %q owner %q", r.NextAttemptAt, r.ErrorClass, r.ErrorDetail, r.LeaseOwner)
	}
	if got := f.claim(t, "w", 1, due.Add(-time.Nanosecond)); len(got) != 0 {
		t.Fatalf("claimed before due: %v", keys(got))
	}
	got := f.claimOne(t, "w", due)
	if got.Attempts != 2 {
		t.Errorf("attempts = %d, want 2", got.Attempts)
	}
	if got.ErrorClass != "http_429" {
		t.Errorf("claimed row lost its last error class: %q", got.ErrorClass)
	}
}

func testClaimArguments(t *testing.T, f *fixture) {
	f.upsert(t, rec("patient", "a", "h"))
	if got, err := f.s.Claim(f.ctx, "w", 0, t0, lease); err != nil || len(got) != 0 {
		t.Errorf("Claim(n=0) = %d rows, %v; want none, nil", len(got), err)
	}
	if _, err := f.s.Claim(f.ctx, "", 1, t0, lease); err == nil {
		t.Error("Claim with an empty owner succeeded, want an error")
	}
	if _, err := f.s.Claim(f.ctx, "w", 1, t0, 0); err == nil {
		t.Error("Claim with a zero lease succeeded, want an error")
	}
	// None of those claimed anything.
	f.wantState(t, "patient", "a", store.StatePending)
}

func testClaimConcurrentExclusive(t *testing.T, f *fixture) {
	const rows, workers, batch = 300, 8, 7
	var recs []store.NewRecord
	for i := range rows {
		recs = append(recs, rec([]string{"patient", "order", "administration", "score"}[i%4], fmt.Sprint("r", i), "h"))
	}
	f.upsert(t, recs...)

	var (
		mu      sync.Mutex
		claimed = map[int64]string{}
		dups    []int64
		wg      sync.WaitGroup
		errs    = make(chan error, workers)
	)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			owner := fmt.Sprint("worker-", w)
			for {
				got, err := f.s.Claim(f.ctx, owner, batch, t0, lease)
				if err != nil {
					errs <- err
					return
				}
				if len(got) == 0 {
					return
				}
				mu.Lock()
				for _, r := range got {
					if _, ok := claimed[r.ID]; ok {
						dups = append(dups, r.ID)
					}
					claimed[r.ID] = owner
				}
				mu.Unlock()
				// Finish half of them at once, to mix writes of both kinds.
				for _, r := range got[:len(got)/2] {
					if err := f.s.Finish(f.ctx, r.ID, owner, store.Outcome{State: store.StateSynced, Hash: r.Hash}, t0); err != nil {
						errs <- err
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("worker: %v", err)
	}
	if len(dups) > 0 {
		t.Fatalf("rows claimed twice: %v", dups)
	}
	if len(claimed) != rows {
		t.Fatalf("claimed %d rows, want %d", len(claimed), rows)
	}
	// Every in_flight row is leased to the worker that claimed it.
	for _, r := range f.list(t, store.StateInFlight) {
		if r.LeaseOwner != claimed[r.ID] {
			t.Errorf("row %d leased to %q, claimed by %q", r.ID, r.LeaseOwner, claimed[r.ID])
		}
	}
}

// list returns every row in state.
func (f *fixture) list(t *testing.T, state store.State) []store.Record {
	t.Helper()
	var all []store.Record
	var after int64
	for {
		page, err := f.s.List(f.ctx, state, after, 100)
		if err != nil {
			t.Fatalf("List(%s): %v", state, err)
		}
		if len(page) == 0 {
			return all
		}
		all = append(all, page...)
		after = page[len(page)-1].ID
	}
}

func testFinishSynced(t *testing.T, f *fixture) {
	f.upsert(t, rec("patient", "P1", "h1"))
	r := f.claimOne(t, "w", t0)
	// A previous failure's error must be cleared by success.
	f.finish(t, r, "w", store.Outcome{State: store.StateRetrying, Hash: "h1", ErrorClass: "timeout", ErrorDetail: "x"}, t0)
	r = f.claimOne(t, "w", t0)
	at := t0.Add(time.Minute)
	f.finish(t, r, "w", store.Outcome{State: store.StateSynced, Hash: "h1", EHRID: "Patient/abc", EHRVersion: "7"}, at)
	got := f.wantState(t, "patient", "P1", store.StateSynced)
	if got.EHRID != "Patient/abc" || got.EHRVersion != "7" || got.SyncedHash != "h1" || !got.SyncedAt.Equal(at) {
		t.Errorf("synced row: EHR %q/%q SyncedHash %q SyncedAt %v, want Patient/abc/7 h1 %v",
			got.EHRID, got.EHRVersion, got.SyncedHash, got.SyncedAt, at)
	}
	if got.LeaseOwner != "" || !got.LeaseExpires.IsZero() || got.ErrorClass != "" || got.ErrorDetail != "" {
		t.Errorf("synced row keeps lease (%q, %v) or error (%q, %q)", got.LeaseOwner, got.LeaseExpires, got.ErrorClass, got.ErrorDetail)
	}
	if got.Attempts != 2 {
		t.Errorf("attempts = %d, want 2 (kept: it took two)", got.Attempts)
	}
	// Re-ingesting the synced content is a no-op.
	if out := f.upsert(t, rec("patient", "P1", "h1")); out[0] != store.Unchanged {
		t.Errorf("re-ingest synced content: %s, want unchanged", out[0])
	}
	f.wantState(t, "patient", "P1", store.StateSynced)
}

func testFinishSyncedKeepsKnownEHRID(t *testing.T, f *fixture) {
	f.upsert(t, rec("patient", "P1", "h1"))
	f.deliver(t, "patient", "P1", synced("Patient/abc", "1"), t0)
	f.upsert(t, rec("patient", "P1", "h2"))
	got := f.deliver(t, "patient", "P1", synced("", ""), t0.Add(time.Minute))
	if got.EHRID != "Patient/abc" || got.EHRVersion != "1" || got.SyncedHash != "h2" {
		t.Errorf("EHR %q/%q SyncedHash %q, want Patient/abc/1 h2 (empty outcome fields keep known values)",
			got.EHRID, got.EHRVersion, got.SyncedHash)
	}
}

// wantSent fails the test unless r holds sent as SentHash and derived as
// Derived (nil and empty are the same: none).
func wantSent(t *testing.T, what string, r store.Record, sent string, derived ...string) {
	t.Helper()
	if r.SentHash != sent || !equalStrings(r.Derived, derived) {
		t.Errorf("%s: SentHash %q Derived %q, want %q %q", what, r.SentHash, r.Derived, sent, derived)
	}
}

func testFinishSyncedSentHashDerived(t *testing.T, f *fixture) {
	f.upsert(t, rec("administration", "A1", "h1"))
	wantSent(t, "new row", f.get(t, "administration", "A1"), "")

	// Keys are opaque: separators, quotes, backslashes and non-ASCII text
	// come back as given, in the order given.
	odd := `Observation|urn:x|q"uo\te|é,[]`
	out := synced("MedicationAdministration/1", "1")
	out.SentHash, out.SetDerived, out.Derived = "f1", true, []string{"Observation|http://c.example/vitals|A1-2", odd, "Observation|http://c.example/vitals|A1-1"}
	got := f.deliver(t, "administration", "A1", out, t0)
	wantSent(t, "synced with both", got, "f1", "Observation|http://c.example/vitals|A1-2", odd, "Observation|http://c.example/vitals|A1-1")

	// SetDerived false keeps the list, even with Derived set; an empty
	// SentHash keeps the hash.
	f.upsert(t, rec("administration", "A1", "h2"))
	out = synced("", "2")
	out.Derived = []string{"ignored"}
	got = f.deliver(t, "administration", "A1", out, t0.Add(time.Minute))
	wantSent(t, "synced with neither", got, "f1", "Observation|http://c.example/vitals|A1-2", odd, "Observation|http://c.example/vitals|A1-1")

	// SetDerived with a nil list clears it; a new SentHash replaces the old.
	f.upsert(t, rec("administration", "A1", "h3"))
	out = synced("", "3")
	out.SentHash, out.SetDerived = "f3", true
	got = f.deliver(t, "administration", "A1", out, t0.Add(2*time.Minute))
	wantSent(t, "synced with a nil list", got, "f3")

	// An empty, non-nil list clears it too.
	f.upsert(t, rec("administration", "A1", "h4"))
	out = synced("", "4")
	out.SetDerived, out.Derived = true, []string{"Observation|s|one"}
	wantSent(t, "synced with one key", f.deliver(t, "administration", "A1", out, t0), "f3", "Observation|s|one")
	f.upsert(t, rec("administration", "A1", "h5"))
	out = synced("", "5")
	out.SetDerived, out.Derived = true, []string{}
	wantSent(t, "synced with an empty list", f.deliver(t, "administration", "A1", out, t0), "f3")

	// Other states ignore both.
	f.upsert(t, rec("administration", "A1", "h6"))
	out = synced("", "6")
	out.SetDerived, out.Derived = true, []string{"Observation|s|kept"}
	f.deliver(t, "administration", "A1", out, t0)
	f.upsert(t, rec("administration", "A1", "h7"))
	for _, state := range []store.State{store.StateRetrying, store.StateDead} {
		got := f.deliver(t, "administration", "A1", store.Outcome{State: state, ErrorClass: "x",
			SentHash: "other", SetDerived: true, Derived: []string{"Observation|s|other"}}, t0)
		if got.State != state {
			t.Fatalf("state = %s, want %s", got.State, state)
		}
		wantSent(t, string(state)+" outcome", got, "f3", "Observation|s|kept")
		if state == store.StateDead {
			if err := f.s.Requeue(f.ctx, got.ID, t0); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// testSentHashDerivedSurvive moves a row with a SentHash and a Derived list
// through every move that does not deliver it: each keeps both.
func testSentHashDerivedSurvive(t *testing.T, f *fixture) {
	keys := []string{"Observation|s|v1", "Observation|s|v2"}
	f.upsert(t, rec("administration", "A1", "h1"))
	out := synced("MedicationAdministration/1", "1")
	out.SentHash, out.SetDerived, out.Derived = "f1", true, keys
	f.deliver(t, "administration", "A1", out, t0)

	f.upsert(t, rec("administration", "A1", "h2"))
	wantSent(t, "after Upsert of changed content", f.wantState(t, "administration", "A1", store.StatePending), "f1", keys...)

	f.claimOne(t, "crashed", t0)
	if n, err := f.s.Rescue(f.ctx, t0.Add(2*lease)); err != nil || n != 1 {
		t.Fatalf("Rescue = %d, %v; want 1, nil", n, err)
	}
	wantSent(t, "after Rescue", f.wantState(t, "administration", "A1", store.StateRetrying), "f1", keys...)

	r := f.deliver(t, "administration", "A1", store.Outcome{State: store.StateDead, ErrorClass: "rejected_422"}, t0.Add(2*lease))
	wantSent(t, "after a dead outcome", r, "f1", keys...)
	if err := f.s.Requeue(f.ctx, r.ID, t0); err != nil {
		t.Fatal(err)
	}
	wantSent(t, "after Requeue", f.wantState(t, "administration", "A1", store.StatePending), "f1", keys...)

	r = f.deliver(t, "administration", "A1", store.Outcome{State: store.StateWaiting, WaitKind: "order", WaitID: "O1"}, t0)
	wantSent(t, "after a waiting outcome", r, "f1", keys...)
	if err := f.s.Requeue(f.ctx, r.ID, t0); err != nil {
		t.Fatal(err)
	}

	// A synced outcome for content that changed while in flight records
	// what was sent, since the EHR now holds it, and leaves the row pending.
	claimed := f.claimOne(t, "w", t0)
	f.upsert(t, rec("administration", "A1", "h3"))
	out = store.Outcome{State: store.StateSynced, Hash: claimed.Hash, EHRVersion: "2", SentHash: "f2", SetDerived: true, Derived: keys[1:]}
	f.finish(t, claimed, "w", out, t0)
	r = f.wantState(t, "administration", "A1", store.StatePending)
	wantSent(t, "after a stale synced outcome", r, "f2", keys[1:]...)
	if r.EHRVersion != "2" || r.SyncedHash != "h2" || r.Hash != "h3" {
		t.Errorf("after a stale synced outcome: EHRVersion %q SyncedHash %q Hash %q, want 2 h2 h3", r.EHRVersion, r.SyncedHash, r.Hash)
	}
}

func testFinishRetrying(t *testing.T, f *fixture) {
	f.upsert(t, rec("score", "s1", "h"))
	next := t0.Add(5 * time.Minute)
	got := f.deliver(t, "score", "s1", store.Outcome{State: store.StateRetrying, NextAttemptAt: next, ErrorClass: "http_503", ErrorDetail: "unavailable"}, t0)
	if got.State != store.StateRetrying || !got.NextAttemptAt.Equal(next) || got.ErrorClass != "http_503" ||
		got.ErrorDetail != "unavailable" || got.LeaseOwner != "" || !got.LeaseExpires.IsZero() || got.Attempts != 1 {
		t.Errorf("retrying row = %+v", got)
	}
}

// testFinishNotSyncedRecordsEHRID: an outcome other than synced that
// carries an EHR id and version (the primary write succeeded, a derived one
// failed) records them, so that the next attempt updates in place.
func testFinishNotSyncedRecordsEHRID(t *testing.T, f *fixture) {
	f.upsert(t, rec("administration", "A1", "h"))
	got := f.deliver(t, "administration", "A1", store.Outcome{State: store.StateRetrying, ErrorClass: "http_503",
		EHRID: "MedicationAdministration/7", EHRVersion: "1"}, t0)
	if got.State != store.StateRetrying || got.EHRID != "MedicationAdministration/7" || got.EHRVersion != "1" {
		t.Fatalf("retrying with an EHR id: state %s EHR %q/%q, want retrying MedicationAdministration/7/1", got.State, got.EHRID, got.EHRVersion)
	}
	if got.SyncedHash != "" || !got.SyncedAt.IsZero() {
		t.Errorf("retrying outcome marked the row synced: SyncedHash %q SyncedAt %v", got.SyncedHash, got.SyncedAt)
	}
	// The worker of the retry sees them.
	again := f.claimOne(t, "w", t0)
	if again.EHRID != "MedicationAdministration/7" || again.EHRVersion != "1" {
		t.Errorf("claimed retry: EHR %q/%q, want MedicationAdministration/7/1", again.EHRID, again.EHRVersion)
	}
	// Empty keeps them.
	f.finish(t, again, "w", store.Outcome{State: store.StateRetrying, Hash: "h", ErrorClass: "timeout"}, t0)
	got = f.get(t, "administration", "A1")
	if got.EHRID != "MedicationAdministration/7" || got.EHRVersion != "1" {
		t.Errorf("retrying without an EHR id: EHR %q/%q, want kept", got.EHRID, got.EHRVersion)
	}
	got = f.deliver(t, "administration", "A1", store.Outcome{State: store.StateRetrying, EHRVersion: "2", NextAttemptAt: t0.Add(time.Hour)}, t0)
	if got.EHRID != "MedicationAdministration/7" || got.EHRVersion != "2" {
		t.Errorf("retrying with a version only: EHR %q/%q, want MedicationAdministration/7/2", got.EHRID, got.EHRVersion)
	}

	for _, out := range []store.Outcome{
		{State: store.StateDead, ErrorClass: "rejected_422"},
		{State: store.StateWaiting, WaitKind: "order", WaitID: "nobody"},
	} {
		id := "A-" + string(out.State)
		f.upsert(t, rec("administration", id, "h"))
		out.EHRID, out.EHRVersion = "MedicationAdministration/"+id, "3"
		got := f.deliver(t, "administration", id, out, t0)
		if got.State != out.State || got.EHRID != out.EHRID || got.EHRVersion != "3" {
			t.Errorf("%s with an EHR id: state %s EHR %q/%q, want %s %s/3", out.State, got.State, got.EHRID, got.EHRVersion, out.State, out.EHRID)
		}
	}

	// Stale: the content changed while in flight; the row goes pending and
	// still knows the resource the old content wrote.
	f.upsert(t, rec("administration", "A-stale", "old"))
	r := f.claimOne(t, "w", t0)
	f.upsert(t, rec("administration", "A-stale", "new"))
	f.finish(t, r, "w", store.Outcome{State: store.StateRetrying, Hash: "old", EHRID: "MedicationAdministration/s", EHRVersion: "1"}, t0)
	got = f.get(t, "administration", "A-stale")
	wantPendingClean(t, got)
	if got.EHRID != "MedicationAdministration/s" || got.EHRVersion != "1" {
		t.Errorf("stale retrying with an EHR id: EHR %q/%q, want MedicationAdministration/s/1", got.EHRID, got.EHRVersion)
	}
}

func testFinishDead(t *testing.T, f *fixture) {
	f.upsert(t, rec("order", "o1", "h"))
	got := f.deliver(t, "order", "o1", store.Outcome{State: store.StateDead, ErrorClass: "rejected_422", ErrorDetail: `[{"severity":"error"}]`}, t0)
	if got.State != store.StateDead || got.ErrorClass != "rejected_422" || got.ErrorDetail != `[{"severity":"error"}]` ||
		got.LeaseOwner != "" || !got.LeaseExpires.IsZero() {
		t.Errorf("dead row = %+v", got)
	}
	if dead := f.list(t, store.StateDead); len(dead) != 1 || dead[0].ID != got.ID {
		t.Errorf("List(dead) = %v, want [%d]", ids(dead), got.ID)
	}
}

func testFinishWaitingThenWake(t *testing.T, f *fixture) {
	f.upsert(t,
		rec("order", "o1", "h"),          // waits for patient/P1
		rec("score", "s1", "h"),          // waits for patient/P1 too
		rec("administration", "a1", "h"), // waits for order/P1: same id, other kind
		rec("score", "s2", "h"),          // waits for patient/P2
	)
	deps := map[string][2]string{"o1": {"patient", "P1"}, "s1": {"patient", "P1"}, "a1": {"order", "P1"}, "s2": {"patient", "P2"}}
	for _, r := range f.claim(t, "w", 10, t0) {
		d := deps[r.LocalID]
		f.finish(t, r, "w", store.Outcome{State: store.StateWaiting, Hash: r.Hash, WaitKind: d[0], WaitID: d[1],
			ErrorClass: "dependency_pending", ErrorDetail: "waits"}, t0)
	}
	w := f.wantState(t, "order", "o1", store.StateWaiting)
	if w.WaitKind != "patient" || w.WaitID != "P1" || w.ErrorClass != "dependency_pending" || w.LeaseOwner != "" {
		t.Errorf("waiting row: wait (%q, %q) class %q owner %q", w.WaitKind, w.WaitID, w.ErrorClass, w.LeaseOwner)
	}
	if got := f.claim(t, "w", 10, t0); len(got) != 0 {
		t.Fatalf("claimed waiting rows: %v", keys(got))
	}

	f.upsert(t, rec("patient", "P1", "h"))
	f.deliver(t, "patient", "P1", synced("Patient/1", "1"), t0.Add(time.Second))

	for _, id := range []string{"o1", "s1"} {
		kind := map[string]string{"o1": "order", "s1": "score"}[id]
		r := f.get(t, kind, id)
		if r.State != store.StatePending || r.WaitKind != "" || r.WaitID != "" || r.ErrorClass != "" || r.ErrorDetail != "" {
			t.Errorf("%s/%s after wake: state %s wait (%q, %q) error (%q, %q), want pending with wait and error cleared",
				kind, id, r.State, r.WaitKind, r.WaitID, r.ErrorClass, r.ErrorDetail)
		}
	}
	f.wantState(t, "administration", "a1", store.StateWaiting)
	f.wantState(t, "score", "s2", store.StateWaiting)
	if got := keys(f.claim(t, "w", 10, t0.Add(2*time.Second))); !equalStrings(got, []string{"order/o1", "score/s1"}) {
		t.Errorf("claim after wake = %v, want [order/o1 score/s1]", got)
	}
}

func testFinishWaitingNoLostWakeup(t *testing.T, f *fixture) {
	f.upsert(t, rec("patient", "P1", "h"), rec("order", "o1", "h"))
	// The worker for o1 looked up P1 while it was pending...
	both := f.claim(t, "w", 2, t0)
	if k := keys(both); !equalStrings(k, []string{"patient/P1", "order/o1"}) {
		t.Fatalf("claim = %v", k)
	}
	// ...then P1 synced (waking nobody: o1 is not waiting yet)...
	f.finish(t, both[0], "w", store.Outcome{State: store.StateSynced, Hash: "h", EHRID: "Patient/1"}, t0)
	// ...and only then the worker reports o1 waiting on P1.
	f.finish(t, both[1], "w", store.Outcome{State: store.StateWaiting, Hash: "h", WaitKind: "patient", WaitID: "P1", ErrorClass: "dependency_pending"}, t0)
	r := f.get(t, "order", "o1")
	if r.State != store.StatePending {
		t.Fatalf("o1 state = %s, want pending (its dependency is synced)", r.State)
	}
	if r.WaitKind != "" || r.WaitID != "" || r.LeaseOwner != "" {
		t.Errorf("o1 wait (%q, %q) owner %q, want cleared", r.WaitKind, r.WaitID, r.LeaseOwner)
	}
	if got := keys(f.claim(t, "w", 10, t0)); !equalStrings(got, []string{"order/o1"}) {
		t.Errorf("claim = %v, want [order/o1]", got)
	}
}

func testFinishWaitingPolicyHold(t *testing.T, f *fixture) {
	f.upsert(t, rec("patient", "P1", "h"))
	got := f.deliver(t, "patient", "P1", store.Outcome{State: store.StateWaiting, ErrorClass: "patient_unknown", ErrorDetail: "patients.create is false"}, t0)
	if got.State != store.StateWaiting || got.WaitKind != "" || got.WaitID != "" || got.ErrorClass != "patient_unknown" {
		t.Fatalf("held row: state %s wait (%q, %q) class %q", got.State, got.WaitKind, got.WaitID, got.ErrorClass)
	}
	if c := f.claim(t, "w", 10, t0.Add(time.Hour)); len(c) != 0 {
		t.Fatalf("claimed a held row: %v", keys(c))
	}
	if err := f.s.Requeue(f.ctx, got.ID, t0); err != nil {
		t.Fatalf("Requeue: %v", err)
	}
	wantPendingClean(t, f.get(t, "patient", "P1"))
}

func testFinishStaleOutcome(t *testing.T, f *fixture) {
	// Every non-synced outcome for old content leaves the new content
	// pending (synced is covered by UpsertChangedInFlight).
	for _, out := range []store.Outcome{
		{State: store.StateRetrying, NextAttemptAt: t0.Add(time.Hour), ErrorClass: "http_503"},
		{State: store.StateDead, ErrorClass: "rejected_422", ErrorDetail: "bad"},
		{State: store.StateWaiting, WaitKind: "patient", WaitID: "nobody", ErrorClass: "dependency_pending"},
	} {
		t.Run(string(out.State), func(t *testing.T) {
			id := "stale-" + string(out.State)
			f.upsert(t, rec("order", id, "old"))
			r := f.claimOne(t, "w-"+id, t0)
			f.upsert(t, rec("order", id, "new"))
			out.Hash = "old"
			f.finish(t, r, "w-"+id, out, t0)
			got := f.get(t, "order", id)
			wantPendingClean(t, got)
			if got.Hash != "new" || got.SyncedHash != "" || got.EHRID != "" {
				t.Errorf("hash %q SyncedHash %q EHRID %q, want new, empty, empty", got.Hash, got.SyncedHash, got.EHRID)
			}
			again := f.claimOne(t, "w-"+id, t0)
			if again.Hash != "new" {
				t.Errorf("re-claimed hash %q, want new", again.Hash)
			}
			f.finish(t, again, "w-"+id, store.Outcome{State: store.StateSynced, Hash: "new"}, t0)
		})
	}

	// A stale synced outcome wakes waiters: the resource exists in the EHR.
	f.upsert(t, rec("patient", "P1", "old"), rec("order", "o1", "h"))
	both := f.claim(t, "w", 2, t0)
	f.finish(t, both[1], "w", store.Outcome{State: store.StateWaiting, Hash: "h", WaitKind: "patient", WaitID: "P1"}, t0)
	f.upsert(t, rec("patient", "P1", "new"))
	f.finish(t, both[0], "w", store.Outcome{State: store.StateSynced, Hash: "old", EHRID: "Patient/1"}, t0)
	f.wantState(t, "patient", "P1", store.StatePending)
	f.wantState(t, "order", "o1", store.StatePending)
}

func testFinishLeaseLost(t *testing.T, f *fixture) {
	f.upsert(t, rec("patient", "P1", "h"))
	okOut := store.Outcome{State: store.StateSynced, Hash: "h", EHRID: "Patient/1", EHRVersion: "1"}
	pending := f.get(t, "patient", "P1")
	// Not in flight at all.
	if err := f.s.Finish(f.ctx, pending.ID, "w1", okOut, t0); !errors.Is(err, store.ErrLeaseLost) {
		t.Errorf("Finish of a pending row: err = %v, want ErrLeaseLost", err)
	}
	r := f.claimOne(t, "w1", t0)
	// Another owner.
	if err := f.s.Finish(f.ctx, r.ID, "w2", okOut, t0); !errors.Is(err, store.ErrLeaseLost) {
		t.Errorf("Finish by another owner: err = %v, want ErrLeaseLost", err)
	}
	after := f.get(t, "patient", "P1")
	if after.State != store.StateInFlight || after.LeaseOwner != "w1" || after.EHRID != "" {
		t.Errorf("lost-lease Finish changed the row: state %s owner %q EHRID %q", after.State, after.LeaseOwner, after.EHRID)
	}
	// The owner, once.
	f.finish(t, r, "w1", okOut, t0)
	if err := f.s.Finish(f.ctx, r.ID, "w1", store.Outcome{State: store.StateDead, Hash: "h"}, t0); !errors.Is(err, store.ErrLeaseLost) {
		t.Errorf("second Finish: err = %v, want ErrLeaseLost", err)
	}
	f.wantState(t, "patient", "P1", store.StateSynced)
}

func testFinishNotFound(t *testing.T, f *fixture) {
	err := f.s.Finish(f.ctx, 424242, "w", store.Outcome{State: store.StateSynced, Hash: "h"}, t0)
	if !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Finish of an unknown id: err = %v, want ErrNotFound", err)
	}
}

func testFinishInvalidOutcome(t *testing.T, f *fixture) {
	f.upsert(t, rec("patient", "P1", "h"))
	r := f.claimOne(t, "w", t0)
	for _, out := range []store.Outcome{
		{State: store.StatePending, Hash: "h"},
		{State: store.StateInFlight, Hash: "h"},
		{State: "", Hash: "h"},
		{State: "bogus", Hash: "h"},
		{State: store.StateSynced},                            // no hash
		{State: store.StateWaiting, Hash: "h", WaitKind: "x"}, // half a dependency
	} {
		err := f.s.Finish(f.ctx, r.ID, "w", out, t0)
		if err == nil {
			t.Errorf("Finish(%+v) succeeded, want an error", out)
		}
		if errors.Is(err, store.ErrLeaseLost) || errors.Is(err, store.ErrNotFound) {
			t.Errorf("Finish(%+v) = %v, want an invalid-outcome error, not a sentinel", out, err)
		}
	}
	got := f.get(t, "patient", "P1")
	if got.State != store.StateInFlight || got.LeaseOwner != "w" {
		t.Errorf("invalid outcomes changed the row: state %s owner %q", got.State, got.LeaseOwner)
	}
	// The lease is intact: a valid outcome still works.
	f.finish(t, r, "w", store.Outcome{State: store.StateSynced, Hash: "h"}, t0)
}

// finishMany calls FinishMany and fails the test on a transaction error or
// a result of the wrong length.
func (f *fixture) finishMany(t *testing.T, owner string, items []store.Completion, now time.Time) []error {
	t.Helper()
	errs, err := f.s.FinishMany(f.ctx, owner, items, now)
	if err != nil {
		t.Fatalf("FinishMany(%s, %d items): %v", owner, len(items), err)
	}
	if len(errs) != len(items) {
		t.Fatalf("FinishMany: %d errors for %d items", len(errs), len(items))
	}
	return errs
}

func testFinishMany(t *testing.T, f *fixture) {
	f.upsert(t, rec("patient", "P1", "h"), rec("order", "o-before", "h"), rec("order", "o-after", "h"),
		rec("order", "o-retry", "h"), rec("order", "o-dead", "h"), rec("order", "o-invalid", "h"),
		rec("score", "s-other", "h"), rec("score", "s-pending", "h"))
	mine := f.claim(t, "w", 6, t0)
	if k := keys(mine); !equalStrings(k, []string{"patient/P1", "order/o-before", "order/o-after", "order/o-retry", "order/o-dead", "order/o-invalid"}) {
		t.Fatalf("claim = %v", k)
	}
	other := f.claimOne(t, "x", t0)
	pending := f.get(t, "score", "s-pending")
	row := map[string]store.Record{}
	for _, r := range mine {
		row[r.LocalID] = r
	}
	waitP1 := store.Outcome{State: store.StateWaiting, Hash: "h", WaitKind: "patient", WaitID: "P1", ErrorClass: "dependency_pending"}
	items := []store.Completion{
		{ID: row["o-before"].ID, Outcome: waitP1}, // woken by P1 below, in the same transaction
		{ID: row["P1"].ID, Outcome: store.Outcome{State: store.StateSynced, Hash: "h", EHRID: "Patient/1", EHRVersion: "1", SentHash: "f", SetDerived: true, Derived: []string{"k"}}},
		{ID: row["o-after"].ID, Outcome: waitP1}, // P1 is synced by now: pending, no lost wake-up
		{ID: row["o-retry"].ID, Outcome: store.Outcome{State: store.StateRetrying, Hash: "h", NextAttemptAt: t0.Add(time.Hour), ErrorClass: "http_503", EHRID: "MedicationRequest/3"}},
		{ID: other.ID, Outcome: store.Outcome{State: store.StateSynced, Hash: "h"}}, // x's lease
		{ID: row["o-invalid"].ID, Outcome: store.Outcome{State: store.StateSynced}}, // no hash
		{ID: 424242, Outcome: store.Outcome{State: store.StateSynced, Hash: "h"}},   // no such row
		{ID: row["o-dead"].ID, Outcome: store.Outcome{State: store.StateDead, Hash: "h", ErrorClass: "rejected_422", ErrorDetail: "d"}},
		{ID: pending.ID, Outcome: store.Outcome{State: store.StateSynced, Hash: "h"}},                     // not in flight
		{ID: row["P1"].ID, Outcome: store.Outcome{State: store.StateDead, Hash: "h", ErrorClass: "late"}}, // finished above
	}
	at := t0.Add(time.Second)
	errs := f.finishMany(t, "w", items, at)
	for i, want := range []error{nil, nil, nil, nil, store.ErrLeaseLost, nil, store.ErrNotFound, nil, store.ErrLeaseLost, store.ErrLeaseLost} {
		switch {
		case i == 5:
			if errs[i] == nil || errors.Is(errs[i], store.ErrLeaseLost) || errors.Is(errs[i], store.ErrNotFound) {
				t.Errorf("item %d (invalid outcome): err = %v, want an invalid-outcome error, not a sentinel", i, errs[i])
			}
		case want == nil && errs[i] != nil:
			t.Errorf("item %d: err = %v, want nil", i, errs[i])
		case want != nil && !errors.Is(errs[i], want):
			t.Errorf("item %d: err = %v, want %v", i, errs[i], want)
		}
	}

	p := f.wantState(t, "patient", "P1", store.StateSynced)
	if p.EHRID != "Patient/1" || p.SentHash != "f" || !equalStrings(p.Derived, []string{"k"}) || !p.SyncedAt.Equal(at) {
		t.Errorf("P1: EHRID %q SentHash %q Derived %q SyncedAt %v, want Patient/1 f [k] %v", p.EHRID, p.SentHash, p.Derived, p.SyncedAt, at)
	}
	for _, id := range []string{"o-before", "o-after"} {
		r := f.get(t, "order", id)
		if r.State != store.StatePending || r.WaitKind != "" || r.LeaseOwner != "" {
			t.Errorf("%s: state %s wait %q owner %q, want pending, no wait, no lease", id, r.State, r.WaitKind, r.LeaseOwner)
		}
	}
	if r := f.wantState(t, "order", "o-retry", store.StateRetrying); !r.NextAttemptAt.Equal(t0.Add(time.Hour)) || r.EHRID != "MedicationRequest/3" {
		t.Errorf("o-retry: next %v EHRID %q", r.NextAttemptAt, r.EHRID)
	}
	if r := f.wantState(t, "order", "o-dead", store.StateDead); r.ErrorClass != "rejected_422" || !r.UpdatedAt.Equal(at) {
		t.Errorf("o-dead: class %q updated %v", r.ErrorClass, r.UpdatedAt)
	}
	if r := f.wantState(t, "order", "o-invalid", store.StateInFlight); r.LeaseOwner != "w" {
		t.Errorf("o-invalid: owner %q, want w (an invalid outcome changes nothing)", r.LeaseOwner)
	}
	if r := f.wantState(t, "score", "s-other", store.StateInFlight); r.LeaseOwner != "x" {
		t.Errorf("s-other: owner %q, want x", r.LeaseOwner)
	}
	f.wantState(t, "score", "s-pending", store.StatePending)
}

// testFinishManyAsFinish gives two twin sets of rows the same outcomes, one
// set through Finish and the other through one FinishMany, and compares the
// rows and errors.
func testFinishManyAsFinish(t *testing.T, f *fixture) {
	outcomes := []store.Outcome{
		{State: store.StateSynced, EHRID: "MedicationRequest/1", EHRVersion: "4", SentHash: "f", SetDerived: true, Derived: []string{"a", "b"}},
		{State: store.StateSynced},
		{State: store.StateRetrying, NextAttemptAt: t0.Add(time.Hour), ErrorClass: "http_503", ErrorDetail: "busy", EHRID: "MedicationRequest/2", EHRVersion: "1"},
		{State: store.StateRetrying},
		{State: store.StateDead, ErrorClass: "rejected_422", ErrorDetail: `[{"x":1}]`},
		{State: store.StateWaiting, WaitKind: "patient", WaitID: "nobody", ErrorClass: "dependency_pending"},
		{State: store.StateWaiting, ErrorClass: "patient_unknown"},
		{State: store.StateSynced, EHRID: "MedicationRequest/8", SentHash: "g", SetDerived: true, Derived: []string{"c"}}, // stale
		{State: store.StateDead, ErrorClass: "rejected_400"},                                                              // stale
		{State: store.StateSynced, Hash: "-"},                                                                             // invalid: fixed below
		{State: store.StateSynced},                                                                                        // lease lost
	}
	const stale1, stale2, invalid, lost = 7, 8, 9, 10
	name := func(set string, i int) string { return fmt.Sprintf("%s-%02d", set, i) }
	// The lease-lost rows are patients, claimed first by someone else.
	f.upsert(t, rec("patient", name("a", lost), "h"), rec("patient", name("b", lost), "h"))
	f.claim(t, "x", 2, t0)
	for i := range outcomes[:lost] {
		f.upsert(t, rec("order", name("a", i), "h"), rec("order", name("b", i), "h"))
	}
	f.claim(t, "w", 100, t0)
	for _, i := range []int{stale1, stale2} {
		f.upsert(t, rec("order", name("a", i), "new"), rec("order", name("b", i), "new"))
	}
	kind := func(i int) string {
		if i == lost {
			return "patient"
		}
		return "order"
	}
	prepare := func(set string, i int) (int64, store.Outcome) {
		out := outcomes[i]
		if out.Hash == "" {
			out.Hash = "h"
		} else if i == invalid {
			out.Hash = ""
		}
		return f.get(t, kind(i), name(set, i)).ID, out
	}

	at := t0.Add(time.Minute)
	var errsA []error
	for i := range outcomes {
		id, out := prepare("a", i)
		errsA = append(errsA, f.s.Finish(f.ctx, id, "w", out, at))
	}
	var items []store.Completion
	for i := range outcomes {
		id, out := prepare("b", i)
		items = append(items, store.Completion{ID: id, Outcome: out})
	}
	errsB := f.finishMany(t, "w", items, at)

	for i := range outcomes {
		a, b := errsA[i], errsB[i]
		if (a == nil) != (b == nil) || errors.Is(a, store.ErrLeaseLost) != errors.Is(b, store.ErrLeaseLost) ||
			errors.Is(a, store.ErrNotFound) != errors.Is(b, store.ErrNotFound) {
			t.Errorf("outcome %d (%s): Finish err %v, FinishMany err %v", i, outcomes[i].State, a, b)
		}
		ra, rb := f.get(t, kind(i), name("a", i)), f.get(t, kind(i), name("b", i))
		// What differs between twins by construction.
		rb.ID, rb.LocalID, rb.Payload, rb.CreatedAt = ra.ID, ra.LocalID, ra.Payload, ra.CreatedAt
		if !reflect.DeepEqual(ra, rb) {
			t.Errorf("outcome %d (%s):\n Finish     %+v\n FinishMany %+v", i, outcomes[i].State, ra, rb)
		}
	}
	if errsA[invalid] == nil || !errors.Is(errsA[lost], store.ErrLeaseLost) {
		t.Errorf("twin set a: invalid err %v, lost err %v; the test does not test what it says", errsA[invalid], errsA[lost])
	}
}

func testFinishManyEmptyAndFailed(t *testing.T, f *fixture) {
	for _, items := range [][]store.Completion{nil, {}} {
		errs, err := f.s.FinishMany(f.ctx, "w", items, t0)
		if err != nil || len(errs) != 0 {
			t.Errorf("FinishMany(%v) = %v, %v; want no errors", items, errs, err)
		}
	}
	f.upsert(t, rec("patient", "P1", "h"), rec("patient", "P2", "h"))
	rs := f.claim(t, "w", 2, t0)
	ctx, cancel := context.WithCancel(f.ctx)
	cancel()
	items := []store.Completion{{ID: rs[0].ID, Outcome: store.Outcome{State: store.StateSynced, Hash: "h"}}, {ID: rs[1].ID, Outcome: store.Outcome{State: store.StateDead, Hash: "h"}}}
	if _, err := f.s.FinishMany(ctx, "w", items, t0); err == nil {
		t.Fatal("FinishMany with a canceled context succeeded, want an error")
	}
	for _, r := range rs {
		if got := f.get(t, r.Kind, r.LocalID); got.State != store.StateInFlight || got.LeaseOwner != "w" {
			t.Errorf("%s after a failed FinishMany: state %s owner %q, want in_flight w (nothing recorded)", r.LocalID, got.State, got.LeaseOwner)
		}
	}
	for i, err := range f.finishMany(t, "w", items, t0) {
		if err != nil {
			t.Errorf("item %d: %v", i, err)
		}
	}
}

func testLeaseExpiryAndRescue(t *testing.T, f *fixture) {
	f.upsert(t, rec("patient", "P1", "h"), rec("patient", "P2", "h"))
	old := f.claim(t, "crashed", 1, t0)[0]                     // lease until t0+lease
	later := f.claim(t, "alive", 1, t0.Add(30*time.Second))[0] // lease until t0+lease+30s

	if n, err := f.s.Rescue(f.ctx, t0.Add(lease-time.Second)); err != nil || n != 0 {
		t.Fatalf("Rescue before expiry = %d, %v; want 0, nil", n, err)
	}
	f.wantState(t, "patient", old.LocalID, store.StateInFlight)

	at := t0.Add(lease + time.Second)
	n, err := f.s.Rescue(f.ctx, at)
	if err != nil || n != 1 {
		t.Fatalf("Rescue after expiry = %d, %v; want 1, nil", n, err)
	}
	r := f.wantState(t, "patient", old.LocalID, store.StateRetrying)
	if r.LeaseOwner != "" || !r.LeaseExpires.IsZero() || r.Attempts != 1 {
		t.Errorf("rescued row: owner %q expires %v attempts %d, want no lease, attempts 1", r.LeaseOwner, r.LeaseExpires, r.Attempts)
	}
	f.wantState(t, "patient", later.LocalID, store.StateInFlight)
	if n, _ := f.s.Rescue(f.ctx, at); n != 0 {
		t.Errorf("second Rescue = %d, want 0", n)
	}

	// Claimable at once, by another worker.
	again := f.claimOne(t, "new", at)
	if again.ID != old.ID || again.Attempts != 2 || again.LeaseOwner != "new" {
		t.Fatalf("re-claim: id %d attempts %d owner %q, want %d 2 new", again.ID, again.Attempts, again.LeaseOwner, old.ID)
	}
	// The crashed worker comes back: its outcome is discarded.
	err = f.s.Finish(f.ctx, old.ID, "crashed", store.Outcome{State: store.StateDead, Hash: "h", ErrorClass: "x"}, at)
	if !errors.Is(err, store.ErrLeaseLost) {
		t.Fatalf("Finish by the expired owner: err = %v, want ErrLeaseLost", err)
	}
	if r := f.get(t, "patient", old.LocalID); r.State != store.StateInFlight || r.LeaseOwner != "new" {
		t.Errorf("after lost Finish: state %s owner %q, want in_flight new", r.State, r.LeaseOwner)
	}
	f.finish(t, again, "new", store.Outcome{State: store.StateSynced, Hash: "h"}, at)
	f.finish(t, later, "alive", store.Outcome{State: store.StateSynced, Hash: "h"}, at)
}

// wantLease fails the test unless the row of (kind, id) is in flight,
// leased to owner until expires, with attempts attempts.
func (f *fixture) wantLease(t *testing.T, kind, id, owner string, expires time.Time, attempts int) {
	t.Helper()
	r := f.get(t, kind, id)
	if r.State != store.StateInFlight || r.LeaseOwner != owner || !r.LeaseExpires.Equal(expires) || r.Attempts != attempts {
		t.Errorf("%s/%s: state %s owner %q expires %v attempts %d, want in_flight %s %v %d",
			kind, id, r.State, r.LeaseOwner, r.LeaseExpires, r.Attempts, owner, expires, attempts)
	}
}

func testRenew(t *testing.T, f *fixture) {
	f.upsert(t, rec("patient", "a", "h"), rec("patient", "b", "h"), rec("patient", "c", "h"),
		rec("patient", "d", "h"), rec("patient", "e", "h"), rec("patient", "f", "h"))
	mine := f.claim(t, "w1", 3, t0) // a, b, c
	theirs := f.claimOne(t, "w2", t0)
	f.finish(t, mine[2], "w1", store.Outcome{State: store.StateSynced, Hash: "h"}, t0)
	f.claimOne(t, "w1", t0) // e: w1's, but not in the list
	pending := f.get(t, "patient", "f")

	at, long := t0.Add(30*time.Second), 2*time.Minute
	ids := []int64{mine[0].ID, mine[1].ID, mine[2].ID, theirs.ID, pending.ID, 424242, mine[0].ID}
	n, err := f.s.Renew(f.ctx, "w1", ids, at, long)
	if err != nil || n != 2 {
		t.Fatalf("Renew = %d, %v; want 2 (a and b), nil", n, err)
	}
	f.wantLease(t, "patient", "a", "w1", at.Add(long), 1)
	f.wantLease(t, "patient", "b", "w1", at.Add(long), 1)
	f.wantLease(t, "patient", "d", "w2", t0.Add(lease), 1)
	f.wantLease(t, "patient", "e", "w1", t0.Add(lease), 1)
	f.wantState(t, "patient", "c", store.StateSynced)
	f.wantState(t, "patient", "f", store.StatePending)

	// The renewed leases outlive the old expiry; the others do not.
	if n, err := f.s.Rescue(f.ctx, t0.Add(lease+time.Second)); err != nil || n != 2 {
		t.Fatalf("Rescue after the first leases = %d, %v; want 2 (d and e), nil", n, err)
	}
	f.wantLease(t, "patient", "a", "w1", at.Add(long), 1)

	// An expired lease nobody rescued is still the owner's: Renew extends it.
	later := at.Add(long + time.Minute)
	if n, err := f.s.Renew(f.ctx, "w1", []int64{mine[0].ID}, later, lease); err != nil || n != 1 {
		t.Fatalf("Renew of an expired, unrescued lease = %d, %v; want 1, nil", n, err)
	}
	f.wantLease(t, "patient", "a", "w1", later.Add(lease), 1)
	if n, err := f.s.Rescue(f.ctx, later); err != nil || n != 1 {
		t.Fatalf("Rescue = %d, %v; want 1 (b), nil", n, err)
	}
	// Once rescued, it is nobody's.
	if n, err := f.s.Renew(f.ctx, "w1", []int64{mine[1].ID}, later, lease); err != nil || n != 0 {
		t.Errorf("Renew of a rescued row = %d, %v; want 0, nil", n, err)
	}
	f.wantState(t, "patient", "b", store.StateRetrying)
	f.finish(t, mine[0], "w1", store.Outcome{State: store.StateSynced, Hash: "h"}, later)
}

// testRenewMany renews more leases than a driver may bind in one statement.
func testRenewMany(t *testing.T, f *fixture) {
	const rows = 450
	var recs []store.NewRecord
	for i := range rows {
		recs = append(recs, rec("score", fmt.Sprintf("s%03d", i), "h"))
	}
	f.upsert(t, recs...)
	claimed := f.claim(t, "w", rows, t0)
	if len(claimed) != rows {
		t.Fatalf("claimed %d rows, want %d", len(claimed), rows)
	}
	ids := append(ids(claimed), ids(claimed[:rows/2])...) // some twice
	slices.Reverse(ids)
	at := t0.Add(time.Minute)
	n, err := f.s.Renew(f.ctx, "w", ids, at, lease)
	if err != nil || n != rows {
		t.Fatalf("Renew of %d ids (%d rows) = %d, %v; want %d, nil", len(ids), rows, n, err, rows)
	}
	for _, r := range f.list(t, store.StateInFlight) {
		if !r.LeaseExpires.Equal(at.Add(lease)) {
			t.Fatalf("%s: lease expires %v, want %v", r.LocalID, r.LeaseExpires, at.Add(lease))
		}
	}
}

func testRenewArguments(t *testing.T, f *fixture) {
	f.upsert(t, rec("patient", "a", "h"))
	r := f.claimOne(t, "w", t0)
	for _, ids := range [][]int64{nil, {}} {
		if n, err := f.s.Renew(f.ctx, "w", ids, t0, lease); err != nil || n != 0 {
			t.Errorf("Renew(%v) = %d, %v; want 0, nil", ids, n, err)
		}
	}
	if _, err := f.s.Renew(f.ctx, "", []int64{r.ID}, t0, lease); err == nil {
		t.Error("Renew with an empty owner succeeded, want an error")
	}
	if _, err := f.s.Renew(f.ctx, "w", []int64{r.ID}, t0, 0); err == nil {
		t.Error("Renew with a zero lease succeeded, want an error")
	}
	f.wantLease(t, "patient", "a", "w", t0.Add(lease), 1)
}

func testFinishAfterExpiryNotReclaimed(t *testing.T, f *fixture) {
	f.upsert(t, rec("patient", "P1", "h"))
	r := f.claimOne(t, "slow", t0)
	// The lease ran out, but nobody rescued or claimed the row: the slow
	// worker's answer is still the best there is.
	f.finish(t, r, "slow", store.Outcome{State: store.StateSynced, Hash: "h", EHRID: "Patient/1"}, t0.Add(2*lease))
	f.wantState(t, "patient", "P1", store.StateSynced)
}

func testRequeue(t *testing.T, f *fixture) {
	f.upsert(t, rec("order", "dead", "h"), rec("order", "waiting", "h"), rec("order", "synced", "h"), rec("order", "pending", "h"))
	for _, r := range f.claim(t, "w", 3, t0) {
		out := map[string]store.Outcome{
			"dead":    {State: store.StateDead, ErrorClass: "rejected_422", ErrorDetail: "d"},
			"waiting": {State: store.StateWaiting, WaitKind: "patient", WaitID: "X", ErrorClass: "dependency_pending"},
			"synced":  {State: store.StateSynced},
		}[r.LocalID]
		out.Hash = r.Hash
		f.finish(t, r, "w", out, t0)
	}
	for _, id := range []string{"dead", "waiting"} {
		r := f.get(t, "order", id)
		if err := f.s.Requeue(f.ctx, r.ID, t0.Add(time.Minute)); err != nil {
			t.Fatalf("Requeue(%s): %v", id, err)
		}
		got := f.get(t, "order", id)
		wantPendingClean(t, got)
		if !got.UpdatedAt.Equal(t0.Add(time.Minute)) {
			t.Errorf("Requeue(%s): UpdatedAt = %v, want %v", id, got.UpdatedAt, t0.Add(time.Minute))
		}
	}
	for _, id := range []string{"synced", "pending", "dead"} { // dead is pending by now
		r := f.get(t, "order", id)
		if err := f.s.Requeue(f.ctx, r.ID, t0); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("Requeue(%s row): err = %v, want ErrNotFound", r.State, err)
		}
	}
	f.wantState(t, "order", "synced", store.StateSynced)
	if err := f.s.Requeue(f.ctx, 987654, t0); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Requeue(unknown id): err = %v, want ErrNotFound", err)
	}
}

func testRequeueAll(t *testing.T, f *fixture) {
	f.upsert(t, rec("score", "d1", "h"), rec("score", "d2", "h"), rec("score", "w1", "h"), rec("score", "r1", "h"))
	for _, r := range f.claim(t, "w", 4, t0) {
		out := store.Outcome{State: store.StateDead, ErrorClass: "rejected_400"}
		switch r.LocalID {
		case "w1":
			out = store.Outcome{State: store.StateWaiting, WaitKind: "administration", WaitID: "a"}
		case "r1":
			out = store.Outcome{State: store.StateRetrying, NextAttemptAt: t0.Add(time.Hour)}
		}
		out.Hash = r.Hash
		f.finish(t, r, "w", out, t0)
	}
	n, err := f.s.RequeueAll(f.ctx, t0)
	if err != nil || n != 2 {
		t.Fatalf("RequeueAll = %d, %v; want 2, nil", n, err)
	}
	wantPendingClean(t, f.get(t, "score", "d1"))
	wantPendingClean(t, f.get(t, "score", "d2"))
	f.wantState(t, "score", "w1", store.StateWaiting)
	f.wantState(t, "score", "r1", store.StateRetrying)
	if n, err := f.s.RequeueAll(f.ctx, t0); err != nil || n != 0 {
		t.Errorf("second RequeueAll = %d, %v; want 0, nil", n, err)
	}
}

func testResync(t *testing.T, f *fixture) {
	f.upsert(t, rec("patient", "A", "h"), rec("patient", "B", "h"), rec("order", "C", "h"),
		rec("patient", "dead", "h"), rec("patient", "inflight", "h"), rec("patient", "retrying", "h"), rec("patient", "waiting", "h"))
	syncedAt := map[string]time.Time{"A": t0, "B": t0.Add(time.Hour), "C": t0.Add(2 * time.Hour)}
	for _, r := range f.claim(t, "w", 10, t0) {
		var out store.Outcome
		switch r.LocalID {
		case "A", "B", "C":
			out = synced("X/"+r.LocalID, "3")
			out.SentHash, out.SetDerived, out.Derived = "f-"+r.LocalID, true, []string{"d-" + r.LocalID}
		case "dead":
			out = store.Outcome{State: store.StateDead, ErrorClass: "rejected_422"}
		case "retrying":
			out = store.Outcome{State: store.StateRetrying, NextAttemptAt: t0.Add(48 * time.Hour), ErrorClass: "http_503"}
		case "waiting":
			out = store.Outcome{State: store.StateWaiting, WaitKind: "patient", WaitID: "nobody"}
		case "inflight":
			continue
		}
		out.Hash = r.Hash
		f.finish(t, r, "w", out, syncedAt[r.LocalID])
	}
	before := map[string]store.Record{}
	for _, id := range []string{"A", "B"} {
		before[id] = f.get(t, "patient", id)
	}
	before["C"] = f.get(t, "order", "C")
	f.upsert(t, rec("score", "pending", "h"))

	now := t0.Add(24 * time.Hour)
	resync := func(kind string, since time.Time, want int) {
		t.Helper()
		if n, err := f.s.Resync(f.ctx, kind, since, now); err != nil || n != want {
			t.Fatalf("Resync(%q, %v) = %d, %v; want %d, nil", kind, since, n, err, want)
		}
	}
	check := func(kind, id string) {
		t.Helper()
		r, b := f.get(t, kind, id), before[id]
		wantPendingClean(t, r)
		if r.Hash != b.Hash || !bytes.Equal(r.Payload, b.Payload) || r.EHRID != b.EHRID || r.EHRVersion != b.EHRVersion ||
			r.SyncedHash != b.SyncedHash || !r.SyncedAt.Equal(b.SyncedAt) {
			t.Errorf("%s after Resync: hash %q EHR %q/%q SyncedHash %q SyncedAt %v, want them kept (%q %q/%q %q %v)",
				id, r.Hash, r.EHRID, r.EHRVersion, r.SyncedHash, r.SyncedAt, b.Hash, b.EHRID, b.EHRVersion, b.SyncedHash, b.SyncedAt)
		}
		wantSent(t, id+" after Resync", r, "f-"+id, "d-"+id)
		if !r.UpdatedAt.Equal(now) {
			t.Errorf("%s after Resync: UpdatedAt %v, want %v", id, r.UpdatedAt, now)
		}
	}

	resync("order", time.Time{}, 1)
	check("order", "C")
	f.wantState(t, "patient", "A", store.StateSynced)
	resync("nosuchkind", time.Time{}, 0)
	resync("", t0.Add(time.Hour), 1) // B, synced exactly at since; not A, before
	check("patient", "B")
	f.wantState(t, "patient", "A", store.StateSynced)
	resync("", time.Time{}, 1)
	check("patient", "A")
	resync("", time.Time{}, 0)

	// Only synced rows move.
	f.wantState(t, "patient", "dead", store.StateDead)
	f.wantState(t, "patient", "inflight", store.StateInFlight)
	f.wantState(t, "patient", "retrying", store.StateRetrying)
	f.wantState(t, "patient", "waiting", store.StateWaiting)
	f.wantState(t, "score", "pending", store.StatePending)

	// Claimable again, with what the EHR holds.
	got := f.claim(t, "w2", 10, now)
	if k := keys(got); !equalStrings(k, []string{"patient/A", "patient/B", "order/C", "score/pending"}) {
		t.Fatalf("claim after Resync = %v, want [patient/A patient/B order/C score/pending]", k)
	}
	if got[0].Attempts != 1 || got[0].EHRID != "X/A" || got[0].SentHash != "f-A" {
		t.Errorf("claimed A: attempts %d EHRID %q SentHash %q, want 1 X/A f-A", got[0].Attempts, got[0].EHRID, got[0].SentHash)
	}
}

func testCounts(t *testing.T, f *fixture) {
	c, err := f.s.Counts(f.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if total(c) != 0 {
		t.Fatalf("Counts of an empty store = %v, want none", c)
	}
	f.upsert(t, rec("patient", "p1", "h"), rec("patient", "p2", "h"), rec("patient", "p3", "h"),
		rec("order", "o1", "h"), rec("order", "o2", "h"), rec("score", "s1", "h"))
	// p1 synced, p2 in flight, o1 dead; p3, o2, s1 pending.
	rs := f.claim(t, "w", 2, t0) // p1, p2
	f.finish(t, rs[0], "w", store.Outcome{State: store.StateSynced, Hash: "h"}, t0)
	o1 := f.get(t, "order", "o1")
	rs = f.claim(t, "w", 2, t0) // p3, o1
	for _, r := range rs {
		out := store.Outcome{State: store.StateRetrying, Hash: "h"}
		if r.ID == o1.ID {
			out = store.Outcome{State: store.StateDead, Hash: "h"}
		}
		f.finish(t, r, "w", out, t0)
	}
	if r := f.get(t, "patient", "p3"); r.State != store.StateRetrying {
		t.Fatalf("p3 = %s, want retrying", r.State)
	}
	c, err = f.s.Counts(f.ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := store.Counts{
		"patient": {store.StateSynced: 1, store.StateInFlight: 1, store.StateRetrying: 1},
		"order":   {store.StateDead: 1, store.StatePending: 1},
		"score":   {store.StatePending: 1},
	}
	for kind, states := range want {
		for state, n := range states {
			if c[kind][state] != n {
				t.Errorf("Counts[%s][%s] = %d, want %d", kind, state, c[kind][state], n)
			}
		}
	}
	if total(c) != 6 {
		t.Errorf("Counts total = %d, want 6 (%v)", total(c), c)
	}
}

func total(c store.Counts) int {
	n := 0
	for _, states := range c {
		for _, k := range states {
			n += k
		}
	}
	return n
}

func testOldestPending(t *testing.T, f *fixture) {
	if _, ok, err := f.s.OldestPending(f.ctx); err != nil || ok {
		t.Fatalf("OldestPending of an empty store: ok %v, err %v; want false, nil", ok, err)
	}
	f.upsert(t, rec("patient", "first", "h"))
	f.upsert(t, rec("patient", "second", "h"), rec("patient", "third", "h"))
	first, second := f.get(t, "patient", "first"), f.get(t, "patient", "second")

	check := func(want time.Time, wantOK bool) {
		t.Helper()
		got, ok, err := f.s.OldestPending(f.ctx)
		if err != nil || ok != wantOK || (ok && !got.Equal(want)) {
			t.Errorf("OldestPending = %v, %v, %v; want %v, %v, nil", got, ok, err, want, wantOK)
		}
	}
	check(first.CreatedAt, true)

	// first retrying, then waiting: still counted.
	r := f.claimOne(t, "w", t0)
	f.finish(t, r, "w", store.Outcome{State: store.StateRetrying, Hash: "h", NextAttemptAt: t0.Add(time.Hour)}, t0)
	check(first.CreatedAt, true)
	r = f.claimOne(t, "w", t0)   // second (first is not due)
	r2 := f.claimOne(t, "w", t0) // third
	f.finish(t, r, "w", store.Outcome{State: store.StateWaiting, Hash: "h", WaitKind: "patient", WaitID: "zzz"}, t0)
	// third in flight is not counted, second waiting is.
	fr := f.claimOne(t, "w", t0.Add(2*time.Hour)) // first again
	check(second.CreatedAt, true)
	for _, x := range []store.Record{fr, r2} {
		f.finish(t, x, "w", store.Outcome{State: store.StateSynced, Hash: "h"}, t0)
	}
	if err := f.s.Requeue(f.ctx, second.ID, t0); err != nil {
		t.Fatal(err)
	}
	r = f.claimOne(t, "w", t0)
	f.finish(t, r, "w", store.Outcome{State: store.StateDead, Hash: "h"}, t0)
	// All synced or dead.
	check(time.Time{}, false)
}

func testListPaging(t *testing.T, f *fixture) {
	var recs []store.NewRecord
	for i := range 25 {
		recs = append(recs, rec("score", fmt.Sprintf("s%02d", i), "h"))
	}
	recs = append(recs, rec("patient", "p", "h"))
	f.upsert(t, recs...)
	f.deliver(t, "patient", "p", synced("Patient/1", "1"), t0) // patient first in claim order

	var got []store.Record
	var sizes []int
	var after int64
	for {
		page, err := f.s.List(f.ctx, store.StatePending, after, 10)
		if err != nil {
			t.Fatal(err)
		}
		sizes = append(sizes, len(page))
		if len(page) == 0 {
			break
		}
		got = append(got, page...)
		after = page[len(page)-1].ID
	}
	if fmt.Sprint(sizes) != "[10 10 5 0]" {
		t.Errorf("page sizes = %v, want [10 10 5 0]", sizes)
	}
	if len(got) != 25 {
		t.Fatalf("listed %d pending rows, want 25", len(got))
	}
	if !sort.SliceIsSorted(got, func(i, j int) bool { return got[i].ID < got[j].ID }) {
		t.Errorf("List not ordered by id: %v", ids(got))
	}
	for i, r := range got {
		if want := fmt.Sprintf("s%02d", i); r.LocalID != want || r.State != store.StatePending || len(r.Payload) == 0 {
			t.Errorf("row %d = %s %s (payload %d bytes), want %s pending with payload", i, r.LocalID, r.State, len(r.Payload), want)
		}
	}
	if s := f.list(t, store.StateSynced); len(s) != 1 || s[0].LocalID != "p" {
		t.Errorf("List(synced) = %v, want [patient/p]", keys(s))
	}
	if d := f.list(t, store.StateDead); len(d) != 0 {
		t.Errorf("List(dead) = %v, want none", keys(d))
	}
	if page, err := f.s.List(f.ctx, store.StatePending, 0, 0); err != nil || len(page) != 0 {
		t.Errorf("List(limit 0) = %d rows, %v; want none", len(page), err)
	}
}

func testGetNotFound(t *testing.T, f *fixture) {
	f.upsert(t, rec("patient", "P1", "h"))
	if _, err := f.s.Get(f.ctx, "patient", "P2"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Get(unknown id): err = %v, want ErrNotFound", err)
	}
	if _, err := f.s.Get(f.ctx, "order", "P1"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Get(other kind): err = %v, want ErrNotFound", err)
	}
	if _, err := f.s.GetByID(f.ctx, 999999); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetByID(unknown): err = %v, want ErrNotFound", err)
	}
}

func testGetMany(t *testing.T, f *fixture) {
	for _, keys := range [][]store.Key{nil, {}, {{Kind: "patient", LocalID: "absent"}}} {
		got, err := f.s.GetMany(f.ctx, keys)
		if err != nil || got == nil || len(got) != 0 {
			t.Errorf("GetMany(%v) of an empty store = %v, %v; want an empty map, nil", keys, got, err)
		}
	}
	// More rows than a driver may bind in one statement.
	const scores = 450
	recs := []store.NewRecord{rec("patient", "P1", "h"), rec("patient", "P2", "h"), rec("order", "P1", "h")}
	for i := range scores {
		recs = append(recs, rec("score", fmt.Sprintf("s%03d", i), "h"))
	}
	f.upsert(t, recs...)
	out := synced("Patient/1", "1")
	out.SentHash, out.SetDerived, out.Derived = "f", true, []string{"x", "y"}
	f.deliver(t, "patient", "P1", out, t0)

	present := []store.Key{{Kind: "patient", LocalID: "P1"}, {Kind: "order", LocalID: "P1"}}
	for i := range scores {
		present = append(present, store.Key{Kind: "score", LocalID: fmt.Sprintf("s%03d", i)})
	}
	absent := []store.Key{{Kind: "patient", LocalID: "absent"}, {Kind: "order", LocalID: "P2"}, {},
		{Kind: "score", LocalID: "s999"}, {Kind: "P1", LocalID: "patient"}}
	var keys []store.Key
	keys = append(keys, absent[:2]...)
	keys = append(keys, present...)
	keys = append(keys, present[:3]...) // repeated
	keys = append(keys, absent[2:]...)
	slices.Reverse(keys[len(keys)/2:])

	got, err := f.s.GetMany(f.ctx, keys)
	if err != nil {
		t.Fatalf("GetMany(%d keys): %v", len(keys), err)
	}
	if len(got) != len(present) {
		t.Errorf("GetMany returned %d rows, want %d", len(got), len(present))
	}
	for _, k := range present {
		want := f.get(t, k.Kind, k.LocalID)
		if r, ok := got[k]; !ok {
			t.Errorf("GetMany: %s/%s missing", k.Kind, k.LocalID)
		} else if !reflect.DeepEqual(r, want) {
			t.Errorf("GetMany[%s/%s] =\n %+v\nGet =\n %+v", k.Kind, k.LocalID, r, want)
		}
	}
	for _, k := range absent {
		if r, ok := got[k]; ok {
			t.Errorf("GetMany: absent key %q/%q has row %d", k.Kind, k.LocalID, r.ID)
		}
	}
	if p := got[store.Key{Kind: "patient", LocalID: "P1"}]; p.State != store.StateSynced || p.SentHash != "f" || !equalStrings(p.Derived, []string{"x", "y"}) {
		t.Errorf("GetMany[patient/P1]: state %s SentHash %q Derived %q, want synced f [x y]", p.State, p.SentHash, p.Derived)
	}

	// One key, as the engine asks for a single dependency.
	one, err := f.s.GetMany(f.ctx, []store.Key{{Kind: "patient", LocalID: "P2"}})
	if r, ok := one[store.Key{Kind: "patient", LocalID: "P2"}]; err != nil || len(one) != 1 || !ok || r.LocalID != "P2" || r.Kind != "patient" {
		t.Errorf("GetMany(patient/P2) = %v, %v; want that one row", one, err)
	}
}

// testConcurrentPipeline runs ingest, workers (with dependencies) and the
// rescuer at once, as the engine does, and checks that every record ends
// synced with its last content. With batch, each worker reports the
// outcomes of a claim with one FinishMany.
func testConcurrentPipeline(t *testing.T, f *fixture, batch bool) {
	const patients, ordersPer, workers = 20, 3, 4
	ingestDone := make(chan struct{})
	errs := make(chan error, workers+2)

	go func() { // ingest: patients and orders, then a second version of some
		defer close(ingestDone)
		for v := 1; v <= 2; v++ {
			for p := range patients {
				if v == 2 && p%3 != 0 {
					continue
				}
				batch := []store.NewRecord{rec("order", fmt.Sprintf("o%d-0", p), fmt.Sprint("v", v))}
				batch = append(batch, rec("patient", fmt.Sprint("p", p), fmt.Sprint("v", v)))
				for o := 1; o < ordersPer; o++ {
					batch = append(batch, rec("order", fmt.Sprintf("o%d-%d", p, o), fmt.Sprint("v", v)))
				}
				if _, err := f.s.Upsert(f.ctx, batch); err != nil {
					errs <- err
					return
				}
			}
		}
	}()

	var wg sync.WaitGroup
	stop := make(chan struct{})
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			owner := fmt.Sprint("w", w)
			for {
				select {
				case <-stop:
					return
				default:
				}
				recs, err := f.s.Claim(f.ctx, owner, 3, t0, lease)
				if err != nil {
					errs <- err
					return
				}
				if len(recs) == 0 {
					time.Sleep(time.Millisecond) // nothing to do yet; poll
					continue
				}
				var done []store.Completion
				for _, r := range recs {
					out := store.Outcome{State: store.StateSynced, Hash: r.Hash}
					if r.Kind == "order" {
						// An order needs its patient synced.
						var p int
						fmt.Sscanf(r.LocalID, "o%d-", &p)
						dep, err := f.s.Get(f.ctx, "patient", fmt.Sprint("p", p))
						if err != nil && !errors.Is(err, store.ErrNotFound) {
							errs <- err
							return
						}
						if err != nil || dep.State != store.StateSynced {
							out = store.Outcome{State: store.StateWaiting, Hash: r.Hash, WaitKind: "patient", WaitID: fmt.Sprint("p", p)}
						}
					}
					if batch {
						done = append(done, store.Completion{ID: r.ID, Outcome: out})
						continue
					}
					if err := f.s.Finish(f.ctx, r.ID, owner, out, t0); err != nil {
						errs <- err
						return
					}
				}
				if len(done) > 0 {
					itemErrs, err := f.s.FinishMany(f.ctx, owner, done, t0)
					if err == nil {
						err = errors.Join(itemErrs...)
					}
					if err != nil {
						errs <- err
						return
					}
				}
			}
		}()
	}

	// Wait for ingest, then until every record is synced. Once ingest is
	// done and a snapshot shows nothing pending, retrying or in flight, no
	// state can change any more: a record not synced by then is stuck (a
	// lost wake-up, say).
	fail := func(format string, args ...any) {
		t.Helper()
		close(stop)
		wg.Wait()
		t.Fatalf(format, args...)
	}
	<-ingestDone
	for {
		c, err := f.s.Counts(f.ctx)
		if err != nil {
			fail("Counts: %v", err)
		}
		if c["patient"][store.StateSynced] == patients && c["order"][store.StateSynced] == patients*ordersPer {
			break
		}
		busy := 0
		for _, states := range c {
			busy += states[store.StatePending] + states[store.StateRetrying] + states[store.StateInFlight]
		}
		if busy == 0 {
			fail("pipeline stuck: nothing left to deliver, but counts are %v", c)
		}
		select {
		case err := <-errs:
			fail("pipeline: %v", err)
		case <-time.After(5 * time.Millisecond): // poll
		}
	}
	close(stop)
	wg.Wait()
	select {
	case err := <-errs:
		t.Fatalf("pipeline: %v", err)
	default:
	}
	for p := range patients {
		want := "v1"
		if p%3 == 0 {
			want = "v2"
		}
		for _, key := range [][2]string{{"patient", fmt.Sprint("p", p)}, {"order", fmt.Sprintf("o%d-0", p)}} {
			r := f.get(t, key[0], key[1])
			if r.State != store.StateSynced || r.Hash != want || r.SyncedHash != want {
				t.Errorf("%s/%s: state %s hash %s synced %s, want synced %s", key[0], key[1], r.State, r.Hash, r.SyncedHash, want)
			}
		}
	}
}

func testMeta(t *testing.T, f *fixture) {
	if v, err := f.s.Meta(f.ctx, "mapping.fingerprint"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Meta of an unset key = %q, %v; want ErrNotFound", v, err)
	}
	set := func(k, v string) {
		t.Helper()
		if err := f.s.SetMeta(f.ctx, k, v); err != nil {
			t.Fatalf("SetMeta(%q): %v", k, err)
		}
	}
	want := func(k, v string) {
		t.Helper()
		if got, err := f.s.Meta(f.ctx, k); err != nil || got != v {
			t.Errorf("Meta(%q) = %q, %v; want %q, nil", k, got, err, v)
		}
	}
	big := strings.Repeat("é0123456789", 10000)
	set("mapping.fingerprint", "sha256:aaa")
	set("Mapping.Fingerprint", "other case")
	set("empty", "")
	set("big", big)
	want("mapping.fingerprint", "sha256:aaa")
	want("Mapping.Fingerprint", "other case")
	want("empty", "") // stored, not missing
	want("big", big)
	set("mapping.fingerprint", "sha256:bbb") // replace
	want("mapping.fingerprint", "sha256:bbb")
	want("Mapping.Fingerprint", "other case")
	if _, err := f.s.Meta(f.ctx, "mapping"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Meta of a key prefix: err = %v, want ErrNotFound", err)
	}
	// Meta is not part of the outbox.
	if c, err := f.s.Counts(f.ctx); err != nil || total(c) != 0 {
		t.Errorf("Counts after SetMeta = %v, %v; want none", c, err)
	}
}

func testPing(t *testing.T, f *fixture) {
	if err := f.s.Ping(f.ctx); err != nil {
		t.Errorf("Ping: %v", err)
	}
}

func (f *fixture) history(t *testing.T, id int64) []store.Attempt {
	t.Helper()
	h, err := f.s.History(f.ctx, id)
	if err != nil {
		t.Fatalf("History(%d): %v", id, err)
	}
	return h
}

func testHistory(t *testing.T, f *fixture) {
	f.upsert(t, rec("patient", "P1", "h1"))
	r := f.get(t, "patient", "P1")
	if h := f.history(t, r.ID); h == nil || len(h) != 0 {
		t.Fatalf("History of a new row = %#v, want an empty slice", h)
	}
	if _, err := f.s.History(f.ctx, r.ID+1000); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("History of an unknown id: err = %v, want ErrNotFound", err)
	}

	f.deliver(t, "patient", "P1", store.Outcome{State: store.StateRetrying, NextAttemptAt: t0,
		ErrorClass: "http_503", ErrorDetail: "busy", RequestID: "req-1"}, t0)
	f.deliver(t, "patient", "P1", store.Outcome{State: store.StateWaiting, WaitKind: "order", WaitID: "O9",
		ErrorClass: "dependency_pending", RequestID: "req-2"}, t0.Add(time.Second))
	if err := f.s.Requeue(f.ctx, r.ID, t0.Add(2*time.Second)); err != nil {
		t.Fatal(err)
	}
	f.deliver(t, "patient", "P1", store.Outcome{State: store.StateDead, ErrorClass: "rejected_422",
		ErrorDetail: `{"issue":[]}`, EHRID: "e1", EHRVersion: "1", RequestID: "req-3"}, t0.Add(3*time.Second))
	// A stale outcome (the row changed while in flight) is recorded with
	// the state it asked for, though the row becomes pending.
	if err := f.s.Requeue(f.ctx, r.ID, t0.Add(4*time.Second)); err != nil {
		t.Fatal(err)
	}
	c := f.claimOne(t, "w", t0.Add(5*time.Second))
	f.upsert(t, rec("patient", "P1", "h2"))
	f.finish(t, c, "w", store.Outcome{State: store.StateSynced, Hash: "h1", EHRID: "e1", EHRVersion: "2", RequestID: "req-4"}, t0.Add(6*time.Second))
	f.wantState(t, "patient", "P1", store.StatePending)

	want := []store.Attempt{
		{At: t0, Attempt: 1, State: store.StateRetrying, ErrorClass: "http_503", ErrorDetail: "busy", RequestID: "req-1"},
		{At: t0.Add(time.Second), Attempt: 2, State: store.StateWaiting, ErrorClass: "dependency_pending",
			WaitKind: "order", WaitID: "O9", RequestID: "req-2"},
		{At: t0.Add(3 * time.Second), Attempt: 1, State: store.StateDead, ErrorClass: "rejected_422",
			ErrorDetail: `{"issue":[]}`, EHRID: "e1", EHRVersion: "1", RequestID: "req-3"},
		{At: t0.Add(6 * time.Second), Attempt: 1, State: store.StateSynced, EHRID: "e1", EHRVersion: "2", RequestID: "req-4"},
	}
	got := f.history(t, r.ID)
	if len(got) != len(want) {
		t.Fatalf("History = %d attempts, want %d: %+v", len(got), len(want), got)
	}
	for i := range want {
		if !got[i].At.Equal(want[i].At) {
			t.Errorf("attempt %d: At %v, want %v", i, got[i].At, want[i].At)
		}
		got[i].At = want[i].At
		if got[i] != want[i] {
			t.Errorf("attempt %d = %+v\nwant %+v", i, got[i], want[i])
		}
	}

	// A lost lease records nothing.
	c = f.claimOne(t, "a", t0.Add(7*time.Second))
	if err := f.s.Finish(f.ctx, c.ID, "b", store.Outcome{State: store.StateSynced, Hash: c.Hash}, t0); !errors.Is(err, store.ErrLeaseLost) {
		t.Fatalf("Finish by another owner: %v", err)
	}
	if h := f.history(t, c.ID); len(h) != len(want) {
		t.Errorf("History after a lost lease = %d attempts, want still %d", len(h), len(want))
	}
}

func testHistoryLimit(t *testing.T, f *fixture) {
	f.upsert(t, rec("patient", "P1", "h"))
	n := store.HistoryLimit + 5
	for i := range n {
		f.deliver(t, "patient", "P1", store.Outcome{State: store.StateRetrying, NextAttemptAt: t0,
			ErrorClass: "http_503", RequestID: fmt.Sprint("req-", i)}, t0.Add(time.Duration(i)*time.Second))
	}
	h := f.history(t, f.get(t, "patient", "P1").ID)
	if len(h) != store.HistoryLimit {
		t.Fatalf("History = %d attempts, want the newest %d", len(h), store.HistoryLimit)
	}
	for i, a := range h {
		k := n - store.HistoryLimit + i
		if a.RequestID != fmt.Sprint("req-", k) || a.Attempt != k+1 {
			t.Errorf("attempt %d: request %q attempt %d, want req-%d attempt %d", i, a.RequestID, a.Attempt, k, k+1)
		}
	}
}

func testHistoryRescueAndFinishMany(t *testing.T, f *fixture) {
	f.upsert(t, rec("patient", "P1", "h"), rec("patient", "P2", "h"))
	rs := f.claim(t, "crashed", 2, t0)
	if n, err := f.s.Rescue(f.ctx, t0.Add(lease+time.Second)); err != nil || n != 2 {
		t.Fatalf("Rescue = %d, %v; want 2", n, err)
	}
	rs = f.claim(t, "w", 2, t0.Add(2*lease))
	errs := f.finishMany(t, "w", []store.Completion{
		{ID: rs[0].ID, Outcome: store.Outcome{State: store.StateSynced, Hash: "h", EHRID: "a", RequestID: "r0"}},
		{ID: rs[1].ID, Outcome: store.Outcome{State: store.StateDead, Hash: "h", ErrorClass: "rejected_422", RequestID: "r1"}},
	}, t0.Add(2*lease))
	for i, err := range errs {
		if err != nil {
			t.Fatalf("FinishMany item %d: %v", i, err)
		}
	}
	for i, r := range rs {
		h := f.history(t, r.ID)
		if len(h) != 2 {
			t.Fatalf("row %d: History = %+v, want 2 attempts", r.ID, h)
		}
		if h[0].State != store.StateRetrying || h[0].ErrorClass != store.ErrorClassLeaseExpired || h[0].Attempt != 1 ||
			!h[0].At.Equal(t0.Add(lease+time.Second)) {
			t.Errorf("row %d: first attempt %+v, want retrying lease_expired, attempt 1, at the rescue", r.ID, h[0])
		}
		if h[1].RequestID != fmt.Sprint("r", i) || h[1].Attempt != 2 {
			t.Errorf("row %d: second attempt %+v, want request r%d, attempt 2", r.ID, h[1], i)
		}
	}
}
