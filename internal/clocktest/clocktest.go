// Package clocktest implements a settable clock for tests, safe for concurrent use. Its Now method is the
// value components take as their injected clock (Options.Now and the like); tests move it by hand with Set
// and Advance instead of sleeping.
//
// It deliberately does not run timers: code under test that waits does so on the real clock, bounded by a
// context, and computes deadlines from the injected Now.
package clocktest

import (
	"sync"
	"time"
)

// Clock is a settable clock. The zero value reads the zero time.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// New returns a clock set to t.
func New(t time.Time) *Clock { return &Clock{t: t} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Set sets the clock to t.
func (c *Clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

// Advance moves the clock forward by d (backward when d is negative) and returns the new time.
func (c *Clock) Advance(d time.Duration) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
	return c.t
}
