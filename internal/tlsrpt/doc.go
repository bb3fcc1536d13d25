// Package tlsrpt implements the pure parts of SMTP TLS Reporting (RFC 8460,
// https://www.rfc-editor.org/rfc/rfc8460): the result-type and policy-type vocabulary, the _smtp._tls TXT
// record, and the JSON report types.
//
// It does not record sessions, look anything up or send reports: package tlsreport does that.
package tlsrpt
