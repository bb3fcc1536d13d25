package admin

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

// AccountsAPI is what the API needs of the web console's account store; the console's PasswordFile
// implements it. Errors wrap ErrNoAccount, ErrAccountExists, ErrLastAdministrator or ErrInvalidAccount
// where those apply.
type AccountsAPI interface {
	Accounts(ctx context.Context) ([]Account, error)
	AddAccount(ctx context.Context, a NewAccount) error
	SetAccountPassword(ctx context.Context, name, password string) error
	RemoveAccount(ctx context.Context, name string) error
}

// Account roles, as the API and the console's password file spell them.
const (
	RoleAdministrator = "administrator"
	RoleViewer        = "viewer"
)

var (
	// ErrNoAccount: no account has that name (404).
	ErrNoAccount = errors.New("no such account")
	// ErrAccountExists: an account of that name exists already (409).
	ErrAccountExists = errors.New("account exists")
	// ErrLastAdministrator: the change would leave no administrator (409).
	ErrLastAdministrator = errors.New("the last administrator cannot be removed")
	// ErrInvalidAccount: a name, role or password the store refuses (400).
	ErrInvalidAccount = errors.New("invalid account")
)

// Account is one console account as GET /api/v1/accounts lists it; the password hash never leaves the
// store.
type Account struct {
	Name string `json:"name"`
	Role string `json:"role"`
}

// NewAccount is the body of POST /api/v1/accounts.
type NewAccount struct {
	Name     string `json:"name"`
	Role     string `json:"role"`
	Password string `json:"password"`
}

// PasswordRequest is the body of PUT /api/v1/accounts/{name}/password.
type PasswordRequest struct {
	Password string `json:"password"`
}

// Principal is who sent an API request: the holder of the admin token (Account empty), or a console
// account through its login session.
type Principal struct {
	Account string
	Role    string
}

// Token reports whether the request carried the admin token.
func (p Principal) Token() bool { return p.Account == "" }

// Administrator reports whether the principal may change state.
func (p Principal) Administrator() bool { return p.Token() || p.Role == RoleAdministrator }

type principalKey struct{}

// PrincipalOf returns who sent r (set by the server's authentication); the zero Principal, the token
// holder, when none was recorded.
func PrincipalOf(r *http.Request) Principal {
	p, _ := r.Context().Value(principalKey{}).(Principal)
	return p
}

func withPrincipal(r *http.Request, p Principal) *http.Request {
	return r.WithContext(context.WithValue(r.Context(), principalKey{}, p))
}

func (s *Server) accountsRoutes() {
	m := s.mux
	m.HandleFunc("GET /api/v1/accounts", s.withAccounts(s.accountsList))
	m.HandleFunc("POST /api/v1/accounts", s.withAccounts(s.accountsAdd))
	m.HandleFunc("PUT /api/v1/accounts/{name}/password", s.withAccounts(s.accountsPassword))
	m.HandleFunc("DELETE /api/v1/accounts/{name}", s.withAccounts(s.accountsRemove))
}

// withAccounts answers 501 without an account store and 403 to anyone but an administrator: a viewer may
// not even list the accounts.
func (s *Server) withAccounts(h func(http.ResponseWriter, *http.Request, AccountsAPI)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if s.opts.Accounts == nil {
			writeError(w, http.StatusNotImplemented, "console accounts are not available on this node")
			return
		}
		if p := PrincipalOf(r); !p.Administrator() {
			writeError(w, http.StatusForbidden, fmt.Sprintf("the account %s is a viewer: only an administrator manages accounts", p.Account))
			return
		}
		h(w, r, s.opts.Accounts)
	}
}

func (s *Server) accountsList(w http.ResponseWriter, r *http.Request, st AccountsAPI) {
	accts, err := st.Accounts(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if accts == nil {
		accts = []Account{}
	}
	writeJSON(w, http.StatusOK, accts)
}

func (s *Server) accountsAdd(w http.ResponseWriter, r *http.Request, st AccountsAPI) {
	var req NewAccount
	if err := readBody(w, r, &req); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if err := st.AddAccount(r.Context(), req); err != nil {
		s.fail(w, r, err)
		return
	}
	s.log.Info("admin: console account added", "account", req.Name, "role", req.Role, "by", who(r), "ip", remoteIP(r))
	writeJSON(w, http.StatusCreated, Account{Name: req.Name, Role: req.Role})
}

func (s *Server) accountsPassword(w http.ResponseWriter, r *http.Request, st AccountsAPI) {
	var req PasswordRequest
	if err := readBody(w, r, &req); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	name := r.PathValue("name")
	if err := st.SetAccountPassword(r.Context(), name, req.Password); err != nil {
		s.fail(w, r, err)
		return
	}
	s.log.Info("admin: console account password set; its sessions end", "account", name, "by", who(r), "ip", remoteIP(r))
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) accountsRemove(w http.ResponseWriter, r *http.Request, st AccountsAPI) {
	name := r.PathValue("name")
	if err := st.RemoveAccount(r.Context(), name); err != nil {
		s.fail(w, r, err)
		return
	}
	s.log.Info("admin: console account removed; its sessions end", "account", name, "by", who(r), "ip", remoteIP(r))
	w.WriteHeader(http.StatusNoContent)
}

// who names the principal of r for logs.
func who(r *http.Request) string {
	if p := PrincipalOf(r); !p.Token() {
		return p.Account
	}
	return "admin token"
}

// AccountPath is the API path of account name, with action ("password") when not empty.
func AccountPath(name, action string) string {
	p := "/api/v1/accounts/" + url.PathEscape(name)
	if action != "" {
		p += "/" + action
	}
	return p
}

// Accounts lists the console accounts.
func (c *Client) Accounts(ctx context.Context) ([]Account, error) {
	var out []Account
	err := c.Do(ctx, http.MethodGet, "/api/v1/accounts", nil, &out)
	return out, err
}

// AddAccount adds a console account.
func (c *Client) AddAccount(ctx context.Context, a NewAccount) error {
	return c.Do(ctx, http.MethodPost, "/api/v1/accounts", a, nil)
}

// SetAccountPassword sets a console account's password; its console sessions end.
func (c *Client) SetAccountPassword(ctx context.Context, name, password string) error {
	return c.Do(ctx, http.MethodPut, AccountPath(name, "password"), PasswordRequest{Password: password}, nil)
}

// RemoveAccount removes a console account; the server refuses to remove the last administrator.
func (c *Client) RemoveAccount(ctx context.Context, name string) error {
	return c.Do(ctx, http.MethodDelete, AccountPath(strings.TrimSpace(name), ""), nil, nil)
}
