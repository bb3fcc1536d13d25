// Package mx implements MX resolution for delivery (RFC 5321 Section 5.1 and RFC 7505): hosts in preference
// order with equal preferences shuffled, the implicit MX of a domain without MX records, the null MX, and loop
// prevention when we are ourselves an MX of the destination.
//
// It does not handle address-literal destinations (the caller does), static routes or smart hosts, and it
// does not decide TLS: tlspolicy filters the hosts this package returns. Host names are the MX records'
// exchange names as published, never CNAME-expanded, because MTA-STS matches those (RFC 8461 Section 4).
package mx

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"

	"github.com/mxgate/mxgate/internal/address"
	"github.com/mxgate/mxgate/internal/dnsx"
)

// Errors wrapped by Resolve and Addresses. Permanent reports which of them mean "bounce now".
var (
	// ErrNoSuchDomain: the recipient domain does not exist (NXDOMAIN). Permanent; DSN status 5.1.2.
	ErrNoSuchDomain = errors.New("mx: no such domain")
	// ErrNullMX: the domain publishes a null MX and accepts no mail (RFC 7505). Permanent; DSN status 5.1.10.
	ErrNullMX = errors.New("mx: domain accepts no mail (null MX)")
	// ErrLoop: we are the best MX of the domain ourselves, so delivering would loop. Not permanent: as in
	// Postfix, the caller defers it ("loops back to myself"), since a DNS or configuration change can end it,
	// and it bounces with 5.4.6 at expiry.
	ErrLoop = errors.New("mx: mail for this domain would loop back to us")
	// ErrNoAddress: an MX host has no A or AAAA records, or does not exist. Permanent for that host; the
	// destination fails (5.4.4) only when every host is unusable.
	ErrNoAddress = errors.New("mx: host has no addresses")
	// ErrTemporary: DNS failed (SERVFAIL, timeout, ...). Defer and retry. It also wraps dnsx.ErrTemporary.
	ErrTemporary = errors.New("mx: temporary DNS failure")
)

// Permanent reports whether err proves that retrying cannot help. Anything it does not recognise is
// temporary, so an unknown failure defers rather than bounces.
func Permanent(err error) bool {
	return errors.Is(err, ErrNoSuchDomain) || errors.Is(err, ErrNullMX) || errors.Is(err, ErrNoAddress)
}

// Options tune Resolve.
type Options struct {
	// Rand shuffles hosts of equal preference. A *rand.Rand is not safe for concurrent use: give each
	// goroutine its own, or leave it nil to use math/rand/v2's goroutine-safe global source.
	Rand *rand.Rand
	// LocalNames are this gateway's own host names, for loop prevention (RFC 5321 Section 5.1).
	LocalNames []string
}

// Host is one delivery candidate.
type Host struct {
	// Name is the MX record's exchange name (lower case, no trailing dot), or the domain for an implicit MX.
	Name string
	Pref uint16
	// Implicit is set for the domain standing in as its own MX because it has no MX records.
	Implicit bool
}

// Route is the ordered list of hosts to try for a domain.
type Route struct {
	// Hosts in the order to try them.
	Hosts []Host
	// Secure is true when the MX answer (or its authenticated denial, for an implicit MX) had the AD bit.
	// RFC 7672 Section 2.2.1: DANE authenticates the destination only when this is true.
	Secure bool
	// CNAMEs is the CNAME chain followed from the domain (lower case, no trailing dots); RFC 7672 Section
	// 2.2.2 uses the expanded name as a TLSA base domain candidate for an implicit MX.
	CNAMEs []string
}

// Resolve returns the hosts to deliver mail for domain to, in order. Errors wrap ErrNoSuchDomain or ErrNullMX
// (permanent), ErrLoop or ErrTemporary (defer); use Permanent to tell them apart.
func Resolve(ctx context.Context, r dnsx.Resolver, domain address.Domain, opts Options) (Route, error) {
	if domain.IsZero() {
		return Route{}, fmt.Errorf("%w: empty domain", ErrNoSuchDomain)
	}
	// RFC 5321 Section 5.1: look for MX first; a CNAME at the name is followed by the resolver (SMTP-1).
	records, res, err := r.LookupMX(ctx, domain.String())
	switch {
	case errors.Is(err, dnsx.ErrNotFound):
		// RFC 5321 Section 5.1: a name that does not exist is an error, not a reason to retry (SMTP-2).
		return Route{}, fmt.Errorf("%w: %s: %w", ErrNoSuchDomain, domain, err)
	case err != nil:
		// Temporary unless proven permanent (SMTP-3), including errors we do not know.
		return Route{}, fmt.Errorf("%w: MX %s: %w", ErrTemporary, domain, err)
	}
	route := Route{Secure: res.Secure, CNAMEs: res.CNAMEs}

	if len(records) == 0 {
		// RFC 5321 Section 5.1: no MX records: the domain is its own MX with preference 0 (SMTP-4). Whether it
		// has addresses is found out by Addresses at delivery time.
		// Spec: we name the implicit MX by the domain as written, not its CNAME target: address lookups
		// follow the CNAME anyway, and MTA-STS and TLS checks want the recipient domain. Route.CNAMEs keeps
		// the expansion for DANE.
		route.Hosts = []Host{{Name: domain.String(), Pref: 0, Implicit: true}}
		hosts, err := dropLocal(route.Hosts, opts.LocalNames, domain)
		if err != nil {
			return Route{}, err
		}
		route.Hosts = hosts
		return route, nil
	}

	hosts := make([]Host, 0, len(records))
	for _, rec := range records {
		if rec.Host == "" {
			// Spec (SMTP-6, ambiguous case): a "." listed next to real MX records is ignored.
			continue
		}
		hosts = append(hosts, Host{Name: strings.ToLower(strings.TrimSuffix(rec.Host, ".")), Pref: rec.Pref})
	}
	if len(hosts) == 0 {
		// RFC 7505 Section 3: the null MX: no mail at all, and no fallback to A/AAAA (SMTP-6).
		return Route{}, fmt.Errorf("%w: %s", ErrNullMX, domain)
	}
	// RFC 5321 Section 5.1: MX records exist, so the domain's own addresses are never used (SMTP-5).
	hosts = dedupe(hosts)
	hosts, err = dropLocal(hosts, opts.LocalNames, domain)
	if err != nil {
		return Route{}, err
	}
	sortAndShuffle(hosts, opts.Rand)
	route.Hosts = hosts
	return route, nil
}

// dedupe keeps one entry per host name, with its lowest preference, so a host listed twice is tried once.
func dedupe(hosts []Host) []Host {
	best := make(map[string]int, len(hosts)) // name -> index in out
	out := hosts[:0:0]
	for _, h := range hosts {
		if i, ok := best[h.Name]; ok {
			if h.Pref < out[i].Pref {
				out[i].Pref = h.Pref
			}
			continue
		}
		best[h.Name] = len(out)
		out = append(out, h)
	}
	return out
}

// dropLocal applies RFC 5321 Section 5.1 loop prevention (SMTP-9): if one of our own names is an MX, that
// entry and every entry with the same or a higher preference number are dropped.
func dropLocal(hosts []Host, localNames []string, domain address.Domain) ([]Host, error) {
	if len(localNames) == 0 {
		return hosts, nil
	}
	own := make(map[string]bool, len(localNames))
	for _, n := range localNames {
		own[strings.ToLower(strings.TrimSuffix(n, "."))] = true
	}
	lowest, found := uint16(0), false
	for _, h := range hosts {
		if own[h.Name] && (!found || h.Pref < lowest) {
			lowest, found = h.Pref, true
		}
	}
	if !found {
		return hosts, nil
	}
	var keep []Host
	for _, h := range hosts {
		if h.Pref < lowest {
			keep = append(keep, h)
		}
	}
	if len(keep) == 0 {
		return nil, fmt.Errorf("%w: %s: we are its best MX (preference %d)", ErrLoop, domain, lowest)
	}
	return keep, nil
}

// sortAndShuffle orders hosts by preference and shuffles each run of equal preferences (RFC 5321 Section 5.1,
// SMTP-7: randomise when there is no reason to prefer one).
func sortAndShuffle(hosts []Host, rnd *rand.Rand) {
	slices.SortStableFunc(hosts, func(a, b Host) int { return cmp.Compare(a.Pref, b.Pref) })
	shuffle := rand.Shuffle
	if rnd != nil {
		shuffle = rnd.Shuffle
	}
	for i := 0; i < len(hosts); {
		j := i + 1
		for j < len(hosts) && hosts[j].Pref == hosts[i].Pref {
			j++
		}
		run := hosts[i:j]
		shuffle(len(run), func(a, b int) { run[a], run[b] = run[b], run[a] })
		i = j
	}
}

// Addresses returns the IPv6 then IPv4 addresses of an MX host and whether the answer was DNSSEC-secure.
// A host that does not exist or has no addresses is ErrNoAddress (unusable, not a reason to retry: SMTP-5);
// a DNS failure is ErrTemporary. The order within each family is the resolver's (SMTP-8).
func Addresses(ctx context.Context, r dnsx.Resolver, host string) ([]netip.Addr, bool, error) {
	addrs, res, err := AddressesResult(ctx, r, host)
	return addrs, res.Secure, err
}

// AddressesResult is Addresses with the whole lookup Result: whether it was secure and the CNAMEs it
// followed, which RFC 7672 Section 2.2.2 needs to choose the TLSA base domain.
func AddressesResult(ctx context.Context, r dnsx.Resolver, host string) ([]netip.Addr, dnsx.Result, error) {
	addrs, res, err := r.LookupIP(ctx, host)
	switch {
	case errors.Is(err, dnsx.ErrNotFound):
		return nil, res, fmt.Errorf("%w: %s: %w", ErrNoAddress, host, err)
	case err != nil:
		return nil, dnsx.Result{}, fmt.Errorf("%w: address of %s: %w", ErrTemporary, host, err)
	case len(addrs) == 0:
		return nil, res, fmt.Errorf("%w: %s has no A or AAAA records", ErrNoAddress, host)
	}
	return addrs, res, nil
}
