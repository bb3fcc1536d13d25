package dnsx_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/mxgate/mxgate/internal/clocktest"
	"github.com/mxgate/mxgate/internal/dnsx"
	"github.com/mxgate/mxgate/internal/dnsx/dnstest"
)

// cachedClient is the server's client with a cache on a test clock.
func cachedClient(s *dnstest.Server) (*dnsx.Client, *clocktest.Clock) {
	clock := clocktest.New(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	c := s.Client()
	c.Timeout = 5 * time.Second
	c.Cache = &dnsx.Cache{Now: clock.Now}
	return c, clock
}

// TestCacheKeepsAnswersForTheirTTL: an answer is reused until the smallest TTL of its records ends and never
// after; a CNAME chain lives as long as its shortest link; TTL 0 is not kept.
func TestCacheKeepsAnswersForTheirTTL(t *testing.T) {
	t.Parallel()
	s := dnstest.New(t)
	s.Add(
		"example.com. 60 IN MX 10 mx.example.com.",
		"example.com. 120 IN MX 20 mx2.example.com.",
		"alias.example. 30 IN CNAME target.example.",
		"target.example. 300 IN A 192.0.2.1",
		"zero.example. 0 IN A 192.0.2.2",
	)
	c, clock := cachedClient(s)
	ctx := t.Context()
	lookupMX := func() []dnsx.MX {
		t.Helper()
		mxs, _, err := c.LookupMX(ctx, "example.com")
		if err != nil {
			t.Fatal(err)
		}
		return mxs
	}
	lookupMX()
	clock.Advance(59 * time.Second)
	lookupMX()
	if n := s.QueryCount("example.com", dns.TypeMX); n != 1 {
		t.Fatalf("MX queries within the TTL = %d, want 1 (the second lookup answered from the cache)", n)
	}
	// The record changes; once the smallest TTL (60 s) has passed the new data is seen.
	s.Remove("example.com", dns.TypeMX)
	s.Add("example.com. 60 IN MX 5 new.example.com.")
	clock.Advance(time.Second)
	if got := lookupMX(); len(got) != 1 || got[0].Host != "new.example.com" {
		t.Errorf("MX after the TTL = %v, want the new record", got)
	}
	if n := s.QueryCount("example.com", dns.TypeMX); n != 2 {
		t.Errorf("MX queries after the TTL = %d, want 2", n)
	}

	lookupIP := func(name string) {
		t.Helper()
		if _, _, err := c.LookupIP(ctx, name); err != nil {
			t.Fatal(err)
		}
	}
	lookupIP("alias.example")
	clock.Advance(29 * time.Second)
	lookupIP("alias.example")
	if n := s.QueryCount("alias.example", dns.TypeA); n != 1 {
		t.Errorf("A queries for the CNAME within its TTL = %d, want 1", n)
	}
	clock.Advance(time.Second)
	lookupIP("alias.example")
	if n := s.QueryCount("alias.example", dns.TypeA); n != 2 {
		t.Errorf("A queries for the CNAME after its 30 s TTL (the target's is 300 s) = %d, want 2", n)
	}

	lookupIP("zero.example")
	lookupIP("zero.example")
	if n := s.QueryCount("zero.example", dns.TypeA); n != 2 {
		t.Errorf("A queries for a TTL 0 record = %d, want 2 (never cached)", n)
	}
	if st := c.Cache.Stats(); st.Hits == 0 || st.Misses == 0 {
		t.Errorf("cache stats %+v: want hits and misses counted", st)
	}
}

// TestCacheNegativeAnswers_RFC2308: NXDOMAIN and NODATA are kept for the smaller of the SOA's TTL and its
// MINIMUM field (RFC 2308 Section 5), and not at all without an SOA.
func TestCacheNegativeAnswers_RFC2308(t *testing.T) {
	t.Parallel()
	s := dnstest.New(t)
	s.Add(
		"example.com. 300 IN SOA ns.example.com. hostmaster.example.com. 1 7200 3600 1209600 60",
		"host.example.com. 300 IN A 192.0.2.1",
		"nosoa.example. 300 IN A 192.0.2.2",
	)
	c, clock := cachedClient(s)
	ctx := t.Context()

	for _, tt := range []struct {
		name    string
		qtype   uint16
		wantErr error
	}{
		{"missing.example.com", dns.TypeMX, dnsx.ErrNotFound}, // NXDOMAIN
		{"host.example.com", dns.TypeMX, nil},                 // NODATA
	} {
		for range 2 {
			mxs, _, err := c.LookupMX(ctx, tt.name)
			if !errors.Is(err, tt.wantErr) || len(mxs) != 0 {
				t.Fatalf("MX %s = %v, %v; want no records and %v", tt.name, mxs, err, tt.wantErr)
			}
		}
		if n := s.QueryCount(tt.name, tt.qtype); n != 1 {
			t.Errorf("MX queries for %s = %d, want 1 (negative answer cached)", tt.name, n)
		}
	}
	// MINIMUM is 60 and the SOA's TTL 300: after 60 s the negative answers are gone.
	s.Add("missing.example.com. 300 IN MX 10 mx.example.com.")
	clock.Advance(60 * time.Second)
	mxs, _, err := c.LookupMX(ctx, "missing.example.com")
	if err != nil || len(mxs) != 1 {
		t.Errorf("MX missing.example.com after the negative TTL = %v, %v; want the new record", mxs, err)
	}

	// No SOA in the answer: not cached (RFC 2308 Section 5).
	for range 2 {
		if _, _, err := c.LookupMX(ctx, "gone.nosoa.example"); !errors.Is(err, dnsx.ErrNotFound) {
			t.Fatalf("MX gone.nosoa.example: %v, want ErrNotFound", err)
		}
	}
	if n := s.QueryCount("gone.nosoa.example", dns.TypeMX); n != 2 {
		t.Errorf("MX queries for an NXDOMAIN without SOA = %d, want 2 (not cached)", n)
	}
}

// TestCacheNegativeAfterCNAMEBoundedByTheChain_RFC2308: a negative answer reached through a CNAME is kept
// no longer than the CNAME's TTL (which may point elsewhere once it expires) nor the SOA's negative TTL
// (RFC 2308 Sections 5 and 6, RFC 2181 Section 5.2), for NXDOMAIN and for NODATA alike.
func TestCacheNegativeAfterCNAMEBoundedByTheChain_RFC2308(t *testing.T) {
	t.Parallel()
	s := dnstest.New(t)
	s.Add(
		// NXDOMAIN after a CNAME of 60 s, with a negative TTL of an hour.
		"gone.example. 3600 IN SOA ns.gone.example. hostmaster.gone.example. 1 7200 3600 1209600 3600",
		"alias.example.com. 60 IN CNAME t.gone.example.",
		"new.example.com. 300 IN A 192.0.2.9",
		// NODATA after a CNAME of a day, with a negative TTL of 300 s.
		"nodata.example. 300 IN SOA ns.nodata.example. hostmaster.nodata.example. 1 7200 3600 1209600 300",
		"long.example.com. 86400 IN CNAME host.nodata.example.",
		"host.nodata.example. 86400 IN A 192.0.2.1",
	)
	c, clock := cachedClient(s)
	ctx := t.Context()

	if _, _, err := c.LookupIP(ctx, "alias.example.com"); !errors.Is(err, dnsx.ErrNotFound) {
		t.Fatalf("IP alias.example.com = %v, want ErrNotFound (its CNAME target does not exist)", err)
	}
	if mxs, _, err := c.LookupMX(ctx, "long.example.com"); err != nil || len(mxs) != 0 {
		t.Fatalf("MX long.example.com = %v, %v; want no records (NODATA)", mxs, err)
	}

	// The CNAME now points to a name that exists; once its 60 s are over the new answer is seen.
	s.Remove("alias.example.com", dns.TypeCNAME)
	s.Add("alias.example.com. 60 IN CNAME new.example.com.")
	clock.Advance(61 * time.Second)
	ips, _, err := c.LookupIP(ctx, "alias.example.com")
	if err != nil || len(ips) != 1 || ips[0] != netip.MustParseAddr("192.0.2.9") {
		t.Errorf("IP alias.example.com after the CNAME's TTL = %v, %v; want [192.0.2.9] (NXDOMAIN kept past its CNAME)", ips, err)
	}

	// The target gains an MX; once the 300 s negative TTL is over it is seen, although the CNAME lives a day.
	s.Add("host.nodata.example. 300 IN MX 10 mx.nodata.example.")
	clock.Advance(240 * time.Second)
	mxs, _, err := c.LookupMX(ctx, "long.example.com")
	if err != nil || len(mxs) != 1 {
		t.Errorf("MX long.example.com after the SOA's negative TTL = %v, %v; want the new record (NODATA kept for the CNAME's TTL)", mxs, err)
	}
	// The answer for the alias itself (the CNAME, then NODATA) is asked again too, not kept for the day.
	if n := s.QueryCount("long.example.com", dns.TypeMX); n != 2 {
		t.Errorf("MX queries for long.example.com after the negative TTL = %d, want 2 (the NODATA answer kept past its SOA's negative TTL)", n)
	}
}

// TestCacheKeepsTheADBitPerAnswer_DANE1: each cached answer stays as secure as it was when received: a
// secure and an insecure answer side by side, and an untrusted resolver's AD bit still cleared.
func TestCacheKeepsTheADBitPerAnswer_DANE1(t *testing.T) {
	t.Parallel()
	s := dnstest.New(t)
	s.Add(
		"secure.example. 300 IN A 192.0.2.1",
		"insecure.example. 300 IN A 192.0.2.2",
		"_25._tcp.mx.secure.example. 300 IN TLSA 3 1 1 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
	)
	s.SetSecure("secure.example", true)
	trusted, _ := cachedClient(s)
	untrusted, _ := cachedClient(s)
	untrusted.Validating = []netip.Prefix{}
	ctx := t.Context()
	for round := range 2 {
		for _, tt := range []struct {
			c          *dnsx.Client
			name       string
			wantSecure bool
		}{
			{trusted, "secure.example", true},
			{trusted, "insecure.example", false},
			{untrusted, "secure.example", false},
		} {
			_, res, err := tt.c.LookupIP(ctx, tt.name)
			if err != nil {
				t.Fatal(err)
			}
			if res.Secure != tt.wantSecure {
				t.Errorf("round %d: %s secure = %v, want %v", round, tt.name, res.Secure, tt.wantSecure)
			}
		}
		_, res, err := trusted.LookupTLSA(ctx, "_25._tcp.mx.secure.example")
		if err != nil || !res.Secure {
			t.Errorf("round %d: TLSA = %+v, %v; want secure", round, res, err)
		}
	}
	if n := s.QueryCount("secure.example", dns.TypeA); n != 2 {
		t.Errorf("A queries for secure.example = %d, want 2 (one per client, the second round cached)", n)
	}
}

// TestCacheFailuresBriefly: SERVFAIL (and a bogus answer) is kept for FailureTTL only, then asked again; a
// timeout is not an answer and is never kept.
func TestCacheFailuresBriefly(t *testing.T) {
	t.Parallel()
	s := dnstest.New(t)
	s.Add(
		"broken.example. 300 IN MX 10 mx.broken.example.",
		"bogus.example. 300 IN MX 10 mx.bogus.example.",
		"slow.example. 300 IN MX 10 mx.slow.example.",
	)
	s.Fail("broken.example", dns.TypeMX, dnstest.FailServFail)
	s.Fail("bogus.example", dns.TypeMX, dnstest.FailBogus)
	s.Fail("slow.example", dns.TypeMX, dnstest.FailDrop)
	c, clock := cachedClient(s)
	ctx := t.Context()

	for _, tt := range []struct {
		name    string
		wantErr error
	}{{"broken.example", dnsx.ErrTemporary}, {"bogus.example", dnsx.ErrBogus}} {
		// The first lookup asks (and, the resolver being a trusted validator, asks again with checking
		// disabled to tell bogus from broken); the second, within the failure TTL, asks nothing.
		var first int
		for i := range 2 {
			if _, _, err := c.LookupMX(ctx, tt.name); !errors.Is(err, tt.wantErr) {
				t.Fatalf("MX %s: %v, want %v", tt.name, err, tt.wantErr)
			}
			if i == 0 {
				first = s.QueryCount(tt.name, dns.TypeMX)
			}
		}
		if n := s.QueryCount(tt.name, dns.TypeMX); n != first || n == 0 {
			t.Errorf("MX queries for %s: %d after one lookup, %d after two within the failure TTL; want no new query", tt.name, first, n)
		}
	}
	s.Fail("broken.example", dns.TypeMX, dnstest.FailNone)
	clock.Advance(dnsx.DefaultCacheFailureTTL)
	if mxs, _, err := c.LookupMX(ctx, "broken.example"); err != nil || len(mxs) != 1 {
		t.Errorf("MX broken.example after the failure TTL, repaired = %v, %v; want its record", mxs, err)
	}

	c.Timeout = 200 * time.Millisecond // the timeout is the point here
	for range 2 {
		if _, _, err := c.LookupMX(ctx, "slow.example"); !errors.Is(err, dnsx.ErrTemporary) {
			t.Fatalf("MX slow.example: %v, want ErrTemporary", err)
		}
	}
	// Each lookup must have sent its own query (a timeout is never cached); a dropped query may reach the
	// server after the client gave up, so wait for it, bounded.
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := s.WaitQueries(wctx, "slow.example", dns.TypeMX, 2); err != nil {
		t.Errorf("a timeout is never cached: %v", err)
	}
}

// TestCacheBoundedAndConcurrent: the cache holds at most MaxEntries answers, and concurrent lookups of
// names get each its own answer.
func TestCacheBoundedAndConcurrent(t *testing.T) {
	t.Parallel()
	s := dnstest.New(t)
	const names = 40
	for i := range names {
		s.Add(fmt.Sprintf("h%d.example. 300 IN A 192.0.2.%d", i, i+1))
	}
	c := s.Client()
	c.Timeout = 10 * time.Second // 80 lookups at once on a loaded machine: no timeout is under test here
	c.Cache = &dnsx.Cache{MaxEntries: 10}
	var wg sync.WaitGroup
	errs := make(chan error, 2*names)
	for range 2 {
		for i := range names {
			wg.Go(func() {
				ips, _, err := c.LookupIP(t.Context(), fmt.Sprintf("h%d.example", i))
				if err == nil && (len(ips) != 1 || ips[0] != netip.AddrFrom4([4]byte{192, 0, 2, byte(i + 1)})) {
					err = fmt.Errorf("h%d.example: got %v", i, ips)
				}
				if err != nil {
					errs <- err
				}
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if st := c.Cache.Stats(); st.Entries > 10 {
		t.Errorf("cache holds %d answers, want at most MaxEntries 10", st.Entries)
	}
}

// TestCachedTXTAnswersOnlyFromTheCache: CachedTXT never asks a server; it gives what LookupTXT received while
// that answer is within its TTL, with its DNSSEC status, and ErrNotCached otherwise.
func TestCachedTXTAnswersOnlyFromTheCache(t *testing.T) {
	t.Parallel()
	s := dnstest.New(t)
	s.Add(`_mta-sts.example.com. 60 IN TXT "v=STSv1; " "id=1"`)
	s.SetSecure("example.com", true)
	c, clock := cachedClient(s)
	if _, _, err := c.CachedTXT("_mta-sts.example.com"); !errors.Is(err, dnsx.ErrNotCached) {
		t.Fatalf("CachedTXT before any lookup: %v, want ErrNotCached", err)
	}
	if _, _, err := c.LookupTXT(t.Context(), "_mta-sts.example.com"); err != nil {
		t.Fatal(err)
	}
	txts, res, err := c.CachedTXT("_MTA-STS.example.com.")
	if err != nil || len(txts) != 1 || txts[0] != "v=STSv1; id=1" || !res.Secure {
		t.Errorf("CachedTXT = %q, %+v, %v; want the record, secure", txts, res, err)
	}
	clock.Advance(60 * time.Second)
	if _, _, err := c.CachedTXT("_mta-sts.example.com"); !errors.Is(err, dnsx.ErrNotCached) {
		t.Errorf("CachedTXT after the TTL: %v, want ErrNotCached", err)
	}
	if n := s.QueryCount("_mta-sts.example.com", dns.TypeTXT); n != 1 {
		t.Errorf("TXT queries = %d, want 1 (CachedTXT asks no server)", n)
	}
	if _, _, err := s.Client().CachedTXT("_mta-sts.example.com"); !errors.Is(err, dnsx.ErrNotCached) {
		t.Errorf("CachedTXT without a cache: %v, want ErrNotCached", err)
	}
}

// TestCacheCountsEachQuestionByResult: every question through the cache counts once, as a miss when it
// asked a server, or by what the cache gave: records (hit), NXDOMAIN or NODATA (negative), a kept SERVFAIL
// (failure).
func TestCacheCountsEachQuestionByResult(t *testing.T) {
	t.Parallel()
	s := dnstest.New(t)
	s.Add(
		"example.com. 300 IN SOA ns.example.com. hostmaster.example.com. 1 7200 3600 1209600 60",
		"example.com. 300 IN MX 10 mx.example.com.",
		"host.example.com. 300 IN A 192.0.2.1",
		"broken.example. 300 IN MX 10 mx.broken.example.",
	)
	s.Fail("broken.example", dns.TypeMX, dnstest.FailServFail)
	c, _ := cachedClient(s)
	ctx := t.Context()
	for _, name := range []string{"example.com", "missing.example.com", "host.example.com", "broken.example"} {
		for range 3 {
			_, _, _ = c.LookupMX(ctx, name)
		}
	}
	want := dnsx.CacheStats{Hits: 2, Negative: 4, Failures: 2, Misses: 4, Entries: 4}
	if st := c.Cache.Stats(); st != want {
		t.Errorf("cache stats after 3 lookups each of an MX, an NXDOMAIN, a NODATA and a SERVFAIL = %+v, want %+v", st, want)
	}
}
