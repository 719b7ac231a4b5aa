package fhirtest

import (
	"context"
	"errors"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

const contentTypeFHIR = "application/fhir+json; charset=utf-8"

// response is a complete HTTP answer, built before anything is written so
// that a fault can still replace it.
type response struct {
	status int
	header http.Header
	body   []byte
	// contentType overrides the FHIR JSON Content-Type of a body.
	contentType string
	// cut >= 0 sends only that many bytes of body (after a Content-Length
	// of all of it) and then breaks the connection: a truncated download.
	cut int
	// fault names a fault the handler itself injected, for the log.
	fault Fault
}

func newResponse(status int, body []byte) *response {
	return &response{status: status, header: http.Header{}, body: body, cut: -1}
}

func errResponse(ferr *fhirError) *response {
	resp := newResponse(ferr.status, outcomeJSON(ferr.issues))
	for k, v := range ferr.header {
		resp.header[k] = v
	}
	resp.fault = ferr.fault
	return resp
}

func (resp *response) write(w http.ResponseWriter) {
	h := w.Header()
	for k, v := range resp.header {
		h[k] = v
	}
	if len(resp.body) > 0 || resp.status != http.StatusNoContent && resp.status != http.StatusNotModified {
		if len(resp.body) > 0 {
			ct := contentTypeFHIR
			if resp.contentType != "" {
				ct = resp.contentType
			}
			h.Set("Content-Type", ct)
		}
		h.Set("Content-Length", strconv.Itoa(len(resp.body)))
	}
	w.WriteHeader(resp.status)
	body := resp.body
	if resp.cut >= 0 && resp.cut < len(body) {
		body = body[:resp.cut]
	}
	if len(body) > 0 {
		_, _ = w.Write(body)
	}
	if resp.cut >= 0 && resp.cut < len(resp.body) {
		// Send what was written, then break the connection (over HTTP/2,
		// reset the stream) short of the declared Content-Length.
		_ = http.NewResponseController(w).Flush()
		panic(http.ErrAbortHandler)
	}
}

// isWrite reports whether a request can change data (the requests whose
// responses LoseNext and SetLoseRate lose).
func isWrite(r *http.Request) bool {
	switch r.Method {
	case http.MethodPut, http.MethodPatch, http.MethodDelete:
		return true
	case http.MethodPost:
		return !strings.HasSuffix(strings.TrimSuffix(r.URL.Path, "/"), "/_search")
	}
	return false
}

// serveHTTP applies faults around the FHIR handler and logs the request.
func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	entry := RequestLog{Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery, Proto: r.Proto, Time: s.now(),
		RequestID: r.Header.Get("X-Request-Id"), IfNoneExist: r.Header.Get("If-None-Exist")}
	if s.auth != nil {
		if resp := s.auth.serve(r); resp != nil {
			entry.Status = resp.status
			s.log.add(entry)
			resp.write(w)
			return
		}
	}
	write := isWrite(r)
	plan := s.faults.plan(entry.Time, write)
	if plan.rateLimited {
		entry.Fault, entry.Status = FaultRateLimit, http.StatusTooManyRequests
		s.log.add(entry)
		faultResponse(http.StatusTooManyRequests, plan.retryAfter, "rate limit exceeded").write(w)
		return
	}
	if plan.delay > 0 {
		if err := s.sleep(r.Context(), plan.delay); err != nil {
			if errors.Is(err, errClosing) {
				entry.Status = http.StatusServiceUnavailable
				s.log.add(entry)
				faultResponse(http.StatusServiceUnavailable, plan.retryAfter, "server shutting down").write(w)
				return
			}
			s.log.add(entry) // the client went away
			return
		}
	}
	if plan.drop {
		entry.Fault = FaultDrop
		s.log.add(entry)
		panic(http.ErrAbortHandler)
	}
	if plan.status != 0 {
		entry.Fault, entry.Status = FaultStatus, plan.status
		s.log.add(entry)
		faultResponse(plan.status, plan.retryAfter, "injected failure").write(w)
		return
	}
	resp := s.serveFHIR(r)
	entry.HandlerStatus = resp.status
	switch plan.lose {
	case LoseDrop:
		entry.Fault = FaultLoseDrop
		s.log.add(entry)
		panic(http.ErrAbortHandler)
	case Lose503:
		entry.Fault, entry.Status = FaultLose503, http.StatusServiceUnavailable
		s.log.add(entry)
		faultResponse(http.StatusServiceUnavailable, plan.retryAfter, "service unavailable").write(w)
		return
	case LoseHang:
		entry.Fault = FaultLoseHang
		s.log.add(entry)
		select {
		case <-r.Context().Done(): // the client gave up
		case <-s.closing:
		}
		panic(http.ErrAbortHandler)
	}
	entry.Status = resp.status
	entry.Fault = resp.fault
	if resp.cut >= 0 && resp.cut < len(resp.body) {
		entry.Fault = FaultExportTruncated
	}
	s.log.add(entry)
	resp.write(w)
}

var errClosing = errors.New("fhirtest: server closing")

func (s *Server) sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-s.closing:
		return errClosing
	}
}

// faultResponse is the answer of an injected failure.
func faultResponse(status int, retryAfter time.Duration, msg string) *response {
	code := "exception"
	switch status {
	case http.StatusTooManyRequests:
		code = "throttled"
	case http.StatusServiceUnavailable, http.StatusBadGateway:
		code = "transient"
	case http.StatusGatewayTimeout:
		code = "timeout"
	}
	resp := errResponse(errorf(status, code, "%s", msg))
	if status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable {
		resp.header.Set("Retry-After", retryAfterSeconds(retryAfter))
	}
	return resp
}

// reqCtx is what interactions need to know about the request.
type reqCtx struct {
	base   string   // absolute base URL of this request
	bases  []string // base URLs whose references are local
	ret    string   // Prefer return: representation, minimal or OperationOutcome
	strict bool     // Prefer handling=strict
}

const (
	returnRepresentation = "representation"
	returnMinimal        = "minimal"
	returnOutcome        = "OperationOutcome"
)

func (s *Server) newReqCtx(r *http.Request) *reqCtx {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	ctx := &reqCtx{
		base:  scheme + "://" + r.Host + s.cfg.basePath,
		bases: s.localBases(r.Host),
		ret:   returnRepresentation,
	}
	for _, h := range r.Header.Values("Prefer") {
		for _, part := range strings.Split(h, ",") {
			k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
			v = strings.Trim(strings.TrimSpace(v), `"`)
			switch strings.TrimSpace(k) {
			case "return":
				switch v {
				case returnMinimal, returnRepresentation, returnOutcome:
					ctx.ret = v
				}
			case "handling":
				ctx.strict = v == "strict"
			}
		}
	}
	return ctx
}

// localBases returns the base URLs under which absolute references point to
// this server.
func (s *Server) localBases(host string) []string {
	var out []string
	if s.URL != "" {
		out = append(out, s.URL)
	}
	if host != "" {
		out = append(out, "http://"+host+s.cfg.basePath, "https://"+host+s.cfg.basePath)
	}
	return out
}

// acceptsJSON reports whether an Accept header allows a JSON answer.
func acceptsJSON(accept string) bool {
	if strings.TrimSpace(accept) == "" {
		return true
	}
	for _, part := range strings.Split(accept, ",") {
		mt, _, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil {
			continue
		}
		switch {
		case mt == "*/*", mt == "application/*", jsonFormat(mt):
			return true
		}
	}
	return false
}

func methodNotAllowed(allow ...string) *fhirError {
	e := errorf(http.StatusMethodNotAllowed, "not-supported", "method not allowed here; allowed: %s", strings.Join(allow, ", "))
	e.header = http.Header{"Allow": {strings.Join(allow, ", ")}}
	return e
}

// serveFHIR routes a request to an interaction.
func (s *Server) serveFHIR(r *http.Request) *response {
	path := r.URL.Path
	base := s.cfg.basePath
	if !strings.HasPrefix(path, base) || len(path) > len(base) && path[len(base)] != '/' {
		return errResponse(errorf(404, "not-found", "not a FHIR endpoint; the FHIR base is %s", s.cfg.basePath+"/"))
	}
	ctx := s.newReqCtx(r)
	rest := strings.Trim(path[len(base):], "/")
	var segs []string
	if rest != "" {
		segs = strings.Split(rest, "/")
	}
	if len(segs) > 0 && segs[0] == exportSeg {
		// Export status and files answer JSON and NDJSON whatever the
		// client's Accept says.
		return s.serveExportJob(r, ctx, segs[1:])
	}
	query, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return errResponse(errorf(400, "invalid", "the query string is malformed"))
	}
	if f := query.Get(paramFormat); f != "" {
		if !jsonFormat(f) {
			return errResponse(errorf(406, "not-supported", "only JSON is supported"))
		}
	} else if !acceptsJSON(r.Header.Get("Accept")) {
		return errResponse(errorf(406, "not-supported", "only application/fhir+json is supported"))
	}
	switch {
	case len(segs) == 1 && segs[0] == "$export":
		return s.exportKickoff(r, ctx, query, ExportSystem, "")
	case len(segs) == 2 && segs[0] == "Patient" && segs[1] == "$export":
		return s.exportKickoff(r, ctx, query, ExportPatient, "")
	case len(segs) == 3 && segs[0] == "Group" && segs[2] == "$export" && validID(segs[1]):
		return s.exportKickoff(r, ctx, query, ExportGroup, segs[1])
	}
	method := r.Method
	if method == http.MethodHead {
		method = http.MethodGet
	}

	if len(segs) == 0 {
		switch method {
		case http.MethodPost:
			body, ferr := s.readBody(r, false)
			if ferr != nil {
				return errResponse(ferr)
			}
			return s.serveBundle(ctx, body)
		case http.MethodGet:
			return errResponse(errorf(400, "not-supported", "system-level search is not supported; search a resource type"))
		}
		return errResponse(methodNotAllowed("POST"))
	}
	if segs[0] == "metadata" && len(segs) == 1 {
		if method != http.MethodGet {
			return errResponse(methodNotAllowed("GET"))
		}
		return newResponse(200, s.capabilityStatement(ctx.base))
	}
	typ := segs[0]
	if strings.HasPrefix(typ, "$") {
		return errResponse(errorf(400, "not-supported", "operations are not supported"))
	}
	if !isResourceType(typ) {
		return errResponse(errorf(404, "not-supported", "%q is not a supported resource type", truncate(typ, 64)))
	}
	switch len(segs) {
	case 1:
		switch method {
		case http.MethodGet:
			return s.serveSearch(ctx, typ, query)
		case http.MethodPost:
			body, ferr := s.readBody(r, false)
			if ferr != nil {
				return errResponse(ferr)
			}
			return s.serveWrite(ctx, func() (*result, *fhirError) {
				return s.createRequest(ctx, typ, body, r.Header.Get("If-None-Exist"))
			})
		case http.MethodPut:
			if r.URL.RawQuery == "" {
				return errResponse(errorf(400, "required", "PUT needs a resource id or conditional criteria"))
			}
			body, ferr := s.readBody(r, false)
			if ferr != nil {
				return errResponse(ferr)
			}
			return s.serveWrite(ctx, func() (*result, *fhirError) {
				return s.updateRequest(ctx, typ, "", r.URL.RawQuery, body, r.Header.Get("If-Match"))
			})
		case http.MethodDelete:
			if r.URL.RawQuery == "" {
				return errResponse(errorf(400, "required", "DELETE needs a resource id or conditional criteria"))
			}
			return s.serveWrite(ctx, func() (*result, *fhirError) {
				return s.deleteRequest(ctx, typ, "", r.URL.RawQuery)
			})
		}
		return errResponse(methodNotAllowed("GET", "POST", "PUT", "DELETE"))
	case 2:
		switch segs[1] {
		case "_search":
			switch method {
			case http.MethodGet:
				return s.serveSearch(ctx, typ, query)
			case http.MethodPost:
				body, ferr := s.readBody(r, true)
				if ferr != nil {
					return errResponse(ferr)
				}
				form, err := url.ParseQuery(string(body))
				if err != nil {
					return errResponse(errorf(400, "invalid", "the search body is not a valid form"))
				}
				for k, v := range query {
					form[k] = append(form[k], v...)
				}
				return s.serveSearch(ctx, typ, form)
			}
			return errResponse(methodNotAllowed("GET", "POST"))
		case "_history":
			return errResponse(errorf(400, "not-supported", "type-level history is not supported"))
		}
		id := segs[1]
		if strings.HasPrefix(id, "$") {
			return errResponse(errorf(400, "not-supported", "operations are not supported"))
		}
		if !validID(id) {
			return errResponse(errorf(400, "value", "%q is not a valid resource id", truncate(id, 64)))
		}
		switch method {
		case http.MethodGet:
			res, ferr := s.read(typ, id, 0)
			if ferr != nil {
				return errResponse(ferr)
			}
			if inm := r.Header.Get("If-None-Match"); inm != "" && inm == etag(res.vid) {
				resp := newResponse(http.StatusNotModified, nil)
				resp.header.Set("ETag", etag(res.vid))
				return resp
			}
			return s.resultResponse(ctx, res, false)
		case http.MethodPut:
			body, ferr := s.readBody(r, false)
			if ferr != nil {
				return errResponse(ferr)
			}
			return s.serveWrite(ctx, func() (*result, *fhirError) {
				return s.updateRequest(ctx, typ, id, "", body, r.Header.Get("If-Match"))
			})
		case http.MethodDelete:
			return s.serveWrite(ctx, func() (*result, *fhirError) {
				return s.deleteRequest(ctx, typ, id, "")
			})
		}
		return errResponse(methodNotAllowed("GET", "HEAD", "PUT", "DELETE"))
	case 3, 4:
		id := segs[1]
		if segs[2] != "_history" || !validID(id) {
			break
		}
		if method != http.MethodGet {
			return errResponse(methodNotAllowed("GET", "HEAD"))
		}
		if len(segs) == 3 {
			return s.serveHistory(ctx, typ, id)
		}
		vid, err := strconv.Atoi(segs[3])
		if err != nil || vid < 1 {
			return errResponse(errorf(404, "not-found", "no version %q of %s/%s", truncate(segs[3], 16), typ, id))
		}
		res, ferr := s.read(typ, id, vid)
		if ferr != nil {
			return errResponse(ferr)
		}
		return s.resultResponse(ctx, res, false)
	}
	return errResponse(errorf(404, "not-found", "unknown FHIR path"))
}

// readBody reads a request body within the size limit. Bodies must be
// JSON (or a form, for POST _search).
func (s *Server) readBody(r *http.Request, form bool) ([]byte, *fhirError) {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		ok := err == nil && (jsonFormat(mt) || form && mt == "application/x-www-form-urlencoded")
		if !ok {
			return nil, errorf(http.StatusUnsupportedMediaType, "not-supported", "Content-Type must be application/fhir+json")
		}
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, s.cfg.maxBodyBytes+1))
	if err != nil {
		return nil, errorf(400, "incomplete", "reading the request body failed")
	}
	if int64(len(body)) > s.cfg.maxBodyBytes {
		return nil, errorf(http.StatusRequestEntityTooLarge, "too-costly", "the request body is larger than %d bytes", s.cfg.maxBodyBytes)
	}
	return body, nil
}

// serveWrite runs a write interaction and renders its result.
func (s *Server) serveWrite(ctx *reqCtx, fn func() (*result, *fhirError)) *response {
	res, ferr := fn()
	if ferr != nil {
		return errResponse(ferr)
	}
	return s.resultResponse(ctx, res, true)
}

func (s *Server) serveSearch(ctx *reqCtx, typ string, params url.Values) *response {
	q, ferr := s.parseSearch(typ, params, ctx.strict, false, ctx.bases)
	if ferr != nil {
		return errResponse(ferr)
	}
	total, page := s.searchPage(q)
	return newResponse(200, s.searchBundle(ctx.base, q, total, page))
}

func etag(vid int) string { return `W/"` + strconv.Itoa(vid) + `"` }

// ifMatch is a parsed If-Match header or Bundle entry.request.ifMatch.
type ifMatch struct {
	any  bool     // "*": any current version
	tags []string // the opaque tags, without W/ and quotes
}

// parseIfMatch reads an If-Match value (RFC 9110 section 13.1.1): "*" or a
// comma-separated list of entity tags, W/"x" or "x". As HAPI FHIR does, it
// also takes a bare version id ("3", which some clients send in
// Bundle entry.request.ifMatch) as the tag "3". ok is false when v is none
// of these: that is a 400, while a well-formed tag that is not the current
// version is a 412.
func parseIfMatch(v string) (m ifMatch, ok bool) {
	v = strings.TrimSpace(v)
	switch {
	case v == "":
		return m, false
	case v == "*":
		return ifMatch{any: true}, true
	case allDigits(v):
		return ifMatch{tags: []string{v}}, true
	}
	for {
		v = strings.TrimLeft(v, " \t")
		v = strings.TrimPrefix(v, "W/")
		if !strings.HasPrefix(v, `"`) {
			return ifMatch{}, false
		}
		end := strings.IndexByte(v[1:], '"')
		if end < 0 {
			return ifMatch{}, false
		}
		tag := v[1 : 1+end]
		for i := 0; i < len(tag); i++ {
			// etagc: %x21 / %x23-7E / obs-text
			if c := tag[i]; c <= 0x20 || c == 0x7f {
				return ifMatch{}, false
			}
		}
		m.tags = append(m.tags, tag)
		v = strings.TrimLeft(v[2+end:], " \t")
		if v == "" {
			return m, true
		}
		if v[0] != ',' {
			return ifMatch{}, false
		}
		v = v[1:]
	}
}

// matches reports whether the current version vid satisfies m. FHIR
// versions are weak ETags, so W/"3" and "3" both match version 3.
func (m ifMatch) matches(vid int) bool {
	if m.any {
		return true
	}
	cur := strconv.Itoa(vid)
	for _, t := range m.tags {
		if t == cur {
			return true
		}
	}
	return false
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

func httpTime(micros int64) string {
	return time.UnixMicro(micros).UTC().Format(http.TimeFormat)
}

func instant(micros int64) string {
	return time.UnixMicro(micros).UTC().Format(instantFormat)
}

// resultResponse renders the result of an interaction. For writes the body
// follows Prefer: return.
func (s *Server) resultResponse(ctx *reqCtx, res *result, write bool) *response {
	resp := newResponse(res.status, nil)
	if res.vid > 0 {
		resp.header.Set("ETag", etag(res.vid))
		resp.header.Set("Last-Modified", httpTime(res.updated))
	}
	if res.deleted {
		if ctx.ret == returnOutcome {
			resp.status = http.StatusOK
			resp.body = infoOutcome("%s", res.message)
		} else {
			resp.status = http.StatusNoContent
		}
		return resp
	}
	if write && res.vid > 0 {
		resp.header.Set("Location", ctx.base+"/"+res.typ+"/"+res.id+"/_history/"+strconv.Itoa(res.vid))
	}
	if !write {
		resp.body = res.body
		return resp
	}
	switch ctx.ret {
	case returnMinimal:
	case returnOutcome:
		resp.body = infoOutcome("%s", res.message)
	default:
		resp.body = res.body
	}
	return resp
}
