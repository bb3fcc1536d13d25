// Package diag implements mxgate's operator diagnostics for MTA-STS (RFC 8461) and DANE (RFC 7672), run
// locally by the command line rather than through the daemon: LookupSTS shows what a domain publishes (the _mta-sts TXT records,
// the policy as fetched, the policy host's certificate, and which live MX hosts the policy covers), and
// TestMX probes each MX host the way delivery would (EHLO, STARTTLS, handshake with SNI, certificate
// verification) and says what an enforced policy would decide for it.
//
// Every verdict comes from the packages delivery itself uses: mtasts for records, policies and matching,
// mx for MX resolution, and tlspolicy for the decision (a Plan built from the fetched policy) and for
// certificate verification, so a diagnosis cannot drift from what the gateway does. Failures are named by
// their RFC 8460 result types.
//
// LookupDANE and TestDANE do the same for DANE (RFC 7672): the DNSSEC status of the MX RRset, each host's
// TLSA records at its base domain, and the Plan's verdict on the certificate the host presents.
//
// It deliberately does not use or change the policy cache (it always asks DNS and the policy host afresh),
// and never sends MAIL or any message (every session ends with QUIT after EHLO).
package diag
