package smtpserver

import (
	"encoding/base64"
	"strings"
	"testing"
)

// AUTH secrets never appear in the logs, at any level, whether the login succeeds or fails.
func TestAuthSecretsNeverLogged(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.RelayNetworks = nil })
	c := h.dial(t)
	c.ehlo()
	c.starttls()
	c.ehlo()
	wrong := base64.StdEncoding.EncodeToString([]byte("\x00alice\x00wrong-Pa55word"))
	right := base64.StdEncoding.EncodeToString([]byte("\x00alice\x00secret"))
	c.cmd(535, "5.7.8", "AUTH PLAIN %s", wrong)
	c.cmd(235, "2.7.0", "AUTH PLAIN %s", right)
	if code, msg := c.send("a@example.org", []string{"b@example.net"}, simpleMsg); code != 250 {
		t.Fatalf("DATA reply = %d %s", code, msg)
	}
	c.cmd(221, "", "QUIT")
	h.srv.Shutdown(t.Context())
	logs := h.logs.String()
	if !strings.Contains(logs, "alice") {
		t.Fatalf("the logs do not mention the authenticated user at all; is logging wired?\n%s", logs)
	}
	for _, secret := range []string{"wrong-Pa55word", "secret", wrong, right} {
		if strings.Contains(logs, secret) {
			t.Errorf("the logs contain the secret %q:\n%s", secret, logs)
		}
	}
}
