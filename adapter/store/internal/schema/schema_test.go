package schema

import (
	"testing"
	"testing/fstest"
)

func TestLoad(t *testing.T) {
	t.Parallel()
	file := &fstest.MapFile{Data: []byte("SELECT 1;")}
	for _, tt := range []struct {
		name  string
		files []string
		ok    bool
	}{
		{"sorted by number", []string{"0002_b.sql", "0001_a.sql", "0010_c.sql", "0003_x.sql", "0004_x.sql", "0005_x.sql", "0006_x.sql", "0007_x.sql", "0008_x.sql", "0009_x.sql"}, true},
		{"gap", []string{"0001_a.sql", "0003_c.sql"}, false},
		{"duplicate", []string{"0001_a.sql", "0001_b.sql"}, false},
		{"starts at 2", []string{"0002_a.sql"}, false},
		{"no number", []string{"outbox.sql"}, false},
		{"zero", []string{"0000_a.sql"}, false},
		{"none", nil, false},
	} {
		fsys := fstest.MapFS{}
		for _, f := range tt.files {
			fsys["migrations/"+f] = file
		}
		ms, err := Load(fsys)
		if (err == nil) != tt.ok {
			t.Errorf("%s: err = %v, want ok %v", tt.name, err, tt.ok)
			continue
		}
		for i, m := range ms {
			if m.Version != i+1 || m.SQL != "SELECT 1;" {
				t.Errorf("%s: migration %d has version %d, SQL %q", tt.name, i, m.Version, m.SQL)
			}
		}
	}
}
