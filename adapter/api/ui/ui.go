package ui

import (
	"bytes"
	"embed"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"runtime"
	"runtime/debug"
	"strings"
	"time"

	"github.com/ketamine-fhir/ketamine-fhir/adapter"
	"github.com/ketamine-fhir/ketamine-fhir/adapter/store"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Backend is the part of the sync engine the console uses. *adapter.Engine
// satisfies it.
type Backend interface {
	// Store is the outbox.
	Store() store.Store
	// Delivery says how delivery is going (paused, pacing, queue).
	Delivery() adapter.DeliveryStatus
	// LastSync is when a record was last delivered (zero: never).
	LastSync() time.Time
	// Wake tells the delivery loop that new work is there.
	Wake()
}

var _ Backend = (*adapter.Engine)(nil)

// EHRState is what the adapter last learned of the EHR (serve fills it from
// its EHR prober).
type EHRState struct {
	// Checked says whether the EHR was probed at all.
	Checked bool
	// Reachable says whether it answered the last probe.
	Reachable bool
	// CheckedAt is when the last probe ended.
	CheckedAt time.Time
	// ErrorClass is why the last probe failed ("timeout", "auth", ...).
	ErrorClass string
}

// Setting is one line of the overview's config summary. Its owner (serve)
// must leave secrets out.
type Setting struct {
	Key, Value string
}

// Options configures the console.
type Options struct {
	// APIToken and UIToken are the secrets an operator may sign in with
	// (api.token, api.ui_token). Empty ones are not accepted; with both
	// empty nobody can sign in.
	APIToken, UIToken string
	// EHR reports the EHR's reachability; nil shows it as never checked.
	EHR func() EHRState
	// Sampler feeds the deliveries chart; nil shows no chart data.
	Sampler *Sampler
	// Settings is the config summary shown on the overview (no secrets).
	Settings []Setting
	// Version is the adapter's version. Defaults to the module version
	// from the build info.
	Version string
	// Logger receives the actions (sign-in, sign-out, re-queue) with who
	// did them, and internal errors. Defaults to slog.Default().
	Logger *slog.Logger
	// Now is the clock. Defaults to time.Now.
	Now func() time.Time
}

// Console is the operator console, an http.Handler for the paths under
// /ui. Build it with New.
type Console struct {
	b        Backend
	opts     Options
	log      *slog.Logger
	now      func() time.Time
	sessions *sessions
	limiter  *signinLimiter
	pages    map[string]*template.Template
	mux      *http.ServeMux
}

// maxFormBytes caps a form POST.
const maxFormBytes = 64 << 10

// Prefix is the path the console is served under.
const Prefix = "/ui"

// ContentSecurityPolicy is sent with every console answer: nothing but the
// console's own style sheet, images and one script file (the overview's
// refresh; no inline script, no eval), fetches only to the console, forms
// only to the console, never framed.
const ContentSecurityPolicy = "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'self'; " +
	"img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// New returns the console over b.
func New(b Backend, opts Options) *Console {
	c := &Console{b: b, opts: opts, log: opts.Logger, now: opts.Now,
		sessions: newSessions(), limiter: newSigninLimiter(), pages: parsePages()}
	if c.log == nil {
		c.log = slog.Default()
	}
	if c.now == nil {
		c.now = time.Now
	}
	if c.opts.Version == "" {
		c.opts.Version = buildVersion()
	}
	static, _ := fs.Sub(staticFS, "static") // the directory is embedded
	m := http.NewServeMux()
	m.HandleFunc("GET /ui", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, Prefix+"/", http.StatusSeeOther)
	})
	m.Handle("GET /ui/static/", http.StripPrefix("/ui/static/", http.FileServerFS(static)))
	m.HandleFunc("GET /ui/signin", c.signinPage)
	m.HandleFunc("POST /ui/signin", c.signin)
	m.HandleFunc("POST /ui/signout", c.withSession(c.signout))
	m.HandleFunc("GET /ui/{$}", c.withSession(c.overview))
	m.HandleFunc("GET /ui/deadletters", c.withSession(c.deadLetters))
	m.HandleFunc("GET /ui/waiting", c.withSession(c.waiting))
	m.HandleFunc("GET /ui/records/{id}", c.withSession(c.record))
	m.HandleFunc("POST /ui/retry", c.withSession(c.retry))
	m.HandleFunc("/ui/", c.withSession(func(w http.ResponseWriter, r *http.Request, se *session) {
		c.errorPage(w, r, se, http.StatusNotFound, "There is no such page.")
	}))
	c.mux = m
	return c
}

// ServeHTTP serves the console with its security headers.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", ContentSecurityPolicy)
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Cross-Origin-Resource-Policy", "same-origin")
	h.Set("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
	h.Set("Cache-Control", "no-store")
	if r.Method == http.MethodPost {
		r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	}
	c.mux.ServeHTTP(w, r)
}

// Sessions reports how many sessions are open.
func (c *Console) Sessions() int { return c.sessions.count() }

// sessionHandler is a page that needs a session.
type sessionHandler func(http.ResponseWriter, *http.Request, *session)

// withSession runs next with the request's session. Without one, a GET
// is redirected to the sign-in page (which comes back here after) and
// anything else is refused 403. A POST must carry the session's CSRF
// token in the form field "csrf", else it is refused 403.
func (c *Console) withSession(next sessionHandler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var se *session
		if ck, err := r.Cookie(sessionCookie); err == nil && ck.Value != "" {
			se = c.sessions.get(ck.Value, c.now())
		}
		if se == nil {
			if r.Method == http.MethodGet || r.Method == http.MethodHead {
				q := url.Values{"next": {r.URL.Path}}
				http.Redirect(w, r, Prefix+"/signin?"+q.Encode(), http.StatusSeeOther)
				return
			}
			c.errorPage(w, r, nil, http.StatusForbidden, "You are not signed in (or your session ended). Sign in again.")
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			if !sameSecret(r.PostFormValue("csrf"), se.csrf) {
				c.log.Warn("console: form refused without a valid CSRF token", "session", se.tag, "request_id", reqID(w))
				c.errorPage(w, r, se, http.StatusForbidden, "This form is out of date or did not come from the console. Go back, reload the page and try again.")
				return
			}
		}
		next(w, r, se)
	}
}

// reqID is the request id the API's middleware set on the answer.
func reqID(w http.ResponseWriter) string { return w.Header().Get("X-Request-Id") }

// page is what every page template gets.
type page struct {
	Title   string
	Nav     string // which nav entry is current
	CSRF    string // empty when signed out
	Refresh int    // seconds between updates by static/refresh.js; 0 for none
	Flash   string
	Data    any
}

// render writes the page template name with status.
func (c *Console) render(w http.ResponseWriter, r *http.Request, se *session, status int, name string, p page) {
	if se != nil {
		p.CSRF = se.csrf
	}
	t, ok := c.pages[name]
	if !ok {
		panic("ui: no page template " + name)
	}
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, "layout", p); err != nil {
		c.log.Error("console: rendering a page failed", "page", name, "request_id", reqID(w), "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		w.Write(buf.Bytes())
	}
}

// errorPage answers status with a short message page.
func (c *Console) errorPage(w http.ResponseWriter, r *http.Request, se *session, status int, msg string) {
	c.render(w, r, se, status, "error", page{Title: http.StatusText(status), Data: msg})
}

// internalError logs err (store errors carry no patient data) and answers 500.
func (c *Console) internalError(w http.ResponseWriter, r *http.Request, se *session, what string, err error) {
	c.log.Error("console: "+what, "request_id", reqID(w), "err", err)
	c.errorPage(w, r, se, http.StatusInternalServerError, "Internal error while "+what+". The log has the details (request id "+reqID(w)+").")
}

var funcs = template.FuncMap{
	"time": func(t time.Time) string {
		if t.IsZero() {
			return "never"
		}
		return t.UTC().Format("2006-01-02 15:04:05 UTC")
	},
	"join": strings.Join,
}

// parsePages parses each page template together with the layout.
func parsePages() map[string]*template.Template {
	layout := template.Must(template.New("layout").Funcs(funcs).ParseFS(templateFS, "templates/layout.html"))
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		panic(err)
	}
	out := map[string]*template.Template{}
	for _, n := range names {
		base := strings.TrimSuffix(strings.TrimPrefix(n, "templates/"), ".html")
		if base == "layout" {
			continue
		}
		out[base] = template.Must(template.Must(layout.Clone()).ParseFS(templateFS, n))
	}
	return out
}

func buildVersion() string {
	v := "unknown"
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		v = bi.Main.Version
	}
	return v + " (" + runtime.Version() + ")"
}
