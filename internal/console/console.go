// Package console is the privacy console: web pages for privacy officers
// and support staff, served by the tokenvault binary on its own listener
// (config key console.listen; README "Privacy console").
//
// It is built so that it cannot become a second way into the vault:
//   - Users sign in as an identity of the policy (an API key typed on the
//     sign-in page, or the verified client certificate of the TLS
//     connection), identified by the gRPC guard's own rule
//     ([grpcserver.Guard.Identify]).
//   - Every operation runs through [grpcserver.Guard.Call] as the gRPC
//     method it is and calls that method's handler: the policy decides,
//     the purpose is checked and the audit entry is written exactly as for
//     a gRPC call, under the console user's identity. The pages only hide
//     controls the policy would refuse anyway.
//   - Server-rendered html/template pages and assets embedded in the
//     binary; a strict Content-Security-Policy with no inline script; a
//     session cookie (HttpOnly, SameSite=Strict, Secure under TLS) with an
//     idle timeout; a CSRF token on every POST; nothing that names a
//     subject, token or value ever in a URL or the log; pages that may
//     hold values are never cached.
package console

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tokenvault/tokenvault/internal/auth"
	"github.com/tokenvault/tokenvault/internal/grpcserver"
	"github.com/tokenvault/tokenvault/vault"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Options configure New.
type Options struct {
	Guard   *grpcserver.Guard       // required: authentication, authorization, audit
	Service *grpcserver.Server      // required: the TokenVault handlers
	Admin   *grpcserver.Admin       // the KeyAdmin handlers (nil: no key status)
	Vault   *vault.Vault            // required: listings that have no RPC
	Policy  grpcserver.PolicySource // nil: dev mode (as for the guard)
	// TokenHash is the audit log's keyed token hash (to find a subject's
	// tokens in the trail).
	TokenHash func(token string) string
	Trail     Trail // nil: no trail
	// KEKProvider names the KEK provider; KEKHealthy reports its health;
	// BackupHorizon is how long after an erasure backup copies can still
	// be decrypted (rotation interval + backup retention).
	KEKProvider   string
	KEKHealthy    func() error
	BackupHorizon time.Duration
	// IdleTimeout signs users out (default 15m). RevealFor is how long a
	// revealed value stays on screen (default 20s).
	IdleTimeout time.Duration
	RevealFor   time.Duration
	// TLS: the console is served over TLS (cookies are Secure).
	TLS    bool
	Logger *slog.Logger
}

// Console is the console's HTTP handler.
type Console struct {
	o        Options
	sessions *sessions
	throttle *signinThrottle // failed sign-ins (throttle.go)
	pages    map[string]*template.Template
	mux      *http.ServeMux
}

// PageSize is the number of tokens per page of the subject page.
const PageSize = 50

// trailLimit is how many trail entries the subject page shows.
const trailLimit = 100

// New returns the console.
func New(o Options) (*Console, error) {
	if o.Guard == nil || o.Service == nil || o.Vault == nil {
		return nil, errors.New("console: guard, service and vault are required")
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = 15 * time.Minute
	}
	if o.RevealFor <= 0 {
		o.RevealFor = 20 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.TokenHash == nil {
		o.TokenHash = func(string) string { return "" }
	}
	c := &Console{o: o, sessions: newSessions(o.IdleTimeout), throttle: newSigninThrottle(time.Now), pages: map[string]*template.Template{}}
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return nil, err
	}
	for _, n := range names {
		if n == "templates/layout.html" {
			continue
		}
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", n)
		if err != nil {
			return nil, fmt.Errorf("console: %w", err)
		}
		c.pages[n[len("templates/"):len(n)-len(".html")]] = t
	}
	c.routes()
	return c, nil
}

var funcs = template.FuncMap{
	"when": func(t time.Time) string {
		if t.IsZero() {
			return "—"
		}
		return t.UTC().Format("2006-01-02 15:04:05 UTC")
	},
}

// ServeHTTP adds the security headers to every response and logs the
// request by method and path only (paths never carry data).
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	// No inline script or style anywhere, so the policy can be strict.
	h.Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "+
		"frame-ancestors 'none'; form-action 'self'; base-uri 'none'; object-src 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	// Every response, redirects and the two small assets included: no
	// page or answer of the console belongs in a shared or disk cache.
	h.Set("Cache-Control", "no-store")
	if c.o.TLS {
		h.Set("Strict-Transport-Security", "max-age=31536000")
	}
	sw := &statusWriter{ResponseWriter: w, code: http.StatusOK}
	start := time.Now()
	c.mux.ServeHTTP(sw, r)
	c.o.Logger.Debug("console request", "method", r.Method, "path", r.URL.Path, "code", sw.code, "duration", time.Since(start))
}

type statusWriter struct {
	http.ResponseWriter
	code int
}

func (s *statusWriter) WriteHeader(code int) { s.code = code; s.ResponseWriter.WriteHeader(code) }

func (c *Console) routes() {
	m := http.NewServeMux()
	static, _ := fs.Sub(staticFS, "static")
	m.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	m.HandleFunc("GET /{$}", c.home)
	m.HandleFunc("GET /signin", c.signinPage)
	m.HandleFunc("POST /signin", c.signin)
	m.HandleFunc("POST /signout", c.post(c.signout))
	m.HandleFunc("GET /lookup", c.get(c.lookupPage))
	m.HandleFunc("POST /lookup", c.post(c.lookup))
	m.HandleFunc("GET /subject", c.get(c.subjectPage))
	m.HandleFunc("POST /subject/page", c.post(c.subjectPageAt))
	m.HandleFunc("POST /reveal", c.post(c.reveal))
	m.HandleFunc("POST /export", c.post(c.export))
	m.HandleFunc("POST /restrict", c.post(c.restrict))
	m.HandleFunc("POST /unrestrict", c.post(c.unrestrict))
	m.HandleFunc("POST /rectify", c.post(c.rectify))
	m.HandleFunc("GET /erase", c.get(c.erasePage))
	m.HandleFunc("POST /erase", c.post(c.erase))
	m.HandleFunc("GET /receipt", c.get(c.receiptFile))
	m.HandleFunc("GET /keys", c.get(c.keysPage))
	c.mux = m
}

// req is one signed-in request.
type req struct {
	w   http.ResponseWriter
	r   *http.Request
	s   *session
	key [32]byte
}

func (q *req) ctx() context.Context { return q.r.Context() }

// addr is the browser's address, recorded as the peer in the audit log.
func (q *req) addr() net.Addr {
	a, err := net.ResolveTCPAddr("tcp", q.r.RemoteAddr)
	if err != nil {
		return nil
	}
	return a
}

// maxForm bounds a POST body (a rectified value is the largest field).
const maxForm = 64 << 10

// get serves a page to a signed-in user.
func (c *Console) get(h func(*req)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s, k, ok := c.sessions.get(r)
		if !ok {
			http.Redirect(w, r, "/signin", http.StatusSeeOther)
			return
		}
		noStore(w)
		h(&req{w: w, r: r, s: s, key: k})
	}
}

// post serves a state-changing request: a signed-in session, a same-origin
// request and the session's CSRF token, or 403.
func (c *Console) post(h func(*req)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		noStore(w)
		s, k, ok := c.sessions.get(r)
		if !ok {
			c.refuse(w, http.StatusUnauthorized, "you are not signed in (or were signed out after a while without activity)")
			return
		}
		if !sameOrigin(r) {
			c.refuse(w, http.StatusForbidden, "cross-site request refused")
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxForm)
		if err := r.ParseForm(); err != nil {
			c.refuse(w, http.StatusBadRequest, "the form could not be read")
			return
		}
		if !tokenEqual(r.PostForm.Get("csrf"), s.csrf) {
			c.refuse(w, http.StatusForbidden, "the request has no valid CSRF token: reload the page and try again")
			return
		}
		h(&req{w: w, r: r, s: s, key: k})
	}
}

// sameOrigin: browsers send Sec-Fetch-Site (and Origin on POST); a
// cross-site one is refused even before the CSRF token is looked at.
func sameOrigin(r *http.Request) bool {
	switch r.Header.Get("Sec-Fetch-Site") {
	case "", "same-origin", "none":
	default:
		return false
	}
	if o := r.Header.Get("Origin"); o != "" && o != "null" {
		scheme := "http://"
		if r.TLS != nil {
			scheme = "https://"
		}
		return o == scheme+r.Host
	}
	return true
}

func noStore(w http.ResponseWriter) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
}

// refuse answers with an error page.
func (c *Console) refuse(w http.ResponseWriter, code int, msg string) {
	c.render(w, code, "error", map[string]any{"Title": http.StatusText(code), "Message": msg})
}

func (c *Console) render(w http.ResponseWriter, code int, page string, data map[string]any) {
	t, ok := c.pages[page]
	if !ok {
		http.Error(w, "no such page", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(code)
	if err := t.Execute(w, data); err != nil {
		c.o.Logger.Error("console: rendering a page failed", "page", page, "err", err)
	}
}

// page renders a page for a signed-in user.
func (c *Console) page(q *req, code int, name string, data map[string]any) {
	if data == nil {
		data = map[string]any{}
	}
	data["User"] = q.s.id.String()
	data["CSRF"] = q.s.csrf
	data["CanKeys"] = c.may(q.s.id, auth.OpAdmin) && c.o.Admin != nil
	c.render(q.w, code, name, data)
}

// fail shows an operation's error: a gRPC status's code and message
// (never a value: the status table sees to that), or a generic text for
// anything else, which is logged.
func (c *Console) fail(q *req, err error) {
	code, msg := httpStatus(err), "the operation failed; see the server log"
	if st, ok := status.FromError(err); ok {
		msg = st.Code().String() + ": " + st.Message()
	} else if errors.Is(err, vault.ErrNotFound) {
		msg = "not found"
	} else {
		c.o.Logger.Error("console operation failed", "err", err)
	}
	c.page(q, code, "error", map[string]any{"Title": http.StatusText(code), "Message": msg})
}

func httpStatus(err error) int {
	switch status.Code(err) {
	case codes.PermissionDenied:
		return http.StatusForbidden
	case codes.Unauthenticated:
		return http.StatusUnauthorized
	case codes.NotFound:
		return http.StatusNotFound
	case codes.InvalidArgument, codes.FailedPrecondition:
		return http.StatusBadRequest
	case codes.Unavailable:
		return http.StatusServiceUnavailable
	}
	if errors.Is(err, vault.ErrNotFound) {
		return http.StatusNotFound
	}
	return http.StatusInternalServerError
}
