package sqlite

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
)

// TestQueryPlans guards the indexes: at a million rows a full scan or a sort
// in Claim, Finish's wake-up, Rescue, List, Counts, OldestPending or Get
// would take seconds.
func TestQueryPlans(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, err := Open(ctx, filepath.Join(t.TempDir(), "outbox.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, q := range []struct {
		name, sql string
		args      []any
		want      []string // indexes the plan must use
	}{
		{"claim", claimSQL, []any{"w", 2, 1, 10}, []string{"outbox_claim"}},
		{"wake", wakeSQL, []any{1, "patient", "x"}, []string{"outbox_waiters"}},
		{"rescue", rescueSQL, []any{1, "c"}, []string{"outbox_leases"}},
		{"list", listSQL, []any{"dead", 5, 10}, []string{"outbox_state_id"}},
		{"counts", countsSQL, nil, []string{"outbox_kind_state"}},
		{"oldest", oldestSQL, nil, []string{"outbox_state_id"}},
		{"get", getSQL, []any{"patient", "x"}, []string{"sqlite_autoindex_outbox_1"}},
		{"get many", fmt.Sprintf(getManySQL, inList("(?, ?)", 2)), []any{"patient", "x", "order", "y"}, []string{"sqlite_autoindex_outbox_1"}},
		{"resync", resyncSQL, []any{1, "", 0}, []string{"outbox_state_id"}},
		{"meta", metaSQL, []any{"k"}, []string{"SEARCH meta USING PRIMARY KEY"}},
		{"renew", fmt.Sprintf(renewSQL, inList("?", 3)), []any{1, "w", 1, 2, 3}, []string{"INTEGER PRIMARY KEY"}},
	} {
		rows, err := s.write.QueryContext(ctx, "EXPLAIN QUERY PLAN "+q.sql, q.args...)
		if err != nil {
			t.Fatalf("%s: %v", q.name, err)
		}
		var plan []string
		for rows.Next() {
			var id, parent, notused int
			var detail string
			if err := rows.Scan(&id, &parent, &notused, &detail); err != nil {
				t.Fatal(err)
			}
			plan = append(plan, detail)
		}
		rows.Close()
		joined := strings.Join(plan, "; ")
		for _, idx := range q.want {
			if !strings.Contains(joined, idx) {
				t.Errorf("%s: plan %q does not use %s", q.name, joined, idx)
			}
		}
		// A SCAN of an index in order is fine (Claim stops after LIMIT
		// rows, Counts reads the small index); a scan of the table, a scan
		// that reads table rows, or a sort is not.
		if strings.Contains(joined, "TEMP B-TREE") ||
			strings.Contains(joined, "SCAN outbox") && !strings.Contains(joined, "SCAN outbox USING COVERING INDEX") {
			t.Errorf("%s: plan %q sorts or scans the table", q.name, joined)
		}
	}
}
