// Package config implements loading of mxgate.toml, the bootstrap configuration of an mxgate node: listeners,
// data directory, timeouts, limits, the seed for committed settings, per-domain TLS rules and static routes.
//
// Decoding is strict: unknown keys (including keys that differ only in case) are errors, and every error is
// collected with errors.Join and prefixed with its key path, so that `mxgate check-config` can print all of
// them at once. Every value has a default (see Default), so a node runs with no file at all.
//
// Load and Parse read nothing but the file itself; Preflight then checks the files and the directory it
// names, without side effects. TLS levels are tlspolicy.Level values, parsed by
// tlspolicy.ParseLevel like everywhere else in mxgate.
package config

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/mxgate/mxgate/internal/address"
	"github.com/mxgate/mxgate/internal/dnsx"
	"github.com/mxgate/mxgate/internal/tlspolicy"
)

// Config is the parsed content of mxgate.toml. Values are validated by Parse and Load; domain names are stored
// as lower-case A-labels.
type Config struct {
	Node     string            `toml:"node"`     // node name in the cluster registry
	Data     Data              `toml:"data"`     // data directory
	SMTP     SMTP              `toml:"smtp"`     // inbound listener
	DNS      DNS               `toml:"dns"`      // resolver
	Delivery Delivery          `toml:"delivery"` // outbound SMTP client
	Queue    Queue             `toml:"queue"`    // scheduler and retry
	TLS      TLS               `toml:"tls"`      // trust anchors
	MTASTS   MTASTS            `toml:"mtasts"`   // RFC 8461 policy fetching
	TLSRPT   TLSRPT            `toml:"tlsrpt"`   // RFC 8460 report sending
	Admin    Admin             `toml:"admin"`    // HTTP API and console
	Log      Log               `toml:"log"`      // slog output
	Settings map[string]string `toml:"settings"` // seed for the committed settings, canonical (settings.FromTOML)
	Domains  []DomainRule      `toml:"domain"`   // per-domain TLS rules
	Routes   []Route           `toml:"route"`    // static smart-host routes
}

// Data is the [data] table.
type Data struct {
	Dir string `toml:"dir"` // spool and SQLite state; relative paths are relative to the working directory
	// Database is the shared state store of a cluster: a postgres:// URL. Empty: the embedded SQLite database
	// in Dir. The spool and queue index stay in Dir either way.
	Database string `toml:"database"`
}

// SMTP is the [smtp] table: the listener internal mail servers submit to.
type SMTP struct {
	Listen                 string            `toml:"listen"`
	Hostname               string            `toml:"hostname"` // greeting and Received: name, A-labels
	RelayNetworks          []string          `toml:"relay_networks"`
	MaxMessageBytes        int64             `toml:"max_message_bytes"`
	MaxRecipients          int               `toml:"max_recipients"`
	MaxLineLength          int               `toml:"max_line_length"`
	ReadTimeout            Duration          `toml:"read_timeout"`
	WriteTimeout           Duration          `toml:"write_timeout"`
	MaxConnsPerIP          int               `toml:"max_conns_per_ip"`           // 0 = unlimited
	MessagesPerMinutePerIP int               `toml:"messages_per_minute_per_ip"` // 0 = unlimited
	TLSCertFile            string            `toml:"tls_cert_file"`              // with TLSKeyFile: offer STARTTLS
	TLSKeyFile             string            `toml:"tls_key_file"`
	Users                  map[string]string `toml:"users"` // AUTH user name → password
}

// RelayPrefixes returns RelayNetworks parsed and masked. Invalid entries (impossible after Parse) are skipped.
func (s SMTP) RelayPrefixes() []netip.Prefix { return prefixes(s.RelayNetworks) }

// StartTLS reports whether a certificate is configured, so that STARTTLS is offered.
func (s SMTP) StartTLS() bool { return s.TLSCertFile != "" && s.TLSKeyFile != "" }

// DNS is the [dns] table.
type DNS struct {
	Servers []string `toml:"servers"` // "ip" or "ip:port"; empty means /etc/resolv.conf
	Timeout Duration `toml:"timeout"`
	// Validating lists the resolvers ("ip" or "prefix") trusted to validate DNSSEC: only their AD bit makes an
	// answer secure (RFC 7672 Section 2.1.1). Empty means loopback resolvers only.
	Validating []string `toml:"validating"`
	// Cache keeps answers for their TTL (negative answers per RFC 2308, SERVFAIL for a few seconds).
	Cache bool `toml:"cache"`
}

// ValidatingPrefixes returns Validating as prefixes; nil (loopback only) when empty. Invalid entries
// (impossible after Parse) are skipped.
func (d DNS) ValidatingPrefixes() []netip.Prefix {
	if len(d.Validating) == 0 {
		return nil
	}
	var out []netip.Prefix
	for _, s := range d.Validating {
		if p, err := dnsx.ParseValidating([]string{s}); err == nil {
			out = append(out, p...)
		}
	}
	return out
}

// ServerAddrs returns Servers with port 53 where none was given. Invalid entries (impossible after Parse) are
// skipped.
func (d DNS) ServerAddrs() []netip.AddrPort {
	var out []netip.AddrPort
	for _, s := range d.Servers {
		if ap, err := parseDNSServer(s); err == nil {
			out = append(out, ap)
		}
	}
	return out
}

// Delivery is the [delivery] table: the outbound SMTP client.
type Delivery struct {
	Hostname            string   `toml:"hostname"` // EHLO name, A-labels
	Port                int      `toml:"port"`
	ConnectTimeout      Duration `toml:"connect_timeout"`
	CommandTimeout      Duration `toml:"command_timeout"`
	DataTimeout         Duration `toml:"data_timeout"`
	MaxAddressesPerHost int      `toml:"max_addresses_per_host"`
	SourceIP            string   `toml:"source_ip"` // "" = let the kernel choose
}

// SourceAddr returns SourceIP parsed, or the zero Addr when it is not set.
func (d Delivery) SourceAddr() netip.Addr {
	a, _ := netip.ParseAddr(d.SourceIP)
	return a
}

// Queue is the [queue] table.
type Queue struct {
	MaxLifetime  Duration `toml:"max_lifetime"`
	RetryInitial Duration `toml:"retry_initial"`
	RetryMax     Duration `toml:"retry_max"`
	RetryFactor  float64  `toml:"retry_factor"`
	RetryJitter  float64  `toml:"retry_jitter"` // fraction of the delay, 0 <= jitter < 1
	Concurrency  int      `toml:"concurrency"`
	PerDomain    int      `toml:"per_domain"`
	MaxBatch     int      `toml:"max_batch"` // recipients per delivery attempt
	DrainTimeout Duration `toml:"drain_timeout"`
	// TrackRetention is how long delivered and bounced messages stay findable (mxgate trace).
	TrackRetention Duration `toml:"track_retention"`
	// DelayWarningTime is when a delay notice (RFC 3464 Action: delayed) is sent; 0 disables them.
	DelayWarningTime Duration `toml:"delay_warning_time"`
	// DelayWarningDefault: send delay notices for recipients whose sender gave no NOTIFY parameter.
	DelayWarningDefault bool `toml:"delay_warning_default"`
	// SpoolSync is how accepted bodies are made durable: SpoolSyncGroup (one flush of the spool's file
	// system per commit group), SpoolSyncFile (an fsync per body, one of the directory per group), or
	// SpoolSyncAuto (the default: group where the kernel supports it, else file with a warning).
	SpoolSync string `toml:"spool_sync"`
}

// Values of queue.spool_sync.
const (
	SpoolSyncAuto  = "auto"
	SpoolSyncGroup = "group"
	SpoolSyncFile  = "file"
)

// TLS is the [tls] table.
type TLS struct {
	CAFile string `toml:"ca_file"` // extra PEM roots added to the system pool
}

// MTASTS is the [mtasts] table.
type MTASTS struct {
	FetchTimeout   Duration `toml:"fetch_timeout"`
	MaxPolicyBytes int64    `toml:"max_policy_bytes"`
	FailureBackoff Duration `toml:"failure_backoff"`
	HTTPSPort      int      `toml:"https_port"`     // 443 except in labs
	AllowNetworks  []string `toml:"allow_networks"` // private/loopback CIDRs policy HTTPS may reach (labs, tests)
}

// TLSRPT is the [tlsrpt] table: the timing of report sending.
type TLSRPT struct {
	// RetryInterval is how often the report sender looks for due (or taken-over) report deliveries.
	RetryInterval Duration `toml:"retry_interval"`
	// SendLease is how long a node holds a report delivery it attempts; another node takes it over when
	// the outcome is not recorded by then.
	SendLease Duration `toml:"send_lease"`
}

// AllowPrefixes returns AllowNetworks parsed and masked.
func (m MTASTS) AllowPrefixes() []netip.Prefix { return prefixes(m.AllowNetworks) }

// Admin is the [admin] table.
type Admin struct {
	Listen string `toml:"listen"`
	// TLSCertFile and TLSKeyFile, when set (both or neither), serve the API and the console over HTTPS;
	// console cookies are then Secure.
	TLSCertFile string `toml:"tls_cert_file"`
	TLSKeyFile  string `toml:"tls_key_file"`
	// URL is the address the other nodes of a cluster reach this node's admin API at (the node registry);
	// empty means the scheme and address of listen.
	URL string `toml:"url"`
}

// TLS reports whether the admin listener serves HTTPS.
func (a Admin) TLS() bool { return a.TLSCertFile != "" && a.TLSKeyFile != "" }

// Log is the [log] table.
type Log struct {
	Format string `toml:"format"` // "json" or "text"
	Level  string `toml:"level"`  // "debug", "info", "warn" or "error"
}

// SlogLevel returns Level as a slog.Level (info when it is not valid, which Parse prevents).
func (l Log) SlogLevel() slog.Level {
	switch l.Level {
	case "debug":
		return slog.LevelDebug
	case "warn":
		return slog.LevelWarn
	case "error":
		return slog.LevelError
	}
	return slog.LevelInfo
}

// DomainRule is one [[domain]] table: the administrator's explicit TLS level for a recipient domain. The
// level raises the floor set by the domain's published policies; Override makes it replace them.
type DomainRule struct {
	Name     string          `toml:"name"` // A-labels
	TLS      tlspolicy.Level `toml:"tls"`
	Override bool            `toml:"override"`
}

// Rule returns the rule as the TLS decision point takes it.
func (r DomainRule) Rule() tlspolicy.Rule { return tlspolicy.Rule{Level: r.TLS, Override: r.Override} }

// Route is one [[route]] table: mail for Domains goes to Hosts instead of the domains' MX hosts.
type Route struct {
	Domains      []string        `toml:"domains"` // A-labels, or "*" for every domain without a more specific route
	Hosts        []string        `toml:"hosts"`   // "host", "host:port", "ip", "[ipv6]:port"; names in A-labels
	Port         int             `toml:"port"`    // for hosts given without a port
	TLS          tlspolicy.Level `toml:"tls"`
	AuthUser     string          `toml:"auth_user"`
	AuthPassword string          `toml:"auth_password"`
	// AuthMinTLS is the weakest channel AUTH is sent over: required-verify (default: TLS with a verified
	// certificate), required (any TLS) or none (also in clear text). See ValidAuthMinTLS.
	AuthMinTLS tlspolicy.Level `toml:"auth_min_tls"`
}

func (r *Route) setDefaults() {
	*r = Route{Port: 25, TLS: tlspolicy.LevelOpportunistic, AuthMinTLS: tlspolicy.LevelRequiredVerify}
}

// ValidAuthMinTLS reports whether l is a value of [[route]] auth_min_tls.
func ValidAuthMinTLS(l tlspolicy.Level) bool {
	switch l {
	case tlspolicy.LevelRequiredVerify, tlspolicy.LevelRequired, tlspolicy.LevelNone:
		return true
	}
	return false
}

// Addrs returns Hosts as "host:port" dial addresses, with Port where a host has none.
func (r Route) Addrs() []string {
	out := make([]string, 0, len(r.Hosts))
	for _, h := range r.Hosts {
		if _, _, err := net.SplitHostPort(h); err == nil {
			out = append(out, h)
			continue
		}
		out = append(out, net.JoinHostPort(h, strconv.Itoa(r.Port)))
	}
	return out
}

// RouteFor returns the route for domain d: the route naming d exactly, else the "*" route, else false (deliver
// to MX hosts). Subdomains are not matched implicitly.
func (c *Config) RouteFor(d address.Domain) (*Route, bool) {
	var wildcard *Route
	for i := range c.Routes {
		r := &c.Routes[i]
		for _, name := range r.Domains {
			switch name {
			case d.String():
				return r, true
			case "*":
				wildcard = r
			}
		}
	}
	return wildcard, wildcard != nil
}

// DomainTLS returns the administrator's TLS rule for domain d, if a [[domain]] rule names it.
func (c *Config) DomainTLS(d address.Domain) (tlspolicy.Rule, bool) {
	for _, r := range c.Domains {
		if r.Name == d.String() {
			return r.Rule(), true
		}
	}
	return tlspolicy.Rule{}, false
}

// Duration is a time.Duration written in TOML as a string for time.ParseDuration: "90s", "5m", "120h".
type Duration time.Duration

// Duration returns d as a time.Duration.
func (d Duration) Duration() time.Duration { return time.Duration(d) }

// String formats d like time.Duration.
func (d Duration) String() string { return time.Duration(d).String() }

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("invalid duration %q (want a number with a unit, such as \"90s\", \"5m\" or \"120h\")", b)
	}
	*d = Duration(v)
	return nil
}

// Default returns the configuration used when there is no file; Load and Parse start from it. Host names come
// from os.Hostname, falling back to "localhost".
func Default() *Config {
	host := defaultHostname()
	return &Config{
		Node: host,
		Data: Data{Dir: "./mxgate-data"},
		SMTP: SMTP{
			Listen:          "127.0.0.1:2525",
			Hostname:        host,
			RelayNetworks:   []string{"127.0.0.0/8", "::1/128"},
			MaxMessageBytes: 52428800,
			MaxRecipients:   1000,
			MaxLineLength:   2000,
			ReadTimeout:     Duration(5 * time.Minute),
			WriteTimeout:    Duration(5 * time.Minute),
			MaxConnsPerIP:   20,
		},
		DNS: DNS{Timeout: Duration(5 * time.Second), Cache: true},
		Delivery: Delivery{
			Hostname:       host,
			Port:           25,
			ConnectTimeout: Duration(30 * time.Second),
			CommandTimeout: Duration(5 * time.Minute),
			DataTimeout:    Duration(10 * time.Minute),
			// RFC 5321 Section 5.1: a client SHOULD try at least two addresses of a host.
			MaxAddressesPerHost: 2,
		},
		Queue: Queue{
			MaxLifetime:  Duration(120 * time.Hour),
			RetryInitial: Duration(5 * time.Minute),
			RetryMax:     Duration(4 * time.Hour),
			RetryFactor:  2.0,
			RetryJitter:  0.2,
			Concurrency:  16,
			PerDomain:    2,
			MaxBatch:     50,
			DrainTimeout: Duration(30 * time.Second),
			// A week, like the logs most sites keep at hand.
			TrackRetention: Duration(7 * 24 * time.Hour),
			// Sendmail's queuewarn default (Postfix's delay_warning_time is off unless set).
			DelayWarningTime:    Duration(4 * time.Hour),
			DelayWarningDefault: true,
			SpoolSync:           SpoolSyncAuto,
		},
		MTASTS: MTASTS{
			FetchTimeout:   Duration(60 * time.Second),
			MaxPolicyBytes: 65536,
			FailureBackoff: Duration(5 * time.Minute),
			HTTPSPort:      443,
		},
		TLSRPT: TLSRPT{
			RetryInterval: Duration(5 * time.Minute),
			SendLease:     Duration(10 * time.Minute),
		},
		Admin: Admin{Listen: "127.0.0.1:8025"},
		Log:   Log{Format: "json", Level: "info"},
		Settings: map[string]string{
			"Sender.EnableMTASTS":     "true",
			"Sender.EnableDANE":       "false",
			"Controller.EnableTLSRPT": "true",
		},
	}
}

func defaultHostname() string {
	h, err := os.Hostname()
	if err != nil {
		return "localhost"
	}
	d, err := address.ParseDomain(h)
	if err != nil {
		return "localhost"
	}
	return d.String()
}

// Load reads and parses the file at path; path "" gives Default(). Relative file and directory names in the
// file are resolved against the file's directory (resolvePaths). Errors are joined (errors.Join), one per
// problem, each prefixed with its key path; callers print the file name in front.
func Load(path string) (*Config, error) {
	if path == "" {
		return Default(), nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	c, err := Parse(data)
	if err != nil {
		return nil, err
	}
	dir, err := filepath.Abs(filepath.Dir(path))
	if err != nil {
		return nil, err
	}
	c.resolvePaths(data, dir)
	return c, nil
}

// Parse parses and validates mxgate.toml content over Default(). On error the Config is nil and the error
// joins every problem found.
func Parse(data []byte) (*Config, error) {
	c := Default()
	var errs []error
	failed := decode(data, c, &errs)
	if failed == nil { // syntax error: nothing else can be said
		return nil, errors.Join(errs...)
	}
	validate(c, failed, &errs)
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return c, nil
}

func prefixes(list []string) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range list {
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p.Masked())
		}
	}
	return out
}

func parseDNSServer(s string) (netip.AddrPort, error) {
	if a, err := netip.ParseAddr(s); err == nil {
		return netip.AddrPortFrom(a, 53), nil
	}
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return netip.AddrPort{}, errors.New(`want "ip" or "ip:port"`)
	}
	if ap.Port() == 0 {
		return netip.AddrPort{}, errors.New("port 0")
	}
	return ap, nil
}

// domainErr strips the package prefix from an address.ParseDomain error for use after a key path.
func domainErr(err error) string {
	return strings.TrimPrefix(err.Error(), address.ErrSyntax.Error()+": ")
}
