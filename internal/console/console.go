// Package console implements mxgate's web console: server-rendered HTML pages (html/template, embedded
// templates and one CSS file, no JavaScript) on the admin listener for the dashboard, the queue, destination
// domains and their TLS policies, TLS reports, committed settings, the nodes of a cluster and the account's
// password.
//
// The console keeps its own in-memory view of recent deliveries (Observe): per-minute counts for the last
// 24 hours and the last result of the most recently seen domains. It is bounded and lost on restart; the
// queue, the policy cache, the settings and the TLS reports are read live from their owners.
//
// Security: every page but /login needs a session (a random id in an HttpOnly, SameSite=Strict cookie,
// Secure over TLS, kept in memory with an idle expiry). Every state change is a POST carrying the session's
// CSRF token in a hidden field, compared in constant time; a POST without it is refused with 403. Failed
// logins are limited per client IP. Responses forbid framing and scripts (Content-Security-Policy).
//
// Accounts are named, each an administrator or a viewer (Role): a viewer sees every page, but every state
// change but logging out and changing its own password needs an administrator (403 otherwise), and the
// pages show it no forms. Settings commits and rollbacks are attributed to the account. The accounts live
// in one file of salted PBKDF2-HMAC-SHA256 hashes (see Bootstrap, AddAccount), read at every request, so
// that a change made with the CLI takes effect at once.
package console

import (
	"context"
	"crypto/rand"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"slices"
	"time"

	"github.com/mxgate/mxgate/internal/admin"
	"github.com/mxgate/mxgate/internal/delivery"
	"github.com/mxgate/mxgate/internal/queue"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// QueueAPI, STSCacheAPI, SettingsAPI and ReportsAPI are what the console needs of the queue, the MTA-STS
// policy cache, the committed settings and the TLS report sender: the admin API's own interfaces
// (*queue.Queue, *mtastscache.Cache, *settings.Store and *tlsreport.Reporter implement them), so that the
// console and the API are clients of one contract.
type (
	QueueAPI    = admin.QueueAPI
	STSCacheAPI = admin.STSCacheAPI
	SettingsAPI = admin.SettingsAPI
	ReportsAPI  = admin.ReportsAPI
)

// Defaults for zero Options fields.
const (
	DefaultMaxDomains  = 1000
	DefaultSessionIdle = 2 * time.Hour
	DefaultSessionMax  = 12 * time.Hour
	// MaxSessions bounds the sessions kept; the oldest is dropped beyond it.
	MaxSessions = 256
	// LoginFailures failed logins from one IP within LoginWindow block further attempts from it until the
	// window has passed.
	LoginFailures = 5
	LoginWindow   = 15 * time.Minute
)

// Options configures a Console. Queue, STS, Settings and PasswordFile or Accounts are required.
type Options struct {
	Queue    QueueAPI
	STS      STSCacheAPI
	Settings SettingsAPI
	// Reports returns the TLS report sender in force; nil (or a nil result) means TLS reporting is off.
	Reports func() ReportsAPI
	// Explain explains the TLS policy delivery would apply to a domain now (the daemon's Explain, as the admin
	// API serves it). Nil hides explanations.
	Explain func(ctx context.Context, req delivery.PlanRequest) (delivery.Explanation, error)
	// DKIM returns the DNS record of the key TLS reports are signed with, for the reports page; nil shows
	// none.
	DKIM func(ctx context.Context) (admin.DKIMRecord, error)
	// Components returns the state of the gateway's components for the dashboard; nil shows none.
	Components func() []admin.Component
	// Trace finds messages that left the queue ((*queue.Queue).Trace); nil: the Tracking page says it is
	// not available.
	Trace func(ctx context.Context, q queue.TraceQuery) ([]queue.Traced, error)
	// Cluster, when set, shows every node's queue on the queue page (with each message's node) and sends
	// the actions on another node's message to that node; it also serves the Nodes page. Nil: this node's
	// queue only, and the Nodes page says the registry is not available.
	Cluster admin.ClusterAPI
	// ClusterCounters, when set (cluster mode), makes the dashboard show the sums of every node's counters
	// (this node's own live, the others' as last published), by clock hour, and name the nodes whose
	// figures are stale or missing. Node is this node's name there.
	ClusterCounters CounterStore
	Node            string
	// PasswordFile holds the console accounts (see Bootstrap) when Accounts is nil.
	PasswordFile string
	// Accounts, when set, is where the accounts are instead of PasswordFile (in a cluster, the shared
	// database: PostgresAccounts).
	Accounts AccountStore
	// PasswordIterations is the PBKDF2 cost of a password changed on the account page; 0 means
	// DefaultIterations.
	PasswordIterations int
	// MaxDomains bounds the destination domains remembered; 0 means DefaultMaxDomains.
	MaxDomains int
	// SessionIdle and SessionMax end a session after that long without a request, or after that long at
	// all; 0 means DefaultSessionIdle and DefaultSessionMax.
	SessionIdle time.Duration
	SessionMax  time.Duration
	Logger      *slog.Logger
	// Now is the clock; nil means time.Now. Rand is the source of session ids and CSRF tokens; nil means
	// crypto/rand.Reader.
	Now  func() time.Time
	Rand io.Reader
}

func (c *Console) components() []admin.Component {
	if c.opts.Components == nil {
		return nil
	}
	return c.opts.Components()
}

// Console is the web console. It is safe for concurrent use.
type Console struct {
	opts     Options
	log      *slog.Logger
	now      func() time.Time
	rand     io.Reader
	pages    map[string]*template.Template
	static   fs.FS
	timeline *timeline
	sessions *sessions
	limiter  *loginLimiter
	accounts AccountStore
	mux      *http.ServeMux
	// patterns lists the mux's patterns in registration order.
	patterns []string
}

// New checks o and builds the console.
func New(o Options) (*Console, error) {
	var errs []error
	if o.Queue == nil {
		errs = append(errs, errors.New("console: Options.Queue is required"))
	}
	if o.STS == nil {
		errs = append(errs, errors.New("console: Options.STS is required"))
	}
	if o.Settings == nil {
		errs = append(errs, errors.New("console: Options.Settings is required"))
	}
	if o.PasswordFile == "" && o.Accounts == nil {
		errs = append(errs, errors.New("console: Options.PasswordFile or Options.Accounts is required"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	c := &Console{opts: o, log: o.Logger, now: o.Now, rand: o.Rand, accounts: o.Accounts}
	if c.accounts == nil {
		c.accounts = PasswordFile{Path: o.PasswordFile, Iterations: o.PasswordIterations}
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if c.now == nil {
		c.now = time.Now
	}
	if c.rand == nil {
		c.rand = rand.Reader
	}
	if o.MaxDomains <= 0 {
		c.opts.MaxDomains = DefaultMaxDomains
	}
	if o.SessionIdle <= 0 {
		c.opts.SessionIdle = DefaultSessionIdle
	}
	if o.SessionMax <= 0 {
		c.opts.SessionMax = DefaultSessionMax
	}
	pages, err := parsePages()
	if err != nil {
		return nil, err
	}
	c.pages = pages
	c.static, err = fs.Sub(staticFS, "static")
	if err != nil {
		return nil, fmt.Errorf("console: %w", err)
	}
	c.timeline = newTimeline(c.opts.MaxDomains)
	c.sessions = newSessions(MaxSessions)
	c.limiter = newLoginLimiter()
	c.mux = http.NewServeMux()
	c.routes()
	return c, nil
}

// Observe records one delivery event (one recipient's outcome in one attempt). The daemon calls it from
// delivery.Deliverer.Events; it is cheap and does not block on I/O.
func (c *Console) Observe(ev delivery.Event) { c.timeline.observe(c.now(), ev) }

// ObserveAccepted records one message accepted by the SMTP intake.
func (c *Console) ObserveAccepted() { c.timeline.accepted(c.now()) }

// Handler returns the console's HTTP handler, to be mounted at "/" beside the admin API.
func (c *Console) Handler() http.Handler { return http.HandlerFunc(c.serveHTTP) }

func (c *Console) routes() {
	c.handleFunc("GET /static/{file}", c.serveStatic)
	c.handleFunc("GET /favicon.ico", c.serveFavicon)
	c.handleFunc("GET /login", c.loginPage)
	c.handleFunc("POST /login", c.login)
	c.handle("POST /logout", c.postSelf(c.logout))

	c.handle("GET /{$}", c.page(c.dashboard))
	c.handle("GET /queue", c.page(c.queueList))
	c.handle("GET /queue/confirm", c.page(c.queueConfirm))
	c.handle("POST /queue/action", c.post(c.queueAction))
	c.handle("GET /queue/bulk", c.page(c.queueBulkConfirm))
	c.handle("POST /queue/bulk", c.post(c.queueBulk))
	c.handle("GET /queue/{id}", c.page(c.queueDetail))
	c.handle("GET /nodes", c.page(c.nodesPage))
	c.handle("GET /trace", c.page(c.tracePage))
	c.handle("GET /domains", c.page(c.domainsList))
	c.handle("GET /domains/{domain}", c.page(c.domainDetail))
	c.handle("POST /domains/{domain}/refresh", c.post(c.domainRefresh))
	c.handle("POST /domains/{domain}/flush", c.post(c.domainFlush))
	c.handle("GET /reports", c.page(c.reportsPage))
	c.handle("GET /reports/preview", c.page(c.reportPreview))
	c.handle("POST /reports/suppress", c.post(c.reportSuppress))
	c.handle("POST /reports/unsuppress", c.post(c.reportUnsuppress))
	c.handle("GET /settings", c.page(c.settingsPage))
	c.handle("GET /rules", c.page(c.rulesPage))
	c.handle("POST /settings/set", c.post(c.settingsSet))
	c.handle("POST /settings/unset", c.post(c.settingsUnset))
	c.handle("GET /settings/review", c.page(c.settingsReview))
	c.handle("POST /settings/commit", c.post(c.settingsCommit))
	c.handle("POST /settings/discard", c.post(c.settingsDiscard))
	c.handle("GET /settings/history", c.page(c.settingsHistory))
	c.handle("POST /settings/rollback", c.post(c.settingsRollback))
	c.handle("GET /account", c.page(c.accountPage))
	c.handle("POST /account/password", c.postSelf(c.accountPassword))
	c.handle("POST /accounts/add", c.post(c.accountsAdd))
	c.handle("POST /accounts/password", c.post(c.accountsPassword))
	c.handle("POST /accounts/remove", c.post(c.accountsRemove))
}

// Routes lists the patterns the console serves ("POST /settings/commit"), in registration order.
func (c *Console) Routes() []string { return slices.Clone(c.patterns) }

// handle registers h for pattern on the console's mux and lists the pattern (Patterns).
func (c *Console) handle(pattern string, h http.Handler) {
	c.mux.Handle(pattern, h)
	c.patterns = append(c.patterns, pattern)
}

func (c *Console) handleFunc(pattern string, h http.HandlerFunc) { c.handle(pattern, h) }

func (c *Console) serveHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	// Not "no-referrer": with it browsers send "Origin: null" on form posts, which sameOrigin refuses.
	h.Set("Referrer-Policy", "same-origin")
	// No script at all; styles and images only from the console itself (the chart is inline SVG, styled
	// through presentation attributes and classes, which this policy allows).
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	if _, pattern := c.mux.Handler(r); pattern == "" {
		if _, ok := c.sessions.get(r, c.now(), c.opts.SessionIdle); !ok {
			c.redirectToLogin(w, r)
			return
		}
		c.mux.ServeHTTP(w, r) // 404 or 405 from the mux
		return
	}
	c.mux.ServeHTTP(w, r)
}

func (c *Console) serveStatic(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("file")
	data, err := fs.ReadFile(c.static, name)
	if err != nil {
		http.NotFound(w, r)
		return
	}
	switch {
	case len(name) > 4 && name[len(name)-4:] == ".css":
		w.Header().Set("Content-Type", "text/css; charset=utf-8")
	case len(name) > 4 && name[len(name)-4:] == ".svg":
		w.Header().Set("Content-Type", "image/svg+xml")
	default:
		w.Header().Set("Content-Type", "application/octet-stream")
	}
	w.Header().Set("Cache-Control", "public, max-age=3600")
	w.Write(data)
}

func (c *Console) serveFavicon(w http.ResponseWriter, r *http.Request) {
	r.SetPathValue("file", "favicon.svg")
	c.serveStatic(w, r)
}
