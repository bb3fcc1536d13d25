// Package tlsreport implements the sending side of SMTP TLS Reporting (RFC 8460): it records the result of
// every delivery session, aggregates the results per Policy Domain, policy and UTC day in the state store,
// builds the Section 4 JSON report once a day, and delivers it, gzip-compressed, to each rua destination of
// the domain's _smtp._tls record: by mail through mxgate's own queue (Section 5.3, DKIM-signed) or by HTTPS
// POST (Section 5.4), retrying failed deliveries for up to a day (Section 5.5).
//
// The aggregates, reports and report log live in a Store: the node's SQLite database, or the PostgreSQL
// database a cluster shares, where every node's sessions add up into one report per domain and day and each
// report delivery is leased to one sender at a time (another takes it over when the lease runs out).
//
// It does not receive or parse reports from others, and it never records the sessions that deliver its own
// reports (the queue marks them, RFC 8460 Section 3).
//
// Spec: a report covers [00:00:00Z, next day 00:00:00Z): "end-datetime" is the next day's midnight, which
// makes the Section 5.1 file name's end timestamp exact (RPT-12 accepts it).
package tlsreport
