package console

import (
	"fmt"
	"net/http"
)

type accountData struct {
	MinLength int
	Account   string
	Role      Role
}

func (c *Console) accountPage(w http.ResponseWriter, r *http.Request, s *session) {
	c.render(w, r, s, http.StatusOK, "account", "Account", accountData{MinLength: MinPasswordLength, Account: s.account, Role: s.role})
}

func (c *Console) accountPassword(w http.ResponseWriter, r *http.Request, s *session) {
	now, ip := c.now(), remoteIP(r)
	if _, blocked := c.limiter.blocked(ip, now); blocked {
		c.done(w, r, s, "/account", "Too many wrong passwords from this address; try again later.")
		return
	}
	_, ok, err := checkAccount(c.opts.PasswordFile, s.account, r.PostForm.Get("current"))
	if err != nil {
		c.log.Error("console: password change", "err", err)
		c.done(w, r, s, "/account", "The password file cannot be read; see the server log.")
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
	if err := SetAccountPassword(c.opts.PasswordFile, s.account, pw, c.opts.PasswordIterations); err != nil {
		c.log.Error("console: password change", "err", err)
		c.done(w, r, s, "/account", "Not changed: the password file cannot be written; see the server log.")
		return
	}
	a, err := lookupAccount(c.opts.PasswordFile, s.account)
	if err != nil {
		c.log.Error("console: password change", "err", err)
	}
	c.sessions.setHash(s.id, a.hash)
	c.log.Info("console: password changed; the account's other sessions end", "account", s.account, "ip", ip)
	c.done(w, r, s, "/account", "Password changed. Other sessions of this account were logged out.")
}
