package ui

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"net"
	"net/http"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Session limits.
const (
	// SessionTTL is the longest a session lives after sign-in.
	SessionTTL = 8 * time.Hour
	// IdleTimeout ends a session not used for this long.
	IdleTimeout = 30 * time.Minute
	// maxSessions bounds the session store; the least recently used
	// session is dropped beyond it.
	maxSessions = 1000
)

// Cookie names. The session cookie is scoped to /ui.
const (
	sessionCookie = "kf_session"
	signinCookie  = "kf_signin" // the pre-session CSRF token of the sign-in form
)

// Principals: which secret a session was opened with.
const (
	principalAPIToken = "api_token"
	principalUIToken  = "ui_token"
)

// session is one signed-in operator.
type session struct {
	id        string // the cookie value; never logged
	csrf      string // the token every state-changing form carries
	principal string // principalAPIToken or principalUIToken
	tag       string // a short hash of id for the logs
	created   time.Time
	lastSeen  time.Time
}

// sessions is the in-memory session store. Expired sessions are dropped
// when a session is created or looked up, so no goroutine is needed.
type sessions struct {
	mu sync.Mutex
	m  map[string]*session
}

func newSessions() *sessions { return &sessions{m: map[string]*session{}} }

// create opens a session for principal.
func (s *sessions) create(principal string, now time.Time) *session {
	se := &session{id: randomToken(), csrf: randomToken(), principal: principal, created: now, lastSeen: now}
	sum := sha256.Sum256([]byte(se.id))
	se.tag = hex.EncodeToString(sum[:4])
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sweep(now)
	if len(s.m) >= maxSessions {
		var oldest *session
		for _, o := range s.m {
			if oldest == nil || o.lastSeen.Before(oldest.lastSeen) {
				oldest = o
			}
		}
		delete(s.m, oldest.id)
	}
	s.m[se.id] = se
	return se
}

// get returns the live session of id and marks it used, or nil.
func (s *sessions) get(id string, now time.Time) *session {
	s.mu.Lock()
	defer s.mu.Unlock()
	se, ok := s.m[id]
	if !ok {
		return nil
	}
	if expired(se, now) {
		delete(s.m, id)
		return nil
	}
	se.lastSeen = now
	cp := *se
	return &cp
}

// remove ends the session of id.
func (s *sessions) remove(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, id)
}

// count reports the live sessions.
func (s *sessions) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m)
}

func (s *sessions) sweep(now time.Time) {
	for id, se := range s.m {
		if expired(se, now) {
			delete(s.m, id)
		}
	}
}

func expired(se *session, now time.Time) bool {
	return now.Sub(se.created) >= SessionTTL || now.Sub(se.lastSeen) >= IdleTimeout
}

// randomToken returns 32 random bytes, base64url without padding.
func randomToken() string {
	var b [32]byte
	rand.Read(b[:]) // never fails (crypto/rand, Go 1.24+)
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// sameSecret compares two secrets in constant time; hashing first keeps
// the length from leaking. An empty want never matches.
func sameSecret(got, want string) bool {
	if want == "" {
		return false
	}
	g, w := sha256.Sum256([]byte(got)), sha256.Sum256([]byte(want))
	return subtle.ConstantTimeCompare(g[:], w[:]) == 1
}

// Sign-in rate limit per client address: a burst of signinBurst attempts,
// then one every signinEvery.
const (
	signinBurst   = 5
	signinEvery   = 2 * time.Second
	maxLimiters   = 4096
	limiterMaxAge = 10 * time.Minute
)

type limiterEntry struct {
	lim  *rate.Limiter
	seen time.Time
}

// signinLimiter limits sign-in attempts per client address.
type signinLimiter struct {
	mu sync.Mutex
	m  map[string]*limiterEntry
}

func newSigninLimiter() *signinLimiter { return &signinLimiter{m: map[string]*limiterEntry{}} }

// allow says whether the client of r may try to sign in now.
func (l *signinLimiter) allow(r *http.Request, now time.Time) bool {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.m) >= maxLimiters {
		for k, e := range l.m {
			if now.Sub(e.seen) > limiterMaxAge {
				delete(l.m, k)
			}
		}
		if len(l.m) >= maxLimiters {
			clear(l.m) // a flood of addresses: start over rather than grow
		}
	}
	e, ok := l.m[host]
	if !ok {
		e = &limiterEntry{lim: rate.NewLimiter(rate.Every(signinEvery), signinBurst)}
		l.m[host] = e
	}
	e.seen = now
	return e.lim.AllowN(now, 1)
}
