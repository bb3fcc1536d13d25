package queue

import "container/heap"

// dueIndex is the scheduler's in-memory view of the queued recipients that are not in flight: for every
// destination domain a min-heap of its recipients by (next attempt, message id, row id), and a heap of the
// domains that may start a batch, by the time they may start it. With it, finding due work and the time of
// the next wake-up cost no SQL: dispatch is O(log D) per batch and the next due time is O(1).
//
// SQLite stays the durable truth. The index is rebuilt from it at Open, and every change of a queued
// recipient (Submit, an attempt's result, a DSN, Hold, Release, Retry, Delete, Bounce) updates it after its
// transaction commits. The index may hold stale entries (a race between an administrator and a delivery),
// never miss a queued recipient: dispatch re-reads each picked recipient in its own transaction and drops
// the ones SQLite no longer has queued, so a stale entry costs one lookup and a missing one cannot happen
// by construction (every path that leaves a recipient queued puts it back).
//
// A dueIndex is not safe for concurrent use; Queue guards it with Queue.mu.
type dueIndex struct {
	perDomain int   // batches in flight per domain
	maxBatch  int   // messages per batch
	wait      int64 // BatchWait in nanoseconds, >= 0

	rcpts   map[int64]*dueRcpt    // every indexed recipient, by row id
	byMsg   map[string][]*dueRcpt // the same, by message
	held    map[string]bool       // messages on hold: their recipients are indexed but in no heap
	domains map[string]*dueDomain
	ready   domainHeap // domains with indexed recipients and a free slot, by key
}

type dueRcpt struct {
	id     int64
	msgID  string
	domain string
	next   int64 // next attempt, Unix nanoseconds
	pos    int   // index in its domain's heap; -1 while its message is held
}

type dueDomain struct {
	name  string
	rcpts rcptHeap
	busy  int   // batches in flight
	key   int64 // when the domain may start its next batch (valid while pos >= 0)
	pos   int   // index in dueIndex.ready; -1 when not there
}

func newDueIndex(perDomain, maxBatch int, wait int64) *dueIndex {
	return &dueIndex{
		perDomain: perDomain, maxBatch: maxBatch, wait: max(wait, 0),
		rcpts: map[int64]*dueRcpt{}, byMsg: map[string][]*dueRcpt{}, held: map[string]bool{},
		domains: map[string]*dueDomain{},
	}
}

func (ix *dueIndex) domain(name string) *dueDomain {
	d := ix.domains[name]
	if d == nil {
		d = &dueDomain{name: name, pos: -1}
		ix.domains[name] = d
	}
	return d
}

// add indexes a queued recipient due at next, or moves it to next when it is indexed already.
func (ix *dueIndex) add(id int64, msgID, domain string, next int64) {
	if e := ix.rcpts[id]; e != nil {
		e.next = next
		if e.pos >= 0 {
			d := ix.domains[e.domain]
			heap.Fix(&d.rcpts, e.pos)
			ix.fix(d)
		}
		return
	}
	e := &dueRcpt{id: id, msgID: msgID, domain: domain, next: next, pos: -1}
	ix.rcpts[id] = e
	ix.byMsg[msgID] = append(ix.byMsg[msgID], e)
	if !ix.held[msgID] {
		d := ix.domain(domain)
		heap.Push(&d.rcpts, e)
		ix.fix(d)
	}
}

// unlink forgets e (taken for delivery, or no longer queued).
func (ix *dueIndex) unlink(e *dueRcpt) {
	delete(ix.rcpts, e.id)
	list := ix.byMsg[e.msgID]
	for i, x := range list {
		if x == e {
			list[i] = list[len(list)-1]
			list[len(list)-1] = nil
			list = list[:len(list)-1]
			break
		}
	}
	if len(list) == 0 {
		delete(ix.byMsg, e.msgID)
	} else {
		ix.byMsg[e.msgID] = list
	}
}

// removeMsg forgets message msgID (deleted or bounced).
func (ix *dueIndex) removeMsg(msgID string) {
	for _, e := range append([]*dueRcpt(nil), ix.byMsg[msgID]...) {
		if e.pos >= 0 {
			d := ix.domains[e.domain]
			heap.Remove(&d.rcpts, e.pos)
			ix.fix(d)
		}
		ix.unlink(e)
	}
	delete(ix.held, msgID)
}

// hold takes message msgID's recipients out of the heaps; recipients added later while it is held stay
// out too.
func (ix *dueIndex) hold(msgID string) {
	ix.held[msgID] = true
	for _, e := range ix.byMsg[msgID] {
		if e.pos >= 0 {
			d := ix.domains[e.domain]
			heap.Remove(&d.rcpts, e.pos)
			e.pos = -1
			ix.fix(d)
		}
	}
}

// release undoes hold.
func (ix *dueIndex) release(msgID string) {
	delete(ix.held, msgID)
	for _, e := range ix.byMsg[msgID] {
		if e.pos < 0 {
			d := ix.domain(e.domain)
			heap.Push(&d.rcpts, e)
			ix.fix(d)
		}
	}
}

// retry makes message msgID's indexed recipients due at now (held or not).
func (ix *dueIndex) retry(msgID string, now int64) {
	for _, e := range ix.byMsg[msgID] {
		ix.add(e.id, e.msgID, e.domain, now)
	}
}

// first returns the domain that may start a batch soonest and when, or nil.
func (ix *dueIndex) first() (*dueDomain, int64) {
	if len(ix.ready) == 0 {
		return nil, 0
	}
	return ix.ready[0], ix.ready[0].key
}

// take removes and returns the recipients of d's next batch: the recipients due at now, in order, of at
// most maxBatch messages. A batch taken is in flight until done(d.name).
func (ix *dueIndex) take(d *dueDomain, now int64) []*dueRcpt {
	var out []*dueRcpt
	msgs := map[string]bool{}
	for len(d.rcpts) > 0 && d.rcpts[0].next <= now {
		e := d.rcpts[0]
		if !msgs[e.msgID] {
			if len(msgs) == ix.maxBatch {
				break
			}
			msgs[e.msgID] = true
		}
		heap.Pop(&d.rcpts)
		ix.unlink(e)
		out = append(out, e)
	}
	if len(out) > 0 {
		d.busy++
	}
	ix.fix(d)
	return out
}

// done ends one of domain name's batches in flight.
func (ix *dueIndex) done(name string) {
	d := ix.domain(name)
	d.busy--
	ix.fix(d)
}

// fix recomputes d's place in the ready heap after a change of its recipients or its batches in flight,
// and forgets d when nothing refers to it any more.
//
// A domain with no batch in flight may start one as soon as its first recipient is due: no added latency
// when idle. A domain with a batch in flight (and a free slot) waits BatchWait longer, so that the work
// arriving meanwhile forms one larger batch (fewer SMTP sessions and TLS handshakes per message); it does
// not wait when it already holds MaxBatch recipients (a full batch may be ready; recipients are a proxy
// for messages here). A domain at PerDomain batches waits for one of them to finish.
func (ix *dueIndex) fix(d *dueDomain) {
	ok := len(d.rcpts) > 0 && d.busy < ix.perDomain
	if ok {
		key := d.rcpts[0].next
		if d.busy > 0 && len(d.rcpts) < ix.maxBatch {
			key += ix.wait
		}
		d.key = key
		if d.pos >= 0 {
			heap.Fix(&ix.ready, d.pos)
		} else {
			heap.Push(&ix.ready, d)
		}
		return
	}
	if d.pos >= 0 {
		heap.Remove(&ix.ready, d.pos)
	}
	if len(d.rcpts) == 0 && d.busy <= 0 {
		delete(ix.domains, d.name)
	}
}

// rcptHeap orders a domain's recipients by next attempt, then message, then row id (the order of
// acceptance for messages due at the same time, and of RCPT within a message).
type rcptHeap []*dueRcpt

func (h rcptHeap) Len() int { return len(h) }
func (h rcptHeap) Less(i, j int) bool {
	a, b := h[i], h[j]
	if a.next != b.next {
		return a.next < b.next
	}
	if a.msgID != b.msgID {
		return a.msgID < b.msgID
	}
	return a.id < b.id
}
func (h rcptHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].pos, h[j].pos = i, j
}
func (h *rcptHeap) Push(x any) {
	e := x.(*dueRcpt)
	e.pos = len(*h)
	*h = append(*h, e)
}
func (h *rcptHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	e.pos = -1
	return e
}

// domainHeap orders domains by key, then name.
type domainHeap []*dueDomain

func (h domainHeap) Len() int { return len(h) }
func (h domainHeap) Less(i, j int) bool {
	if h[i].key != h[j].key {
		return h[i].key < h[j].key
	}
	return h[i].name < h[j].name
}
func (h domainHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].pos, h[j].pos = i, j
}
func (h *domainHeap) Push(x any) {
	d := x.(*dueDomain)
	d.pos = len(*h)
	*h = append(*h, d)
}
func (h *domainHeap) Pop() any {
	old := *h
	d := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	d.pos = -1
	return d
}
