package dsn

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

var (
	zone    = time.FixedZone("", -5*3600)
	arrival = time.Date(2026, 3, 2, 9, 15, 0, 0, zone)
	now     = time.Date(2026, 3, 7, 9, 15, 30, 0, zone)
)

const original = "From: Alice <alice@sender.test>\r\nTo: bob@example.com\r\nSubject: quarterly numbers\r\n" +
	"Message-ID: <abc@sender.test>\r\n\r\nHello Bob,\r\nthe numbers are attached.\r\n"

func baseParams() Params {
	return Params{
		ReportingMTA: "mx-out.example.net",
		From:         "postmaster@mx-out.example.net",
		To:           "alice@sender.test",
		Arrival:      arrival,
		Original:     strings.NewReader(original),
		Now:          func() time.Time { return now },
		MessageID:    "dsn-1@mx-out.example.net",
		Recipients: []Recipient{{
			FinalRecipient: "Bob@example.com",
			Action:         ActionFailed,
			Status:         "5.1.1",
			RemoteMTA:      "mx1.example.com",
			DiagnosticCode: "550 5.1.1 <Bob@example.com>: Recipient address rejected: User unknown in virtual mailbox table",
			LastAttempt:    now,
		}},
	}
}

func build(t *testing.T, p Params) []byte {
	t.Helper()
	out, err := Build(p)
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	return out
}

func parse(t *testing.T, msg []byte) Report {
	t.Helper()
	rep, err := Parse(msg)
	if err != nil {
		t.Fatalf("Parse: %v\n%s", err, msg)
	}
	return rep
}

func TestFailedGolden_SMTP18(t *testing.T) {
	p := baseParams()
	p.EnvID = "QQ314159"
	p.Recipients[0].OriginalRecipient = "rfc822;bob@example.com"
	got := build(t, p)
	golden := filepath.Join("testdata", "failed.golden")
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run with -update to create)", err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("DSN differs from %s (-want +got):\n%s", golden, diff)
	}
}

func TestLayout_SMTP18(t *testing.T) {
	msg := build(t, baseParams())
	rep := parse(t, msg)
	if rep.ReturnedType != "message/rfc822" {
		t.Errorf("third part type = %q, want message/rfc822", rep.ReturnedType)
	}
	if got, want := string(rep.Returned), original; got != want {
		t.Errorf("returned message:\n%q\nwant\n%q", got, want)
	}
	if !strings.Contains(rep.Human, "Bob@example.com") {
		t.Errorf("human part does not name the recipient:\n%s", rep.Human)
	}
	// Every line ends in CRLF and none is longer than 998 octets.
	for i, line := range bytes.SplitAfter(msg, []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		if !bytes.HasSuffix(line, []byte("\r\n")) {
			t.Errorf("line %d %q does not end in CRLF", i+1, line)
		}
		if len(line) > 1000 {
			t.Errorf("line %d is %d octets", i+1, len(line))
		}
	}
	if !bytes.Contains(msg, []byte("Content-Type: message/delivery-status\r\nContent-Description: Delivery report\r\nContent-Transfer-Encoding: 7bit\r\n")) {
		t.Errorf("delivery-status part is not declared 7bit")
	}
}

func TestPerMessageAndRecipientFields_SMTP19_SMTP20(t *testing.T) {
	retry := now.Add(72 * time.Hour)
	tests := []struct {
		name  string
		edit  func(*Params)
		want  Report // only the fields compared below
		field string // a field that must be absent
	}{
		{
			name: "no ENVID, no ORCPT",
			edit: func(p *Params) {},
			want: Report{ReportingMTA: "mx-out.example.net", Recipients: []Recipient{{
				FinalRecipient: "Bob@example.com", Action: ActionFailed, Status: "5.1.1", RemoteMTA: "mx1.example.com",
				DiagnosticCode: baseParams().Recipients[0].DiagnosticCode, LastAttempt: now}}},
			field: "Original-",
		},
		{
			name: "ENVID and ORCPT",
			edit: func(p *Params) {
				p.EnvID = "Abc+Def"
				p.Recipients[0].OriginalRecipient = "rfc822;Bob@Example.COM"
			},
			want: Report{ReportingMTA: "mx-out.example.net", EnvID: "Abc+Def", Recipients: []Recipient{{
				FinalRecipient: "Bob@example.com", OriginalRecipient: "rfc822;Bob@Example.COM", Action: ActionFailed,
				Status: "5.1.1", RemoteMTA: "mx1.example.com", DiagnosticCode: baseParams().Recipients[0].DiagnosticCode,
				LastAttempt: now}}},
			field: "Will-Retry-Until",
		},
		{
			name: "failed ignores WillRetryUntil",
			edit: func(p *Params) { p.Recipients[0].WillRetryUntil = retry },
			want: Report{ReportingMTA: "mx-out.example.net", Recipients: []Recipient{{
				FinalRecipient: "Bob@example.com", Action: ActionFailed, Status: "5.1.1", RemoteMTA: "mx1.example.com",
				DiagnosticCode: baseParams().Recipients[0].DiagnosticCode, LastAttempt: now}}},
			field: "Will-Retry-Until",
		},
		{
			name: "delayed has Will-Retry-Until, default status",
			edit: func(p *Params) {
				p.Recipients[0] = Recipient{FinalRecipient: "bob@example.com", Action: ActionDelayed,
					DiagnosticCode: "451 4.7.5 try later", WillRetryUntil: retry}
			},
			want: Report{ReportingMTA: "mx-out.example.net", Recipients: []Recipient{{
				FinalRecipient: "bob@example.com", Action: ActionDelayed, Status: "4.0.0",
				DiagnosticCode: "451 4.7.5 try later", WillRetryUntil: retry}}},
			field: "Remote-MTA",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := baseParams()
			tt.edit(&p)
			msg := build(t, p)
			rep := parse(t, msg)
			got := Report{ReportingMTA: rep.ReportingMTA, EnvID: rep.EnvID, Recipients: rep.Recipients}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("fields (-want +got):\n%s", diff)
			}
			if !rep.Arrival.Equal(arrival) {
				t.Errorf("Arrival-Date = %v, want %v", rep.Arrival, arrival)
			}
			if bytes.Contains(msg, []byte("\r\n"+tt.field)) {
				t.Errorf("DSN has a %s field:\n%s", tt.field, msg)
			}
			if !bytes.Contains(msg, []byte("Arrival-Date: Mon, 02 Mar 2026 09:15:00 -0500\r\n")) {
				t.Errorf("Arrival-Date not in RFC 5322 form with numeric zone")
			}
		})
	}
}

func TestHeadersOnly_REQ14_SMTP22(t *testing.T) {
	big := "Subject: big\r\n\r\n" + strings.Repeat("x", 100) + "\r\n"
	tests := []struct {
		name     string
		edit     func(*Params)
		wantType string
		wantText string
	}{
		{"RET=FULL", func(p *Params) { p.Ret = "FULL" }, "message/rfc822", original},
		{"RET=HDRS", func(p *Params) { p.Ret = "HDRS" }, "text/rfc822-headers", "From: Alice <alice@sender.test>\r\nTo: bob@example.com\r\nSubject: quarterly numbers\r\nMessage-ID: <abc@sender.test>\r\n"},
		{"REQUIRETLS forces HDRS", func(p *Params) { p.Ret = "FULL"; p.RequireTLS = true }, "text/rfc822-headers", "From: Alice <alice@sender.test>\r\nTo: bob@example.com\r\nSubject: quarterly numbers\r\nMessage-ID: <abc@sender.test>\r\n"},
		{"large message", func(p *Params) { p.Original = strings.NewReader(big); p.MaxFull = 50 }, "text/rfc822-headers", "Subject: big\r\n"},
		{"delayed returns headers", func(p *Params) { p.Recipients[0].Action = ActionDelayed; p.Recipients[0].Status = "4.4.1" }, "text/rfc822-headers", "From: Alice <alice@sender.test>\r\nTo: bob@example.com\r\nSubject: quarterly numbers\r\nMessage-ID: <abc@sender.test>\r\n"},
		{"bare LF normalised", func(p *Params) { p.Original = strings.NewReader("Subject: lf\n\nbody\n") }, "message/rfc822", "Subject: lf\r\n\r\nbody\r\n"},
		{"no original", func(p *Params) { p.Original = nil }, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := baseParams()
			tt.edit(&p)
			rep := parse(t, build(t, p))
			if rep.ReturnedType != tt.wantType {
				t.Errorf("third part type = %q, want %q", rep.ReturnedType, tt.wantType)
			}
			// The part ends before the CRLF of the delimiter; Build adds a CRLF to the header block.
			if got := strings.TrimSuffix(string(rep.Returned), "\r\n"); got != strings.TrimSuffix(tt.wantText, "\r\n") {
				t.Errorf("third part = %q, want %q", got, tt.wantText)
			}
		})
	}
}

func TestHeaderInjectionRefused(t *testing.T) {
	tests := []struct {
		name string
		edit func(*Params)
	}{
		{"To", func(p *Params) { p.To = "alice@sender.test\r\nBcc: victim@example.org" }},
		{"From", func(p *Params) { p.From = "postmaster@x\nX: y" }},
		{"ReportingMTA", func(p *Params) { p.ReportingMTA = "mx\r\nX-Evil: 1" }},
		{"EnvID", func(p *Params) { p.EnvID = "id\r\nFinal-Recipient: rfc822; evil@example.org" }},
		{"EnvID space", func(p *Params) { p.EnvID = "a b" }},
		{"MessageID", func(p *Params) { p.MessageID = "x>\r\nBcc: <y" }},
		{"Status", func(p *Params) { p.Recipients[0].Status = "5.01.1" }},
		{"Action", func(p *Params) { p.Recipients[0].Action = "bounced" }},
		{"Ret", func(p *Params) { p.Ret = "ALL" }},
		{"no recipients", func(p *Params) { p.Recipients = nil }},
		{"angle bracket in To", func(p *Params) { p.To = "a>@b" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := baseParams()
			tt.edit(&p)
			_, err := Build(p)
			if !errors.Is(err, ErrField) {
				t.Errorf("Build error = %v, want ErrField", err)
			}
		})
	}
}

// Every recipient, original recipient and remote host is represented instead of refused: what an address
// field cannot hold is written as RFC 6533 utf-8-addr-xtext, and a host name in DNS presentation format, so
// that no field can inject another (the report still has one recipient, failed) and a bounce is never lost
// over an unusual address.
func TestUnusualFieldsEncodedNotRefused(t *testing.T) {
	tests := []struct {
		name                       string
		edit                       func(*Params)
		wantRcpt, wantOrig, wantMX string
		wantLine                   string
	}{
		{"quoted local part with angle brackets", func(p *Params) {
			p.To = `"a<b>c"@sender.test`
			p.Recipients[0].FinalRecipient = `"x>y<z"@example.com`
		}, `"x>y<z"@example.com`, "", "mx1.example.com", `Final-Recipient: rfc822; "x>y<z"@example.com`},
		{"quoted local part with a space", func(p *Params) { p.Recipients[0].FinalRecipient = `"bob smith"@example.com` },
			`"bob smith"@example.com`, "", "mx1.example.com", `Final-Recipient: utf-8; "bob\x{20}smith"@example.com`},
		{"invalid UTF-8 under SMTPUTF8", func(p *Params) { p.Recipients[0].FinalRecipient = "j\xf6rg@example.com" },
			"j\uFFFDrg@example.com", "", "mx1.example.com", `Final-Recipient: utf-8; j\x{FFFD}rg@example.com`},
		{"CR in the recipient", func(p *Params) { p.Recipients[0].FinalRecipient = "bob@example.com\rAction: delivered" },
			"bob@example.com\rAction: delivered", "", "mx1.example.com", `Final-Recipient: utf-8; bob@example.com\x{D}Action:\x{20}delivered`},
		{"LF in the original recipient", func(p *Params) { p.Recipients[0].OriginalRecipient = "rfc822;bob\n\nAction: delivered" },
			"Bob@example.com", "utf-8;bob\n\nAction: delivered", "mx1.example.com", `Original-Recipient: utf-8; bob\x{A}\x{A}Action:\x{20}delivered`},
		{"MX name with escaped characters", func(p *Params) { p.Recipients[0].RemoteMTA = "mx1 .example.com\r\n" },
			"Bob@example.com", "", `mx1\032.example.com\013\010`, `Remote-MTA: dns; mx1\032.example.com\013\010`},
		{"mailto: rua with bad percent-encoding", func(p *Params) { p.Recipients[0].FinalRecipient = "tlsrpt%zz%@example.com" },
			"tlsrpt%zz%@example.com", "", "mx1.example.com", "Final-Recipient: rfc822; tlsrpt%zz%@example.com"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := baseParams()
			p.Recipients[0].RemoteMTA = "mx1.example.com"
			tt.edit(&p)
			msg := build(t, p)
			if !strings.Contains(string(msg), "\r\n"+tt.wantLine+"\r\n") {
				t.Errorf("no line %q in\n%s", tt.wantLine, msg)
			}
			rep := parse(t, msg)
			if len(rep.Recipients) != 1 || rep.Recipients[0].Action != ActionFailed {
				t.Fatalf("recipients = %+v, want one failed", rep.Recipients)
			}
			r := rep.Recipients[0]
			if r.FinalRecipient != tt.wantRcpt || r.OriginalRecipient != tt.wantOrig || r.RemoteMTA != tt.wantMX {
				t.Errorf("got %q, %q, %q; want %q, %q, %q", r.FinalRecipient, r.OriginalRecipient, r.RemoteMTA,
					tt.wantRcpt, tt.wantOrig, tt.wantMX)
			}
		})
	}
}

func TestDiagnosticTextSanitised(t *testing.T) {
	p := baseParams()
	p.Recipients[0].DiagnosticCode = "550 5.7.1 bad\r\nAction: delivered\r\n\r\nX: caf\xc3\xa9 " + strings.Repeat("y", 1200)
	msg := build(t, p)
	rep := parse(t, msg)
	if len(rep.Recipients) != 1 || rep.Recipients[0].Action != ActionFailed {
		t.Fatalf("recipients = %+v, want one failed", rep.Recipients)
	}
	want := "550 5.7.1 bad  Action: delivered    X: caf?? " + strings.Repeat("y", 500) + " " + strings.Repeat("y", 500) + " " + strings.Repeat("y", 200)
	if got := rep.Recipients[0].DiagnosticCode; got != want {
		t.Errorf("Diagnostic-Code = %q\nwant %q", got, want)
	}
	for _, line := range strings.Split(string(msg), "\r\n") {
		if len(line) > 998 {
			t.Errorf("line of %d octets", len(line))
		}
	}
}

func TestUTF8Address(t *testing.T) {
	p := baseParams()
	p.Recipients[0].FinalRecipient = "jösé+x@example.com"
	p.Recipients[0].OriginalRecipient = "utf-8;jösé+x@example.com"
	msg := build(t, p)
	if !bytes.Contains(msg, []byte(`Final-Recipient: utf-8; j\x{F6}s\x{E9}\x{2B}x@example.com`)) {
		t.Errorf("Final-Recipient not utf-8-addr-xtext:\n%s", msg)
	}
	rep := parse(t, msg)
	if got, want := rep.Recipients[0].FinalRecipient, "jösé+x@example.com"; got != want {
		t.Errorf("FinalRecipient = %q, want %q", got, want)
	}
	if got, want := rep.Recipients[0].OriginalRecipient, "utf-8;jösé+x@example.com"; got != want {
		t.Errorf("OriginalRecipient = %q, want %q", got, want)
	}
}

func TestMessageIDGenerated(t *testing.T) {
	p := baseParams()
	p.MessageID = ""
	p.Rand = bytes.NewReader(bytes.Repeat([]byte{0xab}, 16))
	rep := parse(t, build(t, p))
	if want := "<abababababababababababababababab@mx-out.example.net>"; rep.MessageID != want {
		t.Errorf("Message-ID = %q, want %q", rep.MessageID, want)
	}
}

func TestValidStatus_SMTP20(t *testing.T) {
	for s, want := range map[string]bool{
		"5.1.1": true, "4.0.0": true, "2.0.0": true, "5.7.10": true, "5.123.456": true,
		"3.1.1": false, "5.01.1": false, "5.1": false, "5.1.1.1": false, "5.1.1000": false, "5.a.1": false, "": false,
	} {
		if got := ValidStatus(s); got != want {
			t.Errorf("ValidStatus(%q) = %v, want %v", s, got, want)
		}
	}
}

// A diagnostic with long runs of spaces (found by FuzzBuild) folds without white-space-only lines, and the
// DSN still parses with the text intact.
func TestFoldNeverMakesBlankContinuationLines(t *testing.T) {
	diag := "550 " + strings.Repeat(" ", 100) + "x" + strings.Repeat(" ", 90) + "y"
	msg, err := Build(Params{
		ReportingMTA: "mx-out.example.net",
		From:         "postmaster@mx-out.example.net",
		To:           "alice@sender.test",
		Original:     strings.NewReader("Subject: t\r\n\r\nbody\r\n"),
		Now:          func() time.Time { return time.Date(2026, 3, 7, 9, 15, 30, 0, time.UTC) },
		Recipients:   []Recipient{{FinalRecipient: "bob@example.com", Action: ActionFailed, Status: "5.0.0", RemoteMTA: "mx1.example.com", DiagnosticCode: diag}},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(msg), "\r\n") {
		if l != "" && strings.TrimSpace(l) == "" {
			t.Fatalf("a line of white space only in:\n%s", msg)
		}
	}
	rep, err := Parse(msg)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if got := rep.Recipients[0].DiagnosticCode; strings.Join(strings.Fields(got), " ") != "550 x y" {
		t.Errorf("Diagnostic-Code = %q, want the text of 550 ... x ... y", got)
	}
}
