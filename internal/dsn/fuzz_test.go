package dsn

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// FuzzBuild feeds arbitrary field values to Build. Whatever Build accepts must parse back with Parse, with
// the same fields (after the documented normalisation of free text and ORCPT spacing).
func FuzzBuild(f *testing.F) {
	f.Add("alice@sender.test", "bob@example.com", "rfc822;bob@example.com", "QQ314159", "mx1.example.com",
		"550 5.1.1 no such user", "5.1.1", "failed", "FULL", "Subject: x\r\n\r\nbody\r\n", false)
	f.Add("a@b", "Bob@Example.com", "", "", "", "451 4.7.5 later", "", "delayed", "", "", true)
	f.Add("x@y", "j\u00f6s\u00e9@example.com", "utf-8;j\u00f6s\u00e9@example.com", "e", "m", "", "2.0.0", "relayed", "HDRS", "S: 1\n\n", false)
	f.Fuzz(func(t *testing.T, to, rcpt, orcpt, envid, remote, diag, status, action, ret, orig string, requireTLS bool) {
		p := Params{
			ReportingMTA: "mx-out.example.net",
			From:         "postmaster@mx-out.example.net",
			To:           to,
			EnvID:        envid,
			Arrival:      arrival,
			Ret:          ret,
			RequireTLS:   requireTLS,
			Now:          func() time.Time { return now },
			MessageID:    "fuzz@mx-out.example.net",
			Recipients: []Recipient{{
				FinalRecipient:    rcpt,
				OriginalRecipient: orcpt,
				Action:            Action(action),
				Status:            status,
				RemoteMTA:         remote,
				DiagnosticCode:    diag,
				LastAttempt:       now,
				WillRetryUntil:    now.Add(time.Hour),
			}},
		}
		if orig != "" {
			p.Original = strings.NewReader(orig)
		}
		msg, err := Build(p)
		if err != nil {
			if !errors.Is(err, ErrField) {
				t.Fatalf("Build error does not wrap ErrField: %v", err)
			}
			return
		}
		rep, err := Parse(msg)
		if err != nil {
			t.Fatalf("Build output does not parse: %v\n%q", err, msg)
		}
		if rep.To != "<"+to+">" {
			t.Errorf("To = %q, want <%s>", rep.To, to)
		}
		if rep.EnvID != envid {
			t.Errorf("EnvID = %q, want %q", rep.EnvID, envid)
		}
		if len(rep.Recipients) != 1 {
			t.Fatalf("%d recipients, want 1", len(rep.Recipients))
		}
		r := rep.Recipients[0]
		// Every recipient is represented; octets that are not UTF-8 come back as U+FFFD.
		if want := strings.ToValidUTF8(rcpt, "\uFFFD"); r.FinalRecipient != want {
			t.Errorf("FinalRecipient = %q, want %q", r.FinalRecipient, want)
		}
		if want := wantORcpt(orcpt); r.OriginalRecipient != want {
			t.Errorf("OriginalRecipient = %q, want %q", r.OriginalRecipient, want)
		}
		if string(r.Action) != action {
			t.Errorf("Action = %q, want %q", r.Action, action)
		}
		if want := status; want != "" && r.Status != want {
			t.Errorf("Status = %q, want %q", r.Status, want)
		}
		if want := hostField(remote); r.RemoteMTA != want {
			t.Errorf("RemoteMTA = %q, want %q", r.RemoteMTA, want)
		}
		if want := SanitizeText(diag); r.DiagnosticCode != want {
			t.Errorf("DiagnosticCode = %q, want %q", r.DiagnosticCode, want)
		}
		if got := !r.WillRetryUntil.IsZero(); got != (action == "delayed") {
			t.Errorf("Will-Retry-Until present = %v for action %q", got, action)
		}
		if (requireTLS || ret == "HDRS") && rep.ReturnedType == "message/rfc822" {
			t.Errorf("full message returned with RET=%s REQUIRETLS=%v", ret, requireTLS)
		}
	})
}

// wantORcpt is the ORCPT as Parse gives it back: "type;address" without spaces around the parts, type
// utf-8 for non-ASCII addresses.
func wantORcpt(orcpt string) string {
	if orcpt == "" {
		return ""
	}
	typ, addr, ok := strings.Cut(orcpt, ";")
	if !ok {
		typ, addr = "rfc822", orcpt
	}
	typ, addr = strings.TrimSpace(typ), strings.TrimSpace(addr)
	switch {
	case !isPrintable(addr):
		typ, addr = "utf-8", strings.ToValidUTF8(addr, "\uFFFD")
	case strings.EqualFold(typ, "utf-8"):
		// Already utf-8-addr-xtext: Parse decodes it.
		if dec, err := decodeAddrField(typ + ";" + addr); err == nil {
			addr = dec
		}
	}
	return typ + ";" + addr
}
