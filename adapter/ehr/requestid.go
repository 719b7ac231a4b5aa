package ehr

import (
	"context"
	"crypto/rand"
	"encoding/hex"
)

// HeaderRequestID is the header that carries a request id to the EHR, so
// that an attempt the adapter records can be found in the EHR's logs.
const HeaderRequestID = "X-Request-Id"

type requestIDKey struct{}

// WithRequestID returns a context whose requests to the EHR carry id in
// the X-Request-Id header. Every request made with the context carries the
// same id, retries included: it names one delivery attempt.
func WithRequestID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, requestIDKey{}, id)
}

// RequestID returns the request id of ctx, "" if it has none.
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey{}).(string)
	return id
}

// NewRequestID returns 16 random hex digits: no record data, so it may
// leave the process in headers and logs.
func NewRequestID() string {
	var b [8]byte
	rand.Read(b[:]) // never fails (crypto/rand)
	return hex.EncodeToString(b[:])
}
