package daemon_test

import (
	"context"
	"strings"
	"testing"

	"github.com/emersion/go-smtp"

	"github.com/mxgate/mxgate/internal/address"
	"github.com/mxgate/mxgate/internal/config"
	"github.com/mxgate/mxgate/internal/delivery"
	"github.com/mxgate/mxgate/internal/simnet"
	"github.com/mxgate/mxgate/internal/testpki"
)

func commit(t *testing.T, g *gw, key, value string) {
	t.Helper()
	s := g.d.Settings()
	if err := s.Set(context.Background(), key, value); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Commit(context.Background(), "turn on DANE", "test"); err != nil {
		t.Fatal(err)
	}
}

// TestCommittedEnableDANEDeliversOverDANE: Sender.EnableDANE committed at run time takes effect on the next
// delivery, which DANE authenticates; status shows the switch and no warning, the resolver validating.
func TestCommittedEnableDANEDeliversOverDANE(t *testing.T) {
	n, err := simnet.New(simnet.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	n.DNS.SetDNSSEC("example.com", simnet.Secure)
	bad := n.EvilCA.MustIssue(testpki.Leaf{DNSNames: []string{"mx1.example.com"}})
	mx, err := n.AddMX(simnet.MXOptions{Domain: "example.com", Host: "mx1.example.com", Pref: 10, Cert: &bad})
	if err != nil {
		t.Fatal(err)
	}
	n.DNS.AddDANE("mx1.example.com", n.SMTPPort, 3, 1, 1, mx.Leaf())
	g := startGateway(t, n)
	commit(t, g, "Sender.EnableDANE", "true")
	c, err := smtp.Dial(g.smtp)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := sendOn(c, "bob@example.com", "1"); err != nil {
		t.Fatal(err)
	}
	ev := g.nextEvent(t, "example.com")
	if ev.Result.Outcome != "delivered" || !strings.HasSuffix(ev.Result.TLS, "(DANE)") || ev.Plan != "dane" {
		t.Fatalf("event %+v (plan %s), want delivery over DANE", ev.Result, ev.Plan)
	}
	st, err := g.d.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if dw := daneWarningsOf(st.Warnings); !st.EnableDANE || len(dw) != 0 || st.DNSSEC == nil || st.DNSSEC.Authenticated == 0 {
		t.Errorf("status %+v (dnssec %+v), want DANE on, AD answers counted, no DANE warning", st, st.DNSSEC)
	}
	e, err := g.d.Explain(context.Background(), delivery.PlanRequest{Domain: address.MustParseHost("example.com")})
	if err != nil {
		t.Fatal(err)
	}
	if e.DANE != "on" || len(e.MX) != 1 || e.MX[0].DANE == nil || e.MX[0].DANE.Status != "secure" || !e.MX[0].DANE.Usable || !e.MX[0].Allowed {
		t.Errorf("explanation %+v (mx %+v), want DANE on and mx1 with a usable secure TLSA RRset", e, e.MX)
	}
	// A bogus TLSA answer makes the host unusable, and explain says so.
	n.DNS.SetDNSSEC("_25._tcp.mx1.example.com", simnet.Bogus)
	if e, err = g.d.Explain(context.Background(), delivery.PlanRequest{Domain: address.MustParseHost("example.com")}); err != nil || e.MX[0].Allowed || e.MX[0].Failure != "dnssec-invalid" {
		t.Errorf("bogus TLSA: explanation mx %+v, %v; want not allowed, dnssec-invalid", e.MX, err)
	}
}

// TestStatusWarnsWhenResolverNeverSetsAD: with DANE on and a resolver that never sets the AD bit, status
// says DANE cannot apply.
func TestStatusWarnsWhenResolverNeverSetsAD(t *testing.T) {
	n, err := simnet.New(simnet.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	if _, err := n.AddMX(simnet.MXOptions{Domain: "example.com", Host: "mx1.example.com", Pref: 10}); err != nil {
		t.Fatal(err)
	}
	g := startGateway(t, n)
	commit(t, g, "Sender.EnableDANE", "true")
	c, err := smtp.Dial(g.smtp)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := sendOn(c, "bob@example.com", "1"); err != nil {
		t.Fatal(err)
	}
	if ev := g.nextEvent(t, "example.com"); ev.Result.Outcome != "delivered" {
		t.Fatalf("event %+v", ev.Result)
	}
	st, err := g.d.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if dw := daneWarningsOf(st.Warnings); len(dw) != 1 || !strings.Contains(dw[0], "set the AD bit on none") {
		t.Errorf("warnings %q, want one about the AD bit", st.Warnings)
	}
}

// daneWarningsOf keeps the status warnings about DANE (others, such as the report signing key's DNS
// record, are not what these tests are about).
func daneWarningsOf(ws []string) []string {
	var out []string
	for _, w := range ws {
		if strings.Contains(w, "DANE") {
			out = append(out, w)
		}
	}
	return out
}

// TestStatusWarnsWhenOnlyValidatorIsAStub: with Docker's forwarding stub 127.0.0.11 as the only resolver
// trusted to validate, status warns once DANE is on (and not before): its AD bit is set upstream.
func TestStatusWarnsWhenOnlyValidatorIsAStub(t *testing.T) {
	n := newSimNet(t)
	g := startGateway(t, n, func(c *config.Config) { c.DNS.Servers = []string{"127.0.0.11"} })
	stubWarnings := func() []string {
		t.Helper()
		st, err := g.d.Status(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, w := range daneWarningsOf(st.Warnings) {
			if strings.Contains(w, "forwarding stub") {
				out = append(out, w)
			}
		}
		return out
	}
	if w := stubWarnings(); len(w) != 0 {
		t.Errorf("DANE off: warnings %q, want none about the stub", w)
	}
	commit(t, g, "Sender.EnableDANE", "true")
	if w := stubWarnings(); len(w) != 1 || !strings.Contains(w[0], "127.0.0.11:53") {
		t.Errorf("DANE on: warnings %q, want one naming 127.0.0.11:53", w)
	}
}
