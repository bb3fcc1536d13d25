package dnsx

import (
	"context"
	"errors"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

// Defaults of the zero Cache.
const (
	// DefaultCacheEntries bounds the number of answers kept.
	DefaultCacheEntries = 10000
	// DefaultCacheMaxTTL caps how long a positive answer is kept, whatever its TTL (unbound's cache-max-ttl).
	DefaultCacheMaxTTL = 24 * time.Hour
	// DefaultCacheMaxNegativeTTL caps negative answers (RFC 2308 Section 5: "values of one to three hours
	// have been found to work well").
	DefaultCacheMaxNegativeTTL = 3 * time.Hour
	// DefaultCacheFailureTTL is how long a SERVFAIL (including a bogus answer) or REFUSED is kept: long
	// enough that a burst of messages to a broken domain asks once, short enough that a repaired domain is
	// seen at once (RFC 2308 Section 7.1 allows up to 5 minutes).
	DefaultCacheFailureTTL = 5 * time.Second
)

// Cache keeps the answers a Client received, each for the TTL its records carry, so that a message to a
// domain seen a moment ago costs no DNS round trip. Set Client.Cache to use it; one Cache may serve one
// Client only (it keeps answers as that Client's trust settings left them: the AD bit of an untrusted
// resolver already cleared).
//
// What it keeps, per question (name and type):
//   - an answer with records: until the smallest TTL of its answer section (RFC 1035 Section 3.2.1: TTL 0
//     is not cached), at most MaxTTL;
//   - NXDOMAIN and NODATA: for the negative TTL of RFC 2308 Section 5, the smaller of the SOA record's TTL
//     and its MINIMUM field, at most MaxNegativeTTL; a negative answer without an SOA is not cached
//     (RFC 2308 Section 5: it "SHOULD NOT be cached");
//   - SERVFAIL (bogus or not) and REFUSED from every server: for FailureTTL only (RFC 2308 Section 7.1);
//   - never a timeout, a network error or a cancelled lookup: they are not answers.
//
// The AD bit is kept with each answer, so a cached answer is exactly as secure as it was when received.
// Concurrent lookups of the same question wait for one query. The zero value is ready to use.
type Cache struct {
	// MaxEntries bounds the answers kept; 0 means DefaultCacheEntries. When full, expired answers are
	// dropped first, then arbitrary ones.
	MaxEntries int
	// MaxTTL, MaxNegativeTTL and FailureTTL bound how long answers are kept; 0 means the defaults above.
	MaxTTL, MaxNegativeTTL, FailureTTL time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time

	mu       sync.Mutex
	entries  map[cacheKey]cacheEntry
	inflight map[cacheKey]*flight

	hits, negative, failures, misses atomic.Uint64
}

type cacheKey struct {
	name  string // lower-case FQDN
	qtype uint16
}

type cacheEntry struct {
	msg     *dns.Msg // read-only once stored
	err     error
	expires time.Time
}

// flight is one query being asked for all the lookups that want it.
type flight struct {
	done chan struct{}
	msg  *dns.Msg
	err  error
}

// CacheStats counts the lookups the cache answered and those that went to a server (Misses), and the
// answers kept now. Every lookup through the cache counts once: Hits when the cache (or a query already
// asked for another lookup) gave records of the type asked, Negative when it gave NXDOMAIN or NODATA,
// Failures when it gave a SERVFAIL, bogus or REFUSED outcome kept for FailureTTL.
type CacheStats struct {
	Hits, Negative, Failures, Misses uint64
	Entries                          int
}

// Stats returns the counters.
func (c *Cache) Stats() CacheStats {
	c.mu.Lock()
	n := len(c.entries)
	c.mu.Unlock()
	return CacheStats{Hits: c.hits.Load(), Negative: c.negative.Load(), Failures: c.failures.Load(),
		Misses: c.misses.Load(), Entries: n}
}

// answered counts a lookup answered without a query of its own, by what the answer was.
func (c *Cache) answered(msg *dns.Msg, err error) {
	switch {
	case err != nil:
		c.failures.Add(1)
	case msg != nil && (msg.Rcode != dns.RcodeSuccess || !hasFinalData(msg)):
		c.negative.Add(1)
	default:
		c.hits.Add(1)
	}
}

func (c *Cache) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

// peek returns the cached answer for k without asking anyone; the error wraps ErrNotCached when there is
// none.
func (c *Cache) peek(k cacheKey) (*dns.Msg, error) {
	c.mu.Lock()
	e, ok := c.entries[k]
	c.mu.Unlock()
	if !ok || !c.now().Before(e.expires) {
		return nil, ErrNotCached
	}
	c.answered(e.msg, e.err)
	return e.msg, e.err
}

// get returns the cached answer for k, or asks with ask (once for all concurrent callers) and keeps what it
// returns for as long as the rules above allow.
func (c *Cache) get(ctx context.Context, k cacheKey, ask func() (*dns.Msg, error)) (*dns.Msg, error) {
	c.mu.Lock()
	if e, ok := c.entries[k]; ok {
		if c.now().Before(e.expires) {
			c.mu.Unlock()
			c.answered(e.msg, e.err)
			return e.msg, e.err
		}
		delete(c.entries, k)
	}
	if f, ok := c.inflight[k]; ok {
		c.mu.Unlock()
		select {
		case <-f.done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if f.err != nil && !cacheableFailure(f.err) {
			// The leader's lookup ended without an answer (its deadline, say); this one asks for itself.
			c.misses.Add(1)
			return ask()
		}
		c.answered(f.msg, f.err)
		return f.msg, f.err
	}
	f := &flight{done: make(chan struct{})}
	if c.inflight == nil {
		c.inflight = make(map[cacheKey]*flight)
	}
	c.inflight[k] = f
	c.mu.Unlock()
	c.misses.Add(1)

	f.msg, f.err = ask()
	ttl := c.ttl(f.msg, f.err)

	c.mu.Lock()
	delete(c.inflight, k)
	if ttl > 0 {
		c.storeLocked(k, cacheEntry{msg: f.msg, err: f.err, expires: c.now().Add(ttl)})
	}
	c.mu.Unlock()
	close(f.done)
	return f.msg, f.err
}

func (c *Cache) storeLocked(k cacheKey, e cacheEntry) {
	if c.entries == nil {
		c.entries = make(map[cacheKey]cacheEntry)
	}
	limit := c.MaxEntries
	if limit <= 0 {
		limit = DefaultCacheEntries
	}
	if _, ok := c.entries[k]; !ok && len(c.entries) >= limit {
		now := c.now()
		for key, old := range c.entries {
			if !now.Before(old.expires) {
				delete(c.entries, key)
			}
		}
		// Still full: drop arbitrary answers (map order), a tenth of the limit at once so that a full cache
		// does not sweep on every insert.
		for key := range c.entries {
			if len(c.entries) < limit-limit/10 {
				break
			}
			delete(c.entries, key)
		}
	}
	c.entries[k] = e
}

// cacheableFailure tells whether a failed exchange was an answer worth remembering briefly: every server
// answered with an error code (SERVFAIL, bogus, REFUSED), rather than timing out or being unreachable.
func cacheableFailure(err error) bool {
	return errors.Is(err, ErrBogus) || !hasTransportError(err)
}

// hasTransportError tells whether any of the joined errors of a failed exchange is not an error code.
func hasTransportError(err error) bool {
	j, ok := err.(interface{ Unwrap() []error })
	if !ok {
		var rc RcodeError
		return !errors.As(err, &rc)
	}
	for _, e := range j.Unwrap() {
		if hasTransportError(e) {
			return true
		}
	}
	return false
}

// ttl is how long an exchange's outcome may be kept; 0 means not at all.
func (c *Cache) ttl(msg *dns.Msg, err error) time.Duration {
	if err != nil {
		if !cacheableFailure(err) {
			return 0
		}
		return orDefault(c.FailureTTL, DefaultCacheFailureTTL)
	}
	if msg == nil {
		return 0
	}
	// RFC 2181 Section 5.2: the records of an RRset share one TTL; across the RRsets of the answer (a
	// CNAME chain and its target) the smallest bounds the whole, whether the chain ends in data or not.
	least := uint32(math.MaxUint32)
	for _, rr := range msg.Answer {
		least = min(least, rr.Header().Ttl)
	}
	maxTTL := orDefault(c.MaxTTL, DefaultCacheMaxTTL)
	if msg.Rcode == dns.RcodeSuccess && hasFinalData(msg) {
		return min(time.Duration(least)*time.Second, maxTTL)
	}
	// NXDOMAIN, or NOERROR without records of the type asked (NODATA), possibly at the end of a CNAME
	// chain. RFC 2308 Section 5: the negative TTL is the SOA record's TTL or its MINIMUM field, whichever is
	// smaller, and RFC 2308 Section 6 (with RFC 2181 Section 5.2) bounds it by the chain that led there: a
	// CNAME that expires first may point elsewhere by then.
	for _, rr := range msg.Ns {
		if soa, ok := rr.(*dns.SOA); ok {
			neg := min(soa.Hdr.Ttl, soa.Minttl, least)
			return min(time.Duration(neg)*time.Second, orDefault(c.MaxNegativeTTL, DefaultCacheMaxNegativeTTL))
		}
	}
	if msg.Rcode == dns.RcodeSuccess && len(msg.Answer) > 0 {
		// A CNAME without its target's data or an SOA (a server that does not follow CNAMEs): the chain is
		// kept as long as its records.
		return min(time.Duration(least)*time.Second, maxTTL)
	}
	// Without an SOA a negative answer is not cached.
	return 0
}

// hasFinalData tells whether msg answers its question with records of the type asked, rather than only
// with the CNAMEs (or DNAMEs) that lead to a name without them.
func hasFinalData(msg *dns.Msg) bool {
	if len(msg.Question) == 0 {
		return len(msg.Answer) > 0
	}
	qtype := msg.Question[0].Qtype
	for _, rr := range msg.Answer {
		if t := rr.Header().Rrtype; t == qtype || qtype == dns.TypeANY {
			return true
		}
	}
	return false
}

func orDefault(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}
