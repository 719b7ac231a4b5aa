package ui

import (
	"net"
	"net/http"
	"strings"
)

// signinData is what the sign-in page shows.
type signinData struct {
	Next     string
	Message  string
	Error    string
	FormCSRF string
}

// safeNext keeps next only when it is a console path on this server.
func safeNext(next string) string {
	if !strings.HasPrefix(next, Prefix+"/") || strings.HasPrefix(next, "//") ||
		strings.ContainsAny(next, "\\\r\n") || strings.Contains(next, "/signin") || strings.Contains(next, "/signout") {
		return Prefix + "/"
	}
	return next
}

// signinPage is GET /ui/signin. It sets the pre-session CSRF cookie the
// form must echo.
func (c *Console) signinPage(w http.ResponseWriter, r *http.Request) {
	d := signinData{Next: safeNext(r.URL.Query().Get("next"))}
	if r.URL.Query().Get("out") != "" {
		d.Message = "You are signed out."
	}
	c.showSignin(w, r, http.StatusOK, d)
}

func (c *Console) showSignin(w http.ResponseWriter, r *http.Request, status int, d signinData) {
	d.FormCSRF = randomToken()
	http.SetCookie(w, &http.Cookie{Name: signinCookie, Value: d.FormCSRF, Path: Prefix + "/signin",
		MaxAge: 3600, Secure: true, HttpOnly: true, SameSite: http.SameSiteStrictMode})
	c.render(w, r, nil, status, "signin", page{Title: "Sign in", Data: d})
}

// signin is POST /ui/signin: the token against api.token and api.ui_token
// in constant time, at most a few attempts per client address.
func (c *Console) signin(w http.ResponseWriter, r *http.Request) {
	next := safeNext(r.PostFormValue("next"))
	ck, err := r.Cookie(signinCookie)
	if err != nil || !sameSecret(r.PostFormValue("csrf"), ck.Value) {
		c.log.Warn("console: sign-in form refused without a valid CSRF token", "remote", clientAddr(r), "request_id", reqID(w))
		c.errorPage(w, r, nil, http.StatusForbidden, "This sign-in form is out of date or did not come from the console. Reload the sign-in page and try again.")
		return
	}
	if !c.limiter.allow(r, c.now()) {
		c.log.Warn("console: sign-in attempts rate-limited", "remote", clientAddr(r), "request_id", reqID(w))
		w.Header().Set("Retry-After", "10")
		c.showSignin(w, r, http.StatusTooManyRequests, signinData{Next: next,
			Error: "Too many sign-in attempts from this address. Wait a little and try again."})
		return
	}
	token := r.PostFormValue("token")
	var principal string
	// Both comparisons always run, so timing says nothing of which matched.
	apiOK, uiOK := sameSecret(token, c.opts.APIToken), sameSecret(token, c.opts.UIToken)
	switch {
	case uiOK:
		principal = principalUIToken
	case apiOK:
		principal = principalAPIToken
	default:
		c.log.Warn("console: sign-in failed: wrong token", "remote", clientAddr(r), "request_id", reqID(w))
		c.showSignin(w, r, http.StatusUnauthorized, signinData{Next: next, Error: "That token is not valid."})
		return
	}
	se := c.sessions.create(principal, c.now())
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: se.id, Path: Prefix,
		MaxAge: int(SessionTTL.Seconds()), Secure: true, HttpOnly: true, SameSite: http.SameSiteStrictMode})
	http.SetCookie(w, &http.Cookie{Name: signinCookie, Value: "", Path: Prefix + "/signin",
		MaxAge: -1, Secure: true, HttpOnly: true, SameSite: http.SameSiteStrictMode})
	c.log.Info("console: signed in", "who", principal, "session", se.tag, "remote", clientAddr(r), "request_id", reqID(w))
	http.Redirect(w, r, next, http.StatusSeeOther)
}

// signout is POST /ui/signout: the session ends on the server and the
// cookie is cleared.
func (c *Console) signout(w http.ResponseWriter, r *http.Request, se *session) {
	c.sessions.remove(se.id)
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: Prefix,
		MaxAge: -1, Secure: true, HttpOnly: true, SameSite: http.SameSiteStrictMode})
	c.log.Info("console: signed out", "who", se.principal, "session", se.tag, "request_id", reqID(w))
	http.Redirect(w, r, Prefix+"/signin?out=1", http.StatusSeeOther)
}

// clientAddr is the client's IP address (no port) for the logs.
func clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
