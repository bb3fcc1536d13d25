package diag_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/miekg/dns"

	"github.com/mxgate/mxgate/internal/address"
	"github.com/mxgate/mxgate/internal/diag"
	"github.com/mxgate/mxgate/internal/mtasts"
	"github.com/mxgate/mxgate/internal/simnet"
	"github.com/mxgate/mxgate/internal/testpki"
	"github.com/mxgate/mxgate/internal/tlsrpt"
)

const policyEnforce = "version: STSv1\r\nmode: enforce\r\nmx: mx1.example.com\r\nmx: mx2.example.com\r\nmax_age: 604800\r\n"

type fixture struct {
	t   *testing.T
	n   *simnet.Net
	env diag.Env
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	n, err := simnet.New(simnet.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	resolver := n.Resolver()
	client := n.PolicyClient(5 * time.Second)
	return &fixture{t: t, n: n, env: diag.Env{
		Resolver: resolver, HTTP: client, Roots: n.RootPool(), Port: n.SMTPPort,
		Hostname: "gw.sender.test", Timeout: 5 * time.Second,
	}}
}

func (f *fixture) mx(domain, host string, pref uint16, o simnet.MXOptions) *simnet.Receiver {
	f.t.Helper()
	o.Domain, o.Host, o.Pref = domain, host, pref
	r, err := f.n.AddMX(o)
	if err != nil {
		f.t.Fatal(err)
	}
	return r
}

func (f *fixture) sts(domain, id, policy string) *simnet.PolicyHost {
	f.t.Helper()
	f.n.DNS.AddTXT("_mta-sts."+domain, "v=STSv1; id="+id)
	p, err := f.n.ServeMTASTSPolicy(domain, policy)
	if err != nil {
		f.t.Fatal(err)
	}
	return p
}

func (f *fixture) expired(names ...string) *tls.Certificate {
	day := 24 * time.Hour
	now := time.Now()
	c := f.n.TrustedCA.MustIssue(testpki.Leaf{DNSNames: names, NotBefore: now.Add(-2 * day), NotAfter: now.Add(-day)})
	return &c
}

// exampleCom is example.com: an enforce policy listing mx1 (valid certificate) and mx2 (expired
// certificate); mx3.example.net is a live MX the policy does not cover.
func (f *fixture) exampleCom() {
	f.mx("example.com", "mx1.example.com", 10, simnet.MXOptions{})
	f.mx("example.com", "mx2.example.com", 20, simnet.MXOptions{Cert: f.expired("mx2.example.com")})
	f.mx("example.com", "mx3.example.net", 30, simnet.MXOptions{})
	f.sts("example.com", "20240101T000000", policyEnforce)
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func text(t *testing.T, r interface{ Text(w io.Writer) error }) string {
	t.Helper()
	var b bytes.Buffer
	if err := r.Text(&b); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func wantContains(t *testing.T, got string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(got, w) {
			t.Errorf("text output lacks %q:\n%s", w, got)
		}
	}
}

func TestLookupSTSEnforcePolicy(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.exampleCom()
	rep, err := diag.LookupSTS(ctxT(t), f.env, address.MustParseDomain("example.com"))
	if err != nil {
		t.Fatal(err)
	}
	wantRec := diag.RecordReport{
		Name: "_mta-sts.example.com", TXT: []string{"v=STSv1; id=20240101T000000"},
		Selected: "v=STSv1; id=20240101T000000", ID: "20240101T000000",
	}
	if diff := cmp.Diff(wantRec, rep.Record); diff != "" {
		t.Errorf("record (-want +got):\n%s", diff)
	}
	wantPol := &diag.PolicyReport{
		URL: "https://mta-sts.example.com/.well-known/mta-sts.txt", Fetched: true, Text: policyEnforce,
		Mode: mtasts.ModeEnforce, MaxAge: 604800, MX: []string{"mx1.example.com", "mx2.example.com"},
	}
	if diff := cmp.Diff(wantPol, rep.Policy); diff != "" {
		t.Errorf("policy (-want +got):\n%s", diff)
	}
	wantMX := []diag.MXCoverage{
		{Host: "mx1.example.com", Pref: 10, Policy: diag.Covered},
		{Host: "mx2.example.com", Pref: 20, Policy: diag.Covered},
		{Host: "mx3.example.net", Pref: 30, Policy: diag.NotCovered},
	}
	if diff := cmp.Diff(wantMX, rep.MX); diff != "" {
		t.Errorf("MX coverage (-want +got):\n%s", diff)
	}
	ph := rep.PolicyHost
	if ph == nil || ph.TLS == nil || len(ph.TLS.Chain) == 0 {
		t.Fatalf("policy host = %+v, want a TLS chain", ph)
	}
	leaf := ph.TLS.Chain[0]
	if !slices.Equal(leaf.SANs, []string{"mta-sts.example.com"}) || !strings.Contains(leaf.Issuer, "simnet TestRoot") {
		t.Errorf("policy host leaf = %+v, want SAN mta-sts.example.com issued by simnet TestRoot", leaf)
	}
	if ph.TLS.Verdict != diag.VerdictValid || leaf.Validity != diag.ValidityValid || leaf.NotAfter.IsZero() {
		t.Errorf("policy host verdict %q validity %q not-after %v, want valid", ph.TLS.Verdict, leaf.Validity, leaf.NotAfter)
	}
	if rep.Blocked() {
		t.Error("Blocked() = true with two covered MX hosts")
	}
	wantContains(t, text(t, &rep),
		`"v=STSv1; id=20240101T000000"`, "selected, id 20240101T000000",
		"mode       enforce", "max_age    604800", "mx1.example.com", "| mode: enforce",
		"Policy host mta-sts.example.com", "SANs     mta-sts.example.com", "cert       valid",
		"mx3.example.net                  NOT COVERED", "1 of 3 MX hosts not covered")
	roundTrip(t, rep, &diag.STSReport{})
}

// TestMX under an enforce policy: mx1 would get mail, mx2's expired certificate and mx3's absence from the
// policy make delivery refuse them (STS-70, STS-74); SNI is the MX host name (STS-79).
func TestMXVerdicts_STS70_STS74_STS79(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.exampleCom()
	rep, err := diag.TestMX(ctxT(t), f.env, address.MustParseDomain("example.com"))
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Hosts) != 3 {
		t.Fatalf("tested %d hosts, want 3: %+v", len(rep.Hosts), rep.Hosts)
	}
	type row struct {
		Host     string
		STARTTLS bool
		SNI      string
		Verdict  string
		Policy   diag.Coverage
		Enforce  diag.Decision
	}
	var got []row
	for _, h := range rep.Hosts {
		r := row{Host: h.Host, STARTTLS: h.STARTTLS, Policy: h.Policy}
		if h.TLS != nil {
			r.SNI, r.Verdict = h.TLS.ServerName, h.TLS.Verdict
		}
		if h.Enforce != nil {
			r.Enforce = *h.Enforce
			r.Enforce.Detail = ""
		}
		got = append(got, r)
	}
	want := []row{
		{"mx1.example.com", true, "mx1.example.com", "valid", diag.Covered, diag.Decision{Action: diag.Deliver}},
		{"mx2.example.com", true, "mx2.example.com", "certificate-expired", diag.Covered,
			diag.Decision{Action: diag.Refuse, ResultType: tlsrpt.ResultCertificateExpired, ReasonCode: "leaf-expired"}},
		{"mx3.example.net", true, "mx3.example.net", "valid", diag.NotCovered,
			diag.Decision{Action: diag.Refuse, ResultType: tlsrpt.ResultValidationFailure, ReasonCode: "mx-not-in-policy"}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("hosts (-want +got):\n%s", diff)
	}
	mx1 := rep.Hosts[0]
	if mx1.TLS.Version == "" || mx1.TLS.Cipher == "" || !strings.HasPrefix(mx1.Banner, "220 ") || mx1.Address == "" {
		t.Errorf("mx1 = %+v, want banner, address, TLS version and cipher", mx1)
	}
	if !slices.Contains(mx1.Extensions, "STARTTLS") || len(mx1.TLS.Extensions) == 0 {
		t.Errorf("mx1 extensions before TLS %v, after %v", mx1.Extensions, mx1.TLS.Extensions)
	}
	if c := rep.Hosts[1].TLS.Chain[0]; c.Validity != diag.ValidityExpired {
		t.Errorf("mx2 leaf validity = %q, want expired", c.Validity)
	}
	if rep.Blocked() {
		t.Error("Blocked() = true although mx1 would get mail")
	}
	wantContains(t, text(t, &rep),
		"policy     enforce (id 20240101T000000), mx mx1.example.com, mx2.example.com",
		"[10] mx1.example.com", "STARTTLS   offered", "SNI mx1.example.com", "enforce    deliver",
		"[20] mx2.example.com", "cert       FAIL certificate-expired", "REFUSE certificate-expired",
		"[30] mx3.example.net", "policy     not-covered", "REFUSE validation-failure (mx-not-in-policy)",
		"under enforce, 1 of 3 MX hosts would get mail")
	roundTrip(t, rep, &diag.MXTestReport{})
}

// With no TXT record there is no policy and no HTTPS request, even though a policy host exists (STS-18).
func TestNoRecordNoFetch_STS18(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.mx("example.org", "mx.example.org", 10, simnet.MXOptions{})
	ph, err := f.n.ServeMTASTSPolicy("example.org", policyEnforce)
	if err != nil {
		t.Fatal(err)
	}
	d := address.MustParseDomain("example.org")
	rep, err := diag.LookupSTS(ctxT(t), f.env, d)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Record.Error == "" || rep.Record.Temporary || rep.Record.Selected != "" || rep.Policy != nil || rep.PolicyHost != nil {
		t.Errorf("record %+v policy %+v policy host %+v, want no record and nothing fetched", rep.Record, rep.Policy, rep.PolicyHost)
	}
	if diff := cmp.Diff([]diag.MXCoverage{{Host: "mx.example.org", Pref: 10, Policy: diag.NoPolicy}}, rep.MX); diff != "" {
		t.Errorf("MX (-want +got):\n%s", diff)
	}
	mt, err := diag.TestMX(ctxT(t), f.env, d)
	if err != nil {
		t.Fatal(err)
	}
	if len(mt.Hosts) != 1 || mt.Hosts[0].Enforce != nil || mt.Hosts[0].TLS == nil || mt.Hosts[0].TLS.Verdict != diag.VerdictValid {
		t.Errorf("hosts = %+v, want one verified host and no enforce decision", mt.Hosts)
	}
	if n := len(ph.SNIs()); n != 0 {
		t.Errorf("policy host saw %d TLS handshakes, want none", n)
	}
	wantContains(t, text(t, &rep), "no usable record, so no policy", "no MTA-STS policy applies")
	wantContains(t, text(t, &mt), "policy     none: ", "no MTA-STS policy with MX patterns")
}

// A policy host answering 404 yields no policy, typed sts-policy-fetch-error (STS-28).
func TestPolicyFetch404_STS28(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.mx("example.net", "mx.example.net", 10, simnet.MXOptions{})
	ph := f.sts("example.net", "1", policyEnforce)
	ph.SetStatus(http.StatusNotFound)
	rep, err := diag.LookupSTS(ctxT(t), f.env, address.MustParseDomain("example.net"))
	if err != nil {
		t.Fatal(err)
	}
	p := rep.Policy
	if p == nil || p.Fetched || p.ResultType != tlsrpt.ResultSTSPolicyFetchError || !strings.Contains(p.Error, "404") {
		t.Fatalf("policy = %+v, want a failed fetch typed sts-policy-fetch-error", p)
	}
	if rep.MX[0].Policy != diag.NoPolicy || rep.Blocked() {
		t.Errorf("MX %+v blocked %v, want no policy applied", rep.MX, rep.Blocked())
	}
	wantContains(t, text(t, &rep), "FAILED sts-policy-fetch-error", "HTTP status 404")
}

// An MX without STARTTLS under enforce is refused with starttls-not-supported (STS-72); when it is the only
// MX, the domain is blocked.
func TestMXWithoutSTARTTLS_STS72(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	mx := f.mx("example.com", "mx1.example.com", 10, simnet.MXOptions{STARTTLS: simnet.NotOffered})
	f.sts("example.com", "1", policyEnforce)
	rep, err := diag.TestMX(ctxT(t), f.env, address.MustParseDomain("example.com"))
	if err != nil {
		t.Fatal(err)
	}
	h := rep.Hosts[0]
	if h.STARTTLS || h.TLS != nil || h.Enforce == nil || h.Enforce.Action != diag.Refuse ||
		h.Enforce.ResultType != tlsrpt.ResultSTARTTLSNotSupported {
		t.Fatalf("host = %+v enforce %+v, want refused with starttls-not-supported", h, h.Enforce)
	}
	if !rep.Blocked() {
		t.Error("Blocked() = false with the only MX refused")
	}
	if got := mx.Messages(); len(got) != 0 {
		t.Errorf("the probe sent %d messages", len(got))
	}
	wantContains(t, text(t, &rep), "STARTTLS   not offered", "REFUSE starttls-not-supported", "BLOCKED")
}

// An enforce policy that covers none of the live MX hosts blocks the domain, as both reports say.
func TestPolicyCoversNoMXIsBlocked(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.mx("example.com", "mail.example.com", 10, simnet.MXOptions{})
	f.sts("example.com", "1", policyEnforce)
	d := address.MustParseDomain("example.com")
	rep, err := diag.LookupSTS(ctxT(t), f.env, d)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Blocked() {
		t.Errorf("LookupSTS Blocked() = false, MX %+v", rep.MX)
	}
	wantContains(t, text(t, &rep), "BLOCKED: the enforce policy covers none of the MX hosts")
	mt, err := diag.TestMX(ctxT(t), f.env, d)
	if err != nil {
		t.Fatal(err)
	}
	if !mt.Blocked() {
		t.Errorf("TestMX Blocked() = false, hosts %+v", mt.Hosts)
	}
}

// A failed TCP connection is not a policy failure: the host is unreachable, not refused, and the domain is not
// reported as blocked by its policy.
func TestUnreachableMXIsNotRefused(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ip, err := f.n.AllocIP()
	if err != nil {
		t.Fatal(err)
	}
	f.n.DNS.AddMX("example.com", "mx1.example.com", 10)
	f.n.DNS.AddA("mx1.example.com", ip)
	f.sts("example.com", "1", policyEnforce)
	rep, err := diag.TestMX(ctxT(t), f.env, address.MustParseDomain("example.com"))
	if err != nil {
		t.Fatal(err)
	}
	h := rep.Hosts[0]
	if h.Enforce == nil || h.Enforce.Action != diag.Unreachable || !strings.Contains(h.Error, "connect") {
		t.Fatalf("host = %+v, want unreachable with a connect error", h)
	}
	if rep.Blocked() {
		t.Error("Blocked() = true for an unreachable host")
	}
}

func TestIncompleteEnv(t *testing.T) {
	t.Parallel()
	d := address.MustParseDomain("example.com")
	if _, err := diag.LookupSTS(context.Background(), diag.Env{}, d); !errors.Is(err, diag.ErrEnv) {
		t.Errorf("LookupSTS error = %v, want ErrEnv", err)
	}
	if _, err := diag.TestMX(context.Background(), diag.Env{}, d); !errors.Is(err, diag.ErrEnv) {
		t.Errorf("TestMX error = %v, want ErrEnv", err)
	}
}

// roundTrip checks that a report survives JSON: what --json prints is the whole report.
func roundTrip[T any](t *testing.T, rep T, into *T) {
	t.Helper()
	b, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, into); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(rep, *into); diff != "" {
		t.Errorf("JSON round trip (-want +got):\n%s", diff)
	}
}

// Each way an MX can fail TLS gets the result type delivery would record for it (STS-72, STS-73).
func TestMXTLSFailures_STS72_STS73(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name     string
		opts     func(n *simnet.Net) simnet.MXOptions
		starttls bool
		want     tlsrpt.ResultType
	}{
		{"STARTTLS refused", func(*simnet.Net) simnet.MXOptions { return simnet.MXOptions{STARTTLS: simnet.Refuse454} },
			true, tlsrpt.ResultSTARTTLSNotSupported},
		{"handshake fails", func(*simnet.Net) simnet.MXOptions { return simnet.MXOptions{STARTTLS: simnet.HandshakeFail} },
			true, tlsrpt.ResultValidationFailure},
		{"untrusted root", func(n *simnet.Net) simnet.MXOptions {
			c := n.EvilCA.MustIssue(testpki.Leaf{DNSNames: []string{"mx1.example.com"}})
			return simnet.MXOptions{Cert: &c}
		}, true, tlsrpt.ResultCertificateNotTrusted},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			f.mx("example.com", "mx1.example.com", 10, tc.opts(f.n))
			f.sts("example.com", "1", policyEnforce)
			rep, err := diag.TestMX(ctxT(t), f.env, address.MustParseDomain("example.com"))
			if err != nil {
				t.Fatal(err)
			}
			h := rep.Hosts[0]
			if h.STARTTLS != tc.starttls || h.Enforce == nil || h.Enforce.Action != diag.Refuse || h.Enforce.ResultType != tc.want {
				t.Fatalf("host = %+v enforce %+v, want refused with %s", h, h.Enforce, tc.want)
			}
			if tc.want == tlsrpt.ResultCertificateNotTrusted && (h.TLS == nil || h.TLS.Verdict != string(tc.want)) {
				t.Errorf("TLS = %+v, want verdict %s", h.TLS, tc.want)
			}
			if tc.want != tlsrpt.ResultCertificateNotTrusted && h.STARTTLSError == "" {
				t.Errorf("STARTTLSError empty for %s", tc.name)
			}
		})
	}
}

// A policy host with an untrusted certificate: the fetch fails with sts-webpki-invalid, and the certificate
// is still shown, with why it failed.
func TestPolicyHostUntrusted(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.mx("example.com", "mx1.example.com", 10, simnet.MXOptions{})
	ph := f.sts("example.com", "1", policyEnforce)
	c := f.n.EvilCA.MustIssue(testpki.Leaf{DNSNames: []string{"mta-sts.example.com"}})
	ph.SetCert(&c)
	rep, err := diag.LookupSTS(ctxT(t), f.env, address.MustParseDomain("example.com"))
	if err != nil {
		t.Fatal(err)
	}
	if rep.Policy == nil || rep.Policy.ResultType != tlsrpt.ResultSTSWebPKIInvalid {
		t.Fatalf("policy = %+v, want sts-webpki-invalid", rep.Policy)
	}
	tlsInfo := rep.PolicyHost.TLS
	if tlsInfo == nil || tlsInfo.Verdict != string(tlsrpt.ResultCertificateNotTrusted) || !strings.Contains(tlsInfo.Chain[0].Issuer, "EvilRoot") {
		t.Errorf("policy host TLS = %+v, want the EvilRoot chain, certificate-not-trusted", tlsInfo)
	}
	wantContains(t, text(t, &rep), "FAILED sts-webpki-invalid", "FAIL certificate-not-trusted")
}

// Env.Now is the clock of certificate verification: 100 days on, mx1's certificate has expired.
func TestClockDrivesVerification(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.mx("example.com", "mx1.example.com", 10, simnet.MXOptions{})
	f.sts("example.com", "1", policyEnforce)
	f.env.Now = func() time.Time { return time.Now().Add(100 * 24 * time.Hour) }
	rep, err := diag.TestMX(ctxT(t), f.env, address.MustParseDomain("example.com"))
	if err != nil {
		t.Fatal(err)
	}
	h := rep.Hosts[0]
	if h.TLS == nil || h.TLS.Verdict != string(tlsrpt.ResultCertificateExpired) || h.Enforce.ResultType != tlsrpt.ResultCertificateExpired {
		t.Errorf("host TLS %+v enforce %+v, want certificate-expired", h.TLS, h.Enforce)
	}
}

// A temporary DNS failure for _mta-sts is never "no policy": without a cached policy the verdict is
// unknown (delivery defers), with one it is the cached policy that delivery applies.
func TestTXTServfailIsNotNoPolicy_STS19(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.exampleCom()
	f.n.DNS.SetFailure("_mta-sts.example.com", dns.TypeTXT, simnet.ServFail)
	rep, err := diag.LookupSTS(context.Background(), f.env, address.MustParseDomain("example.com"))
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Record.Temporary || rep.Verdict() != diag.VerdictUnknown {
		t.Fatalf("record %+v, verdict %v; want temporary and VerdictUnknown", rep.Record, rep.Verdict())
	}
	for _, m := range rep.MX {
		if m.Policy != diag.Unknown {
			t.Errorf("MX %s coverage %q, want unknown while the record lookup fails", m.Host, m.Policy)
		}
	}
	out := text(t, &rep)
	wantContains(t, out, `UNKNOWN: the _mta-sts TXT lookup failed temporarily`, `this is not "no policy"`)
	if strings.Contains(out, "no MTA-STS policy applies") {
		t.Errorf("a temporary failure reads as no policy:\n%s", out)
	}

	expires := time.Now().Add(24 * time.Hour)
	rep.Cache = &diag.CacheView{Entry: &diag.CachedPolicy{ID: "20250101", Mode: mtasts.ModeEnforce, MX: []string{"mx1.example.com"}, Expires: expires}}
	if rep.Verdict() != diag.VerdictOK {
		t.Errorf("verdict with a cached enforce policy = %v, want OK", rep.Verdict())
	}
	wantContains(t, text(t, &rep), "Cached policy", "delivery applies the cached enforce policy id 20250101")

	mt, err := diag.TestMX(context.Background(), f.env, address.MustParseDomain("example.com"))
	if err != nil {
		t.Fatal(err)
	}
	if mt.Verdict() != diag.VerdictUnknown {
		t.Errorf("TestMX verdict = %v, want VerdictUnknown", mt.Verdict())
	}
	wantContains(t, text(t, &mt), `UNKNOWN (temporary DNS failure, not "no policy")`)
}

// A cached enforce policy is not called opportunistic when the live record is gone (STS-16: it stays in
// force until it expires).
func TestCachedEnforceNotCalledOpportunistic_STS16(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.mx("example.com", "mx1.example.com", 10, simnet.MXOptions{})
	rep, err := diag.LookupSTS(context.Background(), f.env, address.MustParseDomain("example.com"))
	if err != nil {
		t.Fatal(err)
	}
	rep.Cache = &diag.CacheView{Entry: &diag.CachedPolicy{ID: "old", Mode: mtasts.ModeEnforce, MX: []string{"mx1.example.com"}, Expires: time.Now().Add(time.Hour)}}
	out := text(t, &rep)
	wantContains(t, out, "no live MTA-STS policy, but the cached enforce policy id old stays in force")
	if strings.Contains(out, "opportunistic") {
		t.Errorf("a cached enforce policy is called opportunistic:\n%s", out)
	}
	rep.Cache.Entry.Expired = true
	wantContains(t, text(t, &rep), "(expired: no longer applied)", "no MTA-STS policy applies; mail goes with opportunistic TLS")
}

// `sts test` with no MX host to test says so and concludes so.
func TestNoMXHostToTest(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	mt, err := diag.TestMX(context.Background(), f.env, address.MustParseDomain("nomx.example"))
	if err != nil {
		t.Fatal(err)
	}
	if mt.Verdict() != diag.VerdictNothingToTest {
		t.Errorf("verdict = %v, want VerdictNothingToTest", mt.Verdict())
	}
	wantContains(t, text(t, &mt), "Result: no MX host to test")
}
