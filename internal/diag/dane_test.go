package diag_test

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/mxgate/mxgate/internal/address"
	"github.com/mxgate/mxgate/internal/dane"
	"github.com/mxgate/mxgate/internal/diag"
	"github.com/mxgate/mxgate/internal/simnet"
	"github.com/mxgate/mxgate/internal/testpki"
	"github.com/mxgate/mxgate/internal/tlsrpt"
)

// daneCom is example.com signed, with mx1 matching its 3 1 1 record, mx2 presenting a certificate that
// does not match its record, and mx3 whose TLSA answer is bogus. All certificates come from EvilRoot.
func (f *fixture) daneCom() {
	f.n.DNS.SetDNSSEC("example.com", simnet.Secure)
	evil := func(host string, pref uint16) *simnet.Receiver {
		c := f.n.EvilCA.MustIssue(testpki.Leaf{DNSNames: []string{host}})
		return f.mx("example.com", host, pref, simnet.MXOptions{Cert: &c})
	}
	mx1 := evil("mx1.example.com", 10)
	f.n.DNS.AddDANE("mx1.example.com", f.n.SMTPPort, 3, 1, 1, mx1.Leaf())
	evil("mx2.example.com", 20)
	f.n.DNS.AddDANE("mx2.example.com", f.n.SMTPPort, 3, 1, 1, f.n.EvilCA.Cert) // the CA's key, not the leaf's
	mx3 := evil("mx3.example.com", 30)
	f.n.DNS.AddDANE("mx3.example.com", f.n.SMTPPort, 3, 1, 1, mx3.Leaf())
	f.n.DNS.SetDNSSEC("_25._tcp.mx3.example.com", simnet.Bogus)
}

func TestDANELookupAndTest(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.daneCom()
	dom := address.MustParseDomain("example.com")
	ctx := context.Background()

	rep, err := diag.LookupDANE(ctx, f.env, dom)
	if err != nil {
		t.Fatal(err)
	}
	type row struct {
		Host   string
		Status dane.Status
		Use    string
	}
	var got []row
	for _, h := range rep.Hosts {
		got = append(got, row{h.Host, h.TLSA.Status, h.Use})
	}
	want := []row{
		{"mx1.example.com", dane.StatusSecure, "dane"},
		{"mx2.example.com", dane.StatusSecure, "dane"},
		{"mx3.example.com", dane.StatusBogus, "unusable"},
	}
	if !rep.MXSecure {
		t.Error("MX RRset not reported secure")
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("lookup (-want +got):\n%s", diff)
	}
	if rep.Hosts[2].Refusal == nil || rep.Hosts[2].Refusal.ResultType != tlsrpt.ResultDNSSECInvalid {
		t.Errorf("mx3 refusal %+v, want dnssec-invalid", rep.Hosts[2].Refusal)
	}

	rep, err = diag.TestDANE(ctx, f.env, dom)
	if err != nil {
		t.Fatal(err)
	}
	decisions := map[string]string{}
	for _, h := range rep.Hosts {
		d := h.Refusal
		if h.Decision != nil {
			d = h.Decision
		}
		decisions[h.Host] = string(d.Action) + " " + string(d.ResultType)
		if h.Probe != nil && h.Probe.TLS != nil && h.Probe.TLS.ServerName != h.Host {
			t.Errorf("%s probed with SNI %q, want the TLSA base domain", h.Host, h.Probe.TLS.ServerName)
		}
	}
	wantD := map[string]string{
		"mx1.example.com": "deliver ",
		"mx2.example.com": "refuse tlsa-invalid",
		"mx3.example.com": "refuse dnssec-invalid",
	}
	if diff := cmp.Diff(wantD, decisions); diff != "" {
		t.Errorf("test decisions (-want +got):\n%s", diff)
	}
	if rep.Blocked() {
		t.Error("Blocked with mx1 deliverable")
	}
	var buf bytes.Buffer
	if err := rep.Text(&buf); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"DANE test for example.com", "secure at _25._tcp.mx1.example.com", "REFUSE tlsa-invalid (dane-no-match)", "under DANE, 1 of 3 MX hosts would get mail"} {
		if !strings.Contains(buf.String(), s) {
			t.Errorf("text lacks %q:\n%s", s, buf.String())
		}
	}
}
