package simnet

import (
	"crypto/tls"
	"errors"
	"testing"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// TestReceiverRequiresAuth: a receiver with Users refuses MAIL before AUTH (530 5.7.0), refuses wrong
// credentials (535), and records the user and mechanism of the messages it takes; its certificate names its
// address too, for clients that dial it as a literal.
func TestReceiverRequiresAuth(t *testing.T) {
	t.Parallel()
	n := newNet(t)
	r, err := n.AddSMTPHost("relay.example.com", MXOptions{Users: map[string]string{"gw": "pw"}})
	if err != nil {
		t.Fatal(err)
	}
	dial := func(serverName string) *smtp.Client {
		t.Helper()
		c, err := smtp.DialStartTLS(r.Addr(), &tls.Config{RootCAs: n.RootPool(), ServerName: serverName})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	c := dial("relay.example.com")
	var se *smtp.SMTPError
	if err := c.Mail("a@example.org", nil); !errors.As(err, &se) || se.Code != 530 {
		t.Fatalf("MAIL before AUTH: %v, want 530", err)
	}
	if err := c.Auth(sasl.NewPlainClient("", "gw", "wrong")); !errors.As(err, &se) || se.Code != 535 {
		t.Fatalf("wrong password: %v, want 535", err)
	}
	// The certificate also names the receiver's address: a client may verify it as an IP literal.
	c = dial(r.IP().String())
	if err := c.Auth(sasl.NewLoginClient("gw", "pw")); err != nil {
		t.Fatalf("AUTH LOGIN: %v", err)
	}
	if err := sendOn(c, nil); err != nil {
		t.Fatal(err)
	}
	if m := r.Messages(); len(m) != 1 || m[0].AuthUser != "gw" || m[0].AuthMech != "LOGIN" {
		t.Fatalf("messages %+v, want one after AUTH LOGIN as gw", m)
	}
	if got := r.AuthAttempts(); got != 2 {
		t.Errorf("AuthAttempts = %d, want 2", got)
	}
}
