package delivery

import (
	"sync"
	"time"

	"github.com/emersion/go-smtp"
)

// sessionPool keeps SMTP sessions open between batches, so that a stream of mail to one MX pays for TCP,
// STARTTLS and certificate verification once rather than once per batch. A session is reused only for the
// same host, address and TLS plan (policy name, MTA-STS id and level), so a committed settings change or a
// new policy never rides on a session negotiated under the old one.
type sessionPool struct {
	idle    time.Duration
	maxUses int

	mu       sync.Mutex
	sessions map[poolKey][]*pooled
	closed   bool
}

type poolKey struct {
	host, addr, plan string
}

type pooled struct {
	c       *smtp.Client
	tlsDesc string
	uses    int
	// noReuse marks sessions that must end after this batch: plain-text retries and sessions that
	// recorded a TLS failure (each later batch must meet the check, and be counted, again).
	noReuse bool
	timer   *time.Timer
	// no is the session's number (Event.Session).
	no uint64
}

// get takes an idle session for k, or returns nil.
func (p *sessionPool) get(k poolKey) *pooled {
	p.mu.Lock()
	defer p.mu.Unlock()
	list := p.sessions[k]
	for len(list) > 0 {
		s := list[len(list)-1]
		list = list[:len(list)-1]
		p.sessions[k] = list
		if s.timer.Stop() {
			return s
		}
		// The idle timer fired and is closing it.
	}
	return nil
}

// put keeps s for reuse, or ends it when the pool is closed or s has been used enough.
func (p *sessionPool) put(k poolKey, s *pooled) {
	p.mu.Lock()
	if p.closed || p.idle <= 0 || s.noReuse || s.uses >= p.maxUses {
		p.mu.Unlock()
		s.c.Quit()
		s.c.Close()
		return
	}
	if p.sessions == nil {
		p.sessions = map[poolKey][]*pooled{}
	}
	s.timer = time.AfterFunc(p.idle, func() { p.expire(k, s) })
	p.sessions[k] = append(p.sessions[k], s)
	p.mu.Unlock()
}

// expire ends an idle session whose timer fired.
func (p *sessionPool) expire(k poolKey, s *pooled) {
	p.mu.Lock()
	list := p.sessions[k]
	for i, x := range list {
		if x == s {
			p.sessions[k] = append(list[:i], list[i+1:]...)
			break
		}
	}
	if len(p.sessions[k]) == 0 {
		delete(p.sessions, k)
	}
	p.mu.Unlock()
	s.c.Quit()
	s.c.Close()
}

// close ends every idle session; later puts end theirs at once.
func (p *sessionPool) close() {
	p.mu.Lock()
	p.closed = true
	var all []*pooled
	for k, list := range p.sessions {
		for _, s := range list {
			if s.timer.Stop() {
				all = append(all, s)
			}
		}
		delete(p.sessions, k)
	}
	p.mu.Unlock()
	for _, s := range all {
		s.c.Quit()
		s.c.Close()
	}
}
