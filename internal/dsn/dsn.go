// Package dsn implements RFC 3464 delivery status notifications: the multipart/report that mxgate sends back to
// a message's return path when a recipient fails (or, on request, is delayed, delivered or relayed), following
// the DSN extension rules of RFC 3461 and, for REQUIRETLS messages, RFC 8689 Section 5.
//
// Build only composes the message; deciding whether a DSN is due (NOTIFY, null reverse path) and sending it
// is the queue's job. Parse reads back what Build writes (for tests and tooling); it is not a general parser
// for every DSN found in the wild.
//
// Header injection: every string that ends up in a header field or a delivery-status field is checked or
// encoded. Recipient addresses (final and original) are always represented: what an rfc822 address field
// cannot hold (spaces, controls, non-ASCII) is written as RFC 6533 utf-8-addr-xtext, and a Remote-MTA name
// in DNS presentation format, so that no bounce is lost over an address RFC 5321 allows. The other identity
// fields (the To and From headers, Reporting-MTA, ENVID, Message-ID, Status) containing CR, LF or any other
// control character are refused with an error wrapping ErrField. Free text that comes from a remote server
// (DiagnosticCode) is sanitised instead, since losing a bounce because a remote server sent a bare LF would be
// worse: control characters become spaces and non-ASCII bytes become '?'.
//
// It deliberately does not produce message/global-delivery-status (RFC 6533); non-ASCII addresses are written
// with the RFC 6533 "utf-8" address type and utf-8-addr-xtext encoding inside a 7bit message/delivery-status.
package dsn

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
	"unicode/utf8"
)

// ErrField is wrapped by every error about an unusable input field.
var ErrField = errors.New("dsn: invalid field")

// Action is the RFC 3464 Section 2.3.3 action value.
type Action string

const (
	ActionFailed    Action = "failed"
	ActionDelayed   Action = "delayed"
	ActionDelivered Action = "delivered"
	ActionRelayed   Action = "relayed"
	ActionExpanded  Action = "expanded"
)

// DefaultMaxFull is the largest original message returned in full; larger ones are returned as headers only
// (RFC 3461 Section 4.3 allows this).
const DefaultMaxFull = 1 << 20

// maxField is the longest identity field accepted; real values are far shorter (a path is at most 256 octets).
const maxField = 900

// maxDiag bounds the diagnostic text; longer text is cut with a visible marker.
const maxDiag = 2000

// Recipient is one per-recipient block of the report (RFC 3464 Section 2.3).
type Recipient struct {
	// FinalRecipient is the envelope recipient, case preserved.
	FinalRecipient string
	// OriginalRecipient is the ORCPT as received and xtext-decoded ("rfc822;bob@example.com"); "" when no
	// ORCPT was given, in which case no Original-Recipient field is written (RFC 3461 Section 6.3).
	OriginalRecipient string
	Action            Action
	// Status is the RFC 3463 status "5.1.1"; "" means 5.0.0, 4.0.0 or 2.0.0 depending on Action.
	Status string
	// RemoteMTA is the host name of the server that gave the reply; "" when none answered.
	RemoteMTA string
	// DiagnosticCode is the server's reply line ("550 5.1.1 no such user") or the local equivalent.
	DiagnosticCode string
	LastAttempt    time.Time
	// WillRetryUntil is written only for delayed recipients (RFC 3464 Section 2.3.9).
	WillRetryUntil time.Time
	// Reason is an optional explanation for the human-readable part only ("delivery time expired").
	Reason string
}

// Params describes one DSN.
type Params struct {
	// ReportingMTA is this gateway's host name (Reporting-MTA: dns; ...).
	ReportingMTA string
	// From is the responsible address for the From: header (postmaster), RFC 3464 Section 2 / SMTP-21.
	From string
	// To is the original message's reverse path; it is the To: header and the DSN's envelope recipient.
	To string
	// EnvID is the ENVID, xtext-decoded; "" when not given (no Original-Envelope-Id field).
	EnvID string
	// Arrival is when the original message was accepted; zero omits Arrival-Date.
	Arrival time.Time
	// Original is the original message (header and body); nil omits the third part.
	Original io.Reader
	// Ret is the RET parameter: "FULL", "HDRS" or "".
	Ret string
	// RequireTLS: the original was a REQUIRETLS message; the DSN returns headers only (RFC 8689 Section 5).
	RequireTLS bool
	// MaxFull caps the size of a message returned in full; 0 means DefaultMaxFull.
	MaxFull int64
	// Now is the clock for the Date: header; nil means time.Now.
	Now func() time.Time
	// MessageID is the Message-ID without angle brackets; "" generates one from Rand.
	MessageID string
	// Rand is the randomness for a generated Message-ID; nil means crypto/rand.
	Rand       io.Reader
	Recipients []Recipient
}

// Build composes the DSN described by p: a multipart/report; report-type=delivery-status with a human
// readable part, a message/delivery-status part and, when an original is given, the original message or its
// header (RFC 3464 Section 2, SMTP-18). Lines end in CRLF.
func Build(p Params) ([]byte, error) {
	if err := p.check(); err != nil {
		return nil, err
	}
	now := time.Now
	if p.Now != nil {
		now = p.Now
	}
	date := now()
	msgID := p.MessageID
	if msgID == "" {
		r := p.Rand
		if r == nil {
			r = rand.Reader
		}
		var b [16]byte
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return nil, fmt.Errorf("dsn: message id: %w", err)
		}
		msgID = hex.EncodeToString(b[:]) + "@" + p.ReportingMTA
	}

	status, err := p.statusPart()
	if err != nil {
		return nil, err
	}
	orig, err := p.originalPart()
	if err != nil {
		return nil, err
	}

	// The boundary is derived from the content so that output is reproducible; it is checked against the
	// returned message, which is the only part not written by us.
	sum := sha256.Sum256([]byte(msgID + date.String()))
	boundary := "=_mxgate_" + hex.EncodeToString(sum[:12])
	for i := 0; orig != nil && bytes.Contains(orig.content, []byte("--"+boundary)); i++ {
		boundary = fmt.Sprintf("=_mxgate_%s_%d", hex.EncodeToString(sum[:12]), i)
	}

	var b bytes.Buffer
	hdr := func(k, v string) { b.WriteString(k + ": " + v + "\r\n") }
	hdr("From", "Mail Delivery System <"+p.From+">")
	hdr("To", "<"+p.To+">")
	hdr("Subject", p.subject())
	hdr("Date", date.Format(time.RFC1123Z))
	hdr("Message-ID", "<"+msgID+">")
	// RFC 3834 Section 5: automatic responses say so, which stops vacation responders from answering.
	hdr("Auto-Submitted", "auto-replied")
	hdr("MIME-Version", "1.0")
	hdr("Content-Type", `multipart/report; report-type=delivery-status; boundary="`+boundary+`"`)
	b.WriteString("\r\nThis is a MIME-formatted delivery status notification.\r\n")

	b.WriteString("\r\n--" + boundary + "\r\n")
	hdr("Content-Type", "text/plain; charset=us-ascii")
	hdr("Content-Description", "Notification")
	hdr("Content-Transfer-Encoding", "7bit")
	b.WriteString("\r\n")
	b.WriteString(p.humanText(orig))

	b.WriteString("\r\n--" + boundary + "\r\n")
	// RFC 3464 Section 2.1 / SMTP-18: the delivery-status part is 7bit.
	hdr("Content-Type", "message/delivery-status")
	hdr("Content-Description", "Delivery report")
	hdr("Content-Transfer-Encoding", "7bit")
	b.WriteString("\r\n")
	b.WriteString(status)

	if orig != nil {
		b.WriteString("\r\n--" + boundary + "\r\n")
		hdr("Content-Type", orig.contentType)
		hdr("Content-Description", orig.description)
		hdr("Content-Transfer-Encoding", orig.cte)
		b.WriteString("\r\n")
		b.Write(orig.content)
	}
	b.WriteString("\r\n--" + boundary + "--\r\n")
	return b.Bytes(), nil
}

func (p *Params) check() error {
	if len(p.Recipients) == 0 {
		return fmt.Errorf("%w: no recipients", ErrField)
	}
	if err := requireToken("ReportingMTA", p.ReportingMTA); err != nil {
		return err
	}
	if err := checkAddr("From", p.From); err != nil {
		return err
	}
	if err := checkAddr("To", p.To); err != nil {
		return err
	}
	if err := checkToken("EnvID", p.EnvID); err != nil {
		return err
	}
	if p.MessageID != "" {
		if err := requireToken("MessageID", p.MessageID); err != nil {
			return err
		}
		if strings.ContainsAny(p.MessageID, "<> ") {
			return fmt.Errorf("%w: MessageID %q: angle brackets or spaces", ErrField, p.MessageID)
		}
	}
	switch p.Ret {
	case "", "FULL", "HDRS":
	default:
		return fmt.Errorf("%w: Ret %q", ErrField, p.Ret)
	}
	for i, r := range p.Recipients {
		// Any recipient can be written: addrField encodes what an rfc822 address field cannot hold.
		if r.FinalRecipient == "" || len(r.FinalRecipient) > maxField {
			return fmt.Errorf("%w: recipient %d: FinalRecipient empty or longer than %d octets", ErrField, i, maxField)
		}
		if r.OriginalRecipient != "" {
			// The address part is encoded by addrField like FinalRecipient; only its type must be a token.
			if len(r.OriginalRecipient) > maxField {
				return fmt.Errorf("%w: recipient %d: OriginalRecipient longer than %d octets", ErrField, i, maxField)
			}
			if typ, addr, ok := strings.Cut(r.OriginalRecipient, ";"); ok && (!isAtom(strings.TrimSpace(typ)) || strings.TrimSpace(addr) == "") {
				return fmt.Errorf("%w: recipient %d: OriginalRecipient %q: want type;address", ErrField, i, r.OriginalRecipient)
			}
		}
		switch r.Action {
		case ActionFailed, ActionDelayed, ActionDelivered, ActionRelayed, ActionExpanded:
		default:
			return fmt.Errorf("%w: recipient %d: Action %q", ErrField, i, r.Action)
		}
		if r.Status != "" && !ValidStatus(r.Status) {
			return fmt.Errorf("%w: recipient %d: Status %q", ErrField, i, r.Status)
		}
		if len(r.RemoteMTA) > maxField {
			return fmt.Errorf("%w: recipient %d: RemoteMTA longer than %d octets", ErrField, i, maxField)
		}
	}
	return nil
}

// checkField refuses control characters (CR and LF above all: header injection) and overlong values.
func checkField(name, s string) error {
	if len(s) > maxField {
		return fmt.Errorf("%w: %s longer than %d octets", ErrField, name, maxField)
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("%w: %s is not valid UTF-8", ErrField, name)
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == 0x7f {
			return fmt.Errorf("%w: %s contains control character %#x", ErrField, name, c)
		}
	}
	return nil
}

// checkToken is checkField for ASCII values without spaces (host names, ENVID, Message-ID). An empty value is
// allowed; requireToken refuses it.
func checkToken(name, s string) error {
	if s == "" {
		return nil
	}
	if err := checkField(name, s); err != nil {
		return err
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c >= 0x7f {
			return fmt.Errorf("%w: %s contains %q", ErrField, name, c)
		}
	}
	return nil
}

// requireToken is checkToken for a field that must not be empty.
func requireToken(name, s string) error {
	if s == "" {
		return fmt.Errorf("%w: %s is empty", ErrField, name)
	}
	return checkToken(name, s)
}

// checkAddr accepts a mailbox written inside <...>: no controls, not empty, and angle brackets only inside
// a quoted local part (RFC 5321 Section 4.1.2 allows "a<b>c"@example.com, and RFC 5322 Section 3.4.1 lets
// an angle-addr hold it).
func checkAddr(name, s string) error {
	if s == "" {
		return fmt.Errorf("%w: %s is empty", ErrField, name)
	}
	if err := checkField(name, s); err != nil {
		return err
	}
	rest := s
	if strings.HasPrefix(s, `"`) {
		if end := strings.LastIndex(s, `"@`); end > 0 {
			rest = s[end+1:]
		}
	}
	if strings.ContainsAny(rest, "<>") || strings.TrimSpace(s) != s {
		return fmt.Errorf("%w: %s %q", ErrField, name, s)
	}
	return nil
}

func isAtom(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// ValidStatus reports whether s is an RFC 3463 status code: class 2, 4 or 5, then 1-3 and 1-3 digits, with no
// leading zeros (RFC 3464 Section 2.3.4, SMTP-20).
func ValidStatus(s string) bool {
	parts := strings.Split(s, ".")
	if len(parts) != 3 || (parts[0] != "2" && parts[0] != "4" && parts[0] != "5") {
		return false
	}
	for _, n := range parts[1:] {
		if n == "" || len(n) > 3 || (len(n) > 1 && n[0] == '0') {
			return false
		}
		for i := 0; i < len(n); i++ {
			if n[i] < '0' || n[i] > '9' {
				return false
			}
		}
	}
	return true
}

func defaultStatus(a Action) string {
	switch a {
	case ActionFailed:
		return "5.0.0"
	case ActionDelayed:
		return "4.0.0"
	}
	return "2.0.0"
}

// SanitizeText is what Build does to free text from remote servers: control characters (CR and LF
// included) become spaces, non-ASCII bytes become '?', runs longer than 500 octets without a space are
// broken with a space so that every line can be folded under 998 octets, and text over 2000 octets is cut
// with a visible " [...]" marker. Leading and trailing spaces are removed.
func SanitizeText(s string) string {
	var b strings.Builder
	run := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c < 0x20 || c == 0x7f:
			c = ' '
		case c >= 0x80:
			c = '?'
		}
		if c == ' ' {
			run = 0
		} else if run++; run > 500 {
			b.WriteByte(' ')
			run = 1
		}
		b.WriteByte(c)
	}
	out := strings.TrimSpace(b.String())
	if len(out) > maxDiag {
		out = strings.TrimSpace(out[:maxDiag]) + " [...]"
	}
	return out
}

// fold writes "Name: value" with CRLF, folding before spaces so that lines stay near 78 octets. Folding only
// inserts CRLF before existing whitespace, so unfolding gives the value back unchanged.
func fold(b *strings.Builder, name, value string) {
	line := name + ": " + value
	for len(line) > 78 {
		// Fold only before a word (a space followed by a non-space), so that no continuation line is made of
		// white space alone (RFC 5322 Section 3.2.2 forbids it, and parsers refuse it).
		cut := -1
		for i := min(78, len(line)-1); i > len(name)+1; i-- {
			if line[i] == ' ' && line[i+1] != ' ' {
				cut = i
				break
			}
		}
		if cut < 0 {
			for i := 78; i < len(line)-1; i++ {
				if line[i] == ' ' && line[i+1] != ' ' {
					cut = i
					break
				}
			}
		}
		if cut < 0 {
			break
		}
		b.WriteString(line[:cut] + "\r\n")
		line = line[cut:]
	}
	b.WriteString(line + "\r\n")
}

// addrField writes an address with its RFC 3464 address type. Addresses of printable ASCII use their type
// (rfc822); any other (non-ASCII, or a quoted local part holding spaces or controls) uses the RFC 6533
// Section 3 "utf-8" type with utf-8-addr-xtext, which keeps the 7bit part 7bit and represents every
// address. Spec: octets that are not UTF-8 cannot be written as utf-8-addr-xtext; each becomes U+FFFD.
func addrField(typ, addr string) string {
	if isPrintable(addr) {
		return typ + "; " + addr
	}
	return "utf-8; " + encodeUTF8Addr(strings.ToValidUTF8(addr, "\uFFFD"))
}

// isPrintable reports whether s is printable ASCII without spaces.
func isPrintable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] >= 0x7f {
			return false
		}
	}
	return true
}

// hostField writes a host name for Remote-MTA. A name that is not printable ASCII (DNS allows any octet in
// a label) is written in DNS presentation format (RFC 1035 Section 5.1), each such octet as \DDD.
func hostField(h string) string {
	if isPrintable(h) {
		return h
	}
	var b strings.Builder
	for i := 0; i < len(h); i++ {
		if c := h[i]; c <= ' ' || c >= 0x7f {
			fmt.Fprintf(&b, "\\%03d", c)
		} else {
			b.WriteByte(c)
		}
	}
	return b.String()
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// encodeUTF8Addr is RFC 6533 utf-8-addr-xtext: non-ASCII characters and '\', '+', '=' as \x{HEX}.
func encodeUTF8Addr(s string) string {
	var b strings.Builder
	for _, r := range s {
		if r < 0x21 || r > 0x7e || r == '\\' || r == '+' || r == '=' {
			fmt.Fprintf(&b, `\x{%X}`, r)
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

func (p *Params) statusPart() (string, error) {
	var b strings.Builder
	// RFC 3464 Section 2.2 / SMTP-19.
	fold(&b, "Reporting-MTA", "dns; "+p.ReportingMTA)
	if p.EnvID != "" {
		fold(&b, "Original-Envelope-Id", p.EnvID)
	}
	if !p.Arrival.IsZero() {
		fold(&b, "Arrival-Date", p.Arrival.Format(time.RFC1123Z))
	}
	for _, r := range p.Recipients {
		b.WriteString("\r\n")
		// RFC 3464 Section 2.3 / SMTP-20.
		if r.OriginalRecipient != "" {
			typ, addr, ok := strings.Cut(r.OriginalRecipient, ";")
			if !ok {
				typ, addr = "rfc822", r.OriginalRecipient
			}
			fold(&b, "Original-Recipient", addrField(strings.TrimSpace(typ), strings.TrimSpace(addr)))
		}
		fold(&b, "Final-Recipient", addrField("rfc822", r.FinalRecipient))
		fold(&b, "Action", string(r.Action))
		status := r.Status
		if status == "" {
			status = defaultStatus(r.Action)
		}
		fold(&b, "Status", status)
		if r.RemoteMTA != "" {
			fold(&b, "Remote-MTA", "dns; "+hostField(r.RemoteMTA))
		}
		if d := SanitizeText(r.DiagnosticCode); d != "" {
			fold(&b, "Diagnostic-Code", "smtp; "+d)
		}
		if !r.LastAttempt.IsZero() {
			fold(&b, "Last-Attempt-Date", r.LastAttempt.Format(time.RFC1123Z))
		}
		// RFC 3464 Section 2.3.9: Will-Retry-Until only in delayed DSNs.
		if r.Action == ActionDelayed && !r.WillRetryUntil.IsZero() {
			fold(&b, "Will-Retry-Until", r.WillRetryUntil.Format(time.RFC1123Z))
		}
	}
	return b.String(), nil
}

func (p *Params) subject() string {
	has := func(a Action) bool {
		for _, r := range p.Recipients {
			if r.Action == a {
				return true
			}
		}
		return false
	}
	switch {
	case has(ActionFailed):
		return "Undelivered Mail Returned to Sender"
	case has(ActionDelayed):
		return "Delayed Mail (still being retried)"
	}
	return "Successful Mail Delivery Report"
}

func (p *Params) humanText(orig *returned) string {
	var b strings.Builder
	line := func(s string) { b.WriteString(s + "\r\n") }
	line("This is the mail system at host " + p.ReportingMTA + ".")
	line("")
	for _, a := range []Action{ActionFailed, ActionDelayed, ActionDelivered, ActionRelayed, ActionExpanded} {
		var rs []Recipient
		for _, r := range p.Recipients {
			if r.Action == a {
				rs = append(rs, r)
			}
		}
		if len(rs) == 0 {
			continue
		}
		switch a {
		case ActionFailed:
			line("Your message could not be delivered to the following recipients.")
			line("This is a permanent error; the message will not be retried.")
		case ActionDelayed:
			line("Your message has not yet been delivered to the following recipients.")
			line("No action is needed: delivery will be retried.")
		case ActionDelivered:
			line("Your message was delivered to the following recipients.")
		case ActionRelayed:
			line("Your message was relayed to the following recipients; the next system")
			line("does not send delivery notifications, so this is the last report.")
		case ActionExpanded:
			line("Your message was expanded for the following recipients.")
		}
		line("")
		for _, r := range rs {
			// Only ASCII goes into the 7bit text part; the machine-readable part has the exact address.
			line("<" + SanitizeText(r.FinalRecipient) + ">:")
			if d := SanitizeText(r.DiagnosticCode); d != "" {
				b.WriteString(wrap("    ", d))
			}
			if r.Reason != "" {
				b.WriteString(wrap("    ", SanitizeText(r.Reason)))
			}
			if r.RemoteMTA != "" {
				line("    (reported by " + hostField(r.RemoteMTA) + ")")
			}
			if r.Action == ActionDelayed && !r.WillRetryUntil.IsZero() {
				line("    Delivery will be retried until " + r.WillRetryUntil.Format(time.RFC1123Z) + ".")
			}
		}
		line("")
	}
	switch {
	case orig == nil:
	case orig.contentType == "text/rfc822-headers" && orig.truncated:
		line("The original message was too large to be returned in full; its header is attached.")
	case orig.contentType == "text/rfc822-headers":
		line("The header of the original message is attached.")
	default:
		line("The original message is attached.")
	}
	return b.String()
}

type returned struct {
	contentType string
	description string
	cte         string
	content     []byte // CRLF line endings, ending in CRLF
	truncated   bool   // a full return was asked for but the message was too large
}

// originalPart reads the original message and decides between the full message and its header. At most
// MaxFull+1 octets are read, so a huge spool file never has to fit in memory.
func (p *Params) originalPart() (*returned, error) {
	if p.Original == nil {
		return nil, nil
	}
	maxFull := p.MaxFull
	if maxFull <= 0 {
		maxFull = DefaultMaxFull
	}
	anyFailed := false
	for _, r := range p.Recipients {
		if r.Action == ActionFailed {
			anyFailed = true
		}
	}
	// RFC 3461 Section 4.3: RET=FULL asks for the whole message in failure DSNs; without RET we choose
	// FULL for failures too. Other reports carry the header only. RFC 8689 Section 5 / REQ-14: REQUIRETLS
	// makes RET=FULL behave as HDRS.
	full := anyFailed && p.Ret != "HDRS" && !p.RequireTLS
	data, err := io.ReadAll(io.LimitReader(p.Original, maxFull+1))
	if err != nil {
		return nil, fmt.Errorf("dsn: reading original message: %w", err)
	}
	over := int64(len(data)) > maxFull
	data = toCRLF(data)
	out := &returned{cte: "7bit"}
	if full && !over {
		out.contentType, out.description, out.content = "message/rfc822", "Undelivered message", data
	} else {
		// RFC 3461 Section 4.3: a large message MAY be returned as its header only.
		out.truncated = full && over
		out.contentType, out.description = "text/rfc822-headers", "Undelivered message header"
		if i := bytes.Index(data, []byte("\r\n\r\n")); i >= 0 {
			out.content = data[:i+2]
		} else if bytes.HasPrefix(data, []byte("\r\n")) {
			out.content = nil
		} else if !over {
			out.content = data // a message without a body
		} else {
			// The header alone is larger than MaxFull: return nothing rather than a cut header.
			out.content = nil
		}
	}
	if len(out.content) == 0 {
		return nil, nil
	}
	if !isASCII(string(out.content)) {
		out.cte = "8bit"
	}
	return out, nil
}

// toCRLF normalises bare LF line endings to CRLF and makes sure the data ends with CRLF.
func toCRLF(data []byte) []byte {
	if len(data) == 0 {
		return data
	}
	var b bytes.Buffer
	b.Grow(len(data) + 64)
	for i, c := range data {
		if c == '\n' && (i == 0 || data[i-1] != '\r') {
			b.WriteByte('\r')
		}
		b.WriteByte(c)
	}
	if !bytes.HasSuffix(b.Bytes(), []byte("\r\n")) {
		if bytes.HasSuffix(b.Bytes(), []byte("\r")) {
			b.WriteByte('\n')
		} else {
			b.WriteString("\r\n")
		}
	}
	return b.Bytes()
}

// wrap breaks text into lines of about 76 octets at spaces, each starting with indent and ending in CRLF.
func wrap(indent, text string) string {
	var b strings.Builder
	line := indent
	for _, w := range strings.Fields(text) {
		if len(line) > len(indent) && len(line)+1+len(w) > 76 {
			b.WriteString(line + "\r\n")
			line = indent
		}
		if len(line) > len(indent) {
			line += " "
		}
		line += w
	}
	b.WriteString(line + "\r\n")
	return b.String()
}
