package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"
	"github.com/mxgate/mxgate/internal/address"
	"github.com/mxgate/mxgate/internal/dnsx"
	"github.com/mxgate/mxgate/internal/tlspolicy"
)

type checker struct {
	errs   *[]error
	failed failedSet // values that failed to decode: they hold defaults, so checks that involve them are skipped
}

// ok reports whether all the keys decoded; checks that relate keys to each other, or that require a key,
// run only then.
func (v checker) ok(keys ...string) bool {
	for _, k := range keys {
		if v.failed[k] {
			return false
		}
	}
	return true
}

func (v checker) errorf(key, format string, args ...any) {
	*v.errs = append(*v.errs, fmt.Errorf("%s: %s", key, fmt.Sprintf(format, args...)))
}

func (v checker) notEmpty(key, s string) {
	if strings.TrimSpace(s) == "" {
		v.errorf(key, "must not be empty")
	}
}

func (v checker) positive(key string, n int64) {
	if n <= 0 {
		v.errorf(key, "must be positive, got %d", n)
	}
}

func (v checker) notNegative(key string, n int) {
	if n < 0 {
		v.errorf(key, "must not be negative, got %d", n)
	}
}

func (v checker) positiveDuration(key string, d Duration) {
	if d <= 0 {
		v.errorf(key, "must be positive, got %s", d)
	}
}

func (v checker) port(key string, p int) {
	if p < 1 || p > 65535 {
		v.errorf(key, "must be a port from 1 to 65535, got %d", p)
	}
}

func (v checker) tlsLevel(key string, s tlspolicy.Level) {
	if s == "" {
		v.errorf(key, "required (want %s)", tlspolicy.LevelNames)
		return
	}
	if _, err := tlspolicy.ParseLevel(string(s)); err != nil {
		v.errorf(key, "unknown level %q (want %s)", s, tlspolicy.LevelNames)
	}
}

// listen checks a listener address. Port 0 (pick a free port) is allowed for tests.
func (v checker) listen(key, addr string) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		v.errorf(key, "invalid address %q: %s", addr, addrErrText(err))
		return
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		v.errorf(key, "invalid address %q: port must be a number from 0 to 65535", addr)
		return
	}
	if host == "" {
		return
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return
	}
	if _, err := address.ParseDomain(host); err != nil {
		v.errorf(key, "invalid address %q: host %q is neither an IP address nor a host name", addr, host)
	}
}

// hostname checks a host name and stores it in A-label form.
func (v checker) hostname(key string, s *string) {
	if *s == "" {
		v.errorf(key, "must not be empty")
		return
	}
	d, err := address.ParseDomain(*s)
	if err != nil {
		v.errorf(key, "%s", domainErr(err))
		return
	}
	*s = d.String()
}

func (v checker) cidrs(key string, list []string) {
	for i, s := range list {
		k := fmt.Sprintf("%s[%d]", key, i)
		if _, err := netip.ParsePrefix(s); err != nil {
			if a, aerr := netip.ParseAddr(s); aerr == nil {
				v.errorf(k, "%q is an address, not a network (write \"%s/%d\" for that address alone)", s, s, a.BitLen())
				continue
			}
			reason := err.Error()
			if _, r, ok := strings.Cut(reason, "): "); ok {
				reason = r
			}
			v.errorf(k, "invalid CIDR %q: %s", s, reason)
		}
	}
}

func addrErrText(err error) string {
	var ae *net.AddrError
	if errors.As(err, &ae) {
		return ae.Err
	}
	return err.Error()
}

// validate checks c and normalises domain names to A-labels. Parts whose decoding failed are skipped.
func validate(c *Config, failed failedSet, errs *[]error) {
	v := checker{errs: errs, failed: failed}
	if !failed["node"] {
		v.notEmpty("node", c.Node)
	}
	if !failed["data"] {
		v.notEmpty("data.dir", c.Data.Dir)
		if err := checkDatabase(c.Data.Database); err != nil {
			v.errorf("data.database", "%s", err)
		}
	}
	if !failed["smtp"] {
		v.smtp(&c.SMTP)
	}
	if !failed["dns"] {
		for i, s := range c.DNS.Servers {
			if _, err := parseDNSServer(s); err != nil {
				v.errorf(fmt.Sprintf("dns.servers[%d]", i), "invalid server %q: %s", s, err)
			}
		}
		v.positiveDuration("dns.timeout", c.DNS.Timeout)
		for i, s := range c.DNS.Validating {
			if _, err := dnsx.ParseValidating([]string{s}); err != nil {
				v.errorf(fmt.Sprintf("dns.validating[%d]", i), "invalid resolver %q: want an IP address or prefix", s)
			}
		}
	}
	if !failed["delivery"] {
		d := &c.Delivery
		v.hostname("delivery.hostname", &d.Hostname)
		v.port("delivery.port", d.Port)
		v.positiveDuration("delivery.connect_timeout", d.ConnectTimeout)
		v.positiveDuration("delivery.command_timeout", d.CommandTimeout)
		v.positiveDuration("delivery.data_timeout", d.DataTimeout)
		v.positive("delivery.max_addresses_per_host", int64(d.MaxAddressesPerHost))
		if d.SourceIP != "" {
			if _, err := netip.ParseAddr(d.SourceIP); err != nil {
				v.errorf("delivery.source_ip", "invalid IP address %q", d.SourceIP)
			}
		}
	}
	if !failed["queue"] {
		v.queue(&c.Queue)
	}
	if !failed["mtasts"] {
		m := &c.MTASTS
		v.positiveDuration("mtasts.fetch_timeout", m.FetchTimeout)
		v.positive("mtasts.max_policy_bytes", m.MaxPolicyBytes)
		v.positiveDuration("mtasts.failure_backoff", m.FailureBackoff)
		v.port("mtasts.https_port", m.HTTPSPort)
		v.cidrs("mtasts.allow_networks", m.AllowNetworks)
	}
	if !failed["tlsrpt"] {
		v.positiveDuration("tlsrpt.retry_interval", c.TLSRPT.RetryInterval)
		v.positiveDuration("tlsrpt.send_lease", c.TLSRPT.SendLease)
	}
	if !failed["admin"] {
		v.listen("admin.listen", c.Admin.Listen)
		switch {
		case !v.ok("admin.tls_cert_file", "admin.tls_key_file"):
		case c.Admin.TLSCertFile != "" && c.Admin.TLSKeyFile == "":
			v.errorf("admin.tls_key_file", "required when admin.tls_cert_file is set")
		case c.Admin.TLSCertFile == "" && c.Admin.TLSKeyFile != "":
			v.errorf("admin.tls_cert_file", "required when admin.tls_key_file is set")
		}
		if err := checkAdminURL(c.Admin.URL); err != nil {
			v.errorf("admin.url", "%v", err)
		}
	}
	if !failed["log"] {
		if f := c.Log.Format; f != "json" && f != "text" {
			v.errorf("log.format", "unknown format %q (want json, text)", f)
		}
		if l := c.Log.Level; !slices.Contains([]string{"debug", "info", "warn", "error"}, l) {
			v.errorf("log.level", "unknown level %q (want debug, info, warn, error)", l)
		}
	}
	if !failed["domain"] {
		v.domains(c.Domains)
	}
	if !failed["route"] {
		v.routes(c.Routes)
	}
}

func (v checker) smtp(s *SMTP) {
	v.listen("smtp.listen", s.Listen)
	v.hostname("smtp.hostname", &s.Hostname)
	v.cidrs("smtp.relay_networks", s.RelayNetworks)
	v.positive("smtp.max_message_bytes", s.MaxMessageBytes)
	v.positive("smtp.max_recipients", int64(s.MaxRecipients))
	v.positive("smtp.max_line_length", int64(s.MaxLineLength))
	v.positiveDuration("smtp.read_timeout", s.ReadTimeout)
	v.positiveDuration("smtp.write_timeout", s.WriteTimeout)
	v.notNegative("smtp.max_conns_per_ip", s.MaxConnsPerIP)
	v.notNegative("smtp.messages_per_minute_per_ip", s.MessagesPerMinutePerIP)
	switch {
	case !v.ok("smtp.tls_cert_file", "smtp.tls_key_file"):
	case s.TLSCertFile != "" && s.TLSKeyFile == "":
		v.errorf("smtp.tls_key_file", "required when smtp.tls_cert_file is set")
	case s.TLSCertFile == "" && s.TLSKeyFile != "":
		v.errorf("smtp.tls_cert_file", "required when smtp.tls_key_file is set")
	}
	users := make([]string, 0, len(s.Users))
	for name := range s.Users {
		users = append(users, name)
	}
	slices.Sort(users)
	for _, name := range users {
		key := toml.Key{"smtp", "users", name}.String()
		switch {
		case strings.TrimSpace(name) == "":
			v.errorf(key, "empty user name")
		case s.Users[name] == "":
			v.errorf(key, "empty password")
		}
	}
}

func (v checker) queue(q *Queue) {
	v.positiveDuration("queue.max_lifetime", q.MaxLifetime)
	v.positiveDuration("queue.retry_initial", q.RetryInitial)
	v.positiveDuration("queue.retry_max", q.RetryMax)
	if v.ok("queue.retry_initial", "queue.retry_max") && q.RetryInitial > 0 && q.RetryMax > 0 &&
		q.RetryInitial > q.RetryMax {
		v.errorf("queue.retry_initial", "%s is longer than queue.retry_max (%s)", q.RetryInitial, q.RetryMax)
	}
	if q.RetryFactor < 1 {
		v.errorf("queue.retry_factor", "must be at least 1, got %g", q.RetryFactor)
	}
	if q.RetryJitter < 0 || q.RetryJitter >= 1 {
		v.errorf("queue.retry_jitter", "must be at least 0 and less than 1, got %g", q.RetryJitter)
	}
	v.positive("queue.concurrency", int64(q.Concurrency))
	v.positive("queue.per_domain", int64(q.PerDomain))
	if v.ok("queue.concurrency", "queue.per_domain") && q.Concurrency > 0 && q.PerDomain > q.Concurrency {
		v.errorf("queue.per_domain", "%d is more than queue.concurrency (%d)", q.PerDomain, q.Concurrency)
	}
	v.positive("queue.max_batch", int64(q.MaxBatch))
	switch q.SpoolSync {
	case SpoolSyncAuto, SpoolSyncGroup, SpoolSyncFile:
	default:
		v.errorf("queue.spool_sync", "unknown value %q (want %q, %q or %q)", q.SpoolSync, SpoolSyncAuto, SpoolSyncGroup, SpoolSyncFile)
	}
	v.positiveDuration("queue.drain_timeout", q.DrainTimeout)
	v.positiveDuration("queue.track_retention", q.TrackRetention)
	if q.DelayWarningTime < 0 {
		v.errorf("queue.delay_warning_time", "must not be negative (0 turns delay notices off), got %s", q.DelayWarningTime)
	}
}

func (v checker) domains(rules []DomainRule) {
	seen := map[string]int{}
	for i := range rules {
		path := fmt.Sprintf("domain[%d]", i)
		if !v.ok(path) {
			continue
		}
		r := &rules[i]
		switch d, err := address.ParseDomain(r.Name); {
		case !v.ok(path + ".name"): // reported by the decoder
		case r.Name == "":
			v.errorf(path+".name", "required")
		case err != nil:
			v.errorf(path+".name", "%s", domainErr(err))
		default:
			written := r.Name
			r.Name = d.String()
			if j, dup := seen[r.Name]; dup {
				v.errorf(path+".name", "%s is already the name of domain[%d]", spelled(written, r.Name), j)
			} else {
				seen[r.Name] = i
			}
		}
		if v.ok(path + ".tls") {
			v.tlsLevel(path+".tls", r.TLS)
		}
	}
}

func (v checker) routes(routes []Route) {
	routed := map[string]int{} // domain or "*" → route index
	for i := range routes {
		path := fmt.Sprintf("route[%d]", i)
		if !v.ok(path) {
			continue
		}
		r := &routes[i]
		if v.ok(path+".domains") && len(r.Domains) == 0 {
			v.errorf(path+".domains", "at least one domain is required (\"*\" for every domain)")
		}
		for j, name := range r.Domains {
			key := fmt.Sprintf("%s.domains[%d]", path, j)
			orig := name
			if name != "*" {
				d, err := address.ParseDomain(name)
				if err != nil {
					v.errorf(key, "%s", domainErr(err))
					continue
				}
				name = d.String()
				r.Domains[j] = name
			}
			// A domain in two routes would make the choice depend on file order.
			if k, dup := routed[name]; dup {
				v.errorf(key, "%s is already routed by route[%d]", spelled(orig, name), k)
				continue
			}
			routed[name] = i
		}
		if v.ok(path+".hosts") && len(r.Hosts) == 0 {
			v.errorf(path+".hosts", "at least one host is required")
		}
		for j, h := range r.Hosts {
			n, err := parseRouteHost(h)
			if err != nil {
				v.errorf(fmt.Sprintf("%s.hosts[%d]", path, j), "invalid host %q: %s", h, err)
				continue
			}
			r.Hosts[j] = n
		}
		v.port(path+".port", r.Port)
		if v.ok(path + ".tls") {
			v.tlsLevel(path+".tls", r.TLS)
		}
		switch {
		case !v.ok(path+".auth_user", path+".auth_password"):
		case r.AuthUser != "" && r.AuthPassword == "":
			v.errorf(path+".auth_password", "required when auth_user is set")
		case r.AuthUser == "" && r.AuthPassword != "":
			v.errorf(path+".auth_user", "required when auth_password is set")
		}
		switch {
		case !v.ok(path + ".auth_min_tls"):
		case !ValidAuthMinTLS(r.AuthMinTLS):
			v.errorf(path+".auth_min_tls", "unknown value %q (want required-verify, required or none)", r.AuthMinTLS)
		case r.AuthUser != "" && r.TLS == tlspolicy.LevelNone && r.AuthMinTLS != tlspolicy.LevelNone:
			// Every delivery would be deferred: AUTH waits for a TLS session that tls = "none" never starts.
			v.errorf(path+".auth_min_tls", "%q needs TLS, but the route's tls is \"none\"; raise tls or set auth_min_tls = \"none\"", r.AuthMinTLS)
		}
	}
}

// spelled quotes a domain as written, adding its canonical form when that differs.
func spelled(written, canonical string) string {
	if written == canonical {
		return strconv.Quote(canonical)
	}
	return fmt.Sprintf("%q (%s)", written, canonical)
}

// parseRouteHost accepts "host", "host:port", "ip" (IPv6 bare) and "[ipv6]:port"; it returns the host in
// canonical form (A-labels, canonical IP text) with the port kept when one was given.
func parseRouteHost(s string) (string, error) {
	if a, err := netip.ParseAddr(s); err == nil {
		return a.String(), nil
	}
	host, port := s, ""
	if strings.ContainsAny(s, ":[]") {
		h, p, err := net.SplitHostPort(s)
		if err != nil {
			return "", errors.New(addrErrText(err))
		}
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return "", errors.New("port must be a number from 1 to 65535")
		}
		host, port = h, p
	}
	join := func(h string) string {
		if port == "" {
			return h
		}
		return net.JoinHostPort(h, port)
	}
	if a, err := netip.ParseAddr(host); err == nil {
		return join(a.String()), nil
	}
	d, err := address.ParseDomain(host)
	if err != nil {
		return "", errors.New(domainErr(err))
	}
	return join(d.String()), nil
}

// Warnings returns things that are legal but risky, one sentence each, starting with the key path. Call it
// on a Config that Parse or Load returned.
func (c *Config) Warnings() []string {
	var w []string
	add := func(format string, args ...any) { w = append(w, fmt.Sprintf(format, args...)) }

	if !strings.Contains(c.Delivery.Hostname, ".") {
		// RFC 5321 Section 4.1.1.1: the EHLO argument is the client's fully-qualified domain name.
		add("delivery.hostname: %q is not a fully qualified domain name; receivers may reject our EHLO", c.Delivery.Hostname)
	}
	relay := c.SMTP.RelayPrefixes()
	for _, p := range relay {
		if p.Bits() == 0 {
			add("smtp.relay_networks: %s lets every host that can connect relay mail through this gateway", p)
		}
	}
	smtpPublic := !isLoopbackListen(c.SMTP.Listen)
	if smtpPublic && len(c.SMTP.Users) == 0 {
		for _, p := range relay {
			if (p.Addr().Is4() && p.Bits() < 8) || (p.Addr().Is6() && p.Bits() < 16) {
				add("smtp: listening on %s (not loopback) with %s in relay_networks and no [smtp.users]: "+
					"an open relay for that whole network", c.SMTP.Listen, p)
			}
		}
	}
	if smtpPublic && len(c.SMTP.Users) > 0 && !c.SMTP.StartTLS() {
		add("smtp.users: AUTH is offered on %s without smtp.tls_cert_file, so passwords cross the network in clear text",
			c.SMTP.Listen)
	}
	if c.SMTP.MaxRecipients < 100 {
		// RFC 5321 Section 4.5.3.1.8: the minimum number of recipients that MUST be buffered is 100.
		add("smtp.max_recipients: %d is below the 100 recipients RFC 5321 requires a server to accept", c.SMTP.MaxRecipients)
	}
	if c.SMTP.MaxLineLength < 1000 {
		// RFC 5321 Section 4.5.3.1.6: a text line may be 1000 octets including CRLF.
		add("smtp.max_line_length: %d rejects lines RFC 5321 allows (up to 1000 octets)", c.SMTP.MaxLineLength)
	}
	if c.Delivery.MaxAddressesPerHost < 2 {
		// RFC 5321 Section 5.1: the client SHOULD try at least two addresses.
		add("delivery.max_addresses_per_host: %d; RFC 5321 says to try at least two addresses of a host", c.Delivery.MaxAddressesPerHost)
	}
	if c.Queue.RetryMax > c.Queue.MaxLifetime {
		add("queue.retry_max: %s is longer than queue.max_lifetime (%s), so a message gets few retries", c.Queue.RetryMax, c.Queue.MaxLifetime)
	}
	if c.MTASTS.HTTPSPort != 443 {
		// RFC 8461 Section 3.3: the policy is fetched over HTTPS from the default port.
		add("mtasts.https_port: policies are fetched from port %d, not 443; use this only in a lab", c.MTASTS.HTTPSPort)
	}
	if len(c.MTASTS.AllowNetworks) > 0 {
		add("mtasts.allow_networks: policy and report HTTPS may reach %s; use this only in a lab or test",
			strings.Join(c.MTASTS.AllowNetworks, ", "))
	}
	if !isLoopbackListen(c.Admin.Listen) {
		add("admin.listen: the API and console are reachable on %s, not only on loopback", c.Admin.Listen)
	}
	for i, r := range c.Routes {
		switch {
		case r.AuthUser == "":
		case r.AuthMinTLS == tlspolicy.LevelNone:
			add("route[%d]: auth_password may be sent in clear text (auth_min_tls = \"none\"); use required-verify", i)
		case r.AuthMinTLS == tlspolicy.LevelRequired:
			add("route[%d]: auth_password may be sent to a relay whose certificate is not verified (auth_min_tls = \"required\"); use required-verify", i)
		}
	}
	return w
}

func isLoopbackListen(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsLoopback()
}

// checkDatabase checks the [data] database key: empty (the embedded SQLite database) or a PostgreSQL URL,
// postgres://user:password@host:port/dbname?sslmode=... The server is not contacted here.
func checkDatabase(dsn string) error {
	if dsn == "" {
		return nil
	}
	u, err := url.Parse(dsn)
	if err != nil {
		return fmt.Errorf("invalid URL: %s", urlErrText(err))
	}
	if u.Scheme != "postgres" && u.Scheme != "postgresql" {
		return fmt.Errorf("want a postgres://user:password@host:port/dbname URL (or nothing, for the embedded SQLite database), not scheme %q", u.Scheme)
	}
	if u.Host == "" && u.Query().Get("host") == "" {
		return errors.New("the URL names no host (postgres://user:password@host:port/dbname)")
	}
	if strings.Trim(u.Path, "/") == "" {
		return errors.New("the URL names no database (postgres://user:password@host:port/dbname)")
	}
	return nil
}

// urlErrText is a url.Parse error without the URL itself, which may hold a password.
func urlErrText(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err.Error()
	}
	return "unparsable"
}

// checkAdminURL checks the [admin] url key: empty, or the http(s) URL of the admin listener as other nodes
// reach it, with no path beyond "/".
func checkAdminURL(s string) error {
	if s == "" {
		return nil
	}
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("invalid URL: %s", urlErrText(err))
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return fmt.Errorf("want an http:// or https:// URL such as https://mx1.example.com:8025, not %q", s)
	case u.Host == "":
		return fmt.Errorf("the URL %q names no host", s)
	case u.Path != "" && u.Path != "/", u.RawQuery != "", u.User != nil:
		return fmt.Errorf("the URL %q must name only a scheme, a host and a port", s)
	}
	return nil
}
