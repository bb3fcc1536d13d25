package cli

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"github.com/mxgate/mxgate/internal/simnet"
)

// TestSTSDiagnosticsExitCodes: `sts lookup` exits 3 on a temporary DNS failure (delivery defers; never "no
// policy"), showing that the gateway's cache could not be read beside the live view; `sts test` exits 4
// when there is no MX host to test.
func TestSTSDiagnosticsExitCodes(t *testing.T) {
	n, err := simnet.New(simnet.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	if _, err := n.AddMX(simnet.MXOptions{Domain: "example.com", Host: "mx1.example.com", Pref: 10}); err != nil {
		t.Fatal(err)
	}
	n.DNS.SetFailure("_mta-sts.example.com", dns.TypeTXT, simnet.ServFail)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "mxgate.toml")
	content := fmt.Sprintf("[data]\ndir = %q\n[dns]\nservers = [%q]\ntimeout = \"2s\"\n[delivery]\nport = %d\n[mtasts]\nhttps_port = %d\nallow_networks = [\"127.0.0.0/8\"]\n",
		filepath.Join(dir, "data"), n.DNSAddr, n.SMTPPort, n.HTTPSPort)
	if err := os.WriteFile(cfg, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		code int
		want []string
	}{
		{[]string{"sts", "lookup", "example.com"}, exitUnknown, []string{"UNKNOWN: the _mta-sts TXT lookup failed temporarily", "cache      not available"}},
		{[]string{"sts", "test", "nomx.example"}, exitNothingToTest, []string{"Result: no MX host to test"}},
	} {
		var out, errb bytes.Buffer
		code := Main(append([]string{"--config", cfg}, tc.args...), &out, &errb)
		if code != tc.code {
			t.Errorf("%v: exit %d, want %d; stdout:\n%s\nstderr: %s", tc.args, code, tc.code, out.String(), errb.String())
		}
		for _, w := range tc.want {
			if !strings.Contains(out.String(), w) {
				t.Errorf("%v: stdout lacks %q:\n%s", tc.args, w, out.String())
			}
		}
	}
}
