package console

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/mxgate/mxgate/internal/admin"
)

type accountData struct {
	MinLength int
	Account   string
	Role      Role
	// Accounts lists every account, for an administrator only.
	Accounts []admin.Account
}

func (c *Console) accountPage(w http.ResponseWriter, r *http.Request, s *session) {
	d := accountData{MinLength: MinPasswordLength, Account: s.account, Role: s.role}
	if s.role == Administrator {
		accts, err := c.accounts.Accounts(r.Context())
		if err != nil {
			c.renderError(w, r, s, http.StatusInternalServerError, "The console accounts cannot be read: "+err.Error())
			return
		}
		d.Accounts = accts
	}
	c.render(w, r, s, http.StatusOK, "account", "Account", d)
}

// accountsAdd, accountsPassword and accountsRemove are an administrator's management of every account,
// through the same store as the admin API's /api/v1/accounts.
func (c *Console) accountsAdd(w http.ResponseWriter, r *http.Request, s *session) {
	a := admin.NewAccount{Name: r.PostForm.Get("name"), Role: r.PostForm.Get("role"), Password: r.PostForm.Get("password")}
	if err := c.accounts.AddAccount(r.Context(), a); err != nil {
		c.accountsFailed(w, r, s, "Not added", err)
		return
	}
	c.log.Info("console: account added", "account", a.Name, "role", a.Role, "by", s.account, "ip", remoteIP(r))
	c.done(w, r, s, "/account", fmt.Sprintf("Account %s (%s) added.", a.Name, a.Role))
}

func (c *Console) accountsPassword(w http.ResponseWriter, r *http.Request, s *session) {
	name := r.PostForm.Get("name")
	if err := c.accounts.SetAccountPassword(r.Context(), name, r.PostForm.Get("password")); err != nil {
		c.accountsFailed(w, r, s, "Password not changed", err)
		return
	}
	c.log.Info("console: account password set; its sessions end", "account", name, "by", s.account, "ip", remoteIP(r))
	if name == s.account {
		a, err := c.accounts.lookup(r.Context(), s.account)
		if err == nil {
			c.sessions.setHash(s.id, a.hash)
		}
	}
	c.done(w, r, s, "/account", fmt.Sprintf("New password of %s set; its sessions were logged out.", name))
}

func (c *Console) accountsRemove(w http.ResponseWriter, r *http.Request, s *session) {
	name := r.PostForm.Get("name")
	if err := c.accounts.RemoveAccount(r.Context(), name); err != nil {
		c.accountsFailed(w, r, s, "Not removed", err)
		return
	}
	c.log.Info("console: account removed; its sessions end", "account", name, "by", s.account, "ip", remoteIP(r))
	c.done(w, r, s, "/account", fmt.Sprintf("Account %s removed; its sessions were logged out.", name))
}

// accountsFailed shows a refused change (bad input, existing or missing account, last administrator) as
// the flash message, and logs anything else.
func (c *Console) accountsFailed(w http.ResponseWriter, r *http.Request, s *session, what string, err error) {
	switch {
	case errors.Is(err, admin.ErrInvalidAccount), errors.Is(err, admin.ErrNoAccount),
		errors.Is(err, admin.ErrAccountExists), errors.Is(err, admin.ErrLastAdministrator):
		c.done(w, r, s, "/account", what+": "+err.Error()+".")
	default:
		c.log.Error("console: account change", "err", err)
		c.done(w, r, s, "/account", what+": the accounts cannot be written; see the server log.")
	}
}

func (c *Console) accountPassword(w http.ResponseWriter, r *http.Request, s *session) {
	now, ip := c.now(), remoteIP(r)
	if _, blocked := c.limiter.blocked(ip, now); blocked {
		c.done(w, r, s, "/account", "Too many wrong passwords from this address; try again later.")
		return
	}
	_, ok, err := checkStoredAccount(r.Context(), c.accounts, s.account, r.PostForm.Get("current"))
	if err != nil {
		c.log.Error("console: password change", "err", err)
		c.done(w, r, s, "/account", "The console accounts cannot be read; see the server log.")
		return
	}
	if !ok {
		c.limiter.fail(ip, now)
		c.done(w, r, s, "/account", "Not changed: the current password is wrong.")
		return
	}
	pw, again := r.PostForm.Get("new"), r.PostForm.Get("confirm")
	switch {
	case len([]rune(pw)) < MinPasswordLength:
		c.done(w, r, s, "/account", fmt.Sprintf("Not changed: the new password needs at least %d characters.", MinPasswordLength))
		return
	case pw != again:
		c.done(w, r, s, "/account", "Not changed: the two new passwords differ.")
		return
	}
	if err := c.accounts.SetAccountPassword(r.Context(), s.account, pw); err != nil {
		c.log.Error("console: password change", "err", err)
		c.done(w, r, s, "/account", "Not changed: the console accounts cannot be written; see the server log.")
		return
	}
	a, err := c.accounts.lookup(r.Context(), s.account)
	if err != nil {
		c.log.Error("console: password change", "err", err)
	}
	c.sessions.setHash(s.id, a.hash)
	c.log.Info("console: password changed; the account's other sessions end", "account", s.account, "ip", ip)
	c.done(w, r, s, "/account", "Password changed. Other sessions of this account were logged out.")
}
