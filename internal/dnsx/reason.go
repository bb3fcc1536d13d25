package dnsx

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"

	"github.com/miekg/dns"
)

// RcodeError is a DNS answer whose response code is neither NOERROR nor NXDOMAIN.
type RcodeError int

func (e RcodeError) Error() string {
	if s, ok := dns.RcodeToString[int(e)]; ok {
		return "rcode " + s
	}
	return "rcode " + dns.RcodeToString[dns.RcodeServerFailure]
}

var (
	errCNAMELoop = errors.New("CNAME loop")
	errCNAMELong = errors.New("CNAME chain too long")
	errMismatch  = errors.New("answer does not match the question")
)

// Reason says why a lookup failed temporarily, for metrics and logs. Its values are a closed set (Reasons).
type Reason string

const (
	ReasonTimeout  Reason = "timeout"  // no answer within the timeout (or the caller's deadline)
	ReasonBogus    Reason = "bogus"    // a trusted validating resolver found the DNSSEC data bogus (ErrBogus)
	ReasonServfail Reason = "servfail" // SERVFAIL for another cause
	ReasonRefused  Reason = "refused"  // REFUSED: the resolver will not answer us
	ReasonRcode    Reason = "rcode"    // another error response code (FORMERR, NOTIMP, ...)
	ReasonNetwork  Reason = "network"  // no route, connection refused, and other transport errors
	ReasonCNAME    Reason = "cname"    // a CNAME loop or a chain longer than we follow
	ReasonOther    Reason = "other"    // anything else (an answer for another question, a cancelled lookup)
)

// Reasons lists every Reason, so that a metric can start each at zero.
var Reasons = []Reason{ReasonTimeout, ReasonBogus, ReasonServfail, ReasonRefused, ReasonRcode, ReasonNetwork, ReasonCNAME, ReasonOther}

// FailureReason classifies an error wrapping ErrTemporary. A lookup that tried several servers reports the
// most telling reason any of them gave: an error response code before a timeout before a network error.
func FailureReason(err error) Reason {
	var rc RcodeError
	switch {
	case errors.Is(err, ErrBogus):
		return ReasonBogus
	case errors.As(err, &rc):
		switch int(rc) {
		case dns.RcodeServerFailure:
			return ReasonServfail
		case dns.RcodeRefused:
			return ReasonRefused
		}
		return ReasonRcode
	case errors.Is(err, errCNAMELoop), errors.Is(err, errCNAMELong):
		return ReasonCNAME
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded):
		return ReasonTimeout
	}
	var ne net.Error
	if errors.As(err, &ne) {
		if ne.Timeout() {
			return ReasonTimeout
		}
		return ReasonNetwork
	}
	var oe *net.OpError
	if errors.As(err, &oe) {
		return ReasonNetwork
	}
	return ReasonOther
}

// QueryTypes are the lookups a Resolver makes, as Observed reports them.
var QueryTypes = []string{"MX", "TXT", "IP", "TLSA"}

// Observed is a Resolver that tells OnFailure about every temporary failure of the Resolver it wraps, with
// the query type (one of QueryTypes) and the Reason. NXDOMAIN and NODATA are answers, not failures.
type Observed struct {
	Resolver
	OnFailure func(qtype string, reason Reason)
}

func (o Observed) note(qtype string, err error) {
	if err != nil && errors.Is(err, ErrTemporary) && o.OnFailure != nil {
		o.OnFailure(qtype, FailureReason(err))
	}
}

// LookupMX implements Resolver.
func (o Observed) LookupMX(ctx context.Context, name string) ([]MX, Result, error) {
	rrs, res, err := o.Resolver.LookupMX(ctx, name)
	o.note("MX", err)
	return rrs, res, err
}

// LookupTXT implements Resolver.
func (o Observed) LookupTXT(ctx context.Context, name string) ([]string, Result, error) {
	rrs, res, err := o.Resolver.LookupTXT(ctx, name)
	o.note("TXT", err)
	return rrs, res, err
}

// LookupIP implements Resolver.
func (o Observed) LookupIP(ctx context.Context, host string) ([]netip.Addr, Result, error) {
	rrs, res, err := o.Resolver.LookupIP(ctx, host)
	o.note("IP", err)
	return rrs, res, err
}

// LookupTLSA implements Resolver.
func (o Observed) LookupTLSA(ctx context.Context, name string) ([]TLSA, Result, error) {
	rrs, res, err := o.Resolver.LookupTLSA(ctx, name)
	o.note("TLSA", err)
	return rrs, res, err
}

// StatsOf returns the DNSSEC counts of r, looking through Observed; ok is false when r keeps none.
func StatsOf(r Resolver) (st DNSSECStats, ok bool) {
	if o, isObs := r.(Observed); isObs {
		return StatsOf(o.Resolver)
	}
	if s, has := r.(interface{ Stats() DNSSECStats }); has {
		return s.Stats(), true
	}
	return DNSSECStats{}, false
}

// StubValidatorsOf returns the StubValidators of r, looking through Observed; nil when r cannot tell.
func StubValidatorsOf(r Resolver) []StubValidator {
	if o, isObs := r.(Observed); isObs {
		return StubValidatorsOf(o.Resolver)
	}
	if s, has := r.(interface{ StubValidators() []StubValidator }); has {
		return s.StubValidators()
	}
	return nil
}

// CacheOf returns the Cache of r, looking through Observed; nil when r is not a Client with a Cache.
func CacheOf(r Resolver) *Cache {
	switch v := r.(type) {
	case Observed:
		return CacheOf(v.Resolver)
	case *Client:
		return v.Cache
	}
	return nil
}
