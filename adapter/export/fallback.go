package export

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/ketamine-fhir/ketamine-fhir/adapter/ehr"
)

// fallback exports with paged searches by type, for an EHR without
// $export: every resource of each type changed after since
// (_lastUpdated=gt). It needs the system level; the types default to
// those the CapabilityStatement lists.
func (x *Exporter) fallback(ctx context.Context, since time.Time) (*Result, error) {
	if x.opts.Level != LevelSystem {
		return nil, fmt.Errorf("export: the EHR has no %s-level $export, and the search fallback exports the system level only", x.opts.Level)
	}
	if len(x.opts.TypeFilters) > 0 {
		return nil, errors.New("export: the EHR has no $export, and the search fallback does not support type filters")
	}
	start := x.now()
	types := x.opts.Types
	if len(types) == 0 {
		var err error
		if types, err = x.capabilityTypes(ctx); err != nil {
			return nil, err
		}
	}
	res := &Result{TransactionTime: start, Since: since, Counts: map[string]int{}, Fallback: true}
	x.setProgress(func(p *Progress) { p.Phase, p.FilesTotal = "downloading", len(types) })
	var names []string
	byName := map[string][]*part{}
	for _, typ := range types {
		q := url.Values{}
		if !since.IsZero() {
			q.Set("_lastUpdated", "gt"+since.UTC().Format(time.RFC3339Nano))
		}
		entries, err := x.c.Search(ctx, typ, q.Encode())
		if err != nil {
			return nil, fmt.Errorf("export: searching %s: %w", typ, err)
		}
		name := typ + ".ndjson"
		err = writeAtomic(filepath.Join(x.opts.OutDir, name), func(f *os.File) error {
			for i, e := range entries {
				line := compact(e.Resource)
				if err := checkLine(line, typ, i+1); err != nil {
					return err
				}
				if _, err := f.Write(append(line, '\n')); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("export: writing %s: %w", name, err)
		}
		res.Counts[typ] = len(entries)
		names = append(names, name)
		byName[name] = []*part{{kind: "output", typ: typ}}
		x.setProgress(func(p *Progress) { p.FilesDone++; p.Lines += int64(len(entries)) })
	}
	m := &manifest{TransactionTime: start.UTC().Format(time.RFC3339Nano), Request: "search fallback"}
	if err := writeManifest(x.opts.OutDir, m, res, names, byName); err != nil {
		return nil, fmt.Errorf("export: writing manifest.json: %w", err)
	}
	if err := x.st.SetMeta(context.WithoutCancel(ctx), metaLastPrefx+x.scope(), start.UTC().Format(time.RFC3339Nano)); err != nil {
		return nil, fmt.Errorf("export: recording the transaction time: %w", err)
	}
	x.setProgress(func(p *Progress) { p.Phase = "done" })
	return res, nil
}

// compact puts a resource on one line.
func compact(b []byte) []byte {
	var buf bytes.Buffer
	if err := json.Compact(&buf, b); err != nil {
		return b
	}
	return buf.Bytes()
}

// capabilityTypes lists the resource types of the CapabilityStatement
// that support search-type.
func (x *Exporter) capabilityTypes(ctx context.Context) ([]string, error) {
	resp, err := x.c.Do(ctx, ehr.Request{Method: http.MethodGet, Path: "metadata", ResourceType: "CapabilityStatement"})
	if err != nil {
		return nil, fmt.Errorf("export: reading the CapabilityStatement: %w", err)
	}
	var cs struct {
		Rest []struct {
			Resource []struct {
				Type        string `json:"type"`
				Interaction []struct {
					Code string `json:"code"`
				} `json:"interaction"`
			} `json:"resource"`
		} `json:"rest"`
	}
	if err := json.Unmarshal(resp.Body, &cs); err != nil {
		return nil, errors.New("export: the CapabilityStatement is not readable JSON")
	}
	var out []string
	for _, r := range cs.Rest {
		for _, res := range r.Resource {
			for _, i := range res.Interaction {
				if i.Code == "search-type" && typeRE.MatchString(res.Type) {
					out = append(out, res.Type)
					break
				}
			}
		}
	}
	if len(out) == 0 {
		return nil, errors.New("export: the EHR has no $export and lists no searchable types; name them with Types")
	}
	return out, nil
}
