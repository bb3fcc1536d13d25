package delivery_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mxgate/mxgate/internal/dane"
	"github.com/mxgate/mxgate/internal/dnsx"
	"github.com/mxgate/mxgate/internal/queue"
	"github.com/mxgate/mxgate/internal/simnet"
	"github.com/mxgate/mxgate/internal/testenv"
	"github.com/mxgate/mxgate/internal/testpki"
	"github.com/mxgate/mxgate/internal/tlsrpt"
)

// TestDANEThroughUnbound runs DANE against a real validating resolver: Debian's unbound with a zone signed by
// ldns-signzone and a local trust anchor, so that the AD bit and the bogus SERVFAIL come from real DNSSEC
// validation instead of simnet's labels. example.test has three MX hosts: mx0 (preference 5) publishes a
// TLSA record that matches nothing, mx2 (10) a TLSA record whose signature was tampered with (bogus), mx1
// (20) the DANE-EE record of its certificate, which PKIX does not trust. Mail goes to mx1 over DANE; mx2 is
// never contacted; both failures are reported under policy-type tlsa for their base domains.
func TestDANEThroughUnbound(t *testing.T) {
	t.Parallel()
	for _, tool := range []string{"unbound", "ldns-keygen", "ldns-signzone"} {
		if _, err := exec.LookPath(tool); err != nil {
			testenv.MissingDependency(t, "%s not installed (apt-get install unbound ldnsutils)", tool)
			return
		}
	}
	h := newHarness(t)
	h.settings.EnableDANE = true
	hosts := map[string]*simnet.Receiver{}
	for _, name := range []string{"mx0", "mx1", "mx2"} {
		host := name + ".example.test"
		c := h.n.EvilCA.MustIssue(testpki.Leaf{DNSNames: []string{host}})
		r, err := h.n.AddSMTPHost(host, simnet.MXOptions{NoDNS: true, Cert: &c})
		if err != nil {
			t.Fatal(err)
		}
		hosts[name] = r
	}
	tlsa := func(name string, match bool) string {
		rec := dane.Make(3, 1, 1, hosts[name].Leaf())
		if !match {
			rec = dane.Make(3, 1, 1, h.n.EvilCA.Cert)
		}
		return fmt.Sprintf("_%d._tcp.%s IN TLSA %s\n", h.n.SMTPPort, name, dane.String(rec))
	}
	zone := "$ORIGIN example.test.\n$TTL 300\n" +
		"@ IN SOA ns.example.test. hostmaster.example.test. 1 3600 600 86400 300\n" +
		"@ IN NS ns.example.test.\nns IN A 127.0.0.1\n" +
		"@ IN MX 5 mx0.example.test.\n@ IN MX 10 mx2.example.test.\n@ IN MX 20 mx1.example.test.\n"
	for _, name := range []string{"mx0", "mx1", "mx2"} {
		zone += fmt.Sprintf("%s IN A %s\n", name, hosts[name].IP())
	}
	zone += tlsa("mx0", false) + tlsa("mx1", true) + tlsa("mx2", true)

	dir := t.TempDir()
	signed := signZone(t, dir, "example.test", zone)
	// A signature of mx2's TLSA RRset that does not verify: the answer is bogus.
	signed = tamperRRSIG(t, signed, fmt.Sprintf("_%d._tcp.mx2.example.test.", h.n.SMTPPort), "TLSA")
	if err := os.WriteFile(filepath.Join(dir, "example.test.zone.signed"), []byte(signed), 0o644); err != nil {
		t.Fatal(err)
	}
	ip, err := h.n.AllocIP()
	if err != nil {
		t.Fatal(err)
	}
	addr := startUnbound(t, dir, ip.String(), "example.test")
	h.d.Resolver = &dnsx.Client{Servers: []string{addr}, Timeout: 10 * time.Second}

	r := one(t, h.deliver("example.test", job("m1", "bob@example.test")))
	if r.Outcome != queue.Delivered || r.RemoteMTA != "mx1.example.test" || !strings.HasSuffix(r.TLS, "(DANE)") {
		t.Fatalf("result = %+v, want delivered by mx1 over DANE", r)
	}
	if n := hosts["mx2"].Connections(); n != 0 {
		t.Errorf("mx2 (bogus TLSA) got %d connections", n)
	}
	if n := len(hosts["mx0"].Messages()); n != 0 {
		t.Errorf("mx0 (TLSA mismatch) got %d messages", n)
	}
	for host, want := range map[string]tlsrpt.ResultType{"mx0.example.test": tlsrpt.ResultTLSAInvalid, "mx2.example.test": tlsrpt.ResultDNSSECInvalid} {
		s := h.rec.sessionsFor(host)
		if len(s) != 1 || s[0].Failure == nil || s[0].Failure.ResultType != want || s[0].Policy.Type != tlsrpt.PolicyTLSA {
			t.Errorf("%s sessions %+v, want one %s under policy tlsa", host, s, want)
		}
	}
	if s := h.rec.sessionsFor("mx1.example.test"); len(s) != 1 || !s[0].Success {
		t.Errorf("mx1 sessions %+v, want one success", s)
	}
}

// signZone writes the zone, makes a KSK and a ZSK and signs it with ldns-signzone (NSEC, default validity of
// four weeks from now). It returns the signed zone's text; the KSK's DS record is in dir/anchor.ds.
func signZone(t *testing.T, dir, origin, zone string) string {
	t.Helper()
	run := func(name string, args ...string) string {
		cmd := exec.Command(name, args...)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s %v: %v\n%s", name, args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	if err := os.WriteFile(filepath.Join(dir, origin+".zone"), []byte(zone), 0o644); err != nil {
		t.Fatal(err)
	}
	ksk := run("ldns-keygen", "-a", "ECDSAP256SHA256", "-k", origin)
	zsk := run("ldns-keygen", "-a", "ECDSAP256SHA256", origin)
	run("ldns-signzone", origin+".zone", ksk, zsk)
	ds, err := os.ReadFile(filepath.Join(dir, ksk+".ds"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "anchor.ds"), ds, 0o644); err != nil {
		t.Fatal(err)
	}
	signed, err := os.ReadFile(filepath.Join(dir, origin+".zone.signed"))
	if err != nil {
		t.Fatal(err)
	}
	return string(signed)
}

// tamperRRSIG flips one character of the signature over owner's rrtype RRset.
func tamperRRSIG(t *testing.T, zone, owner, rrtype string) string {
	t.Helper()
	lines := strings.Split(zone, "\n")
	for i, l := range lines {
		f := strings.Fields(l)
		if len(f) < 13 || !strings.EqualFold(f[0], owner) || f[3] != "RRSIG" || f[4] != rrtype {
			continue
		}
		sig := []byte(f[len(f)-1])
		mid := len(sig) / 2
		if sig[mid] == 'A' {
			sig[mid] = 'B'
		} else {
			sig[mid] = 'A'
		}
		f[len(f)-1] = string(sig)
		lines[i] = strings.Join(f, "\t")
		return strings.Join(lines, "\n")
	}
	t.Fatalf("no RRSIG %s for %s in the signed zone", rrtype, owner)
	return ""
}

// startUnbound runs unbound in the foreground on ip:53 as a validating resolver that answers for origin from
// the signed zone in dir (auth-zone for upstream, so its answers go through the validator), with the zone's
// DS record as the only trust anchor. It returns the address once unbound says it serves, and stops it when
// the test ends.
func startUnbound(t *testing.T, dir, ip, origin string) string {
	t.Helper()
	conf := fmt.Sprintf(`server:
  interface: %[1]s
  port: 53
  do-daemonize: no
  username: ""
  chroot: ""
  directory: %[2]q
  pidfile: ""
  use-syslog: no
  logfile: ""
  verbosity: 1
  trust-anchor-file: %[3]q
  module-config: "validator iterator"
  ede: yes
  do-not-query-localhost: no
  access-control: 127.0.0.0/8 allow
  local-zone: "test." nodefault
auth-zone:
  name: "%[4]s."
  zonefile: %[5]q
  for-upstream: yes
  for-downstream: no
  fallback-enabled: no
`, ip, dir, filepath.Join(dir, "anchor.ds"), origin, filepath.Join(dir, origin+".zone.signed"))
	path := filepath.Join(dir, "unbound.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("unbound", "-d", "-c", path)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	ready := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		var log []string
		for sc.Scan() {
			log = append(log, sc.Text())
			if strings.Contains(sc.Text(), "start of service") {
				ready <- nil
				break
			}
		}
		if len(log) == 0 || !strings.Contains(log[len(log)-1], "start of service") {
			ready <- fmt.Errorf("unbound exited before serving:\n%s", strings.Join(log, "\n"))
		}
		for sc.Scan() { // keep draining so unbound never blocks on a full pipe
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	select {
	case err := <-ready:
		if err != nil {
			t.Fatal(err)
		}
	case <-ctx.Done():
		t.Fatal("unbound did not start within 30 s")
	}
	return ip + ":53"
}
