package dsn

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/emersion/go-message"
)

// ErrParse is wrapped by every Parse error.
var ErrParse = errors.New("dsn: cannot parse report")

// Report is a DSN read back by Parse.
type Report struct {
	From, To, Subject, MessageID string
	ReportingMTA                 string
	EnvID                        string
	Arrival                      time.Time
	Recipients                   []Recipient
	// Human is the text of the first part.
	Human string
	// ReturnedType is the media type of the third part ("message/rfc822" or "text/rfc822-headers"); "" when
	// there is none. Returned is its content.
	ReturnedType string
	Returned     []byte
}

// Parse reads a DSN in the layout Build writes: multipart/report; report-type=delivery-status with a text
// part, a message/delivery-status part and an optional third part. Addresses come back decoded (the
// "rfc822; " or "utf-8; " prefix removed from Final-Recipient; Original-Recipient keeps its type).
func Parse(msg []byte) (Report, error) {
	var rep Report
	e, err := message.Read(bytes.NewReader(msg))
	if err != nil {
		return rep, fmt.Errorf("%w: %w", ErrParse, err)
	}
	rep.From, rep.To = e.Header.Get("From"), e.Header.Get("To")
	rep.Subject, rep.MessageID = e.Header.Get("Subject"), e.Header.Get("Message-Id")
	mt, params, err := e.Header.ContentType()
	if err != nil || mt != "multipart/report" || params["report-type"] != "delivery-status" {
		return rep, fmt.Errorf("%w: top-level type %q report-type %q (%v)", ErrParse, mt, params["report-type"], err)
	}
	mr := e.MultipartReader()
	for i := 0; ; i++ {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			if i < 2 {
				return rep, fmt.Errorf("%w: %d parts, want at least 2", ErrParse, i)
			}
			return rep, nil
		}
		if err != nil {
			return rep, fmt.Errorf("%w: part %d: %w", ErrParse, i+1, err)
		}
		pt, _, _ := part.Header.ContentType()
		body, err := io.ReadAll(part.Body)
		if err != nil {
			return rep, fmt.Errorf("%w: part %d: %w", ErrParse, i+1, err)
		}
		switch i {
		case 0:
			rep.Human = string(body)
		case 1:
			if pt != "message/delivery-status" {
				return rep, fmt.Errorf("%w: second part is %q, want message/delivery-status", ErrParse, pt)
			}
			if err := rep.parseStatus(body); err != nil {
				return rep, err
			}
		case 2:
			rep.ReturnedType, rep.Returned = pt, body
		default:
			return rep, fmt.Errorf("%w: more than three parts", ErrParse)
		}
	}
}

// parseStatus reads the per-message block and the per-recipient blocks (RFC 3464 Section 2.1).
func (rep *Report) parseStatus(body []byte) error {
	blocks, err := readBlocks(body)
	if err != nil {
		return err
	}
	if len(blocks) < 2 {
		return fmt.Errorf("%w: delivery-status has %d blocks, want a per-message block and recipients", ErrParse, len(blocks))
	}
	for _, f := range blocks[0] {
		switch strings.ToLower(f.name) {
		case "reporting-mta":
			rep.ReportingMTA = stripType(f.value)
		case "original-envelope-id":
			rep.EnvID = f.value
		case "arrival-date":
			if rep.Arrival, err = time.Parse(time.RFC1123Z, f.value); err != nil {
				return fmt.Errorf("%w: Arrival-Date: %w", ErrParse, err)
			}
		}
	}
	for _, blk := range blocks[1:] {
		var r Recipient
		for _, f := range blk {
			switch strings.ToLower(f.name) {
			case "final-recipient":
				if r.FinalRecipient, err = decodeAddrField(f.value); err != nil {
					return err
				}
			case "original-recipient":
				typ, _, _ := strings.Cut(f.value, ";")
				a, err := decodeAddrField(f.value)
				if err != nil {
					return err
				}
				if strings.EqualFold(strings.TrimSpace(typ), "utf-8") {
					typ = "utf-8"
				}
				r.OriginalRecipient = strings.TrimSpace(typ) + ";" + a
			case "action":
				r.Action = Action(strings.ToLower(f.value))
			case "status":
				r.Status = f.value
			case "remote-mta":
				r.RemoteMTA = stripType(f.value)
			case "diagnostic-code":
				r.DiagnosticCode = stripType(f.value)
			case "last-attempt-date":
				if r.LastAttempt, err = time.Parse(time.RFC1123Z, f.value); err != nil {
					return fmt.Errorf("%w: Last-Attempt-Date: %w", ErrParse, err)
				}
			case "will-retry-until":
				if r.WillRetryUntil, err = time.Parse(time.RFC1123Z, f.value); err != nil {
					return fmt.Errorf("%w: Will-Retry-Until: %w", ErrParse, err)
				}
			}
		}
		if r.FinalRecipient == "" || r.Action == "" || r.Status == "" {
			return fmt.Errorf("%w: recipient block without Final-Recipient, Action or Status", ErrParse)
		}
		rep.Recipients = append(rep.Recipients, r)
	}
	return nil
}

type field struct{ name, value string }

// readBlocks splits a delivery-status body into blocks of fields. Unfolding removes only the CRLF, so a
// value folded by Build comes back unchanged.
func readBlocks(body []byte) ([][]field, error) {
	var blocks [][]field
	var cur []field
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := strings.TrimSuffix(sc.Text(), "\r")
		switch {
		case strings.TrimSpace(line) == "":
			if len(cur) > 0 {
				blocks = append(blocks, cur)
				cur = nil
			}
		case line[0] == ' ' || line[0] == '\t':
			if len(cur) == 0 {
				return nil, fmt.Errorf("%w: continuation line without a field", ErrParse)
			}
			cur[len(cur)-1].value += line
		default:
			name, value, ok := strings.Cut(line, ":")
			if !ok {
				return nil, fmt.Errorf("%w: line %q is not a field", ErrParse, line)
			}
			cur = append(cur, field{name: strings.TrimSpace(name), value: value})
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrParse, err)
	}
	if len(cur) > 0 {
		blocks = append(blocks, cur)
	}
	for _, b := range blocks {
		for i := range b {
			b[i].value = strings.TrimSpace(b[i].value)
		}
	}
	return blocks, nil
}

// stripType removes "dns; " or "smtp; " from a typed field value.
func stripType(v string) string {
	if _, rest, ok := strings.Cut(v, ";"); ok {
		return strings.TrimSpace(rest)
	}
	return v
}

// decodeAddrField reads "type; address", undoing the RFC 6533 utf-8-addr-xtext encoding for type utf-8.
func decodeAddrField(v string) (string, error) {
	typ, addr, ok := strings.Cut(v, ";")
	if !ok {
		return "", fmt.Errorf("%w: address field %q without a type", ErrParse, v)
	}
	addr = strings.TrimSpace(addr)
	if !strings.EqualFold(strings.TrimSpace(typ), "utf-8") {
		return addr, nil
	}
	var b strings.Builder
	for addr != "" {
		i := strings.Index(addr, `\x{`)
		if i < 0 {
			b.WriteString(addr)
			break
		}
		b.WriteString(addr[:i])
		end := strings.IndexByte(addr[i:], '}')
		if end < 0 {
			return "", fmt.Errorf("%w: bad utf-8-addr-xtext %q", ErrParse, v)
		}
		n, err := strconv.ParseUint(addr[i+3:i+end], 16, 32)
		if err != nil {
			return "", fmt.Errorf("%w: bad utf-8-addr-xtext %q: %w", ErrParse, v, err)
		}
		b.WriteRune(rune(n))
		addr = addr[i+end+1:]
	}
	return b.String(), nil
}
