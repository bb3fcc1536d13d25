// Package demo runs mxgate against a simulated internet (package simnet) and shows, destination by
// destination, how each message left: which MX took it, over what TLS, under which policy, or why it was
// refused. It is what `mxgate demo` runs; it needs no network beyond loopback and leaves nothing behind.
package demo

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/mxgate/mxgate/internal/admin"
	"github.com/mxgate/mxgate/internal/config"
	"github.com/mxgate/mxgate/internal/console"
	"github.com/mxgate/mxgate/internal/daemon"
	"github.com/mxgate/mxgate/internal/delivery"
	"github.com/mxgate/mxgate/internal/simnet"
	"github.com/mxgate/mxgate/internal/testpki"
	"github.com/mxgate/mxgate/internal/tlspolicy"
)

// Options control a demo run.
type Options struct {
	Out io.Writer
	// Keep leaves the gateway and the simulated internet running until ctx is cancelled, and prints the
	// admin URL, the console password and a ready CLI line. KeepReady, when set, is called once they are
	// printed.
	Keep      bool
	KeepReady func()
	// DataDir holds the gateway's data; "" means a temporary directory removed at the end.
	DataDir string
	// Logger receives the gateway's logs; nil discards them.
	Logger *slog.Logger
}

// scenario is one destination of the demo.
type scenario struct {
	domain string
	what   string
	setup  func(n *simnet.Net, cfg *config.Config) error
}

const policyFmt = "version: STSv1\nmode: %s\nmx: %s\nmax_age: 604800\n"

func scenarios() []scenario {
	day := 24 * time.Hour
	mx := func(n *simnet.Net, domain string, o simnet.MXOptions) error {
		o.Domain, o.Host, o.Pref = domain, "mx."+domain, 10
		_, err := n.AddMX(o)
		return err
	}
	sts := func(n *simnet.Net, domain, mode, pattern string) error {
		n.DNS.AddTXT("_mta-sts."+domain, "v=STSv1; id=20261128")
		_, err := n.ServeMTASTSPolicy(domain, fmt.Sprintf(policyFmt, mode, pattern))
		return err
	}
	cert := func(ca *testpki.CA, l testpki.Leaf) *tls.Certificate { c := ca.MustIssue(l); return &c }
	// daneMX adds a signed domain whose MX host presents a certificate PKIX does not trust (from EvilRoot),
	// and publishes at _25._tcp.<mx> the TLSA record of usage, selector and matching type for what
	// match says: the leaf (DANE-EE), the issuing CA (DANE-TA), or another key (a mismatch).
	daneMX := func(n *simnet.Net, domain string, usage uint8, match bool) error {
		host := "mx." + domain
		n.DNS.SetDNSSEC(domain, simnet.Secure)
		r, err := n.AddMX(simnet.MXOptions{Domain: domain, Host: host, Pref: 10, Cert: cert(n.EvilCA, testpki.Leaf{DNSNames: []string{host}})})
		if err != nil {
			return err
		}
		c := r.Leaf()
		switch {
		case usage == 2:
			c = n.EvilCA.Cert
		case !match:
			c = n.TrustedCA.Cert
		}
		n.DNS.AddDANE(host, n.SMTPPort, usage, 1, 1, c)
		return nil
	}
	return []scenario{
		{"plain.example", "no policy, MX without STARTTLS", func(n *simnet.Net, _ *config.Config) error {
			return mx(n, "plain.example", simnet.MXOptions{STARTTLS: simnet.NotOffered})
		}},
		{"tls.example", "no policy, MX with a valid certificate", func(n *simnet.Net, _ *config.Config) error {
			return mx(n, "tls.example", simnet.MXOptions{})
		}},
		{"selfsigned.example", "no policy, MX with an untrusted certificate", func(n *simnet.Net, _ *config.Config) error {
			return mx(n, "selfsigned.example", simnet.MXOptions{Cert: cert(n.EvilCA, testpki.Leaf{DNSNames: []string{"mx.selfsigned.example"}})})
		}},
		{"strict.example", "rule required-verify, MX with an untrusted certificate", func(n *simnet.Net, cfg *config.Config) error {
			cfg.Domains = append(cfg.Domains, config.DomainRule{Name: "strict.example", TLS: "required-verify"})
			return mx(n, "strict.example", simnet.MXOptions{Cert: cert(n.EvilCA, testpki.Leaf{DNSNames: []string{"mx.strict.example"}})})
		}},
		{"enforce.example", "MTA-STS enforce, valid MX", func(n *simnet.Net, _ *config.Config) error {
			if err := mx(n, "enforce.example", simnet.MXOptions{}); err != nil {
				return err
			}
			return sts(n, "enforce.example", "enforce", "mx.enforce.example")
		}},
		{"expired.example", "MTA-STS enforce, expired certificate", func(n *simnet.Net, _ *config.Config) error {
			now := time.Now()
			if err := mx(n, "expired.example", simnet.MXOptions{Cert: cert(n.TrustedCA, testpki.Leaf{DNSNames: []string{"mx.expired.example"}, NotBefore: now.Add(-30 * day), NotAfter: now.Add(-day)})}); err != nil {
				return err
			}
			return sts(n, "expired.example", "enforce", "mx.expired.example")
		}},
		{"wrongname.example", "MTA-STS enforce, certificate for another name", func(n *simnet.Net, _ *config.Config) error {
			if err := mx(n, "wrongname.example", simnet.MXOptions{Cert: cert(n.TrustedCA, testpki.Leaf{DNSNames: []string{"www.wrongname.example"}})}); err != nil {
				return err
			}
			return sts(n, "wrongname.example", "enforce", "mx.wrongname.example")
		}},
		{"nostarttls.example", "MTA-STS enforce, MX without STARTTLS", func(n *simnet.Net, _ *config.Config) error {
			if err := mx(n, "nostarttls.example", simnet.MXOptions{STARTTLS: simnet.NotOffered}); err != nil {
				return err
			}
			return sts(n, "nostarttls.example", "enforce", "mx.nostarttls.example")
		}},
		{"unlisted.example", "MTA-STS enforce, MX not listed in the policy", func(n *simnet.Net, _ *config.Config) error {
			if err := mx(n, "unlisted.example", simnet.MXOptions{}); err != nil {
				return err
			}
			return sts(n, "unlisted.example", "enforce", "mail.unlisted.example")
		}},
		{"testing.example", "MTA-STS testing, untrusted certificate", func(n *simnet.Net, _ *config.Config) error {
			if err := mx(n, "testing.example", simnet.MXOptions{Cert: cert(n.EvilCA, testpki.Leaf{DNSNames: []string{"mx.testing.example"}})}); err != nil {
				return err
			}
			return sts(n, "testing.example", "testing", "mx.testing.example")
		}},
		{"override.example", "MTA-STS enforce, untrusted certificate, rule opportunistic override", func(n *simnet.Net, cfg *config.Config) error {
			cfg.Domains = append(cfg.Domains, config.DomainRule{Name: "override.example", TLS: tlspolicy.LevelOpportunistic, Override: true})
			if err := mx(n, "override.example", simnet.MXOptions{Cert: cert(n.EvilCA, testpki.Leaf{DNSNames: []string{"mx.override.example"}})}); err != nil {
				return err
			}
			return sts(n, "override.example", "enforce", "mx.override.example")
		}},
		{"dane-ee.example", "DANE-EE 3 1 1 matches an untrusted certificate", func(n *simnet.Net, _ *config.Config) error {
			return daneMX(n, "dane-ee.example", 3, true)
		}},
		{"dane-ta.example", "DANE-TA 2 1 1 names the MX's private CA", func(n *simnet.Net, _ *config.Config) error {
			return daneMX(n, "dane-ta.example", 2, true)
		}},
		{"tlsa-mismatch.example", "DANE, TLSA record matches no certificate", func(n *simnet.Net, _ *config.Config) error {
			return daneMX(n, "tlsa-mismatch.example", 3, false)
		}},
		{"bogus.example", "DANE, DNSSEC-bogus TLSA answer", func(n *simnet.Net, _ *config.Config) error {
			if err := daneMX(n, "bogus.example", 3, true); err != nil {
				return err
			}
			n.DNS.SetDNSSEC("_"+fmt.Sprint(n.SMTPPort)+"._tcp.mx.bogus.example", simnet.Bogus)
			return nil
		}},
		{"dane-sts.example", "DANE over a failing MTA-STS enforce policy", func(n *simnet.Net, _ *config.Config) error {
			if err := daneMX(n, "dane-sts.example", 3, true); err != nil {
				return err
			}
			return sts(n, "dane-sts.example", "enforce", "mx.dane-sts.example")
		}},
	}
}

// Run runs the demo.
func Run(ctx context.Context, o Options) error {
	out := o.Out
	if out == nil {
		out = os.Stdout
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	n, err := simnet.New(simnet.Options{})
	if err != nil {
		return fmt.Errorf("demo: simulated internet: %w", err)
	}
	defer n.Close()

	dir := o.DataDir
	if dir == "" {
		dir, err = os.MkdirTemp("", "mxgate-demo-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
	}
	cfg := n.GatewayConfig(dir)
	cfg.SMTP.Hostname = "gw.demo.example"
	cfg.Delivery.Hostname = "gw.demo.example"
	cfg.Delivery.ConnectTimeout = config.Duration(3 * time.Second)
	cfg.Delivery.CommandTimeout = config.Duration(10 * time.Second)
	// DANE applies wherever a domain is signed and publishes TLSA records; the other scenarios are unsigned.
	cfg.Settings["Sender.EnableDANE"] = "true"

	scs := scenarios()
	var stsDomains []string
	for _, sc := range scs {
		if err := sc.setup(n, cfg); err != nil {
			return fmt.Errorf("demo: %s: %w", sc.domain, err)
		}
		if strings.Contains(sc.what, "MTA-STS") {
			stsDomains = append(stsDomains, sc.domain)
		}
		if strings.Contains(sc.what, "DANE") {
			// RFC 8460 Section 4.4: DANE results go to the TLSA base domain, the MX host.
			stsDomains = append(stsDomains, "mx."+sc.domain)
		}
	}
	sinks, err := publishTLSRPT(n, stsDomains)
	if err != nil {
		return fmt.Errorf("demo: TLSRPT endpoints: %w", err)
	}

	var mu sync.Mutex
	events := map[string]delivery.Event{}
	seen := make(chan struct{}, len(scs)*4)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	var consolePassword string
	d, err := daemon.New(ctx, daemon.Options{ConsolePassword: func(pw, _ string) { consolePassword = pw },
		Config: cfg, Logger: log, Roots: n.RootPool(), SMTPListener: ln,
		OnDelivery: func(ev delivery.Event) {
			mu.Lock()
			if _, ok := events[ev.Domain.String()]; !ok {
				events[ev.Domain.String()] = ev
				seen <- struct{}{}
			}
			mu.Unlock()
		},
	})
	if err != nil {
		ln.Close()
		return err
	}
	if err := configureDKIM(ctx, n, d, dir, cfg.SMTP.Hostname); err != nil {
		return fmt.Errorf("demo: DKIM key for reports: %w", err)
	}
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	runErr := make(chan error, 1)
	go func() { runErr <- d.Run(runCtx) }()

	fmt.Fprintf(out, "mxgate demo: gateway on %s, simulated internet on %s (DNS %s)\n\n", ln.Addr(), n.Block, n.DNSAddr)
	for _, sc := range scs {
		if err := send(ctx, ln.Addr().String(), "alice@sender.example", "bob@"+sc.domain, sc.what); err != nil {
			stop()
			<-runErr
			return fmt.Errorf("demo: submitting to %s: %w", sc.domain, err)
		}
	}
	deadline := time.NewTimer(60 * time.Second)
	defer deadline.Stop()
	for i := 0; i < len(scs); i++ {
		select {
		case <-seen:
		case <-deadline.C:
			i = len(scs)
		case <-ctx.Done():
			i = len(scs)
		}
	}

	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "DOMAIN\tSCENARIO\tPOLICY\tMX\tTLS\tOUTCOME\tRESULT TYPE")
	mu.Lock()
	for _, sc := range scs {
		ev, ok := events[sc.domain]
		if !ok {
			fmt.Fprintf(tw, "%s\t%s\t-\t-\t-\tno attempt yet\t-\n", sc.domain, sc.what)
			continue
		}
		r := ev.Result
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", sc.domain, sc.what, dash(ev.Plan), dash(r.RemoteMTA), dash(r.TLS), r.Outcome, dash(string(r.ResultType)))
	}
	mu.Unlock()
	tw.Flush()
	fmt.Fprintln(out, "\nDeferred messages stay queued and are retried; under enforce they are never sent in clear text or to an unlisted MX.")
	fmt.Fprintln(out, "A result type on a delivered row is a TLS failure the session saw but did not enforce (testing mode, opportunistic TLS, an override).")

	fmt.Fprintln(out, "\nTLS reports (RFC 8460) for today so far, as the domains received them:")
	reports, err := sendReports(ctx, n, d, sinks)
	if err != nil {
		fmt.Fprintf(out, "  could not send the reports: %v\n", err)
	} else {
		printReports(out, reports)
	}

	if o.Keep {
		adminURL := "http://" + d.AdminAddr()
		tok, err := admin.ReadToken(admin.TokenPath(dir))
		if err != nil {
			fmt.Fprintf(out, "  could not read the admin token: %v\n", err)
		}
		fmt.Fprintf(out, "\n--keep: the gateway runs until Ctrl-C.\n")
		fmt.Fprintf(out, "  SMTP:     %s\n", ln.Addr())
		fmt.Fprintf(out, "  Console:  %s/  account: %s  password: %s\n", adminURL, console.BootstrapAccount, consolePassword)
		fmt.Fprintf(out, "  CLI:      mxgate --admin %s --token %s status\n", adminURL, tok)
		fmt.Fprintf(out, "  Data:     %s\n", dir)
		if o.KeepReady != nil {
			o.KeepReady()
		}
		<-ctx.Done()
	}
	stop()
	return <-runErr
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func send(ctx context.Context, addr, from, to, subject string) error {
	c, err := smtp.Dial(addr)
	if err != nil {
		return err
	}
	defer c.Close()
	body := fmt.Sprintf("From: %s\r\nTo: %s\r\nSubject: %s\r\nDate: %s\r\nMessage-ID: <%d.%s>\r\n\r\nA message from the mxgate demo.\r\n",
		from, to, subject, time.Now().UTC().Format(time.RFC1123Z), time.Now().UnixNano(), strings.ReplaceAll(from, "@", "."))
	if err := c.SendMail(from, []string{to}, strings.NewReader(body)); err != nil {
		return err
	}
	return c.Quit()
}
