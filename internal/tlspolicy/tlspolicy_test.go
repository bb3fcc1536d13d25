package tlspolicy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/mxgate/mxgate/internal/address"
	"github.com/mxgate/mxgate/internal/mtasts"
	"github.com/mxgate/mxgate/internal/testpki"
	"github.com/mxgate/mxgate/internal/tlsrpt"
)

var testNow = time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)

func state(c tls.Certificate) tls.ConnectionState {
	var certs []*x509.Certificate
	for _, der := range c.Certificate {
		x, err := x509.ParseCertificate(der)
		if err != nil {
			panic(err)
		}
		certs = append(certs, x)
	}
	return tls.ConnectionState{PeerCertificates: certs, Version: tls.VersionTLS13}
}

func TestVerifyCertificate_STS73to77(t *testing.T) {
	now := func() time.Time { return testNow }
	good, err := testpki.NewCA("TestRoot", now)
	if err != nil {
		t.Fatal(err)
	}
	evil, err := testpki.NewCA("EvilRoot", now)
	if err != nil {
		t.Fatal(err)
	}
	self, err := testpki.SelfSigned("mx1.example.com")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		cert tls.Certificate
		host string
		want tlsrpt.ResultType
	}{
		{"valid", good.MustIssue(testpki.Leaf{DNSNames: []string{"mx1.example.com"}}), "mx1.example.com", ""},
		{"case and trailing dot insensitive host", good.MustIssue(testpki.Leaf{DNSNames: []string{"MX1.example.com"}}), "mx1.example.com", ""},
		{"wildcard STS76", good.MustIssue(testpki.Leaf{DNSNames: []string{"*.example.com"}}), "mx1.example.com", ""},
		{"wildcard one label only STS76", good.MustIssue(testpki.Leaf{DNSNames: []string{"*.example.com"}}), "a.mx1.example.com", tlsrpt.ResultCertificateHostMismatch},
		{"wildcard not the bare domain STS76", good.MustIssue(testpki.Leaf{DNSNames: []string{"*.example.com"}}), "example.com", tlsrpt.ResultCertificateHostMismatch},
		{"partial wildcard STS76", good.MustIssue(testpki.Leaf{DNSNames: []string{"mx*.example.com"}}), "mx1.example.com", tlsrpt.ResultCertificateHostMismatch},
		{"wrong SAN STS75", good.MustIssue(testpki.Leaf{DNSNames: []string{"mx9.example.com"}}), "mx1.example.com", tlsrpt.ResultCertificateHostMismatch},
		{"recipient domain only STS75", good.MustIssue(testpki.Leaf{DNSNames: []string{"example.com"}}), "mx1.example.com", tlsrpt.ResultCertificateHostMismatch},
		{"CN only, no SAN STS77", good.MustIssue(testpki.Leaf{CommonName: "mx1.example.com"}), "mx1.example.com", tlsrpt.ResultCertificateHostMismatch},
		{"untrusted root STS73", evil.MustIssue(testpki.Leaf{DNSNames: []string{"mx1.example.com"}}), "mx1.example.com", tlsrpt.ResultCertificateNotTrusted},
		{"self-signed STS73", self, "mx1.example.com", tlsrpt.ResultCertificateNotTrusted},
		{"expired STS74", good.MustIssue(testpki.Leaf{DNSNames: []string{"mx1.example.com"}, NotBefore: testNow.Add(-48 * time.Hour), NotAfter: testNow.Add(-24 * time.Hour)}), "mx1.example.com", tlsrpt.ResultCertificateExpired},
		{"not yet valid STS74", good.MustIssue(testpki.Leaf{DNSNames: []string{"mx1.example.com"}, NotBefore: testNow.Add(24 * time.Hour), NotAfter: testNow.Add(48 * time.Hour)}), "mx1.example.com", tlsrpt.ResultCertificateNotTrusted},
		{"no certificate", tls.Certificate{}, "mx1.example.com", tlsrpt.ResultCertificateNotTrusted},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, _, detail := VerifyCertificate(tc.host, state(tc.cert), good.Pool(), testNow)
			if got != tc.want {
				t.Errorf("VerifyCertificate(%s) = %q (%s), want %q", tc.host, got, detail, tc.want)
			}
		})
	}
}

type fakeSTS struct {
	res STSResult
}

func (f fakeSTS) Lookup(context.Context, address.Domain) (STSResult, error) { return f.res, nil }

func mustPolicy(t *testing.T, body string) *mtasts.Policy {
	t.Helper()
	p, err := mtasts.ParsePolicy([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPlanModes(t *testing.T) {
	now := func() time.Time { return testNow }
	ca, err := testpki.NewCA("TestRoot", now)
	if err != nil {
		t.Fatal(err)
	}
	evil, _ := testpki.NewCA("EvilRoot", now)
	enforce := mustPolicy(t, "version: STSv1\nmode: enforce\nmx: mx1.example.com\nmx: *.example.net\nmax_age: 604800\n")
	testing_ := mustPolicy(t, "version: STSv1\nmode: testing\nmx: mx1.example.com\nmax_age: 604800\n")
	none := mustPolicy(t, "version: STSv1\nmode: none\nmax_age: 86400\n")
	goodCert := state(ca.MustIssue(testpki.Leaf{DNSNames: []string{"mx1.example.com"}}))
	badCert := state(evil.MustIssue(testpki.Leaf{DNSNames: []string{"mx1.example.com"}}))
	dom := address.MustParseDomain("example.com")

	type want struct {
		name            string
		allowListed     bool
		allowUnlisted   bool
		noTLSProceeds   bool
		badCertProceeds bool
		badCertFailure  tlsrpt.ResultType
		reportType      tlsrpt.PolicyType
		source          Source
	}
	tests := []struct {
		label    string
		settings Settings
		sts      STSResult
		req      Request
		want     want
	}{
		{"enforce STS70 STS72 STS73", Settings{EnableMTASTS: true}, STSResult{Policy: enforce, ID: "1"}, Request{Domain: dom},
			want{"mta-sts enforce", true, false, false, false, tlsrpt.ResultCertificateNotTrusted, tlsrpt.PolicySTS, SourceMTASTS}},
		{"testing STS71 STS85", Settings{EnableMTASTS: true}, STSResult{Policy: testing_, ID: "1"}, Request{Domain: dom},
			want{"mta-sts testing", true, true, true, true, tlsrpt.ResultCertificateNotTrusted, tlsrpt.PolicySTS, SourceMTASTS}},
		{"none STS86", Settings{EnableMTASTS: true}, STSResult{Policy: none, ID: "1"}, Request{Domain: dom},
			want{"opportunistic", true, true, true, true, "", tlsrpt.PolicyNoPolicyFound, SourceDefault}},
		{"no policy", Settings{EnableMTASTS: true}, STSResult{}, Request{Domain: dom},
			want{"opportunistic", true, true, true, true, "", tlsrpt.PolicyNoPolicyFound, SourceDefault}},
		{"Sender.EnableMTASTS off", Settings{EnableMTASTS: false}, STSResult{Policy: enforce, ID: "1"}, Request{Domain: dom},
			want{"opportunistic", true, true, true, true, "", tlsrpt.PolicyNoPolicyFound, SourceDefault}},
		{"rule required-verify raises testing policy", Settings{EnableMTASTS: true, Rules: map[string]Rule{"example.com": {Level: LevelRequiredVerify}}}, STSResult{Policy: testing_}, Request{Domain: dom},
			want{"required-verify + mta-sts testing", true, true, false, false, tlsrpt.ResultCertificateNotTrusted, tlsrpt.PolicySTS, SourceRule}},
		// Strongest rule wins: a rule never removes the enforce policy's MX check (a forged MX with a valid
		// certificate is refused), and a weaker rule does not lower the policy's level.
		{"rule required-verify keeps enforce MX check", Settings{EnableMTASTS: true, Rules: map[string]Rule{"example.com": {Level: LevelRequiredVerify}}}, STSResult{Policy: enforce, ID: "1"}, Request{Domain: dom},
			want{"mta-sts enforce", true, false, false, false, tlsrpt.ResultCertificateNotTrusted, tlsrpt.PolicySTS, SourceMTASTS}},
		{"weaker rule does not lower enforce", Settings{EnableMTASTS: true, Rules: map[string]Rule{"example.com": {Level: LevelOpportunistic}}}, STSResult{Policy: enforce, ID: "1"}, Request{Domain: dom},
			want{"mta-sts enforce", true, false, false, false, tlsrpt.ResultCertificateNotTrusted, tlsrpt.PolicySTS, SourceMTASTS}},
		{"rule none does not lower enforce", Settings{EnableMTASTS: true, Rules: map[string]Rule{"example.com": {Level: LevelNone}}}, STSResult{Policy: enforce, ID: "1"}, Request{Domain: dom},
			want{"mta-sts enforce", true, false, false, false, tlsrpt.ResultCertificateNotTrusted, tlsrpt.PolicySTS, SourceMTASTS}},
		// Override: the rule replaces the policy; failures are still seen and the session reported under it.
		{"override replaces enforce", Settings{EnableMTASTS: true, Rules: map[string]Rule{"example.com": {Level: LevelOpportunistic, Override: true}}}, STSResult{Policy: enforce, ID: "1"}, Request{Domain: dom},
			want{"opportunistic override", true, true, true, true, tlsrpt.ResultCertificateNotTrusted, tlsrpt.PolicySTS, SourceRule}},
		// RFC 8689 Section 4.2.2 relaxes recipient policies, not the administrator's rules (unless allowed).
		{"TLS-Required: No keeps the rule", Settings{EnableMTASTS: true, Rules: map[string]Rule{"example.com": {Level: LevelRequiredVerify}}}, STSResult{Policy: enforce, ID: "1"}, Request{Domain: dom, TLSOptional: true},
			want{"required-verify", true, true, false, false, tlsrpt.ResultCertificateNotTrusted, tlsrpt.PolicyNoPolicyFound, SourceRule}},
		{"TLS-Required: No relaxes rules when allowed", Settings{EnableMTASTS: true, TLSRequiredNoRelaxesRules: true, Rules: map[string]Rule{"example.com": {Level: LevelRequiredVerify}}}, STSResult{Policy: enforce, ID: "1"}, Request{Domain: dom, TLSOptional: true},
			want{"opportunistic", true, true, true, true, "", tlsrpt.PolicyNoPolicyFound, SourceTLSOptional}},
		{"rule required does not verify", Settings{Rules: map[string]Rule{"example.com": {Level: LevelRequired}}}, STSResult{}, Request{Domain: dom},
			want{"required", true, true, false, true, "", tlsrpt.PolicyNoPolicyFound, SourceRule}},
		{"TLS-Required: No ignores enforce REQ11", Settings{EnableMTASTS: true}, STSResult{Policy: enforce}, Request{Domain: dom, TLSOptional: true},
			want{"opportunistic", true, true, true, true, "", tlsrpt.PolicyNoPolicyFound, SourceTLSOptional}},
	}
	for _, tc := range tests {
		t.Run(tc.label, func(t *testing.T) {
			s := tc.settings
			d := &Decider{Settings: func() *Settings { return &s }, STS: fakeSTS{tc.sts}, Roots: ca.Pool(), Now: now}
			p, err := d.For(context.Background(), tc.req)
			if err != nil {
				t.Fatal(err)
			}
			if p.Name() != tc.want.name || p.Source != tc.want.source {
				t.Errorf("plan = %s from %s, want %s from %s", p.Name(), p.Source, tc.want.name, tc.want.source)
			}
			if got := p.AllowMX("MX1.example.com.").Proceed; got != tc.want.allowListed {
				t.Errorf("AllowMX(listed) = %v, want %v", got, tc.want.allowListed)
			}
			if got := p.AllowMX("evil.test").Proceed; got != tc.want.allowUnlisted {
				t.Errorf("AllowMX(unlisted) = %v, want %v", got, tc.want.allowUnlisted)
			}
			if got := p.STARTTLSNotOffered("mx1.example.com").Proceed; got != tc.want.noTLSProceeds {
				t.Errorf("STARTTLSNotOffered.Proceed = %v, want %v", got, tc.want.noTLSProceeds)
			}
			v := p.Check("mx1.example.com", badCert, false)
			if v.Proceed != tc.want.badCertProceeds || v.Failure != tc.want.badCertFailure {
				t.Errorf("Check(bad cert) = proceed %v failure %q, want %v %q", v.Proceed, v.Failure, tc.want.badCertProceeds, tc.want.badCertFailure)
			}
			if v := p.Check("mx1.example.com", goodCert, false); !v.Proceed || !v.Verified || v.Failure != "" {
				t.Errorf("Check(good cert) = %+v, want verified and proceed", v)
			}
			if got := p.ReportPolicy().Type; got != tc.want.reportType {
				t.Errorf("report policy type = %s, want %s", got, tc.want.reportType)
			}
		})
	}
}

func TestReportPolicyStrings_RPT15(t *testing.T) {
	enforce := mustPolicy(t, "version: STSv1\nmode: enforce\nmx: mx1.example.com\nmx: *.example.net\nmax_age: 604800\n")
	d := &Decider{Settings: func() *Settings { return &Settings{EnableMTASTS: true} }, STS: fakeSTS{STSResult{Policy: enforce, ID: "1"}}}
	p, err := d.For(context.Background(), Request{Domain: address.MustParseDomain("example.com")})
	if err != nil {
		t.Fatal(err)
	}
	rp := p.ReportPolicy()
	wantLines := []string{"version: STSv1", "mode: enforce", "mx: mx1.example.com", "mx: *.example.net", "max_age: 604800"}
	if len(rp.String) != len(wantLines) {
		t.Fatalf("policy-string = %q, want %q", rp.String, wantLines)
	}
	for i := range wantLines {
		if rp.String[i] != wantLines[i] {
			t.Errorf("policy-string[%d] = %q, want %q", i, rp.String[i], wantLines[i])
		}
	}
	if rp.Domain != "example.com" || len(rp.MXHost) != 2 || rp.MXHost[1] != "*.example.net" {
		t.Errorf("report policy = %+v", rp)
	}
}

func TestStaticRouteNeverSTS(t *testing.T) {
	enforce := mustPolicy(t, "version: STSv1\nmode: enforce\nmx: mx1.example.com\nmax_age: 604800\n")
	d := &Decider{Settings: func() *Settings { return &Settings{EnableMTASTS: true} }, STS: fakeSTS{STSResult{Policy: enforce}}}
	p := d.ForRoute(Request{Domain: address.MustParseDomain("example.com")}, LevelOpportunistic)
	if !p.AllowMX("relay.provider.test").Proceed || p.Reportable() || p.Source != SourceRoute {
		t.Errorf("route plan = %+v, want any host allowed, not reportable, source route", p)
	}
}

func TestRequireTLS_REQ5_REQ7(t *testing.T) {
	now := func() time.Time { return testNow }
	ca, _ := testpki.NewCA("TestRoot", now)
	good := state(ca.MustIssue(testpki.Leaf{DNSNames: []string{"mx1.example.com"}}))
	enforce := mustPolicy(t, "version: STSv1\nmode: enforce\nmx: mx1.example.com\nmax_age: 604800\n")
	dom := address.MustParseDomain("example.com")

	noPolicy := &Decider{Settings: func() *Settings { return &Settings{EnableMTASTS: true} }, STS: fakeSTS{}, Roots: ca.Pool(), Now: now}
	p, _ := noPolicy.For(context.Background(), Request{Domain: dom, RequireTLS: true})
	if p.AllowMX("mx1.example.com").Proceed {
		t.Error("REQ-5: REQUIRETLS to an unauthenticated MX name must not proceed")
	}
	p, _ = noPolicy.For(context.Background(), Request{Domain: dom, RequireTLS: true, MXSecure: true})
	if !p.AllowMX("mx1.example.com").Proceed {
		t.Error("REQ-5: a DNSSEC-secure MX name is authenticated")
	}
	if p.STARTTLSNotOffered("mx1.example.com").Proceed {
		t.Error("REQ-6: REQUIRETLS never goes without TLS")
	}
	if p.Check("mx1.example.com", good, false).Proceed {
		t.Error("REQ-7: REQUIRETLS needs the extension after STARTTLS")
	}
	if !p.Check("mx1.example.com", good, true).Proceed {
		t.Error("REQ-9: verified TLS with REQUIRETLS offered proceeds")
	}
	withSTS := &Decider{Settings: func() *Settings { return &Settings{EnableMTASTS: true} }, STS: fakeSTS{STSResult{Policy: enforce}}, Roots: ca.Pool(), Now: now}
	p, _ = withSTS.For(context.Background(), Request{Domain: dom, RequireTLS: true})
	if !p.AllowMX("mx1.example.com").Proceed {
		t.Error("REQ-5: an MX listed by an enforced MTA-STS policy is authenticated")
	}
}

// Every way a session gets no TLS has one label (result type, reason code, detail), whichever client path
// (delivery or diagnostics) meets it; STS-72 and STS-73 name the result types.
func TestNoTLSLabels_STS72(t *testing.T) {
	dom := address.MustParseDomain("example.com")
	enforce := mustPolicy(t, "version: STSv1\nmode: enforce\nmx: mx1.example.com\nmax_age: 604800\n")
	d := &Decider{Settings: func() *Settings { return &Settings{EnableMTASTS: true} }, STS: fakeSTS{STSResult{Policy: enforce, ID: "1"}}}
	p, err := d.For(context.Background(), Request{Domain: dom})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		got  Verdict
		want Verdict
	}{
		{"not offered", p.STARTTLSNotOffered("mx1.example.com"),
			Verdict{Failure: tlsrpt.ResultSTARTTLSNotSupported, Detail: "mx1.example.com does not offer STARTTLS"}},
		{"refused", p.STARTTLSRefused("mx1.example.com", 454, "4.7.0 TLS not available\nsecond line"),
			Verdict{Failure: tlsrpt.ResultSTARTTLSNotSupported, Detail: "STARTTLS refused: 454 4.7.0 TLS not available"}},
		{"handshake", p.HandshakeFailed("mx1.example.com", &net.OpError{Op: "remote error", Err: errors.New("tls: handshake failure")}),
			Verdict{Failure: tlsrpt.ResultValidationFailure, ReasonCode: "tls-handshake-failed", Detail: `TLS handshake failed: the server sent TLS alert "handshake failure"`}},
	} {
		if diff := cmp.Diff(tc.want, tc.got); diff != "" {
			t.Errorf("%s under enforce (-want +got):\n%s", tc.name, diff)
		}
	}
}
