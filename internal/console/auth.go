package console

import (
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/mxgate/mxgate/internal/admin"
)

const (
	sessionCookie = "mxgate_console"
	loginCookie   = "mxgate_login"
	csrfField     = "csrf"
	// maxForm bounds a form body.
	maxForm = 64 << 10
	// maxLimiterEntries bounds the per-IP login failure records.
	maxLimiterEntries = 4096
)

// session is one logged-in browser.
type session struct {
	id       string
	csrf     string
	created  time.Time
	lastSeen time.Time
	// flash is a one-time message shown on the next page.
	flash string
	// account is the name the session logged in as; hash is that account's password hash at login (a
	// session ends when its account is removed or its password changed elsewhere). role is the account's
	// role as of the current request.
	account string
	hash    string
	role    Role
	// verified is when the store last confirmed account and hash (login, or a request's lookup): while the
	// shared database does not answer, the session goes on for AccountsGrace after it.
	verified time.Time
}

type sessions struct {
	mu  sync.Mutex
	max int
	m   map[string]*session
}

func newSessions(max int) *sessions { return &sessions{max: max, m: map[string]*session{}} }

func (c *Console) randomHex(n int) (string, error) {
	b := make([]byte, n)
	if _, err := io.ReadFull(c.rand, b); err != nil {
		return "", fmt.Errorf("console: random: %w", err)
	}
	return hex.EncodeToString(b), nil
}

func (ss *sessions) add(s *session, now time.Time, idle, maxAge time.Duration) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	for id, o := range ss.m {
		if expired(o, now, idle, maxAge) {
			delete(ss.m, id)
		}
	}
	for len(ss.m) >= ss.max {
		var oldest *session
		for _, o := range ss.m {
			if oldest == nil || o.lastSeen.Before(oldest.lastSeen) {
				oldest = o
			}
		}
		delete(ss.m, oldest.id)
	}
	ss.m[s.id] = s
}

func expired(s *session, now time.Time, idle, maxAge time.Duration) bool {
	return now.Sub(s.lastSeen) > idle || now.Sub(s.created) > maxAge
}

// get returns a copy of the session of r's cookie, if valid, and marks it used.
func (ss *sessions) get(r *http.Request, now time.Time, idle time.Duration) (session, bool) {
	ck, err := r.Cookie(sessionCookie)
	if err != nil || ck.Value == "" {
		return session{}, false
	}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	s, ok := ss.m[ck.Value]
	if !ok {
		return session{}, false
	}
	if now.Sub(s.lastSeen) > idle {
		delete(ss.m, s.id)
		return session{}, false
	}
	s.lastSeen = now
	return *s, true
}

// setVerified records that the store confirmed session id's account at now.
func (ss *sessions) setVerified(id string, now time.Time) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if s, ok := ss.m[id]; ok {
		s.verified = now
	}
}

func (ss *sessions) checkAge(id string, now time.Time, maxAge time.Duration) bool {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	s, ok := ss.m[id]
	if ok && now.Sub(s.created) > maxAge {
		delete(ss.m, id)
		return false
	}
	return ok
}

// takeFlash returns and clears the session's flash message.
func (ss *sessions) takeFlash(id string) string {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if s, ok := ss.m[id]; ok {
		f := s.flash
		s.flash = ""
		return f
	}
	return ""
}

func (ss *sessions) setFlash(id, msg string) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if s, ok := ss.m[id]; ok {
		s.flash = msg
	}
}

// setHash records the session's account's new password hash (after it changed its own password).
func (ss *sessions) setHash(id, hash string) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if s, ok := ss.m[id]; ok {
		s.hash = hash
	}
}

func (ss *sessions) remove(id string) {
	ss.mu.Lock()
	delete(ss.m, id)
	ss.mu.Unlock()
}

// loginLimiter counts failed logins per client IP.
type loginLimiter struct {
	mu sync.Mutex
	m  map[string]*failures
}

type failures struct {
	n     int
	start time.Time
}

func newLoginLimiter() *loginLimiter { return &loginLimiter{m: map[string]*failures{}} }

// blocked reports whether ip has used up its failed attempts in the current window, and until when.
func (l *loginLimiter) blocked(ip string, now time.Time) (time.Time, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	f, ok := l.m[ip]
	if !ok {
		return time.Time{}, false
	}
	if now.Sub(f.start) >= LoginWindow {
		delete(l.m, ip)
		return time.Time{}, false
	}
	return f.start.Add(LoginWindow), f.n >= LoginFailures
}

func (l *loginLimiter) fail(ip string, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	f, ok := l.m[ip]
	if !ok || now.Sub(f.start) >= LoginWindow {
		if len(l.m) >= maxLimiterEntries {
			for k, o := range l.m {
				if now.Sub(o.start) >= LoginWindow {
					delete(l.m, k)
				}
			}
			if len(l.m) >= maxLimiterEntries {
				// Under a spray from many addresses, count them together rather than forget them.
				ip = "overflow"
				if f, ok = l.m[ip]; ok && now.Sub(f.start) < LoginWindow {
					f.n++
					return
				}
			}
		}
		f = &failures{start: now}
		l.m[ip] = f
	}
	f.n++
}

func (l *loginLimiter) reset(ip string) {
	l.mu.Lock()
	delete(l.m, ip)
	l.mu.Unlock()
}

func remoteIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// sameOrigin refuses cross-site form posts by their Origin header when the browser sends one; the CSRF
// token is the real check.
func sameOrigin(r *http.Request) bool {
	o := r.Header.Get("Origin")
	if o == "" {
		return true
	}
	u, err := url.Parse(o)
	return err == nil && u.Host == r.Host
}

func (c *Console) setCookie(w http.ResponseWriter, r *http.Request, name, value, path string, maxAge int) {
	http.SetCookie(w, &http.Cookie{
		Name: name, Value: value, Path: path, MaxAge: maxAge,
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil,
	})
}

// localPath returns next if it is a path on this site, "/" otherwise (no open redirects).
func localPath(next string) string {
	if next == "" || !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") || strings.HasPrefix(next, "/\\") ||
		strings.ContainsAny(next, "\r\n") || next == "/login" {
		return "/"
	}
	return next
}

func (c *Console) redirectToLogin(w http.ResponseWriter, r *http.Request) {
	target := "/login"
	if r.Method == http.MethodGet && r.URL.Path != "/" {
		target += "?next=" + url.QueryEscape(r.URL.RequestURI())
	}
	http.Redirect(w, r, target, http.StatusSeeOther)
}

// handlerFunc is a page or action handler with its session.
type handlerFunc func(w http.ResponseWriter, r *http.Request, s *session)

// current returns the session of r, if valid, with its account's role as the password file says now. A
// session whose account was removed, or whose password was changed elsewhere, is ended.
func (c *Console) current(r *http.Request) (session, bool) {
	now := c.now()
	s, ok := c.sessions.get(r, now, c.opts.SessionIdle)
	if !ok || !c.sessions.checkAge(s.id, now, c.opts.SessionMax) {
		return session{}, false
	}
	a, err := c.accounts.lookup(r.Context(), s.account)
	if errors.Is(err, errAccountsUnreachable) {
		// The shared database does not answer (an outage, or this node cut off from it): for a short
		// while the session goes on with the role it had; after that, an account removed or a password
		// changed on another node meanwhile could not be told, so the session is refused.
		if now.Sub(s.verified) <= AccountsGrace {
			c.log.Warn("console: accounts unreadable; the session keeps its role for now", "account", s.account, "verified", s.verified, "err", err)
			return s, true
		}
		c.log.Error("console: session refused: the accounts have not been readable for longer than the grace period", "account", s.account, "grace", AccountsGrace, "ip", remoteIP(r), "err", err)
		return session{}, false
	}
	if err != nil && !errors.Is(err, ErrNoAccount) && !errors.Is(err, ErrNoPassword) {
		c.log.Error("console: session refused: the accounts cannot be read", "account", s.account, "where", c.accounts.where(), "ip", remoteIP(r), "err", err)
		return session{}, false
	}
	if err != nil || a.hash != s.hash {
		c.log.Info("console: session ended: account removed or password changed", "account", s.account, "ip", remoteIP(r))
		c.sessions.remove(s.id)
		return session{}, false
	}
	c.sessions.setVerified(s.id, now)
	s.role = a.Role
	return s, true
}

// page wraps a GET handler: it needs a session.
func (c *Console) page(h handlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, ok := c.current(r)
		if !ok {
			c.redirectToLogin(w, r)
			return
		}
		h(w, r, &s)
	})
}

// post wraps a state-changing handler: it needs an administrator's session and the session's CSRF token
// in the form. A viewer is refused with 403.
func (c *Console) post(h handlerFunc) http.Handler { return c.postAs(h, Administrator) }

// postSelf wraps a handler any account may use on itself (log out, change its own password).
func (c *Console) postSelf(h handlerFunc) http.Handler { return c.postAs(h, "") }

func (c *Console) postAs(h handlerFunc, need Role) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, ok := c.current(r)
		if !ok {
			c.redirectToLogin(w, r)
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxForm)
		if err := r.ParseForm(); err != nil {
			c.renderError(w, r, &s, http.StatusBadRequest, "The form could not be read: "+err.Error())
			return
		}
		tok := r.PostForm.Get(csrfField)
		if !sameOrigin(r) || tok == "" || subtle.ConstantTimeCompare([]byte(tok), []byte(s.csrf)) != 1 {
			c.log.Warn("console: refused a POST without a valid CSRF token", "path", r.URL.Path, "ip", remoteIP(r))
			c.renderError(w, r, &s, http.StatusForbidden, "This form has expired or did not come from the console. Go back, reload the page and try again.")
			return
		}
		if need == Administrator && s.role != Administrator {
			c.log.Warn("console: refused a change by a viewer", "path", r.URL.Path, "account", s.account, "ip", remoteIP(r))
			c.renderError(w, r, &s, http.StatusForbidden, fmt.Sprintf("The account %s is a viewer: it can see every page but change nothing. Ask an administrator.", s.account))
			return
		}
		h(w, r, &s)
	})
}

type loginData struct {
	Token   string
	Next    string
	Message string
}

func (c *Console) loginPage(w http.ResponseWriter, r *http.Request) {
	if _, ok := c.sessions.get(r, c.now(), c.opts.SessionIdle); ok {
		http.Redirect(w, r, localPath(r.URL.Query().Get("next")), http.StatusSeeOther)
		return
	}
	c.renderLogin(w, r, http.StatusOK, "")
}

func (c *Console) renderLogin(w http.ResponseWriter, r *http.Request, code int, msg string) {
	tok, err := c.randomHex(16)
	if err != nil {
		c.log.Error("console: login page", "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	// Login CSRF: the form must come with the cookie set alongside it (double submit).
	c.setCookie(w, r, loginCookie, tok, "/login", 3600)
	next := r.URL.Query().Get("next")
	if r.Method == http.MethodPost {
		next = r.PostForm.Get("next")
	}
	c.render(w, r, nil, code, "login", "Log in", loginData{Token: tok, Next: localPath(next), Message: msg})
}

func (c *Console) login(w http.ResponseWriter, r *http.Request) {
	now := c.now()
	ip := remoteIP(r)
	r.Body = http.MaxBytesReader(w, r.Body, maxForm)
	if err := r.ParseForm(); err != nil {
		c.renderLogin(w, r, http.StatusBadRequest, "The form could not be read.")
		return
	}
	ck, err := r.Cookie(loginCookie)
	tok := r.PostForm.Get(csrfField)
	if err != nil || tok == "" || !sameOrigin(r) || subtle.ConstantTimeCompare([]byte(tok), []byte(ck.Value)) != 1 {
		c.log.Warn("console: refused a login without a valid form token", "ip", ip)
		c.renderLogin(w, r, http.StatusForbidden, "The login form expired. Please try again.")
		return
	}
	if until, blocked := c.limiter.blocked(ip, now); blocked {
		c.log.Warn("console: login refused: too many failures", "ip", ip)
		w.Header().Set("Retry-After", fmt.Sprint(int(until.Sub(now)/time.Second)+1))
		c.renderLogin(w, r, http.StatusTooManyRequests, fmt.Sprintf("Too many failed logins from %s. Try again after %s.", ip, until.UTC().Format("15:04:05 UTC")))
		return
	}
	name := strings.TrimSpace(r.PostForm.Get("account"))
	if name == "" {
		name = BootstrapAccount
	}
	acct, ok, err := checkStoredAccount(r.Context(), c.accounts, name, r.PostForm.Get("password"))
	if errors.Is(err, ErrNoAccount) {
		ok, err = false, nil
	}
	if err != nil {
		c.log.Error("console: cannot read the accounts", "err", err)
		msg := "The console accounts cannot be read; see the server log."
		if errors.Is(err, ErrNoPassword) {
			msg = "No console password is set on this node; see the server log."
		}
		c.renderLogin(w, r, http.StatusInternalServerError, msg)
		return
	}
	if !ok {
		c.limiter.fail(ip, now)
		c.log.Warn("console: failed login", "account", name, "ip", ip)
		c.renderLogin(w, r, http.StatusUnauthorized, "Wrong account name or password.")
		return
	}
	c.limiter.reset(ip)
	id, err1 := c.randomHex(32)
	csrf, err2 := c.randomHex(32)
	if err := errors.Join(err1, err2); err != nil {
		c.log.Error("console: cannot start a session", "err", err)
		c.renderLogin(w, r, http.StatusInternalServerError, "Internal error; see the server log.")
		return
	}
	c.sessions.add(&session{id: id, csrf: csrf, created: now, lastSeen: now, account: acct.Name, hash: acct.hash, role: acct.Role, verified: now}, now, c.opts.SessionIdle, c.opts.SessionMax)
	c.setCookie(w, r, sessionCookie, id, "/", 0)
	c.setCookie(w, r, loginCookie, "", "/login", -1)
	c.log.Info("console: login", "account", acct.Name, "role", acct.Role, "ip", ip)
	http.Redirect(w, r, localPath(r.PostForm.Get("next")), http.StatusSeeOther)
}

func (c *Console) logout(w http.ResponseWriter, r *http.Request, s *session) {
	c.sessions.remove(s.id)
	c.setCookie(w, r, sessionCookie, "", "/", -1)
	c.log.Info("console: logout", "account", s.account, "ip", remoteIP(r))
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}

// done ends an action: the message is shown on the next page, which the browser is sent to (303, so that
// reloading it does not repeat the action).
func (c *Console) done(w http.ResponseWriter, r *http.Request, s *session, to, msg string) {
	c.sessions.setFlash(s.id, msg)
	http.Redirect(w, r, to, http.StatusSeeOther)
}

// CSRFHeader is the request header that carries a session's CSRF token when a script of the console's
// origin calls the admin API with the session cookie.
const CSRFHeader = "X-Mxgate-CSRF"

// Principal authenticates an admin API request by its console session (the admin API's Options.Session):
// a valid session cookie, and for anything but GET and HEAD also the session's CSRF token in CSRFHeader and
// no foreign Origin, since the browser sends the cookie by itself.
func (c *Console) Principal(r *http.Request) (admin.Principal, bool) {
	s, ok := c.current(r)
	if !ok {
		return admin.Principal{}, false
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		tok := r.Header.Get(CSRFHeader)
		if !sameOrigin(r) || tok == "" || subtle.ConstantTimeCompare([]byte(tok), []byte(s.csrf)) != 1 {
			c.log.Warn("console: refused an API request without a valid CSRF token", "path", r.URL.Path, "account", s.account, "ip", remoteIP(r))
			return admin.Principal{}, false
		}
	}
	return admin.Principal{Account: s.account, Role: string(s.role)}, true
}
