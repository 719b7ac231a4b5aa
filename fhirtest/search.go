package fhirtest

import (
	"math"
	"net/url"
	"sort"
	"strconv"
	"strings"
)

// Result parameters the server understands besides search parameters.
const (
	paramCount   = "_count"
	paramOffset  = "_offset" // paging, used in next/previous links
	paramSummary = "_summary"
	paramTotal   = "_total"
	paramFormat  = "_format"
	paramPretty  = "_pretty"
)

// searchValue is one value of a search parameter (values separated by
// commas are alternatives).
type searchValue struct {
	// token: system|code, with hasPipe telling "code" from "|code".
	system, code string
	hasPipe      bool
	// reference: a normalised target ("Type/id" or an absolute URL), or a
	// bare id that may be of any of the parameter's target types.
	target, bareID string
	// date
	prefix string
	r      dateRange
}

// clause is one parameter of a search; clauses are ANDed.
type clause struct {
	p        *searchParam
	modifier string // "", "missing", "not", or a resource type (references)
	missing  bool   // for :missing
	values   []searchValue
}

// searchQuery is a parsed search on one type.
type searchQuery struct {
	typ          string
	clauses      []clause
	count        int
	offset       int
	summaryCount bool
	self         url.Values // the parameters the server used
	unknown      []string   // parameter names it ignored
}

// parseSearch parses search parameters for typ. With strict set (Prefer:
// handling=strict) unknown parameters are a 400; otherwise they are listed in
// q.unknown and left out of q.self. With conditional set (conditional
// create, update, delete and references) only search parameters are allowed
// and at least one is required: ignoring a criterion there would change what
// gets written.
func (s *Server) parseSearch(typ string, params url.Values, strict, conditional bool, bases []string) (*searchQuery, *fhirError) {
	q := &searchQuery{typ: typ, count: s.cfg.pageSize, self: url.Values{}}
	keys := make([]string, 0, len(params))
	for k := range params {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, key := range keys {
		vals := params[key]
		name, mod, _ := strings.Cut(key, ":")
		if !conditional {
			handled, ferr := q.resultParam(s, name, mod, vals, strict)
			if ferr != nil {
				return nil, ferr
			}
			if handled {
				continue
			}
		}
		p := typeParams[typ][name]
		if p == nil {
			if strict || conditional {
				return nil, errorf(400, "not-supported", "search parameter %q is not supported for %s", truncate(key, 64), typ)
			}
			q.unknown = append(q.unknown, key)
			continue
		}
		for _, raw := range vals {
			if raw == "" {
				continue // empty parameters are ignored
			}
			c, ferr := parseClause(p, mod, raw, bases)
			if ferr != nil {
				return nil, ferr
			}
			q.clauses = append(q.clauses, c)
			q.self.Add(key, raw)
		}
	}
	if conditional && len(q.clauses) == 0 {
		return nil, errorf(400, "required", "a conditional request needs at least one search parameter")
	}
	return q, nil
}

// resultParam handles _count, _offset, _summary, _total, _format and
// _pretty. It reports whether name was one of them.
func (q *searchQuery) resultParam(s *Server, name, mod string, vals []string, strict bool) (bool, *fhirError) {
	switch name {
	case paramCount, paramOffset, paramSummary, paramTotal, paramFormat, paramPretty:
	default:
		return false, nil
	}
	if mod != "" {
		return true, errorf(400, "not-supported", "%s takes no modifier", name)
	}
	v := vals[len(vals)-1]
	switch name {
	case paramCount:
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return true, errorf(400, "value", "_count must be a whole number")
		}
		if n == 0 {
			q.summaryCount = true
		}
		q.count = min(n, s.cfg.maxPageSize)
		q.self.Set(name, strconv.Itoa(n))
	case paramOffset:
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return true, errorf(400, "value", "_offset must be a whole number")
		}
		q.offset = n
		if n > 0 {
			q.self.Set(name, v)
		}
	case paramSummary:
		switch v {
		case "count":
			q.summaryCount = true
			q.self.Set(name, v)
		case "false":
			q.self.Set(name, v)
		default:
			if strict {
				return true, errorf(400, "not-supported", "_summary=%s is not supported (count and false are)", truncate(v, 32))
			}
			q.unknown = append(q.unknown, name)
		}
	case paramTotal:
		switch v {
		case "none", "estimate", "accurate":
			q.self.Set(name, v)
		default:
			return true, errorf(400, "value", "_total must be none, estimate or accurate")
		}
	case paramFormat:
		if !jsonFormat(v) {
			return true, &fhirError{status: 406, issues: []issue{{Severity: "error", Code: "not-supported", Diagnostics: "only JSON is supported"}}}
		}
		q.self.Set(name, v)
	case paramPretty:
		// Accepted and ignored: responses are compact JSON.
	}
	return true, nil
}

// jsonFormat reports whether a _format value or media type names JSON.
func jsonFormat(v string) bool {
	v = strings.ToLower(strings.TrimSpace(v))
	if i := strings.IndexByte(v, ';'); i >= 0 {
		v = strings.TrimSpace(v[:i])
	}
	switch v {
	case "json", "application/json", "application/fhir+json", "application/json+fhir", "text/json":
		return true
	}
	return false
}

func parseClause(p *searchParam, mod, raw string, bases []string) (clause, *fhirError) {
	c := clause{p: p, modifier: mod}
	switch {
	case mod == "":
	case mod == "missing":
		switch raw {
		case "true":
			c.missing = true
		case "false":
		default:
			return c, errorf(400, "value", "%s:missing must be true or false", p.name)
		}
		return c, nil
	case mod == "not" && p.kind == kindToken && p.name != paramID:
	case p.kind == kindReference && isResourceType(mod):
		if p.targets != nil && !contains(p.targets, mod) {
			return c, errorf(400, "value", "%s cannot refer to %s", p.name, mod)
		}
	default:
		return c, errorf(400, "not-supported", "modifier :%s is not supported on %s", truncate(mod, 32), p.name)
	}
	for _, part := range splitEscaped(raw, ',') {
		v, ferr := parseValue(p, mod, part, bases)
		if ferr != nil {
			return c, ferr
		}
		c.values = append(c.values, v)
	}
	return c, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// isResourceType reports whether s names an R4 resource type.
func isResourceType(s string) bool { return isResourceTypeSet[s] }

func parseValue(p *searchParam, mod, part string, bases []string) (searchValue, *fhirError) {
	var v searchValue
	switch p.kind {
	case kindToken:
		if p.name == paramID {
			v.code = unescape(part)
			return v, nil
		}
		pieces := splitEscaped(part, '|')
		switch len(pieces) {
		case 1:
			v.code = unescape(pieces[0])
		case 2:
			v.hasPipe = true
			v.system, v.code = unescape(pieces[0]), unescape(pieces[1])
			if v.system == "" && v.code == "" {
				return v, errorf(400, "value", "%s: empty token", p.name)
			}
		default:
			return v, errorf(400, "value", "%s: a token has at most one unescaped |", p.name)
		}
	case kindReference:
		val := unescape(part)
		switch {
		case mod != "":
			if !validID(val) {
				return v, errorf(400, "value", "%s:%s needs a resource id", p.name, mod)
			}
			v.target = mod + "/" + val
		case strings.Contains(val, "/"):
			v.target = normalizeRef(val, bases)
			if t, ok := splitTargetType(v.target); ok && p.targets != nil && !contains(p.targets, t) {
				return v, errorf(400, "value", "%s cannot refer to %s", p.name, t)
			}
		default:
			if !validID(val) {
				return v, errorf(400, "value", "%s: %q is not a resource id", p.name, truncate(val, 64))
			}
			v.bareID = val
		}
	case kindDate:
		val := unescape(part)
		if len(val) >= 2 && val[0] >= 'a' && val[0] <= 'z' {
			switch val[:2] {
			case "eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap":
				v.prefix, val = val[:2], val[2:]
			default:
				return v, errorf(400, "value", "%s: unknown prefix %q", p.name, truncate(val[:2], 2))
			}
		}
		r, ok := parseDateRange(val)
		if !ok {
			return v, errorf(400, "value", "%s: %q is not a FHIR date or dateTime", p.name, truncate(val, 40))
		}
		v.r = r
	}
	return v, nil
}

func splitTargetType(target string) (string, bool) {
	t, _, ok := splitTarget(target)
	return t, ok
}

// splitEscaped splits s at every sep not preceded by a backslash, keeping
// escapes in the parts.
func splitEscaped(s string, sep byte) []string {
	var parts []string
	start := 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case sep:
			parts = append(parts, s[start:i])
			start = i + 1
		}
	}
	return append(parts, s[start:])
}

// unescape removes FHIR search escaping (\, \| \$ \\).
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) {
			i++
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// EscapeSearchValue escapes a value for use in a FHIR search or
// conditional URL (\ , | and $ get a backslash), before URL encoding: an
// identifier "A|1" is searched as identifier=system|A\|1.
func EscapeSearchValue(v string) string {
	if !strings.ContainsAny(v, `\,|$`) {
		return v
	}
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		switch v[i] {
		case '\\', ',', '|', '$':
			b.WriteByte('\\')
		}
		b.WriteByte(v[i])
	}
	return b.String()
}

// matches reports whether the current version of r meets every clause.
func (q *searchQuery) matches(r *resource) bool {
	if !r.live() {
		return false
	}
	for i := range q.clauses {
		if !q.clauses[i].matches(r) {
			return false
		}
	}
	return true
}

func (c *clause) matches(r *resource) bool {
	if c.modifier == "missing" {
		return c.has(r) != c.missing
	}
	if c.modifier == "not" {
		for _, v := range c.values {
			if c.matchValue(r, v) {
				return false
			}
		}
		return true
	}
	for _, v := range c.values {
		if c.matchValue(r, v) {
			return true
		}
	}
	return false
}

// has reports whether r has any value for the clause's parameter.
func (c *clause) has(r *resource) bool {
	idx := r.idx
	switch {
	case c.p.name == paramID || c.p.name == paramLastUpdated:
		return true
	case c.p.name == paramIdentifier:
		return len(idx.idents) > 0
	}
	switch c.p.kind {
	case kindToken:
		for _, t := range idx.tokens {
			if t.param == c.p.name {
				return true
			}
		}
	case kindDate:
		for _, d := range idx.dates {
			if d.param == c.p.name {
				return true
			}
		}
	case kindReference:
		for _, rv := range idx.refs {
			if contains(c.p.paths, rv.path) && c.targetAllowed(rv.target) {
				return true
			}
		}
	}
	return false
}

func (c *clause) matchValue(r *resource, v searchValue) bool {
	idx := r.idx
	switch c.p.name {
	case paramID:
		return r.id == v.code
	case paramLastUpdated:
		u := r.current().updated
		return matchDate(v, dateRange{u, u + 1000})
	case paramIdentifier:
		for _, id := range idx.idents {
			if matchToken(v, id.system, id.value) {
				return true
			}
		}
		return false
	}
	switch c.p.kind {
	case kindToken:
		for _, t := range idx.tokens {
			if t.param == c.p.name && matchToken(v, t.system, t.code) {
				return true
			}
		}
	case kindDate:
		for _, d := range idx.dates {
			if d.param == c.p.name && matchDate(v, d.r) {
				return true
			}
		}
	case kindReference:
		for _, rv := range idx.refs {
			if !contains(c.p.paths, rv.path) || !c.targetAllowed(rv.target) {
				continue
			}
			if v.target != "" && rv.target == v.target {
				return true
			}
			if v.bareID != "" {
				if _, id, ok := splitTarget(rv.target); ok && id == v.bareID {
					return true
				}
			}
		}
	}
	return false
}

// targetAllowed reports whether a stored reference target fits the
// parameter's target types (patient only matches Patient references).
func (c *clause) targetAllowed(target string) bool {
	if c.p.targets == nil {
		return true
	}
	t, ok := splitTargetType(target)
	if !ok {
		return true // absolute or external: the type is not known
	}
	if c.modifier != "" && c.modifier != "missing" {
		return t == c.modifier
	}
	return contains(c.p.targets, t)
}

func matchToken(v searchValue, system, code string) bool {
	switch {
	case !v.hasPipe:
		return code == v.code
	case v.code == "":
		return system == v.system
	case v.system == "":
		return system == "" && code == v.code
	default:
		return system == v.system && code == v.code
	}
}

// matchDate applies a prefix as FHIR R4 search defines it, with p the
// range of the search value and t the range of the resource's value.
func matchDate(v searchValue, t dateRange) bool {
	p := v.r
	switch v.prefix {
	case "", "eq":
		return p.contains(t)
	case "ne":
		return !p.contains(t)
	case "gt":
		return t.hi > p.hi
	case "lt":
		return t.lo < p.lo
	case "ge":
		return t.hi > p.hi || p.contains(t)
	case "le":
		return t.lo < p.lo || p.contains(t)
	case "sa":
		return t.lo >= p.hi
	case "eb":
		return t.hi <= p.lo
	case "ap":
		return t.lo < p.hi && t.hi > p.lo
	}
	return false
}

// find returns the live resources of ts matching q, in creation order. The
// caller holds the store lock.
func (q *searchQuery) find(ts *typeStore) []*resource {
	if ts == nil {
		return nil
	}
	var out []*resource
	if cands, ok := q.candidates(ts); ok {
		for _, r := range cands {
			if q.matches(r) {
				out = append(out, r)
			}
		}
		sort.Slice(out, func(i, j int) bool { return out[i].seq < out[j].seq })
		return out
	}
	for _, r := range ts.order {
		if r.live() && q.matches(r) {
			out = append(out, r)
		}
	}
	return out
}

// candidates narrows the search with an index: _id, identifier values or
// reference targets. ok is false when no clause can use one.
func (q *searchQuery) candidates(ts *typeStore) ([]*resource, bool) {
	for i := range q.clauses {
		c := &q.clauses[i]
		if c.modifier != "" && !isResourceType(c.modifier) {
			continue
		}
		switch {
		case c.p.name == paramID:
			var out []*resource
			for _, v := range c.values {
				if r := ts.byID[v.code]; r != nil {
					out = append(out, r)
				}
			}
			return out, true
		case c.p.name == paramIdentifier:
			usable := true
			for _, v := range c.values {
				if v.code == "" {
					usable = false
				}
			}
			if !usable {
				continue
			}
			return union(ts.idents, c.values, func(v searchValue) []string { return []string{v.code} }), true
		case c.p.kind == kindReference:
			if c.modifier == "" && c.p.targets == nil {
				hasBare := false
				for _, v := range c.values {
					hasBare = hasBare || v.bareID != ""
				}
				if hasBare {
					continue
				}
			}
			return union(ts.refs, c.values, func(v searchValue) []string {
				if v.target != "" {
					return []string{v.target}
				}
				keys := make([]string, 0, len(c.p.targets))
				for _, t := range c.p.targets {
					keys = append(keys, t+"/"+v.bareID)
				}
				return keys
			}), true
		}
	}
	return nil, false
}

func union(m map[string]*postings, values []searchValue, keys func(searchValue) []string) []*resource {
	seen := map[*resource]bool{}
	var out []*resource
	for _, v := range values {
		for _, k := range keys(v) {
			if p := m[k]; p != nil {
				p.each(func(r *resource) {
					if !seen[r] {
						seen[r] = true
						out = append(out, r)
					}
				})
			}
		}
	}
	return out
}

// pageEntry is one resource of a page, copied out from under the lock.
type pageEntry struct {
	typ, id string
	body    []byte
}

// searchPage runs q and returns the total and the requested page.
func (s *Server) searchPage(q *searchQuery) (int, []pageEntry) {
	s.store.mu.RLock()
	defer s.store.mu.RUnlock()
	return s.searchPageLocked(q)
}

func (s *Server) searchPageLocked(q *searchQuery) (int, []pageEntry) {
	matches := q.find(s.store.types[q.typ])
	if q.summaryCount || q.offset >= len(matches) {
		return len(matches), nil
	}
	end := len(matches)
	if q.count < end-q.offset {
		end = q.offset + q.count
	}
	page := make([]pageEntry, 0, end-q.offset)
	for _, r := range matches[q.offset:end] {
		page = append(page, pageEntry{r.typ, r.id, r.current().body})
	}
	return len(matches), page
}

// searchBundle renders a searchset Bundle.
func (s *Server) searchBundle(base string, q *searchQuery, total int, page []pageEntry) []byte {
	link := func(offset int) string {
		v := url.Values{}
		for k, vs := range q.self {
			if k != paramOffset {
				v[k] = vs
			}
		}
		if !q.summaryCount {
			v.Set(paramCount, strconv.Itoa(q.count))
		}
		if offset > 0 {
			v.Set(paramOffset, strconv.Itoa(offset))
		}
		return base + "/" + q.typ + "?" + v.Encode()
	}
	b := make([]byte, 0, 256+sumLen(page))
	b = append(b, `{"resourceType":"Bundle","meta":{"lastUpdated":`...)
	b = appendJSONString(b, s.now().UTC().Format(instantFormat))
	b = append(b, `},"type":"searchset","total":`...)
	b = strconv.AppendInt(b, int64(total), 10)
	b = append(b, `,"link":[{"relation":"self","url":`...)
	self := base + "/" + q.typ
	if enc := q.self.Encode(); enc != "" {
		self += "?" + enc
	}
	b = appendJSONString(b, self)
	b = append(b, '}')
	if !q.summaryCount && q.count > 0 && total > 0 {
		lastOff := (total - 1) / q.count * q.count
		addLink := func(rel string, off int) {
			b = append(b, `,{"relation":"`...)
			b = append(b, rel...)
			b = append(b, `","url":`...)
			b = appendJSONString(b, link(off))
			b = append(b, '}')
		}
		addLink("first", 0)
		if q.offset > 0 {
			addLink("previous", max(0, q.offset-q.count))
		}
		if q.offset+q.count < total {
			addLink("next", q.offset+q.count)
		}
		addLink("last", lastOff)
	}
	b = append(b, ']')
	if len(page) > 0 || len(q.unknown) > 0 {
		b = append(b, `,"entry":[`...)
		if len(q.unknown) > 0 {
			names := make([]string, len(q.unknown))
			for i, n := range q.unknown {
				names[i] = truncate(n, 64)
			}
			b = append(b, `{"resource":`...)
			b = append(b, outcomeJSON([]issue{{
				Severity:    "warning",
				Code:        "not-supported",
				Diagnostics: "search parameters ignored: " + strings.Join(names, ", "),
			}})...)
			b = append(b, `,"search":{"mode":"outcome"}}`...)
			if len(page) > 0 {
				b = append(b, ',')
			}
		}
		for i, e := range page {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"fullUrl":`...)
			b = appendJSONString(b, base+"/"+e.typ+"/"+e.id)
			b = append(b, `,"resource":`...)
			b = append(b, e.body...)
			b = append(b, `,"search":{"mode":"match"}}`...)
		}
		b = append(b, ']')
	}
	return append(b, '}')
}

func sumLen(page []pageEntry) int {
	n := 0
	for _, e := range page {
		n += len(e.body) + 64
	}
	return n
}

// conditionalMatches runs the search of a conditional interaction (query
// string criteria) and returns every match. The caller holds the lock.
func (s *Server) conditionalMatches(typ, rawQuery string, bases []string) ([]*resource, *fhirError) {
	params, err := url.ParseQuery(rawQuery)
	if err != nil {
		return nil, errorf(400, "invalid", "the conditional criteria are not a valid query string")
	}
	q, ferr := s.parseSearch(typ, params, true, true, bases)
	if ferr != nil {
		return nil, ferr
	}
	q.count = math.MaxInt
	return q.find(s.store.types[typ]), nil
}
