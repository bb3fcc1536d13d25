package queue

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"sync"
)

// errBodyRemoved is returned by a body opener once its message was deleted, bounced or finished.
var errBodyRemoved = errors.New("message body removed from the spool")

// bodyRefs keeps a body file from being recycled while anything can still read it.
//
// A finished (or deleted, or bounced) message's body is emptied and renamed to a spare name, and the next
// accepted message is written into that same file (spare.go). An open descriptor follows the file, not its
// name: a delivery still streaming the old body would then send the new message's bytes (or a truncated
// body) to the old recipients. So every reader holds a reference on its message's body, and recycling a
// body that has readers is deferred until the last of them closes it. Once a body is marked for removal
// no new reader may open it: the open fails with errBodyRemoved.
type bodyRefs struct {
	mu      sync.Mutex
	readers map[string]int  // message id -> open readers
	doomed  map[string]bool // message id -> removal requested, not yet done
}

// acquire registers a reader of message id's body; false when the body is being removed.
func (b *bodyRefs) acquire(id string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.doomed[id] {
		return false
	}
	if b.readers == nil {
		b.readers = map[string]int{}
	}
	b.readers[id]++
	return true
}

// release ends a reader of message id's body; it reports true when the caller, as the last reader of a
// body marked for removal, must now recycle it.
func (b *bodyRefs) release(id string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := b.readers[id] - 1
	if n > 0 {
		b.readers[id] = n
		return false
	}
	delete(b.readers, id)
	return b.doomed[id]
}

// remove marks message id's body for removal; it reports true when nothing reads it, and the caller must
// recycle it now. Otherwise the last reader does.
func (b *bodyRefs) remove(id string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.doomed == nil {
		b.doomed = map[string]bool{}
	}
	b.doomed[id] = true
	return b.readers[id] == 0
}

// removed forgets message id once its body has been recycled.
func (b *bodyRefs) removed(id string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.doomed, id)
}

// openBody opens message id's body for reading, holding a reference until Close.
func (q *Queue) openBody(id string) (io.ReadCloser, error) {
	if !q.refs.acquire(id) {
		return nil, fmt.Errorf("queue: open body of %s: %w", id, errBodyRemoved)
	}
	f, err := os.Open(q.bodyPath(id))
	if err != nil {
		q.bodyClosed(id)
		return nil, fmt.Errorf("queue: open body of %s: %w", id, err)
	}
	return &bodyReader{q: q, id: id, f: f}, nil
}

func (q *Queue) bodyClosed(id string) {
	if q.refs.release(id) {
		q.recycle(id)
	}
}

// openVerified is openBody for delivery: the body is checked against sum, the SHA-256 taken when it was
// accepted, as it is read. When the end of the file is reached and the octets read do not match, Read
// returns an error wrapping ErrBodyCorrupt instead of io.EOF, so that the Deliverer aborts before the
// final dot, and the message is marked for quarantine: it is never opened for delivery again, and its
// results are not recorded (recordCorrupt). A nil sum (a message accepted before checksums were kept) is
// not verified.
//
// bad is called with the reason when this read fails verification, or when the open is refused because
// an earlier read did: the caller's attempt then records its recipients as quarantined (recordCorrupt).
func (q *Queue) openVerified(id string, sum []byte, bad func(reason string)) (io.ReadCloser, error) {
	if reason := q.corruptReason(id); reason != "" {
		bad(reason)
		return nil, fmt.Errorf("queue: open body of %s: %w: %s", id, ErrBodyCorrupt, reason)
	}
	rc, err := q.openBody(id)
	if err != nil || sum == nil {
		return rc, err
	}
	r := rc.(*bodyReader)
	r.want, r.h, r.bad = sum, sha256.New(), bad
	return r, nil
}

// corruptReason returns why message id's body was found corrupt since Open, or "".
func (q *Queue) corruptReason(id string) string {
	q.corruptMu.Lock()
	defer q.corruptMu.Unlock()
	return q.corrupt[id]
}

func (q *Queue) markCorrupt(id, reason string) {
	q.corruptMu.Lock()
	defer q.corruptMu.Unlock()
	if q.corrupt == nil {
		q.corrupt = map[string]string{}
	}
	q.corrupt[id] = reason
}

func (q *Queue) clearCorrupt(id string) {
	q.corruptMu.Lock()
	defer q.corruptMu.Unlock()
	delete(q.corrupt, id)
}

// bodyReader is one reader of a spool body, verifying it when want is set.
type bodyReader struct {
	q      *Queue
	id     string
	f      *os.File
	closed bool

	want []byte    // expected SHA-256; nil: not verified
	h    hash.Hash // of the octets read so far, from the start
	bad  func(reason string)
}

func (r *bodyReader) Read(p []byte) (int, error) {
	n, err := r.f.Read(p)
	if r.want == nil {
		return n, err
	}
	r.h.Write(p[:n])
	if err == io.EOF {
		if got := r.h.Sum(nil); !bytes.Equal(got, r.want) {
			reason := fmt.Sprintf("body does not match its checksum: SHA-256 %s, accepted as %s",
				hex.EncodeToString(got), hex.EncodeToString(r.want))
			r.q.markCorrupt(r.id, reason)
			r.bad(reason)
			return n, fmt.Errorf("queue: body of %s: %w: %s", r.id, ErrBodyCorrupt, reason)
		}
	}
	return n, err
}

// Seek is for DSN building, which reads unverified bodies only.
func (r *bodyReader) Seek(off int64, whence int) (int64, error) {
	if r.want != nil {
		return 0, errors.New("queue: a verified body cannot seek")
	}
	return r.f.Seek(off, whence)
}

// Close closes the file and, for the last reader of a removed message, recycles the body.
func (r *bodyReader) Close() error {
	if r.closed {
		return nil
	}
	r.closed = true
	err := r.f.Close()
	r.q.bodyClosed(r.id)
	return err
}

// removeBodies recycles the bodies of messages that left the queue, each as soon as nothing reads it.
func (q *Queue) removeBodies(ids []string) {
	for _, id := range ids {
		if q.refs.remove(id) {
			q.recycle(id)
		}
	}
}

// recycle empties message id's body into the spare pool (or removes it).
func (q *Queue) recycle(id string) {
	if err := q.spare.keep(q.bodyPath(id)); err != nil && !os.IsNotExist(err) {
		q.log.Warn("queue: cannot remove body of finished message", "msg_id", id, "err", err)
	}
	q.refs.removed(id)
}
