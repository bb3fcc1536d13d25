// Package admin implements mxgate's administration HTTP API: JSON under /api/v1 for the queue, the MTA-STS
// policy cache, policy explanations, node status, the committed settings (stage, diff, commit, history,
// rollback) and TLS reports (RFC 8460: record lookup, pending aggregates, preview, send, report log,
// suppression list), plus /healthz, /readyz and an optional /metrics. The CLI's admin verbs are clients of
// this API (see Client); so is the web console.
//
// Every endpoint but GET /healthz requires "Authorization: Bearer <token>", where the token is the node's
// admin token (see LoadOrCreateToken), or, when Options.Session is set, a web console login session: an
// administrator's may do what the token may, a viewer's only read. /api/v1/accounts manages the console's
// accounts. Every state-changing endpoint is POST, PUT or DELETE. Errors are JSON
// objects {"error": "..."} with a status code that says whose fault it was. Another node of a cluster
// presents the cluster secret instead (Options.ClusterSecret): it opens the queue and status endpoints, and
// nothing else. GET /api/v1/nodes, GET /api/v1/cluster/queue and ?node= on a message serve the cluster
// (Options.Cluster).
//
// It deliberately does not own the HTTP listener's address, TLS, or login sessions for browsers: the daemon
// binds the listener (loopback by default) and the console adds its own login on top of this handler.
package admin

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/mxgate/mxgate/internal/address"
	"github.com/mxgate/mxgate/internal/delivery"
	"github.com/mxgate/mxgate/internal/dnsx"
	"github.com/mxgate/mxgate/internal/mtasts"
	"github.com/mxgate/mxgate/internal/mtastscache"
	"github.com/mxgate/mxgate/internal/nodes"
	"github.com/mxgate/mxgate/internal/queue"
	"github.com/mxgate/mxgate/internal/settings"
	"github.com/mxgate/mxgate/internal/tlsreport"
)

// QueueAPI is what the API needs of the queue; *queue.Queue implements it.
type QueueAPI interface {
	List(ctx context.Context, f queue.Filter) ([]queue.MessageInfo, error)
	Get(ctx context.Context, id string) (queue.MessageDetail, error)
	Summary(ctx context.Context) (queue.Summary, error)
	Retry(ctx context.Context, id string) error
	Hold(ctx context.Context, id string) error
	Release(ctx context.Context, id string) error
	Delete(ctx context.Context, id string) error
	Bounce(ctx context.Context, id string) error
	PreviewBulk(ctx context.Context, a queue.Action, s queue.Selection) (queue.BulkResult, error)
	Bulk(ctx context.Context, a queue.Action, s queue.Selection) (queue.BulkResult, error)
}

// STSCacheAPI is what the API needs of the MTA-STS policy cache; *mtastscache.Cache implements it.
type STSCacheAPI interface {
	List(ctx context.Context) ([]mtastscache.Entry, error)
	Show(ctx context.Context, domain address.Domain) (mtastscache.Entry, error)
	Refresh(ctx context.Context, domain address.Domain) (mtastscache.Entry, error)
	Flush(ctx context.Context, domain address.Domain) error
}

// MinTokenLength is the shortest token New accepts; LoadOrCreateToken makes 64 hex digits.
const MinTokenLength = 16

// MaxListLimit is the largest limit GET /api/v1/queue accepts.
const MaxListLimit = 10000

// Options configures a Server. Token, Queue and STS are required.
type Options struct {
	// Token is the bearer token every endpoint but /healthz requires.
	Token string
	Queue QueueAPI
	STS   STSCacheAPI
	// Explain answers GET /api/v1/policy/{domain}[?requiretls=true]: the TLS policy delivery would apply to
	// the domain (or address literal) now and why. Nil means the endpoint answers 501. An error wrapping
	// address.ErrSyntax is a 400, dnsx.ErrTemporary or dnsx.ErrNotFound a 502.
	Explain func(ctx context.Context, req delivery.PlanRequest) (delivery.Explanation, error)
	// Status answers GET /api/v1/status (the daemon's Status). Nil means the endpoint answers 501.
	Status func(ctx context.Context) (Status, error)
	// Components returns the state of the gateway's components for GET /healthz; nil means none are shown.
	Components func() []Component
	// Ready answers GET /readyz: nil error means ready (200), otherwise 503 with the error. Nil means always
	// ready once the handler serves.
	Ready func(ctx context.Context) error
	// Trace answers GET /api/v1/trace (message tracking); nil means 501.
	Trace TraceFunc
	// Metrics, when set, is served at GET /metrics (behind the token like the rest).
	Metrics http.Handler
	Logger  *slog.Logger
	// Now is the clock (for the "expired" flag of cached policies and the default day of TLS report
	// previews); nil means time.Now.
	Now func() time.Time

	// Settings serves /api/v1/settings and /api/v1/config; nil means those endpoints answer 501.
	Settings SettingsAPI
	// Reports returns the TLS report sender in force, or nil while TLS reporting is off (the endpoints under
	// /api/v1/tlsrpt then answer 409). It is a function because the sender is rebuilt when settings are
	// committed. Nil means those endpoints answer 501.
	Reports func() ReportsAPI
	// LookupTLSRPT returns the TXT strings at _smtp._tls.<domain> (each record's strings concatenated), for
	// GET /api/v1/tlsrpt/lookup/{domain}; errors wrapping dnsx.ErrNotFound mean no such name. Nil means the
	// endpoint answers 501.
	LookupTLSRPT func(ctx context.Context, domain string) ([]string, error)

	// Accounts serves /api/v1/accounts (the web console's accounts); nil means those endpoints answer 501.
	Accounts AccountsAPI
	// Session, when set, authenticates a request that carries no admin token by a console login session
	// (the console's Principal): ok false means no valid session. The API then acts for that account: a
	// viewer may only read, and settings commits are attributed to the account.
	Session func(r *http.Request) (p Principal, ok bool)
	// Cluster serves GET /api/v1/nodes and /api/v1/cluster/queue and the message requests that name
	// another node (?node=); nil means those answer 501.
	Cluster ClusterAPI
	// ClusterSecret returns the secret other nodes present to call this node's queue and status endpoints
	// (see peerAuthorized); nil or "" means only the admin token is accepted.
	ClusterSecret func() string
}

// Server is the admin API. It is safe for concurrent use.
type Server struct {
	opts      Options
	tokenHash [sha256.Size]byte
	log       *slog.Logger
	now       func() time.Time
	mux       *http.ServeMux
}

// New checks o and builds the API's routes.
func New(o Options) (*Server, error) {
	var errs []error
	if len(o.Token) < MinTokenLength {
		errs = append(errs, fmt.Errorf("admin: token must be at least %d characters", MinTokenLength))
	}
	if o.Queue == nil {
		errs = append(errs, errors.New("admin: Options.Queue is required"))
	}
	if o.STS == nil {
		errs = append(errs, errors.New("admin: Options.STS is required"))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	s := &Server{opts: o, tokenHash: sha256.Sum256([]byte(o.Token)), log: o.Logger, now: o.Now, mux: http.NewServeMux()}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	s.routes()
	return s, nil
}

func (s *Server) routes() {
	m := s.mux
	m.HandleFunc("GET /healthz", s.healthz)
	m.HandleFunc("GET /readyz", s.readyz)
	if s.opts.Metrics != nil {
		m.Handle("GET /metrics", s.opts.Metrics)
	}
	m.HandleFunc("GET /api/v1/queue", s.queueList)
	m.HandleFunc("GET /api/v1/queue/summary", s.queueSummary)
	m.HandleFunc("POST /api/v1/queue/bulk", s.queueBulk)
	m.HandleFunc("GET /api/v1/queue/{id}", s.queueShow)
	for _, a := range queue.Actions() {
		if a == queue.ActionDelete {
			m.HandleFunc("DELETE /api/v1/queue/{id}", s.queueAction(a))
		} else {
			m.HandleFunc("POST /api/v1/queue/{id}/"+string(a), s.queueAction(a))
		}
	}
	m.HandleFunc("GET /api/v1/sts/cache", s.stsList)
	m.HandleFunc("GET /api/v1/sts/cache/{domain}", s.stsShow)
	m.HandleFunc("POST /api/v1/sts/cache/{domain}/refresh", s.stsRefresh)
	m.HandleFunc("DELETE /api/v1/sts/cache/{domain}", s.stsFlush)
	m.HandleFunc("GET /api/v1/policy/{domain}", s.policyExplain)
	m.HandleFunc("GET /api/v1/status", s.status)
	s.settingsRoutes()
	s.tlsrptRoutes()
	s.traceRoutes()
	s.clusterRoutes()
	s.accountsRoutes()
}

// Handler returns the API's HTTP handler.
func (s *Server) Handler() http.Handler { return http.HandlerFunc(s.serveHTTP) }

func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	// Only the liveness probe is open: it says nothing but "the process answers".
	if !(r.URL.Path == "/healthz" && (r.Method == http.MethodGet || r.Method == http.MethodHead)) && !s.authorized(r) && !s.peerAuthorized(r) {
		p, ok := Principal{}, false
		if s.opts.Session != nil && r.Header.Get("Authorization") == "" {
			p, ok = s.opts.Session(r)
		}
		if !ok || p.Account == "" {
			s.log.Warn("admin: unauthorized request", "method", r.Method, "path", r.URL.Path, "ip", remoteIP(r))
			h.Set("WWW-Authenticate", `Bearer realm="mxgate"`)
			writeError(w, http.StatusUnauthorized, "missing or invalid admin token")
			return
		}
		if !p.Administrator() && r.Method != http.MethodGet && r.Method != http.MethodHead {
			s.log.Warn("admin: refused a change by a viewer", "method", r.Method, "path", r.URL.Path, "account", p.Account, "ip", remoteIP(r))
			writeError(w, http.StatusForbidden, fmt.Sprintf("the account %s is a viewer: it may read but change nothing", p.Account))
			return
		}
		r = withPrincipal(r, p)
	}
	if _, pattern := s.mux.Handler(r); pattern == "" {
		// No route: let the mux decide between 404 and 405 (and the Allow header), but answer in JSON.
		rec := &statusRecorder{header: http.Header{}}
		s.mux.ServeHTTP(rec, r)
		if allow := rec.header.Get("Allow"); allow != "" {
			h.Set("Allow", allow)
		}
		if rec.code == http.StatusMethodNotAllowed {
			writeError(w, rec.code, fmt.Sprintf("method %s not allowed on %s", r.Method, r.URL.Path))
			return
		}
		writeError(w, http.StatusNotFound, fmt.Sprintf("no such endpoint: %s %s", r.Method, r.URL.Path))
		return
	}
	s.mux.ServeHTTP(w, r)
}

// authorized reports whether r carries the admin token. Both sides are hashed first so that the comparison
// takes the same time whatever the presented token's length.
func (s *Server) authorized(r *http.Request) bool {
	scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return false
	}
	got := sha256.Sum256([]byte(strings.TrimSpace(tok)))
	return subtle.ConstantTimeCompare(got[:], s.tokenHash[:]) == 1
}

// statusRecorder captures what the mux's own 404 and 405 handlers write.
type statusRecorder struct {
	header http.Header
	code   int
}

func (r *statusRecorder) Header() http.Header         { return r.header }
func (r *statusRecorder) Write(b []byte) (int, error) { return len(b), nil }
func (r *statusRecorder) WriteHeader(code int)        { r.code = code }

// healthz answers 200 while the process serves: a failed or degraded component is shown ("degraded") but restarting
// the process would not mend it, so it is no liveness failure. Reasons may name files and stay behind the
// token (GET /api/v1/status).
func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	h := Health{Status: "ok"}
	if s.opts.Components != nil {
		for _, c := range s.opts.Components() {
			if c.State == ComponentFailed || c.State == ComponentDegraded {
				h.Status = "degraded"
			}
			h.Components = append(h.Components, Component{Name: c.Name, State: c.State})
		}
	}
	writeJSON(w, http.StatusOK, h)
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	if s.opts.Ready != nil {
		if err := s.opts.Ready(r.Context()); err != nil {
			writeError(w, http.StatusServiceUnavailable, "not ready: "+err.Error())
			return
		}
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

// parseFilter reads the query of GET /api/v1/queue. Unknown parameters are errors so that a typo does not
// silently list everything.
func parseFilter(r *http.Request) (queue.Filter, error) {
	var f queue.Filter
	for key, vals := range r.URL.Query() {
		if len(vals) != 1 {
			return f, fmt.Errorf("query parameter %q given %d times", key, len(vals))
		}
		v := vals[0]
		switch key {
		case "domain":
			if v == "" {
				continue
			}
			d, err := address.ParseDomain(v)
			if err != nil {
				return f, fmt.Errorf("invalid domain parameter: %w", err)
			}
			f.Domain = d.String()
		case "sender":
			f.Sender = v
		case "state":
			switch v {
			case "", "queued", "delivered", "failed", "quarantined":
			default:
				return f, fmt.Errorf("invalid state parameter %q: want queued, delivered, failed or quarantined", v)
			}
			f.State = v
		case "held":
			if v == "" {
				continue
			}
			b, err := strconv.ParseBool(v)
			if err != nil {
				return f, fmt.Errorf("invalid held parameter %q: want true or false", v)
			}
			f.HeldOnly = b
		case "limit":
			if v == "" {
				continue
			}
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > MaxListLimit {
				return f, fmt.Errorf("invalid limit parameter %q: want a number from 1 to %d", v, MaxListLimit)
			}
			f.Limit = n
		default:
			return f, fmt.Errorf("unknown query parameter %q (known: domain, sender, state, held, limit)", key)
		}
	}
	return f, nil
}

func (s *Server) queueList(w http.ResponseWriter, r *http.Request) {
	f, err := parseFilter(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	list, err := s.opts.Queue.List(r.Context(), f)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out := make([]Message, 0, len(list))
	for _, mi := range list {
		out = append(out, messageDTO(mi))
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) queueSummary(w http.ResponseWriter, r *http.Request) {
	sum, err := s.opts.Queue.Summary(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, summaryDTO(sum))
}

// messageID returns the {id} path value if it looks like a queue id at all; the queue decides whether it
// exists.
func messageID(r *http.Request) (string, error) {
	id := r.PathValue("id")
	if id == "" || len(id) > 128 {
		return "", fmt.Errorf("invalid message id %q", id)
	}
	for _, c := range id {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '-' || c == '_' || c == '.') {
			return "", fmt.Errorf("invalid message id %q: only letters, digits, '-', '_' and '.' are allowed", id)
		}
	}
	return id, nil
}

func (s *Server) queueShow(w http.ResponseWriter, r *http.Request) {
	id, err := messageID(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	var d queue.MessageDetail
	if node := s.nodeParam(r); node != "" {
		if s.opts.Cluster == nil {
			writeError(w, http.StatusNotImplemented, "the cluster queue is not available on this node")
			return
		}
		d, err = s.opts.Cluster.Message(r.Context(), node, id)
	} else {
		d, err = s.opts.Queue.Get(r.Context(), id)
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, detailDTO(d))
}

func (s *Server) queueAction(action queue.Action) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, err := messageID(r)
		if err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
		node := s.nodeParam(r)
		if node != "" {
			if s.opts.Cluster == nil {
				writeError(w, http.StatusNotImplemented, "the cluster queue is not available on this node")
				return
			}
			err = s.opts.Cluster.Act(r.Context(), node, id, action)
		} else {
			err = action.Do(r.Context(), s.opts.Queue, id)
		}
		if err != nil {
			s.fail(w, r, err)
			return
		}
		if node != "" {
			s.log.Info("admin: queue "+string(action), "msg_id", id, "node", node, "ip", remoteIP(r))
		} else {
			s.log.Info("admin: queue "+string(action), "msg_id", id, "ip", remoteIP(r))
		}
		writeJSON(w, http.StatusOK, ActionResult{Action: string(action), ID: id})
	}
}

// domainParam parses the {domain} path value.
func domainParam(r *http.Request) (address.Domain, error) {
	d, err := address.ParseDomain(r.PathValue("domain"))
	if err != nil {
		return d, fmt.Errorf("invalid domain: %w", err)
	}
	return d, nil
}

func (s *Server) stsList(w http.ResponseWriter, r *http.Request) {
	list, err := s.opts.STS.List(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	now := s.now()
	out := make([]STSEntry, 0, len(list))
	for _, e := range list {
		out = append(out, stsEntryDTO(e, now))
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) stsShow(w http.ResponseWriter, r *http.Request) {
	d, err := domainParam(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	e, err := s.opts.STS.Show(r.Context(), d)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, stsEntryDTO(e, s.now()))
}

func (s *Server) stsRefresh(w http.ResponseWriter, r *http.Request) {
	d, err := domainParam(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	e, err := s.opts.STS.Refresh(r.Context(), d)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.log.Info("admin: sts cache refresh", "domain", d.String(), "ip", remoteIP(r))
	writeJSON(w, http.StatusOK, stsEntryDTO(e, s.now()))
}

func (s *Server) stsFlush(w http.ResponseWriter, r *http.Request) {
	d, err := domainParam(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if err := s.opts.STS.Flush(r.Context(), d); err != nil {
		s.fail(w, r, err)
		return
	}
	s.log.Info("admin: sts cache flush", "domain", d.String(), "ip", remoteIP(r))
	writeJSON(w, http.StatusOK, ActionResult{Action: "flush", Domain: d.String()})
}

func (s *Server) policyExplain(w http.ResponseWriter, r *http.Request) {
	if s.opts.Explain == nil {
		writeError(w, http.StatusNotImplemented, "policy explain is not available on this node")
		return
	}
	host, err := address.ParseHost(r.PathValue("domain"))
	if err != nil {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("invalid domain: %v", err))
		return
	}
	req := delivery.PlanRequest{Domain: host}
	switch v := r.URL.Query().Get("requiretls"); v {
	case "", "false":
	case "true":
		req.RequireTLS = true
	default:
		writeError(w, http.StatusBadRequest, fmt.Sprintf("requiretls: %q is not true or false", v))
		return
	}
	v, err := s.opts.Explain(r.Context(), req)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

func (s *Server) status(w http.ResponseWriter, r *http.Request) {
	if s.opts.Status == nil {
		writeError(w, http.StatusNotImplemented, "status is not available on this node")
		return
	}
	v, err := s.opts.Status(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

// statusOf maps an error from a collaborator to an HTTP status.
func statusOf(err error) int {
	if st, ok := bulkStatus(err); ok {
		return st
	}
	switch {
	case errors.Is(err, ErrInvalidAccount):
		return http.StatusBadRequest
	case errors.Is(err, ErrNoAccount):
		return http.StatusNotFound
	case errors.Is(err, ErrAccountExists), errors.Is(err, ErrLastAdministrator):
		return http.StatusConflict
	case errors.Is(err, nodes.ErrStorage):
		return http.StatusServiceUnavailable
	case errors.Is(err, ErrPeer):
		return http.StatusBadGateway
	case errors.Is(err, queue.ErrNotFound), errors.Is(err, mtastscache.ErrNotCached), errors.Is(err, nodes.ErrUnknownNode),
		errors.Is(err, settings.ErrNoGeneration), errors.Is(err, tlsreport.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, address.ErrSyntax), errors.Is(err, settings.ErrUnknownKey), errors.Is(err, settings.ErrInvalidValue):
		return http.StatusBadRequest
	case errors.Is(err, settings.ErrNoChanges), errors.Is(err, settings.ErrStaged), errors.Is(err, tlsreport.ErrDayNotOver),
		errors.Is(err, queue.ErrInFlight):
		return http.StatusConflict
	case errors.Is(err, settings.ErrRefused):
		return http.StatusUnprocessableEntity
	case errors.Is(err, settings.ErrUnavailable):
		// The shared settings database of a cluster does not answer: nothing was changed.
		return http.StatusServiceUnavailable
	case errors.Is(err, context.DeadlineExceeded):
		return http.StatusGatewayTimeout
	// A refresh or explanation that failed out there (DNS, the policy host, the policy itself) is not
	// this node's fault.
	case errors.Is(err, dnsx.ErrTemporary), errors.Is(err, dnsx.ErrNotFound),
		errors.Is(err, mtasts.ErrNoRecord), errors.Is(err, mtasts.ErrMultipleRecords),
		errors.Is(err, mtasts.ErrRecordInvalid), errors.Is(err, mtasts.ErrPolicyInvalid),
		errors.Is(err, mtasts.ErrFetch), errors.Is(err, mtasts.ErrWebPKI), errors.Is(err, mtasts.ErrForbiddenAddress):
		return http.StatusBadGateway
	default:
		return http.StatusInternalServerError
	}
}

// fail answers with err; server-side failures are logged here, where they are finally handled.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	code := statusOf(err)
	if code >= 500 {
		s.log.Error("admin: request failed", "method", r.Method, "path", r.URL.Path, "status", code, "err", err)
	}
	writeError(w, code, err.Error())
}

// errorBody is the JSON of every error response.
type errorBody struct {
	Error string `json:"error"`
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, errorBody{Error: msg})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		code = http.StatusInternalServerError
		b, _ = json.Marshal(errorBody{Error: "admin: encoding response: " + err.Error()})
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(code)
	w.Write(append(b, '\n'))
}

func remoteIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// Serve serves the API on ln until ctx ends, then shuts down gracefully (requests in progress get up to five
// seconds). It returns nil after a shutdown caused by ctx.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	return ServeHandler(ctx, ln, s.Handler(), s.log)
}

// ServeHandler serves h on ln with the admin listener's timeouts until ctx is cancelled, then shuts down
// gracefully. The daemon serves the API and the web console together through it.
func ServeHandler(ctx context.Context, ln net.Listener, h http.Handler, log *slog.Logger) error {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		// A policy refresh may wait for DNS and an HTTPS fetch.
		WriteTimeout:   2 * time.Minute,
		IdleTimeout:    2 * time.Minute,
		MaxHeaderBytes: 64 << 10,
		ErrorLog:       slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("admin: serve: %w", err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	err := srv.Shutdown(shutdownCtx)
	<-errc
	if err != nil {
		return fmt.Errorf("admin: shutdown: %w", err)
	}
	return nil
}
