// Package column holds the encodings the outbox drivers (sqlite, postgres)
// share for store.Record fields that SQL has no type for, so that both
// store them alike and `store copy` moves them unchanged.
package column

import (
	"encoding/json"
	"fmt"
	"math"
	"time"
)

// EncodeDerived stores a Derived list as a JSON array. An empty list is ""
// (the column's default), so rows that never had one and rows whose list
// was cleared read the same.
func EncodeDerived(keys []string) string {
	if len(keys) == 0 {
		return ""
	}
	b, err := json.Marshal(keys)
	if err != nil {
		panic(fmt.Sprintf("column: marshal a []string: %v", err)) // cannot happen
	}
	return string(b)
}

// DecodeDerived is the inverse of EncodeDerived: "" is nil.
func DecodeDerived(s string) ([]string, error) {
	if s == "" {
		return nil, nil
	}
	var keys []string
	if err := json.Unmarshal([]byte(s), &keys); err != nil {
		return nil, fmt.Errorf("derived column is not a JSON array of strings: %w", err)
	}
	if len(keys) == 0 {
		return nil, nil
	}
	return keys, nil
}

// ToNanos stores t as Unix nanoseconds; the zero time is 0. Times outside
// the int64 nanosecond range (years 1678 to 2262) are clamped.
func ToNanos(t time.Time) int64 {
	switch {
	case t.IsZero():
		return 0
	case t.Year() > 2261:
		return math.MaxInt64
	case t.Year() < 1679:
		return math.MinInt64
	}
	return t.UnixNano()
}

// FromNanos is the inverse of ToNanos, in UTC.
func FromNanos(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}
