package queue

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"slices"
	"time"

	"github.com/mxgate/mxgate/internal/address"
	"github.com/mxgate/mxgate/internal/dsn"
)

// wantsDSN applies RFC 3461 Section 4.1 / SMTP-22: NOTIFY=NEVER asks for nothing; an explicit NOTIFY list
// without FAILURE asks for no failure report; no NOTIFY means FAILURE (and DELAY, which we do not send).
func wantsDSN(notify []string) bool {
	if len(notify) == 0 {
		return true
	}
	return slices.Contains(notify, "FAILURE") && !slices.Contains(notify, "NEVER")
}

// wantsRelayedDSN applies RFC 3461 Section 5.2.2 (SMTP-22): a recipient delivered to a next hop that does not
// support DSN gets a "relayed" notice when its NOTIFY asked for SUCCESS.
func wantsRelayedDSN(c *change) bool {
	return c.state == stateDelivered && !c.res.NextHopDSN && slices.Contains(c.row.notify, "SUCCESS")
}

// queueDSN composes the failure DSN for the recipients in fails (all of message m), writes it to the spool
// and inserts its index rows in tx, so that the failure and its report commit together. It returns the
// DSN's record (nil when none is due): the caller removes its body (q.bodyPath(rec.id)) if tx does not
// commit, and indexes it (q.indexRecords) if it does.
func (q *Queue) queueDSN(ctx context.Context, tx *sql.Tx, m *msgRow, fails []*change, now time.Time) (*record, error) {
	// RFC 5321 Section 6.1 / SMTP-17: a message with a null reverse path never produces a DSN (DSNs
	// themselves have one).
	if m.from == "" {
		return nil, nil
	}
	to := m.from
	if m.flags&flagReport != 0 {
		// RFC 8460 Section 3: reports are not answered to their (our) sender; the operator may collect them.
		if q.opts.ReportBounceTo == "" {
			q.log.Warn("queue: bounce of a TLS report dropped (no report bounce address)", "msg_id", m.id)
			return nil, nil
		}
		to = q.opts.ReportBounceTo
	}
	var rcpts []dsn.Recipient
	for _, c := range fails {
		action, status := dsn.ActionFailed, c.dsnStatus
		var retryUntil time.Time
		switch {
		case c.delayNotice:
			// RFC 3464 Section 2.3.3 and 2.3.9: delayed, with the time the queue gives up.
			action, status, retryUntil = dsn.ActionDelayed, normStatus(c.res.Enhanced, '4'), m.expires
		case wantsRelayedDSN(c):
			action, status = dsn.ActionRelayed, "2.0.0"
		case c.state == stateFailed && wantsDSN(c.row.notify):
		default:
			continue
		}
		rcpts = append(rcpts, dsn.Recipient{
			FinalRecipient:    c.row.rcpt,
			OriginalRecipient: c.row.orcpt,
			Action:            action,
			Status:            status,
			RemoteMTA:         c.res.RemoteMTA,
			DiagnosticCode:    diagnostic(c.res),
			LastAttempt:       now,
			WillRetryUntil:    retryUntil,
			Reason:            c.reason,
		})
	}
	if len(rcpts) == 0 {
		return nil, nil
	}
	requireTLS := m.flags&flagRequireTLS != 0
	// RFC 3461 Section 6.2 / SMTP-21: sent with MAIL FROM:<>, no RET, NOTIFY only NEVER. RFC 8689 Section 5
	// / REQ-14: a DSN about a REQUIRETLS message is itself sent with REQUIRETLS.
	toAddr, err := address.ParseAddress(to)
	if err != nil {
		q.log.Error("queue: DSN not sent: bad return path", "msg_id", m.id, "to", to, "err", err)
		return nil, nil
	}
	env := Envelope{
		From:       address.NullPath,
		Recipients: []Recipient{{Addr: toAddr, Notify: []string{"NEVER"}}},
		RequireTLS: requireTLS,
		DSN:        true,
	}
	rec, err := q.newRecord(env)
	if err != nil {
		q.log.Error("queue: DSN not sent: bad return path", "msg_id", m.id, "to", to, "err", err)
		return nil, nil
	}
	p := dsn.Params{
		ReportingMTA: q.opts.Hostname,
		From:         q.opts.Postmaster,
		To:           to,
		EnvID:        m.envid,
		Arrival:      m.received,
		Ret:          m.ret,
		RequireTLS:   requireTLS,
		MaxFull:      q.opts.MaxDSNReturn,
		Now:          func() time.Time { return now },
		MessageID:    rec.id + "@" + q.opts.Hostname,
		Recipients:   rcpts,
	}
	body := q.buildDSN(m.id, m.sum, p)
	if body == nil {
		return nil, nil
	}
	rec.env.EightBit = !isASCII(body)
	rec.env.SMTPUTF8 = !isASCII([]byte(to)) || rec.env.EightBit && m.flags&flagSMTPUTF8 != 0
	if err := q.writeBody(rec, bytes.NewReader(body), syncBodyNow); err != nil {
		return nil, fmt.Errorf("queue: DSN for %s: %w", m.id, err)
	}
	path := q.bodyPath(rec.id)
	// The DSN's rename must be durable before tx commits its index rows. DSNs are rare: one directory
	// fsync each.
	if err := q.opts.SyncDir(q.opts.Dir); err != nil {
		os.Remove(path)
		return nil, fmt.Errorf("queue: DSN for %s: %w", m.id, storageErr("fsync spool directory", err))
	}
	if err := q.insertRecord(ctx, tx, rec); err != nil {
		os.Remove(path)
		return nil, fmt.Errorf("queue: DSN for %s: %w", m.id, err)
	}
	q.log.Info("queue: DSN queued", "msg_id", m.id, "dsn_id", rec.id, "to", to, "recipients", len(rcpts))
	return rec, nil
}

// buildDSN builds the DSN with the original attached. The original is attached only once its octets match
// sum, the SHA-256 taken when it was accepted: a body file that holds other octets (a disk error, a file
// written over) would hand another message to this sender. On a mismatch the DSN goes without the
// original and the message is marked corrupt, so that no delivery opens it again (it is quarantined at
// its next attempt). If a field is unusable (dsn.ErrField), it is built
// again without the optional ENVID and ORCPT fields, and then as a minimal DSN (no original, no remote
// host, diagnostics sanitised): recording outcomes never depends on building a DSN, and a bounce is never
// lost for a cosmetic reason. Every fallback is logged and counted (DSNFallbacks). It returns nil when not
// even the minimal DSN can be built (a return path the DSN cannot be addressed to), which is logged too.
func (q *Queue) buildDSN(id string, sum []byte, p dsn.Params) []byte {
	f, err := q.openBody(id)
	if err == nil {
		err = q.checkSum(id, f, sum)
		if err != nil {
			f.Close()
			f = nil
		}
	}
	if err != nil {
		q.log.Error("queue: DSN without the original message", "msg_id", id, "err", err)
	} else {
		defer f.Close()
		p.Original = f
	}
	body, err := dsn.Build(p)
	if err == nil {
		return body
	}
	q.dsnFallbacks.Add(1)
	q.log.Warn("queue: DSN field refused; retrying without ENVID and ORCPT", "msg_id", id, "err", err)
	p.EnvID = ""
	for i := range p.Recipients {
		p.Recipients[i].OriginalRecipient = ""
	}
	if f != nil {
		if _, serr := f.(io.Seeker).Seek(0, io.SeekStart); serr != nil {
			p.Original = nil
		}
	}
	if body, err = dsn.Build(p); err == nil {
		return body
	}
	q.log.Warn("queue: DSN refused again; sending a minimal DSN", "msg_id", id, "err", err)
	p.Original = nil
	for i := range p.Recipients {
		r := &p.Recipients[i]
		r.RemoteMTA = ""
		r.DiagnosticCode = dsn.SanitizeText(r.DiagnosticCode)
		r.Reason = dsn.SanitizeText(r.Reason)
	}
	if body, err = dsn.Build(p); err == nil {
		return body
	}
	q.log.Error("queue: DSN cannot be built; the failure is recorded without one", "msg_id", id, "to", p.To, "err", err)
	return nil
}

// checkSum reads body f of message id to its end, compares it with sum and rewinds it. A nil sum (a
// message accepted before checksums were kept) is not checked. On a mismatch the message is marked
// corrupt and the error wraps ErrBodyCorrupt.
func (q *Queue) checkSum(id string, f io.ReadCloser, sum []byte) error {
	if sum == nil {
		return nil
	}
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return fmt.Errorf("queue: check body of %s: %w", id, err)
	}
	if got := h.Sum(nil); !bytes.Equal(got, sum) {
		reason := fmt.Sprintf("body does not match its checksum: SHA-256 %s, accepted as %s",
			hex.EncodeToString(got), hex.EncodeToString(sum))
		q.markCorrupt(id, reason)
		return fmt.Errorf("queue: body of %s: %w: %s", id, ErrBodyCorrupt, reason)
	}
	if _, err := f.(io.Seeker).Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("queue: check body of %s: %w", id, err)
	}
	return nil
}

func isASCII(b []byte) bool {
	for _, c := range b {
		if c >= 0x80 {
			return false
		}
	}
	return true
}
