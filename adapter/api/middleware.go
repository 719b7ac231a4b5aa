package api

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/http"
	"runtime"
	"runtime/debug"
	"strings"
	"time"

	"github.com/gorilla/mux"
)

// reqInfo is filled in as a request goes through the middleware; observe
// reads it for the access log and the metric.
type reqInfo struct {
	id    string
	route string
}

type ctxKey struct{}

func infoFrom(ctx context.Context) *reqInfo {
	if ri, ok := ctx.Value(ctxKey{}).(*reqInfo); ok {
		return ri
	}
	return &reqInfo{route: RouteUnmatched}
}

// requestID returns the request id of a request that went through observe.
func requestID(r *http.Request) string { return infoFrom(r.Context()).id }

// statusWriter records the status and size of a response.
type statusWriter struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(p)
	w.bytes += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// observe gives the request an id, then logs and counts it once it is
// answered. The log line holds the route template, never the path or query.
func (s *server) observe(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := s.now()
		ri := &reqInfo{id: incomingRequestID(r.Header.Get(headerRequestID)), route: RouteUnmatched}
		if ri.id == "" {
			ri.id = newRequestID()
		}
		w.Header().Set(headerRequestID, ri.id)
		sw := &statusWriter{ResponseWriter: w}
		next.ServeHTTP(sw, r.WithContext(context.WithValue(r.Context(), ctxKey{}, ri)))
		status := sw.status
		if status == 0 {
			status = http.StatusOK
		}
		s.metrics.APIRequest(ri.route, status)
		level := slog.LevelInfo
		switch ri.route {
		case RouteHealthz, RouteReadyz, RouteMetrics:
			level = slog.LevelDebug // probes and scrapes every few seconds
		}
		s.log.LogAttrs(r.Context(), level, "http request",
			slog.String("method", r.Method),
			slog.String("route", ri.route),
			slog.Int("status", status),
			slog.Float64("duration_ms", float64(s.now().Sub(start).Microseconds())/1000),
			slog.Int64("bytes", sw.bytes),
			slog.String("request_id", ri.id),
		)
	})
}

// nameRoute records the matched route's name (its template) for observe.
func nameRoute(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if route := mux.CurrentRoute(r); route != nil {
			if name := route.GetName(); name != "" {
				infoFrom(r.Context()).route = name
			}
		}
		next.ServeHTTP(w, r)
	})
}

// recoverPanics answers 500 when a handler panics. The panic value is
// logged only when it is a runtime error (its text holds no request data);
// the stack is always logged.
func (s *server) recoverPanics(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			v := recover()
			if v == nil {
				return
			}
			if v == http.ErrAbortHandler {
				panic(v)
			}
			what := fmt.Sprintf("%T", v)
			if re, ok := v.(runtime.Error); ok {
				what = re.Error()
			}
			ri := infoFrom(r.Context())
			s.log.Error("handler panicked", "route", ri.route, "request_id", ri.id,
				"panic", what, "stack", string(debug.Stack()))
			if sw, ok := w.(*statusWriter); ok && sw.status != 0 {
				return // the answer has started; the client sees a cut response
			}
			s.writeError(w, r, http.StatusInternalServerError, "internal error")
		}()
		next.ServeHTTP(w, r)
	})
}

// auth requires the bearer token: none or a malformed Authorization header
// is 401 with a WWW-Authenticate challenge (RFC 6750), a wrong token 403.
func (s *server) auth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := r.Header.Get("Authorization")
		if h == "" {
			w.Header().Set("WWW-Authenticate", `Bearer realm="ketamine-fhir"`)
			s.writeError(w, r, http.StatusUnauthorized, "missing bearer token")
			return
		}
		scheme, token, ok := strings.Cut(h, " ")
		token = strings.TrimLeft(token, " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" || strings.ContainsAny(token, " \t") {
			w.Header().Set("WWW-Authenticate", `Bearer realm="ketamine-fhir", error="invalid_request"`)
			s.writeError(w, r, http.StatusUnauthorized, "malformed Authorization header: want \"Bearer TOKEN\"")
			return
		}
		if !s.tokenOK(token) {
			s.writeError(w, r, http.StatusForbidden, "invalid token")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// tokenOK compares token with the configured one in constant time. Both
// are hashed first so that the comparison does not leak the length.
func (s *server) tokenOK(token string) bool {
	if !s.hasToken {
		return false
	}
	h := hashToken(token)
	return subtle.ConstantTimeCompare(h[:], s.tokenHash[:]) == 1
}

func hashToken(t string) [32]byte { return sha256.Sum256([]byte(t)) }

// incomingRequestID keeps a caller's request id only when it is a short
// token of safe characters, so a log line never carries arbitrary text.
func incomingRequestID(id string) string {
	if id == "" || len(id) > 128 {
		return ""
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9',
			c == '-', c == '_', c == '.', c == ':':
		default:
			return ""
		}
	}
	return id
}

// newRequestID returns 16 random bytes in hex.
func newRequestID() string {
	var b [16]byte
	rand.Read(b[:]) // never fails (crypto/rand, Go 1.24+)
	return hex.EncodeToString(b[:])
}

// sinceSeconds is now - t in seconds, never negative.
func sinceSeconds(now, t time.Time) float64 {
	d := now.Sub(t).Seconds()
	if d < 0 {
		return 0
	}
	return d
}
