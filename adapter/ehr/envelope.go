package ehr

import (
	"encoding/json"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// The FHIR JSON envelopes the client reads, with encoding/json. Unknown
// fields are ignored on purpose: EHRs add extensions and elements we do
// not need.

type jsonOutcome struct {
	ResourceType string      `json:"resourceType"`
	Issue        []jsonIssue `json:"issue"`
}

type jsonIssue struct {
	Severity string `json:"severity"`
	Code     string `json:"code"`
	Details  *struct {
		Text   string `json:"text"`
		Coding []struct {
			Code    string `json:"code"`
			Display string `json:"display"`
		} `json:"coding"`
	} `json:"details"`
	Diagnostics string   `json:"diagnostics"`
	Expression  []string `json:"expression"`
	Location    []string `json:"location"`
}

func (j jsonIssue) issue() Issue {
	is := Issue{Severity: j.Severity, Code: j.Code, Diagnostics: j.Diagnostics, Expression: j.Expression}
	if len(is.Expression) == 0 {
		is.Expression = j.Location
	}
	if d := j.Details; d != nil {
		is.Details = d.Text
		if is.Details == "" && len(d.Coding) > 0 {
			is.Details = d.Coding[0].Display
			if is.Details == "" {
				is.Details = d.Coding[0].Code
			}
		}
	}
	return is
}

// parseOutcome returns the issues of an OperationOutcome, nil when raw is
// not one.
func parseOutcome(raw []byte) []Issue {
	if len(raw) == 0 {
		return nil
	}
	var oo jsonOutcome
	if err := json.Unmarshal(raw, &oo); err != nil || oo.ResourceType != "OperationOutcome" {
		return nil
	}
	issues := make([]Issue, 0, len(oo.Issue))
	for _, j := range oo.Issue {
		issues = append(issues, j.issue())
	}
	return issues
}

// jsonResource is the part of any resource the client reads.
type jsonResource struct {
	ResourceType string `json:"resourceType"`
	ID           string `json:"id"`
	Meta         *struct {
		VersionID   string `json:"versionId"`
		LastUpdated string `json:"lastUpdated"`
	} `json:"meta"`
}

func (r jsonResource) version() string {
	if r.Meta == nil {
		return ""
	}
	return r.Meta.VersionID
}

func (r jsonResource) lastUpdated() time.Time {
	if r.Meta == nil || r.Meta.LastUpdated == "" {
		return time.Time{}
	}
	t, err := time.Parse(time.RFC3339Nano, r.Meta.LastUpdated)
	if err != nil {
		return time.Time{}
	}
	return t
}

// parseResource reads resourceType, id and meta of raw; ok is false when
// raw is not a JSON object with a resourceType.
func parseResource(raw []byte) (jsonResource, bool) {
	var r jsonResource
	if len(raw) == 0 || json.Unmarshal(raw, &r) != nil || r.ResourceType == "" {
		return jsonResource{}, false
	}
	return r, true
}

type jsonBundle struct {
	ResourceType string `json:"resourceType"`
	Type         string `json:"type"`
	Link         []struct {
		Relation string `json:"relation"`
		URL      string `json:"url"`
	} `json:"link"`
	Entry []jsonEntry `json:"entry"`
}

type jsonEntry struct {
	FullURL  string          `json:"fullUrl"`
	Resource json.RawMessage `json:"resource"`
	Search   *struct {
		Mode string `json:"mode"`
	} `json:"search"`
	Response *struct {
		Status       string          `json:"status"`
		Location     string          `json:"location"`
		Etag         string          `json:"etag"`
		LastModified string          `json:"lastModified"`
		Outcome      json.RawMessage `json:"outcome"`
	} `json:"response"`
}

// parseBundle reads a Bundle; ok is false when raw is not one.
func parseBundle(raw []byte) (jsonBundle, bool) {
	var b jsonBundle
	if len(raw) == 0 || json.Unmarshal(raw, &b) != nil || b.ResourceType != "Bundle" {
		return jsonBundle{}, false
	}
	return b, true
}

func (b jsonBundle) next() string {
	for _, l := range b.Link {
		if l.Relation == "next" {
			return l.URL
		}
	}
	return ""
}

// parseLocation reads a Location header or Bundle response.location:
// "[base/]Type/id[/_history/vid]", absolute or relative, possibly with a
// query. It returns empty strings for parts it cannot find.
func parseLocation(loc string) (resourceType, id, version string) {
	if loc == "" {
		return "", "", ""
	}
	if u, err := url.Parse(loc); err == nil {
		loc = u.Path
	} else if i := strings.IndexAny(loc, "?#"); i >= 0 {
		loc = loc[:i]
	}
	segs := strings.Split(strings.Trim(loc, "/"), "/")
	n := len(segs)
	if n >= 4 && segs[n-2] == "_history" {
		if isResourceType(segs[n-4]) && segs[n-3] != "" {
			return segs[n-4], segs[n-3], segs[n-1]
		}
		return "", "", ""
	}
	if n >= 2 && isResourceType(segs[n-2]) && segs[n-1] != "" {
		return segs[n-2], segs[n-1], ""
	}
	return "", "", ""
}

// isResourceType reports whether s looks like a FHIR resource type name:
// an upper-case ASCII letter followed by letters.
func isResourceType(s string) bool {
	if s == "" || len(s) > 64 || s[0] < 'A' || s[0] > 'Z' {
		return false
	}
	for i := 1; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			return false
		}
	}
	return true
}

// parseETag reads a version id from an ETag: W/"3" or "3".
func parseETag(etag string) string {
	etag = strings.TrimSpace(etag)
	etag = strings.TrimPrefix(etag, "W/")
	etag = strings.TrimPrefix(etag, "w/")
	if len(etag) >= 2 && etag[0] == '"' && etag[len(etag)-1] == '"' {
		return etag[1 : len(etag)-1]
	}
	return etag
}

// parseEntryStatus reads the leading status code of a Bundle
// response.status ("201 Created", "201"); 0 when there is none or it is
// not a status code (100-599).
func parseEntryStatus(s string) int {
	s = strings.TrimSpace(s)
	end := 0
	for end < len(s) && s[end] >= '0' && s[end] <= '9' {
		end++
	}
	if end != 3 {
		return 0
	}
	n, _ := strconv.Atoi(s[:end])
	if n < 100 || n > 599 {
		return 0
	}
	return n
}
