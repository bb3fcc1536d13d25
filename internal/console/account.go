package console

import (
	"fmt"
	"net/http"
)

type accountData struct {
	MinLength int
}

func (c *Console) accountPage(w http.ResponseWriter, r *http.Request, s *session) {
	c.render(w, r, s, http.StatusOK, "account", "Account", accountData{MinLength: MinPasswordLength})
}

func (c *Console) accountPassword(w http.ResponseWriter, r *http.Request, s *session) {
	now, ip := c.now(), remoteIP(r)
	if _, blocked := c.limiter.blocked(ip, now); blocked {
		c.done(w, r, s, "/account", "Too many wrong passwords from this address; try again later.")
		return
	}
	ok, err := checkPassword(c.opts.PasswordFile, r.PostForm.Get("current"))
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
	if err := WritePassword(c.opts.PasswordFile, pw, c.opts.PasswordIterations); err != nil {
		c.log.Error("console: password change", "err", err)
		c.done(w, r, s, "/account", "Not changed: the password file cannot be written; see the server log.")
		return
	}
	c.sessions.removeOthers(s.id)
	c.log.Info("console: password changed; other sessions ended", "ip", ip)
	c.done(w, r, s, "/account", "Password changed. Other sessions were logged out.")
}
