package tlsreport

import (
	"bytes"
	"context"
	"crypto"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/emersion/go-message"
	"github.com/emersion/go-msgauth/dkim"

	"github.com/mxgate/mxgate/internal/address"
	"github.com/mxgate/mxgate/internal/queue"
	"github.com/mxgate/mxgate/internal/tlsrpt"
)

// reportMeta is what the mail headers and file name say about a report; it must agree with the JSON
// (RFC 8460 Section 5.6, RPT-37).
type reportMeta struct {
	domain, submitter, reportID string
	start, end                  time.Time
	uniqueID                    string
}

// ErrHeader is wrapped when a value would be unsafe in a mail header.
var ErrHeader = errors.New("tlsreport: unsafe header value")

// check refuses values that could inject header fields or break the Subject's msg-id.
func (m reportMeta) check() error {
	if _, err := address.ParseDomain(m.domain); err != nil || m.domain != strings.ToLower(m.domain) {
		return fmt.Errorf("%w: policy domain %q", ErrHeader, m.domain)
	}
	if _, err := address.ParseDomain(m.submitter); err != nil {
		return fmt.Errorf("%w: submitter %q", ErrHeader, m.submitter)
	}
	left, right, ok := strings.Cut(m.reportID, "@")
	if !ok || left == "" || right == "" || !isDotAtom(left) || !isDotAtom(right) {
		return fmt.Errorf("%w: report-id %q", ErrHeader, m.reportID)
	}
	return nil
}

// isDotAtom checks RFC 5322 dot-atom-text, the form of msg-id halves (and free of CR, LF, "<", ">").
func isDotAtom(s string) bool {
	if s == "" || s[0] == '.' || s[len(s)-1] == '.' || strings.Contains(s, "..") {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.':
		case strings.IndexByte("!#$%&'*+-/=?^_`{|}~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// sendMail builds the report message for one mailto: destination and submits it to the queue.
func (r *Reporter) sendMail(ctx context.Context, c config, m reportMeta, rcpt string, gz []byte) (string, error) {
	if r.Queue == nil {
		return "", fmt.Errorf("%w: Queue: not set", ErrConfig)
	}
	to, err := address.ParseAddress(smtpAddress(rcpt))
	if err != nil {
		return "", fmt.Errorf("rua recipient: %w", err)
	}
	msg, err := r.composeMail(c, m, rcpt, gz)
	if err != nil {
		return "", err
	}
	env := queue.Envelope{
		// Spec: RFC 8460 does not mandate a null reverse path. We use the configured report sender, so that
		// receivers that refuse <> for non-DSN mail still take reports; bounce storms cannot happen because
		// the queue sends bounces of Report messages to the configured report bounce address, never back
		// into reporting (RPT-36, RPT-39).
		From:       c.sender,
		Recipients: []queue.Recipient{{Addr: to}},
		Report:     true,
	}
	id, err := r.Queue.Submit(ctx, env, bytes.NewReader(msg))
	if err != nil {
		return "", fmt.Errorf("submit to queue: %w", err)
	}
	return id, nil
}

// smtpAddress quotes the local part when it is not a dot-atom (a decoded rua such as "a,b@r.test").
func smtpAddress(a string) string {
	at := strings.LastIndexByte(a, '@')
	if at < 0 || isDotAtom(a[:at]) {
		return a
	}
	return `"` + a[:at] + `"` + a[at:]
}

// composeMail writes the RFC 8460 Section 5.3 message: multipart/report; report-type="tlsrpt", a text part
// for people and the gzipped report as an application/tlsrpt+gzip attachment, DKIM-signed (Section 3).
func (r *Reporter) composeMail(c config, m reportMeta, rcpt string, gz []byte) ([]byte, error) {
	if err := m.check(); err != nil {
		return nil, err
	}
	if strings.ContainsAny(rcpt, "\r\n") {
		return nil, fmt.Errorf("%w: recipient %q", ErrHeader, rcpt)
	}
	now := r.now()
	mid, err := r.random(12)
	if err != nil {
		return nil, err
	}
	var h message.Header
	h.Set("From", c.from)
	h.Set("To", smtpAddress(rcpt))
	h.Set("Date", now.Format(time.RFC1123Z))
	// Fields whose RFC spelling go-message's key canonicalisation would change are added raw; their values
	// were checked above and hold no CR or LF.
	addRaw := func(k, v string) { h.AddRaw([]byte(k + ": " + v + "\r\n")) }
	addRaw("Message-ID", "<"+mid+"@"+c.submitter+">")
	// RFC 8460 Section 5.3: Subject "Report Domain: <domain> Submitter: <submitter> Report-ID: <msg-id>" (RPT-30).
	h.Set("Subject", fmt.Sprintf("Report Domain: %s Submitter: %s Report-ID: <%s>", m.domain, m.submitter, m.reportID))
	// RFC 8460 Section 5.3: the TLS-Report-Domain and TLS-Report-Submitter header fields (RPT-29).
	addRaw("TLS-Report-Domain", m.domain)
	addRaw("TLS-Report-Submitter", m.submitter)
	addRaw("MIME-Version", "1.0")
	h.Set("Auto-Submitted", "auto-generated")
	// RFC 8460 Section 5.3: multipart/report with report-type="tlsrpt" (RPT-28).
	h.SetContentType("multipart/report", map[string]string{"report-type": "tlsrpt"})

	var buf bytes.Buffer
	w, err := message.CreateWriter(&buf, h)
	if err != nil {
		return nil, fmt.Errorf("tlsreport: mail: %w", err)
	}
	var th message.Header
	th.SetContentType("text/plain", map[string]string{"charset": "utf-8"})
	th.Set("Content-Transfer-Encoding", "quoted-printable")
	tw, err := w.CreatePart(th)
	if err != nil {
		return nil, fmt.Errorf("tlsreport: mail: %w", err)
	}
	fmt.Fprintf(tw, "This is an aggregate TLS report (RFC 8460) from %s.\r\n\r\n"+
		"Policy domain: %s\r\nSubmitter: %s\r\nReport-ID: %s\r\nPeriod: %s to %s\r\n\r\n"+
		"The report is attached as gzip-compressed JSON.\r\n",
		orDefault(r.Org, m.submitter), m.domain, m.submitter, m.reportID,
		m.start.UTC().Format(time.RFC3339), m.end.UTC().Format(time.RFC3339))
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("tlsreport: mail: %w", err)
	}
	var ah message.Header
	ah.SetContentType(tlsrpt.MediaTypeGzip, nil)
	ah.Set("Content-Transfer-Encoding", "base64")
	// RFC 8460 Section 5.1: the file name (RPT-25).
	ah.SetContentDisposition("attachment", map[string]string{
		"filename": tlsrpt.FileName(m.submitter, m.domain, m.start, m.end, m.uniqueID, true),
	})
	aw, err := w.CreatePart(ah)
	if err != nil {
		return nil, fmt.Errorf("tlsreport: mail: %w", err)
	}
	if _, err := aw.Write(gz); err != nil {
		return nil, fmt.Errorf("tlsreport: mail: %w", err)
	}
	if err := aw.Close(); err != nil {
		return nil, fmt.Errorf("tlsreport: mail: %w", err)
	}
	if err := w.Close(); err != nil {
		return nil, fmt.Errorf("tlsreport: mail: %w", err)
	}
	if r.DKIM == nil {
		return buf.Bytes(), nil
	}
	return signDKIM(buf.Bytes(), c.dkimD, r.DKIM.Selector, r.DKIM.Signer)
}

// signDKIM prepends a DKIM-Signature. RFC 8460 Section 3: reports sent by mail MUST be DKIM-signed; Section
// 5.3: the TLS-Report-* fields SHOULD be signed (RPT-31). go-msgauth never sets l=.
func signDKIM(msg []byte, domain, selector string, signer crypto.Signer) ([]byte, error) {
	opts := &dkim.SignOptions{
		Domain:                 domain,
		Selector:               selector,
		Signer:                 signer,
		Hash:                   crypto.SHA256,
		HeaderCanonicalization: dkim.CanonicalizationRelaxed,
		BodyCanonicalization:   dkim.CanonicalizationRelaxed,
		HeaderKeys: []string{"From", "To", "Subject", "Date", "Message-ID", "MIME-Version", "Content-Type",
			"TLS-Report-Domain", "TLS-Report-Submitter", "Auto-Submitted"},
	}
	var out bytes.Buffer
	if err := dkim.Sign(&out, bytes.NewReader(msg), opts); err != nil {
		return nil, fmt.Errorf("tlsreport: DKIM: %w", err)
	}
	return out.Bytes(), nil
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
