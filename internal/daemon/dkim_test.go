package daemon_test

import (
	"bytes"
	"context"
	"io"
	"net/mail"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"
	"github.com/emersion/go-smtp"

	"github.com/mxgate/mxgate/internal/config"
	"github.com/mxgate/mxgate/internal/daemon"
	"github.com/mxgate/mxgate/internal/simnet"
)

// Out of the box, report mail is DKIM-signed (RFC 8460 Section 3) with a key made at first start in the
// data directory (0600), whose DNS record is printed once; status warns until DNS has the record; the
// contact address is postmaster at delivery.hostname even when smtp.hostname is not a usable name.
func TestReportsSignedOutOfTheBox(t *testing.T) {
	n := newSimNet(t)
	mx, err := n.AddMX(simnet.MXOptions{Domain: "example.com", Host: "mx1.example.com", Pref: 10})
	if err != nil {
		t.Fatal(err)
	}
	n.DNS.AddTXT("_smtp._tls.example.com", "v=TLSRPTv1; rua=mailto:tlsrpt@example.com")

	g := startGateway(t, n, func(cfg *config.Config) { cfg.SMTP.Hostname = "vm" })
	d := g.d
	keyFile := filepath.Join(g.dir, daemon.DKIMKeyFileName)
	fi, err := os.Stat(keyFile)
	if err != nil {
		t.Fatalf("no DKIM key made at first start: %v", err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("DKIM key mode %v, want 0600", fi.Mode().Perm())
	}
	const name = "tlsrpt._domainkey.gw.sim.example"
	if printed := g.printed.String(); !strings.Contains(printed, name+". TXT \"v=DKIM1; k=rsa; s=email:tlsrpt; p=") {
		t.Errorf("first start printed %q, want the TXT record at %s", printed, name)
	}

	st, err := d.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.TLSRPTDKIM == nil || st.TLSRPTDKIM.Published || st.TLSRPTDKIM.Name != name || !hasWarning(st.Warnings, "DNS does not have the key") {
		t.Fatalf("status before publishing: %+v, warnings %q; want the record unpublished and a warning", st.TLSRPTDKIM, st.Warnings)
	}
	n.DNS.AddTXT(name, st.TLSRPTDKIM.Value)
	if st, err = d.Status(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !st.TLSRPTDKIM.Published || len(st.Warnings) != 0 {
		t.Fatalf("status after publishing: %+v, warnings %q; want published and no warning", st.TLSRPTDKIM, st.Warnings)
	}

	// A delivery makes a session to report; today's report goes out by mail to example.com.
	c, err := smtp.Dial(g.smtp)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := sendOn(c, "bob@example.com", "1"); err != nil {
		t.Fatal(err)
	}
	wctx, wcancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer wcancel()
	if err := mx.WaitMessages(wctx, 1); err != nil {
		t.Fatal(err)
	}
	if err := d.Recorder.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Reporter().SendPartialDay(context.Background(), time.Now().UTC()); err != nil {
		t.Fatal(err)
	}
	if err := mx.WaitMessages(wctx, 2); err != nil {
		t.Fatal(err)
	}
	var report []byte
	for _, m := range mx.Messages() {
		if bytes.Contains(m.Data, []byte("TLS-Report-Domain")) {
			report = m.Data
		}
	}
	if report == nil {
		t.Fatal("no report mail reached example.com")
	}
	resolver := n.Resolver()
	vs, err := dkim.VerifyWithOptions(bytes.NewReader(report), &dkim.VerifyOptions{LookupTXT: func(domain string) ([]string, error) {
		txts, _, err := resolver.LookupTXT(context.Background(), domain)
		return txts, err
	}})
	if err != nil || len(vs) != 1 || vs[0].Err != nil || vs[0].Domain != "gw.sim.example" {
		t.Fatalf("DKIM verification of the report: %+v, %v; want one valid signature of gw.sim.example", vs, err)
	}
	// The contact (and so the From and the submitter) is postmaster at delivery.hostname, not at "vm".
	msg, err := mail.ReadMessage(bytes.NewReader(report))
	if err != nil {
		t.Fatal(err)
	}
	if from, sub := msg.Header.Get("From"), msg.Header.Get("TLS-Report-Submitter"); !strings.Contains(from, "postmaster@gw.sim.example") || sub != "gw.sim.example" {
		t.Errorf("report From %q, TLS-Report-Submitter %q; want postmaster@gw.sim.example and gw.sim.example", from, sub)
	}
}

// status warns when neither host name is a fully qualified name.
func TestStatusWarnsWithoutFQDN(t *testing.T) {
	n := newSimNet(t)
	cfg := n.GatewayConfig(filepath.Join(t.TempDir(), "data"))
	cfg.SMTP.Hostname, cfg.Delivery.Hostname = "vm", "vm"
	d, err := daemon.New(context.Background(), daemon.Options{BootstrapOut: io.Discard, Config: cfg, Roots: n.RootPool()})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	st, err := d.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !hasWarning(st.Warnings, "no fully qualified host name") || !hasWarning(st.Warnings, "postmaster@vm") {
		t.Errorf("warnings = %q, want the missing fully qualified name", st.Warnings)
	}
}

func hasWarning(ws []string, sub string) bool {
	for _, w := range ws {
		if strings.Contains(w, sub) {
			return true
		}
	}
	return false
}
