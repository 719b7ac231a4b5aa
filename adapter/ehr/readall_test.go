package ehr

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"testing/iotest"
)

func TestReadAll(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", 2000)
	for _, tc := range []struct {
		name    string
		body    string
		length  int64
		limit   int64
		want    string
		wantErr error
	}{
		{"known length", long, 2000, 4096, long, nil},
		{"unknown length", long, -1, 4096, long, nil},
		{"empty", "", 0, 4096, "", nil},
		{"length announced, no body (HEAD)", "", 123, 4096, "", nil},
		{"shorter than announced", "abc", 10, 4096, "abc", nil},
		{"longer than announced", long, 10, 4096, long, nil},
		{"at the limit", long, -1, 2000, long, nil},
		{"over the limit, unknown length", long, -1, 1999, "", errResponseTooLarge},
		{"over the limit, known length", long, 2000, 1999, "", errResponseTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			// One byte per Read, as a slow connection delivers it.
			got, err := readAll(iotest.OneByteReader(strings.NewReader(tc.body)), tc.length, tc.limit)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if err == nil && !bytes.Equal(got, []byte(tc.want)) {
				t.Fatalf("got %d bytes, want %d", len(got), len(tc.want))
			}
			if err == nil && got == nil {
				t.Fatal("got a nil body; want an empty one")
			}
		})
	}
	t.Run("read error", func(t *testing.T) {
		t.Parallel()
		boom := errors.New("connection reset")
		if _, err := readAll(iotest.ErrReader(boom), -1, 4096); !errors.Is(err, boom) {
			t.Fatalf("err = %v, want %v", err, boom)
		}
	})
}

func BenchmarkReadAll(b *testing.B) {
	body := bytes.Repeat([]byte("x"), 1500)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := readAll(bytes.NewReader(body), int64(len(body)), maxResponseBytes); err != nil {
			b.Fatal(err)
		}
	}
}
