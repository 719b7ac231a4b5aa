package api

import (
	"encoding/json"
	"net/http"
)

// errorBody is every error answer. Error is a fixed text: it never echoes
// request content.
type errorBody struct {
	Error     string `json:"error"`
	RequestID string `json:"request_id"`
}

// writeJSON answers status with v as JSON. API answers may hold local ids
// and diagnostics: they are not to be cached.
func (s *server) writeJSON(w http.ResponseWriter, r *http.Request, status int, v any) {
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	if r.Method == http.MethodHead {
		return
	}
	if err := json.NewEncoder(w).Encode(v); err != nil {
		// The client went away or v is not encodable; the status is sent.
		s.log.Debug("writing a response failed", "request_id", requestID(r), "err", err)
	}
}

// writeError answers status with {"error": msg, "request_id": ...}.
func (s *server) writeError(w http.ResponseWriter, r *http.Request, status int, msg string) {
	s.writeJSON(w, r, status, errorBody{Error: msg, RequestID: requestID(r)})
}

// internalError logs err (which must be free of patient data: store and
// EHR client errors are) and answers 500 with a fixed text.
func (s *server) internalError(w http.ResponseWriter, r *http.Request, what string, err error) {
	s.log.Error(what, "route", infoFrom(r.Context()).route, "request_id", requestID(r), "err", err)
	s.writeError(w, r, http.StatusInternalServerError, "internal error: "+what)
}

func (s *server) notFound(w http.ResponseWriter, r *http.Request) {
	s.writeError(w, r, http.StatusNotFound, "no such route")
}

func (s *server) methodNotAllowed(w http.ResponseWriter, r *http.Request) {
	s.writeError(w, r, http.StatusMethodNotAllowed, "method not allowed")
}
