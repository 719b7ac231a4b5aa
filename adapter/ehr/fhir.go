package ehr

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Entry is one match of a search.
type Entry struct {
	// ID and Version are the resource's id and meta.versionId.
	ID, Version string
	// FullURL is the entry's fullUrl, empty when absent.
	FullURL string
	// Resource is the resource's JSON as the EHR sent it.
	Resource json.RawMessage
}

// Search runs GET resourceType?query and returns the matching resources
// of every page, following the Bundle's "next" links up to
// Config.MaxSearchPages pages (more is ErrTooManyPages). Entries that are
// not matches (search.mode include or outcome, or OperationOutcome
// resources) are left out. query must be URL-encoded, as for Request.Path.
// A next link must stay on the base URL's scheme and host: the client
// does not send its token elsewhere.
func (c *Client) Search(ctx context.Context, resourceType, query string) ([]Entry, error) {
	req := Request{Method: http.MethodGet, Path: resourceType, ResourceType: resourceType}
	if query != "" {
		req.Path += "?" + query
	}
	u, logPath, err := c.resolve(req.Path)
	if err != nil {
		return nil, err
	}
	var out []Entry
	seen := map[string]bool{}
	for page := 1; ; page++ {
		resp, err := c.doURL(ctx, req, u, logPath, c.retryMax)
		if err != nil {
			return nil, err
		}
		b, ok := parseBundle(resp.Body)
		if !ok {
			return nil, fmt.Errorf("%w: search %s answered without a Bundle", ErrBadResponse, logPath)
		}
		for _, e := range b.Entry {
			if e.Search != nil && e.Search.Mode != "" && e.Search.Mode != "match" {
				continue
			}
			res, ok := parseResource(e.Resource)
			if !ok || res.ResourceType == "OperationOutcome" || (resourceType != "" && res.ResourceType != resourceType) {
				continue
			}
			out = append(out, Entry{ID: res.ID, Version: res.version(), FullURL: e.FullURL, Resource: e.Resource})
		}
		next := b.next()
		if next == "" {
			return out, nil
		}
		if page >= c.maxPages || seen[next] {
			return nil, fmt.Errorf("%w: search %s (limit %d)", ErrTooManyPages, logPath, c.maxPages)
		}
		seen[next] = true
		if u, logPath, err = c.nextURL(next); err != nil {
			return nil, err
		}
	}
}

// nextURL checks and normalises a Bundle next link.
func (c *Client) nextURL(link string) (*url.URL, string, error) {
	u, err := url.Parse(link)
	if err != nil {
		return nil, "", fmt.Errorf("%w: unreadable next link", ErrBadResponse)
	}
	dir := *c.base // resolve relative links against the base as a directory
	dir.Path += "/"
	if dir.RawPath != "" {
		dir.RawPath += "/"
	}
	u = dir.ResolveReference(u)
	if u.Scheme != c.base.Scheme || !strings.EqualFold(u.Host, c.base.Host) {
		return nil, "", fmt.Errorf("%w: next link leaves the EHR's scheme and host", ErrBadResponse)
	}
	u.Fragment, u.RawFragment = "", ""
	u.RawQuery = escape(u.RawQuery, true)
	logPath := strings.TrimPrefix(u.EscapedPath(), c.base.EscapedPath())
	if !strings.HasPrefix(logPath, "/") {
		logPath = "/" + logPath
	}
	if u.RawQuery != "" {
		logPath += "?…"
	}
	return u, logPath, nil
}

// EntryResult is the outcome of one entry of a transaction (or batch).
type EntryResult struct {
	// Status is the entry's HTTP status, read from "201 Created"; 0 when
	// unreadable.
	Status int
	// Location is response.location; ResourceType, ID and Version are read
	// from it, the version from ETag when present, else from the entry's
	// resource when the EHR returned one.
	Location     string
	ResourceType string
	ID, Version  string
	// ETag is response.etag as sent.
	ETag string
	// LastModified is response.lastModified, zero when absent.
	LastModified time.Time
	// Issues are from response.outcome, an OperationOutcome.
	Issues []Issue
}

// Transaction POSTs a transaction Bundle to the base URL and returns one
// result per response entry, in order (FHIR requires the response entries
// in the order of the request's). A rejected transaction (all or nothing)
// is a *RejectedError; a 2xx answer that is not a transaction-response (or
// batch-response) Bundle wraps ErrBadResponse.
//
// It asks for no resources back (Prefer: return=minimal, which FHIR applies
// to each entry): the entries' responses (location, etag, lastModified)
// say what the results need, and the EHR neither renders nor sends, nor
// the client reads, a copy of every resource it was just sent. An EHR
// that ignores the preference sends them anyway, and they are read only
// for what a response leaves open; an entry whose response has no
// location and no resource gets an empty ID.
func (c *Client) Transaction(ctx context.Context, bundle []byte) ([]EntryResult, error) {
	resp, err := c.Do(ctx, Request{Method: http.MethodPost, Path: "", ResourceType: "Bundle", Body: bundle, Prefer: "return=minimal"})
	if err != nil {
		return nil, err
	}
	b, ok := parseBundle(resp.Body)
	if !ok || (b.Type != "transaction-response" && b.Type != "batch-response") {
		return nil, fmt.Errorf("%w: transaction answered without a transaction-response Bundle", ErrBadResponse)
	}
	results := make([]EntryResult, len(b.Entry))
	for i, e := range b.Entry {
		r := &results[i]
		// The entry's response wins over its resource; the resource is
		// parsed only for what the response leaves open (as in outcome).
		var (
			locType, locID, locVersion, etag string
			lastModified                     time.Time
		)
		if e.Response != nil {
			locType, locID, locVersion = parseLocation(e.Response.Location)
			etag = parseETag(e.Response.Etag)
			if lm := e.Response.LastModified; lm != "" {
				if t, err := time.Parse(time.RFC3339Nano, lm); err == nil {
					lastModified = t
				}
			}
		}
		if locID == "" || (locVersion == "" && etag == "") || lastModified.IsZero() {
			if res, ok := parseResource(e.Resource); ok && res.ResourceType != "OperationOutcome" {
				r.ResourceType, r.ID, r.Version, r.LastModified = res.ResourceType, res.ID, res.version(), res.lastUpdated()
			}
		}
		if e.Response == nil {
			continue
		}
		r.Status = parseEntryStatus(e.Response.Status)
		r.Location, r.ETag = e.Response.Location, e.Response.Etag
		if locID != "" {
			r.ResourceType, r.ID = locType, locID
			if locVersion != "" {
				r.Version = locVersion
			}
		}
		if etag != "" {
			r.Version = etag
		}
		if !lastModified.IsZero() {
			r.LastModified = lastModified
		}
		r.Issues = parseOutcome(e.Response.Outcome)
	}
	return results, nil
}

// Ping checks that the EHR is reachable and speaks FHIR R4: GET metadata,
// without short retries, within 5s (or Timeout when shorter). It
// authenticates like any request, so it also checks the credentials. It
// takes none of the MaxInFlight slots: a probe does not wait behind
// deliveries (the pacer still applies).
func (c *Client) Ping(ctx context.Context) error {
	pctx, cancel := context.WithTimeout(ctx, c.pingTimeout)
	defer cancel()
	req := Request{Method: http.MethodGet, Path: "metadata", ResourceType: "CapabilityStatement"}
	// No slot: with MaxInFlight deliveries out, a ping would otherwise
	// wait for one of them to be answered.
	resp, err := c.do(context.WithValue(pctx, noSlotKey{}, true), req, 0)
	if err != nil {
		if ctx.Err() == nil && pctx.Err() != nil {
			return &TransientError{Reason: "timeout", Method: req.Method, ResourceType: req.ResourceType, Attempts: 1}
		}
		return err
	}
	var cs struct {
		ResourceType string `json:"resourceType"`
		FHIRVersion  string `json:"fhirVersion"`
	}
	if json.Unmarshal(resp.Body, &cs) != nil || cs.ResourceType != "CapabilityStatement" {
		return fmt.Errorf("%w: metadata is not a CapabilityStatement", ErrBadResponse)
	}
	if cs.FHIRVersion != "" && !strings.HasPrefix(cs.FHIRVersion, "4.0") {
		return fmt.Errorf("%w: the EHR speaks FHIR %s, not R4 (4.0.x)", ErrBadResponse, safeCode(cs.FHIRVersion))
	}
	return nil
}
