package config

import (
	"errors"
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/mxgate/mxgate/internal/address"
	"github.com/mxgate/mxgate/internal/tlspolicy"
)

var update = flag.Bool("update", false, "rewrite testdata/bad/*.err from the current output")

func TestLoadEmptyPathGivesDefaults(t *testing.T) {
	t.Parallel()
	got, err := Load("")
	if err != nil {
		t.Fatalf("Load(\"\"): %v", err)
	}
	if diff := cmp.Diff(Default(), got); diff != "" {
		t.Errorf("Load(\"\") differs from Default() (-want +got):\n%s", diff)
	}
	// The defaults must pass their own validation.
	parsed, err := Parse(nil)
	if err != nil {
		t.Fatalf("Parse(nil): %v", err)
	}
	if diff := cmp.Diff(Default(), parsed); diff != "" {
		t.Errorf("Parse(nil) differs from Default() (-want +got):\n%s", diff)
	}
}

func TestLoadMissingFile(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "nope.toml")
	if _, err := Load(path); err == nil || !strings.Contains(err.Error(), path) {
		t.Errorf("Load(%q) = %v, want an error naming the file", path, err)
	}
}

// TestBadConfigs runs the validation of check-config and serve (Load, then Preflight) on every
// testdata/bad/*.toml and compares the error text with the .err file next to it. Run with -update to rewrite
// the .err files.
func TestBadConfigs(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob("testdata/bad/*.toml")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 12 {
		t.Fatalf("found %d bad configs, want at least 12", len(files))
	}
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".toml"), func(t *testing.T) {
			t.Parallel()
			cfg, err := Load(file)
			if err == nil {
				err = Preflight(cfg)
				if err == nil {
					t.Fatalf("Load and Preflight(%s) succeeded, want an error", file)
				}
			} else if cfg != nil {
				t.Errorf("Load(%s) returned a Config with the error", file)
			}
			// Paths in the file are resolved against its directory; the goldens name them from the package.
			got := strings.ReplaceAll(err.Error()+"\n", testdataAbs(t)+string(filepath.Separator), "testdata/")
			golden := strings.TrimSuffix(file, ".toml") + ".err"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if diff := cmp.Diff(string(want), got); diff != "" {
				t.Errorf("errors for %s (-want +got):\n%s", file, diff)
			}
		})
	}
}

// TestGoodConfigsPassPreflight: every testdata/good file passes the whole validation of check-config and
// serve, and Preflight creates nothing.
func TestGoodConfigsPassPreflight(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob("testdata/good/*.toml")
	if err != nil || len(files) < 2 {
		t.Fatalf("good configs: %v, %v", files, err)
	}
	for _, file := range files {
		cfg, err := Load(file)
		if err != nil {
			t.Errorf("Load(%s): %v", file, err)
			continue
		}
		if err := Preflight(cfg); err != nil {
			t.Errorf("Preflight(%s): %v", file, err)
		}
		if _, err := os.Stat(cfg.Data.Dir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s: data.dir %s exists after Preflight (%v); it must create nothing", file, cfg.Data.Dir, err)
		}
	}
}

func TestGoodFull(t *testing.T) {
	t.Parallel()
	got, err := Load("testdata/good/full.toml")
	if err != nil {
		t.Fatal(err)
	}
	// Relative paths in the file are relative to its directory, testdata/good.
	td := testdataAbs(t)
	want := &Config{
		Node: "mx1",
		Data: Data{Dir: filepath.Join(td, "var/mxgate")},
		SMTP: SMTP{
			Listen:                 "[::]:25",
			Hostname:               "gw.xn--bcher-kva.example",
			RelayNetworks:          []string{"10.0.0.0/8", "2001:db8::/32"},
			MaxMessageBytes:        10485760,
			MaxRecipients:          500,
			MaxLineLength:          1000,
			ReadTimeout:            Duration(2 * time.Minute),
			WriteTimeout:           Duration(90 * time.Second),
			MaxConnsPerIP:          0,
			MessagesPerMinutePerIP: 600,
			TLSCertFile:            filepath.Join(td, "pki/cert.pem"),
			TLSKeyFile:             filepath.Join(td, "pki/key.pem"),
			Users:                  map[string]string{"app": "s3cret", "batch user": "x"},
		},
		DNS: DNS{Servers: []string{"192.0.2.53", "[2001:db8::53]:5353"}, Timeout: Duration(2 * time.Second), Cache: true},
		Delivery: Delivery{
			Hostname:            "out.example.net",
			Port:                2525,
			ConnectTimeout:      Duration(10 * time.Second),
			CommandTimeout:      Duration(2 * time.Minute),
			DataTimeout:         Duration(20 * time.Minute),
			MaxAddressesPerHost: 4,
			SourceIP:            "192.0.2.10",
		},
		Queue: Queue{
			MaxLifetime:  Duration(72 * time.Hour),
			RetryInitial: Duration(time.Minute),
			RetryMax:     Duration(2 * time.Hour),
			RetryFactor:  1.5,
			RetryJitter:  0,
			Concurrency:  64,
			PerDomain:    64,
			MaxBatch:     100,
			DrainTimeout: Duration(time.Minute),
			// Not in full.toml: the defaults.
			TrackRetention:      Duration(7 * 24 * time.Hour),
			DelayWarningTime:    Duration(4 * time.Hour),
			DelayWarningDefault: true,
			SpoolSync:           SpoolSyncAuto,
		},
		TLS: TLS{CAFile: filepath.Join(td, "pki/ca.pem")},
		MTASTS: MTASTS{
			FetchTimeout:   Duration(30 * time.Second),
			MaxPolicyBytes: 32768,
			FailureBackoff: Duration(10 * time.Minute),
			HTTPSPort:      8443,
			AllowNetworks:  []string{"127.0.0.0/8", "::1/128"},
		},
		TLSRPT: TLSRPT{RetryInterval: Duration(time.Minute), SendLease: Duration(3 * time.Minute)},
		Admin:  Admin{Listen: "127.0.0.1:0"},
		Log:    Log{Format: "text", Level: "debug"},
		Settings: map[string]string{
			"Sender.EnableMTASTS":     "false",
			"Sender.EnableDANE":       "false", // not in the file: the default stays
			"Controller.EnableTLSRPT": "true",  // likewise
			"TLSRPT.OrganizationName": "Example Org",
			"TLSRPT.MaxDestinations":  "2",
		},
		Domains: []DomainRule{
			{Name: "example.com", TLS: "required-verify"},
			{Name: "xn--bcher-kva.example", TLS: "dane-only"},
		},
		Routes: []Route{
			{
				Domains: []string{"corp.example", "xn--mnchen-3ya.example"}, Hosts: []string{"relay.corp.example", "relay2.corp.example:587"},
				Port: 25, TLS: "required-verify", AuthUser: "gateway", AuthPassword: "pw", AuthMinTLS: "required-verify",
			},
			{Domains: []string{"*"}, Hosts: []string{"192.0.2.25", "2001:db8::25", "[2001:db8::26]:2525"}, Port: 2525, TLS: "opportunistic", AuthMinTLS: "required-verify"},
		},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("full.toml (-want +got):\n%s", diff)
	}
}

// TestExampleIsDefaults keeps mxgate.example.toml true: it must parse to exactly Default(), and document
// every key of the schema.
func TestExampleIsDefaults(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile("testdata/good/example.toml")
	if err != nil {
		t.Fatal(err)
	}
	got, err := Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	// `servers = []` decodes to an empty slice where the default is nil; both mean "none".
	if diff := cmp.Diff(Default(), got, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("example.toml differs from Default() (-want +got):\n%s", diff)
	}
	text := string(data)
	for _, key := range schemaKeys(reflect.TypeFor[Config](), "") {
		if !strings.Contains(text, key) {
			t.Errorf("example.toml does not mention %q", key)
		}
	}
}

// schemaKeys lists how each key of t appears in a TOML file: "[table]", "[[array]]" and "key =".
func schemaKeys(t reflect.Type, table string) []string {
	var out []string
	for i := range t.NumField() {
		f := t.Field(i)
		name := f.Tag.Get("toml")
		full := name
		if table != "" {
			full = table + "." + name
		}
		switch {
		case f.Type.Kind() == reflect.Struct:
			out = append(out, "["+full+"]")
			out = append(out, schemaKeys(f.Type, full)...)
		case f.Type.Kind() == reflect.Slice && f.Type.Elem().Kind() == reflect.Struct:
			out = append(out, "[["+full+"]]")
			out = append(out, schemaKeys(f.Type.Elem(), full)...)
		case f.Type.Kind() == reflect.Map:
			out = append(out, "["+full+"]")
		default:
			out = append(out, name+" =")
		}
	}
	return out
}

func TestSettingsKeysDocumented(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile("testdata/good/example.toml")
	if err != nil {
		t.Fatal(err)
	}
	for name := range Default().Settings {
		if !strings.Contains(string(data), `"`+name+`" =`) {
			t.Errorf("example.toml does not set %q", name)
		}
	}
}

func TestWarnings(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		toml string
		want []string
	}{
		{"defaults", ``, nil},
		{"open relay", `
[smtp]
listen = ":2525"
relay_networks = ["0.0.0.0/0"]`, []string{
			"smtp.relay_networks: 0.0.0.0/0 lets every host that can connect relay mail through this gateway",
			"smtp: listening on :2525 (not loopback) with 0.0.0.0/0 in relay_networks and no [smtp.users]: an open relay for that whole network",
		}},
		{"wide relay on loopback is only the 0/0 warning", `
[smtp]
relay_networks = ["::/0"]`, []string{
			"smtp.relay_networks: ::/0 lets every host that can connect relay mail through this gateway",
		}},
		{"AUTH without TLS on the network", `
[smtp]
listen = "192.0.2.1:587"
users = { app = "pw" }`, []string{
			"smtp.users: AUTH is offered on 192.0.2.1:587 without smtp.tls_cert_file, so passwords cross the network in clear text",
		}},
		{"RFC minimums and lab settings", `
[smtp]
max_recipients = 10
max_line_length = 512
[delivery]
hostname = "localhost"
max_addresses_per_host = 1
[queue]
max_lifetime = "1h"
[mtasts]
https_port = 8443
allow_networks = ["127.0.0.0/8"]
[admin]
listen = "0.0.0.0:8025"
[[route]]
domains = ["*"]
hosts = ["relay.example"]
auth_user = "u"
auth_password = "p"
auth_min_tls = "none"`, []string{
			`delivery.hostname: "localhost" is not a fully qualified domain name; receivers may reject our EHLO`,
			"smtp.max_recipients: 10 is below the 100 recipients RFC 5321 requires a server to accept",
			"smtp.max_line_length: 512 rejects lines RFC 5321 allows (up to 1000 octets)",
			"delivery.max_addresses_per_host: 1; RFC 5321 says to try at least two addresses of a host",
			"queue.retry_max: 4h0m0s is longer than queue.max_lifetime (1h0m0s), so a message gets few retries",
			"mtasts.https_port: policies are fetched from port 8443, not 443; use this only in a lab",
			"mtasts.allow_networks: policy and report HTTPS may reach 127.0.0.0/8; use this only in a lab or test",
			"admin.listen: the API and console are reachable on 0.0.0.0:8025, not only on loopback",
			`route[0]: auth_password may be sent in clear text (auth_min_tls = "none"); use required-verify`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			doc := tt.toml
			if !strings.Contains(doc, "[delivery]") {
				// The default EHLO name is this machine's host name, which may not be fully qualified.
				doc = "[delivery]\nhostname = \"mx.example.com\"\n" + doc
			}
			cfg, err := Parse([]byte(doc))
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, cfg.Warnings()); diff != "" {
				t.Errorf("Warnings() (-want +got):\n%s", diff)
			}
		})
	}
}

func TestRouteForAndDomainTLS(t *testing.T) {
	t.Parallel()
	cfg, err := Parse([]byte(`
[[domain]]
name = "Bücher.example"
tls = "dane-only"

[[route]]
domains = ["corp.example"]
hosts = ["relay.corp.example", "relay2.corp.example:2525", "2001:db8::1"]
port = 587

[[route]]
domains = ["*"]
hosts = ["smarthost.example"]
`))
	if err != nil {
		t.Fatal(err)
	}
	r, ok := cfg.RouteFor(address.MustParseDomain("CORP.example."))
	if !ok || r != &cfg.Routes[0] {
		t.Errorf("RouteFor(corp.example) = %v, %v; want route[0]", r, ok)
	}
	wantAddrs := []string{"relay.corp.example:587", "relay2.corp.example:2525", "[2001:db8::1]:587"}
	if diff := cmp.Diff(wantAddrs, r.Addrs()); diff != "" {
		t.Errorf("Addrs() (-want +got):\n%s", diff)
	}
	// Subdomains are not matched implicitly: they take the "*" route.
	if r, ok := cfg.RouteFor(address.MustParseDomain("sub.corp.example")); !ok || r != &cfg.Routes[1] {
		t.Errorf("RouteFor(sub.corp.example) = %v, %v; want route[1]", r, ok)
	}
	if level, ok := cfg.DomainTLS(address.MustParseDomain("xn--bcher-kva.example")); !ok || level != (tlspolicy.Rule{Level: tlspolicy.LevelDANEOnly}) {
		t.Errorf("DomainTLS(bücher.example) = %q, %v; want dane-only", level, ok)
	}
	if _, ok := cfg.DomainTLS(address.MustParseDomain("example.com")); ok {
		t.Error("DomainTLS(example.com) found a rule; want none")
	}
	if _, ok := Default().RouteFor(address.MustParseDomain("example.com")); ok {
		t.Error("Default().RouteFor found a route; want MX delivery")
	}
}

func TestParsedAccessors(t *testing.T) {
	t.Parallel()
	cfg, err := Parse([]byte(`
[smtp]
relay_networks = ["10.1.2.3/8", "::1/128"]
[dns]
servers = ["192.0.2.53", "[2001:db8::53]:5353"]
[delivery]
source_ip = "2001:db8::10"
[log]
level = "warn"
`))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("::1/128")},
		cfg.SMTP.RelayPrefixes(), cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
		t.Errorf("RelayPrefixes() (-want +got):\n%s", diff)
	}
	wantDNS := []netip.AddrPort{netip.MustParseAddrPort("192.0.2.53:53"), netip.MustParseAddrPort("[2001:db8::53]:5353")}
	if diff := cmp.Diff(wantDNS, cfg.DNS.ServerAddrs(), cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b })); diff != "" {
		t.Errorf("ServerAddrs() (-want +got):\n%s", diff)
	}
	if got, want := cfg.Delivery.SourceAddr(), netip.MustParseAddr("2001:db8::10"); got != want {
		t.Errorf("SourceAddr() = %v, want %v", got, want)
	}
	if got := Default().Delivery.SourceAddr(); got.IsValid() {
		t.Errorf("default SourceAddr() = %v, want the zero Addr", got)
	}
	if got := cfg.Log.SlogLevel().String(); got != "WARN" {
		t.Errorf("SlogLevel() = %s, want WARN", got)
	}
	if cfg.SMTP.StartTLS() {
		t.Error("StartTLS() = true without a certificate")
	}
}

func TestDurationText(t *testing.T) {
	t.Parallel()
	var d Duration
	if err := d.UnmarshalText([]byte("1h30m")); err != nil {
		t.Fatal(err)
	}
	if d.Duration() != 90*time.Minute {
		t.Errorf("got %v, want 1h30m", d.Duration())
	}
	b, err := d.MarshalText()
	if err != nil || string(b) != "1h30m0s" {
		t.Errorf("MarshalText() = %q, %v; want 1h30m0s", b, err)
	}
	if err := d.UnmarshalText([]byte("90")); err == nil {
		t.Error("UnmarshalText(90) succeeded; a unit is required")
	}
}

// RFC 5321 Section 4.5.3.2 (SMTP-14): timeouts are configurable and default to at least the RFC's minimums
// (5 minutes per command, 10 minutes for the reply to the final dot).
func TestDefaultTimeoutsMeetRFCMinimums_SMTP14(t *testing.T) {
	d := Default().Delivery
	if d.CommandTimeout.Duration() < 5*time.Minute || d.DataTimeout.Duration() < 10*time.Minute {
		t.Errorf("delivery timeouts command %v, data %v; want at least 5m and 10m", d.CommandTimeout, d.DataTimeout)
	}
	c, err := Parse([]byte("[delivery]\ncommand_timeout = \"7m\"\ndata_timeout = \"15m\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Delivery.CommandTimeout.Duration() != 7*time.Minute || c.Delivery.DataTimeout.Duration() != 15*time.Minute {
		t.Errorf("configured timeouts = %v, %v; want 7m, 15m", c.Delivery.CommandTimeout, c.Delivery.DataTimeout)
	}
}

// testdataAbs is the absolute path of testdata.
func testdataAbs(t *testing.T) string {
	t.Helper()
	td, err := filepath.Abs("testdata")
	if err != nil {
		t.Fatal(err)
	}
	return td
}

// A host name set in the file is used for the other host name too, instead of the OS host name; both set
// stay as set.
func TestHostnameSetInFileBeatsOSHostname(t *testing.T) {
	for _, tc := range []struct {
		file                string
		wantSMTP, wantDeliv string
	}{
		{"[delivery]\nhostname = \"mx-out.example.net\"\n", "mx-out.example.net", "mx-out.example.net"},
		{"[smtp]\nhostname = \"relay.example.net\"\n", "relay.example.net", "relay.example.net"},
		{"[smtp]\nhostname = \"in.example.net\"\n[delivery]\nhostname = \"out.example.net\"\n", "in.example.net", "out.example.net"},
	} {
		c, err := Parse([]byte(tc.file))
		if err != nil {
			t.Fatalf("%q: %v", tc.file, err)
		}
		if c.SMTP.Hostname != tc.wantSMTP || c.Delivery.Hostname != tc.wantDeliv {
			t.Errorf("%q: smtp.hostname %q, delivery.hostname %q; want %q, %q", tc.file, c.SMTP.Hostname, c.Delivery.Hostname, tc.wantSMTP, tc.wantDeliv)
		}
	}
}
