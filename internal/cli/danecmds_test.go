package cli

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mxgate/mxgate/internal/simnet"
)

// TestDANELookupCommand runs `mxgate dane lookup` against a simulated signed domain whose only MX host has a
// bogus TLSA answer (exit status 2, BLOCKED), and shows that dns.validating decides whose AD bit counts.
func TestDANELookupCommand(t *testing.T) {
	n, err := simnet.New(simnet.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	n.DNS.SetDNSSEC("example.com", simnet.Secure)
	r, err := n.AddMX(simnet.MXOptions{Domain: "example.com", Host: "mx1.example.com", Pref: 10})
	if err != nil {
		t.Fatal(err)
	}
	n.DNS.AddDANE("mx1.example.com", n.SMTPPort, 3, 1, 1, r.Leaf())
	n.DNS.SetDNSSEC("_25._tcp.mx1.example.com", simnet.Bogus)

	run := func(validating string) (int, string) {
		dir := t.TempDir()
		cfg := filepath.Join(dir, "mxgate.toml")
		text := fmt.Sprintf("[data]\ndir = %q\n[dns]\nservers = [%q]\ntimeout = \"10s\"\nvalidating = [%s]\n[delivery]\nport = %d\n", dir, n.DNSAddr, validating, n.SMTPPort)
		if err := os.WriteFile(cfg, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		var out, errOut bytes.Buffer
		code := Main([]string{"--config", cfg, "dane", "lookup", "example.com"}, &out, &errOut)
		return code, out.String() + errOut.String()
	}
	code, out := run("")
	if code != exitBlocked || !strings.Contains(out, "TLSA       bogus") || !strings.Contains(out, "BLOCKED") {
		t.Errorf("loopback resolver: exit %d, output:\n%s\nwant exit 2 and a bogus TLSA answer", code, out)
	}
	code, out = run(`"192.0.2.53"`)
	if code != 0 || !strings.Contains(out, "MX RRset   insecure") {
		t.Errorf("resolver not listed as validating: exit %d, output:\n%s\nwant an insecure MX RRset", code, out)
	}
}
