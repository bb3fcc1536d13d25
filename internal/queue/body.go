package queue

import (
	"errors"
	"fmt"
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

// bodyReader is one reader of a spool body.
type bodyReader struct {
	q      *Queue
	id     string
	f      *os.File
	closed bool
}

func (r *bodyReader) Read(p []byte) (int, error) { return r.f.Read(p) }

func (r *bodyReader) Seek(off int64, whence int) (int64, error) { return r.f.Seek(off, whence) }

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
