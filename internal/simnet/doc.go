// Package simnet implements a simulated internet on real loopback sockets for mxgate's integration tests, the
// `mxgate demo` command and the `mxgate bench` load tool: an authoritative DNS server whose zones are built in
// code, SMTP receivers standing in for MX hosts and report sinks, and HTTPS hosts serving MTA-STS policies
// (RFC 8461 Section 3.3) or receiving TLSRPT reports (RFC 8460 Section 3), all with certificates from a test CA.
//
// # Overview
//
// A Net owns one 127.X.Y.0/24 block, chosen at random so that many Nets run side by side in one process and
// across processes (the whole of 127.0.0.0/8 is routed to the loopback interface on Linux). The DNS server
// listens on 127.X.Y.1 (UDP and TCP); every host added to the Net gets the next free address of the block and
// an A record pointing at it. Ports are the real ones (53, 25, 443) when running as root and 10053, 10025 and
// 10443 otherwise; the gateway under test is configured from Net.DNSAddr, Net.SMTPPort and Net.HTTPSPort.
//
//	n, err := simnet.New(simnet.Options{Now: clock.Now})
//	t.Cleanup(func() { n.Close() })
//	mx1, err := n.AddMX(simnet.MXOptions{Domain: "example.com", Host: "mx1.example.com", Pref: 10})
//	n.DNS.AddTXT("_mta-sts.example.com", "v=STSv1; id=20240101T000000")
//	policy, err := n.ServeMTASTSPolicy("example.com", "version: STSv1\r\nmode: enforce\r\n...")
//	// ... run the gateway with n.DNSAddr as its resolver and n.RootPool() as its trust store ...
//	err = mx1.WaitMessages(ctx, 1)
//	got := mx1.Messages()[0] // envelope, data, TLS version and SNI
//
// Test code that must reach a host by name (an HTTP client fetching a policy, a probe dialing an MX) uses
// Net.DialContext or Net.HTTPClient: they resolve names from the zone data directly and map the well-known
// ports 25, 443 and 53 to the Net's ports, so URLs and addresses can be written as on the real internet.
//
// Everything is mutable while running: DNS records and injected failures (SERVFAIL, NXDOMAIN, REFUSED,
// dropped queries), the DNSSEC AD bit per subtree, a receiver's STARTTLS behaviour and certificate, a policy
// host's body, status, headers and delay. Every server records what it saw (DNS queries, SMTP transactions,
// TLS server names, HTTP requests) and offers Wait methods that block on the event itself, never on a timer.
//
// # What it deliberately does not do
//
// The DNS server is not a DNSSEC implementation: it signs nothing, and answers from the status SetDNSSEC (or
// SetSecure) gives a name the way a validating resolver reached over a trusted path would: the AD bit for
// secure names, SERVFAIL with the Extended DNS Error "DNSSEC Bogus" for bogus ones (the records when the query
// sets CD). It serves no wildcards, no delegations and no SOA in
// negative answers. Clocks (Options.Now) only drive certificate validity and recorded timestamps; delays in
// simulated servers use real time.
package simnet
