package smtpserver

import (
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// limitListener enforces Config.MaxConnsPerIP at accept time and tracks connections for Shutdown.
type limitListener struct {
	net.Listener
	srv *Server
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		ip := remoteIP(c.RemoteAddr())
		tc, ok := l.srv.track(c, ip)
		if ok {
			return tc, nil
		}
		l.srv.log.Info("connection refused: too many connections", "ip", ip.String())
		l.srv.rejected(ReasonTooManyConns)
		// A fresh socket's send buffer is empty, so this write does not block in practice; the deadline
		// bounds it anyway. Deadlines are wall-clock by nature, not the injected clock.
		c.SetWriteDeadline(time.Now().Add(5 * time.Second))
		c.Write([]byte("421 4.7.0 " + l.srv.cfg.Hostname + " too many connections from your address\r\n"))
		c.Close()
	}
}

func remoteIP(a net.Addr) netip.Addr {
	if ta, ok := a.(*net.TCPAddr); ok {
		ip, _ := netip.AddrFromSlice(ta.IP)
		return ip.Unmap()
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// trackedConn counts against its IP's connection limit until closed. During Shutdown an idle connection
// is drained: its read deadline is pinned in the past, so go-smtp's next read times out and it answers 421
// and closes, even though go-smtp resets the deadline before every command.
type trackedConn struct {
	net.Conn
	srv      *Server
	ip       netip.Addr
	once     sync.Once
	draining atomic.Bool
	busy     bool // in a transaction (MAIL accepted, not yet reset); guarded by srv.mu
	// guard refuses commands with a bare LF or CR (bareline.go).
	guard commandGuard
}

// pastDeadline is any time in the past: a read with it fails at once.
func pastDeadline() time.Time { return time.Unix(1, 0) }

// Close releases the connection's slot before closing the socket, so that a client which has seen the
// close can connect again at once.
func (c *trackedConn) Close() error {
	c.once.Do(func() { c.srv.untrack(c) })
	return c.Conn.Close()
}

func (c *trackedConn) SetReadDeadline(t time.Time) error {
	if c.draining.Load() {
		t = pastDeadline()
	}
	return c.Conn.SetReadDeadline(t)
}

func (c *trackedConn) SetDeadline(t time.Time) error {
	if err := c.Conn.SetWriteDeadline(t); err != nil {
		return err
	}
	return c.SetReadDeadline(t)
}

func (c *trackedConn) drain() {
	c.draining.Store(true)
	c.Conn.SetReadDeadline(pastDeadline())
}

func (s *Server) track(c net.Conn, ip netip.Addr) (*trackedConn, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.perIP[ip] >= s.cfg.MaxConnsPerIP {
		return nil, false
	}
	s.perIP[ip]++
	tc := &trackedConn{Conn: c, srv: s, ip: ip}
	tc.guard.maxLine = s.cfg.MaxLineLength
	if s.shuttingDown {
		tc.drain()
	}
	s.conns[tc] = struct{}{}
	return tc, true
}

func (s *Server) untrack(c *trackedConn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.conns, c)
	if s.perIP[c.ip]--; s.perIP[c.ip] <= 0 {
		delete(s.perIP, c.ip)
	}
}

// setBusy marks a connection as inside a transaction. It refuses to start one once Shutdown has begun, and
// drains a connection whose transaction ends during Shutdown.
func (s *Server) setBusy(c *trackedConn, busy bool) bool {
	if c == nil {
		return true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if busy && s.shuttingDown {
		return false
	}
	c.busy = busy
	if !busy && s.shuttingDown {
		c.drain()
	}
	return true
}

// bucket is a token bucket for Config.RatePerIP.
type bucket struct {
	tokens float64
	last   time.Time
}

// allowMessage takes one token from ip's bucket (capacity RatePerIP, refilled at RatePerIP per minute).
func (s *Server) allowMessage(ip netip.Addr) bool {
	if s.cfg.RatePerIP <= 0 {
		return true
	}
	now := s.now()
	limit := float64(s.cfg.RatePerIP)
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.rate) > 10000 {
		for k, b := range s.rate {
			if now.Sub(b.last) > time.Minute {
				delete(s.rate, k)
			}
		}
	}
	b, ok := s.rate[ip]
	if !ok {
		b = &bucket{tokens: limit, last: now}
		s.rate[ip] = b
	}
	if el := now.Sub(b.last); el > 0 {
		b.tokens = min(limit, b.tokens+el.Minutes()*limit)
	}
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// window counts failed AUTH attempts in a fixed window.
type window struct {
	start time.Time
	n     int
}

func (s *Server) authLocked(ip netip.Addr) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	w, ok := s.authFails[ip]
	if !ok {
		return false
	}
	if s.now().Sub(w.start) >= authFailureWindow {
		delete(s.authFails, ip)
		return false
	}
	return w.n >= maxAuthFailures
}

func (s *Server) authFailed(ip netip.Addr) {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.authFails) > 10000 {
		for k, w := range s.authFails {
			if now.Sub(w.start) >= authFailureWindow {
				delete(s.authFails, k)
			}
		}
	}
	w, ok := s.authFails[ip]
	if !ok || now.Sub(w.start) >= authFailureWindow {
		w = &window{start: now}
		s.authFails[ip] = w
	}
	w.n++
}
