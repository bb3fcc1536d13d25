package diag

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/mxgate/mxgate/internal/address"
	"github.com/mxgate/mxgate/internal/dane"
	"github.com/mxgate/mxgate/internal/mx"
	"github.com/mxgate/mxgate/internal/tlspolicy"
)

// TLSARecord is one TLSA record as published, and whether a client can use it (RFC 7672 Section 3.1.3).
type TLSARecord struct {
	Record string `json:"record"`
	Usable bool   `json:"usable"`
}

// TLSAInfo is what the TLSA lookup of one host found.
type TLSAInfo struct {
	// Status is none, secure, insecure, bogus or failed (package dane).
	Status     dane.Status  `json:"status"`
	BaseDomain string       `json:"base_domain,omitempty"`
	QueryName  string       `json:"query_name,omitempty"`
	Records    []TLSARecord `json:"records,omitempty"`
	Error      string       `json:"error,omitempty"`
}

// DANEHost is the DANE view of one MX host.
type DANEHost struct {
	Host       string   `json:"host"`
	Pref       uint16   `json:"pref"`
	Implicit   bool     `json:"implicit,omitempty"`
	Addresses  []string `json:"addresses,omitempty"`
	AddrSecure bool     `json:"addresses_secure"`
	AddrError  string   `json:"address_error,omitempty"`
	TLSA       TLSAInfo `json:"tlsa"`
	// Use says what delivery under DANE does with the host before connecting: "dane" (TLS authenticated by
	// TLSA), "dane-unauthenticated" (secure TLSA but no usable record: TLS required), "no-dane" (the rest of
	// the TLS policy applies) or "unusable" (never connected to; Refusal says why).
	Use     string    `json:"use"`
	Refusal *Decision `json:"refusal,omitempty"`
	// Probe and Decision are filled by TestDANE: the SMTP/TLS probe and what delivery would decide.
	Probe    *HostTest `json:"probe,omitempty"`
	Decision *Decision `json:"decision,omitempty"`
}

// DANEReport is the result of LookupDANE and TestDANE.
type DANEReport struct {
	Domain   string     `json:"domain"`
	MXSecure bool       `json:"mx_secure"`
	MXError  string     `json:"mx_error,omitempty"`
	Hosts    []DANEHost `json:"hosts"`
	Tested   bool       `json:"tested"`
}

// Verdict concludes the DANE diagnostic: blocked when DANE leaves no host to deliver to, else OK.
func (r *DANEReport) Verdict() Verdict {
	if r.Blocked() {
		return VerdictBlocked
	}
	return VerdictOK
}

// Blocked reports whether DANE leaves no host to deliver to: every host was refused (lookup) or, after a
// test, none would get mail and at least one was refused by DANE.
func (r *DANEReport) Blocked() bool {
	refused, ok := false, false
	for _, h := range r.Hosts {
		switch {
		case h.Refusal != nil && h.Refusal.Action == Refuse:
			refused = true
		case h.Decision != nil && h.Decision.Action == Refuse:
			refused = true
		case h.Refusal != nil:
		case r.Tested && (h.Decision == nil || h.Decision.Action != Deliver):
		default:
			ok = true
		}
	}
	return refused && !ok
}

// LookupDANE shows what the domain publishes for DANE: whether its MX RRset is DNSSEC-secure, and each MX
// host's addresses and TLSA records (with CNAME base domains as RFC 7672 Section 2.2.2 says), and what
// delivery with DANE on would do with each host before connecting. It connects to nothing.
func LookupDANE(ctx context.Context, env Env, domain address.Domain) (DANEReport, error) {
	rep, _, err := daneLookup(ctx, env, domain)
	return rep, err
}

// TestDANE is LookupDANE followed by a probe of each usable host, the way delivery connects (SNI set to the
// TLSA base domain, the certificate checked against the TLSA records by the delivery Plan), ending with
// QUIT: no mail is sent.
func TestDANE(ctx context.Context, env Env, domain address.Domain) (DANEReport, error) {
	rep, plan, err := daneLookup(ctx, env, domain)
	if err != nil {
		return rep, err
	}
	rep.Tested = true
	for i := range rep.Hosts {
		h := &rep.Hosts[i]
		if ctx.Err() != nil {
			break
		}
		if h.Refusal != nil {
			continue
		}
		ht := HostTest{Host: h.Host, Pref: h.Pref, Implicit: h.Implicit, Policy: NoPolicy}
		v, reached := probeHost(ctx, env, plan, &ht)
		h.Probe = &ht
		switch {
		case !reached:
			h.Decision = &Decision{Action: Unreachable, Detail: ht.Error}
		case v.Proceed:
			h.Decision = &Decision{Action: Deliver}
		default:
			h.Decision = refusal(v)
		}
	}
	if err := ctx.Err(); err != nil {
		return rep, fmt.Errorf("diag: DANE test %s: %w", domain, err)
	}
	return rep, nil
}

// daneLookup builds the report and the Plan delivery would use with Sender.EnableDANE on (and no MTA-STS,
// so that what is shown is DANE's own decision).
func daneLookup(ctx context.Context, env Env, domain address.Domain) (DANEReport, *tlspolicy.Plan, error) {
	if env.Resolver == nil {
		return DANEReport{}, nil, fmt.Errorf("%w: no Resolver", ErrEnv)
	}
	if domain.IsZero() {
		return DANEReport{}, nil, errors.New("diag: empty domain")
	}
	rep := DANEReport{Domain: domain.String(), Hosts: []DANEHost{}}
	route, err := mx.Resolve(ctx, env.Resolver, domain, mx.Options{})
	if err != nil {
		rep.MXError = err.Error()
	}
	rep.MXSecure = route.Secure
	d := &tlspolicy.Decider{
		Settings: func() *tlspolicy.Settings { return &tlspolicy.Settings{EnableDANE: true} },
		Roots:    env.Roots,
		Now:      env.now,
	}
	plan, err := d.For(ctx, tlspolicy.Request{Domain: domain, MXSecure: route.Secure, MXCNAMEs: route.CNAMEs})
	if err != nil {
		return rep, nil, fmt.Errorf("diag: plan for %s: %w", domain, err)
	}
	for _, h := range route.Hosts {
		if ctx.Err() != nil {
			break
		}
		rep.Hosts = append(rep.Hosts, daneHost(ctx, env, plan, h))
	}
	if err := ctx.Err(); err != nil {
		return rep, nil, fmt.Errorf("diag: DANE lookup %s: %w", domain, err)
	}
	return rep, plan, nil
}

func daneHost(ctx context.Context, env Env, plan *tlspolicy.Plan, h mx.Host) DANEHost {
	dh := DANEHost{Host: h.Name, Pref: h.Pref, Implicit: h.Implicit, TLSA: TLSAInfo{Status: dane.StatusNone}}
	ips, res, err := mx.AddressesResult(ctx, env.Resolver, h.Name)
	if err != nil {
		dh.AddrError = err.Error()
		dh.Use = "unusable"
		dh.Refusal = &Decision{Action: Unreachable, Detail: "address lookup: " + err.Error()}
		return dh
	}
	for _, ip := range ips {
		dh.Addresses = append(dh.Addresses, ip.String())
	}
	dh.AddrSecure = res.Secure
	var set dane.TLSASet
	if plan.LookupTLSA() {
		set = dane.Lookup(ctx, env.Resolver, dane.LookupRequest{Host: h.Name, Port: env.port(), Addr: res})
	}
	dh.TLSA = tlsaInfo(set, env.port())
	v := plan.SetDANE(h.Name, set)
	switch {
	case !v.Proceed && v.Failure == "":
		dh.Use, dh.Refusal = "unusable", &Decision{Action: Unreachable, ReasonCode: v.ReasonCode, Detail: v.Detail}
	case !v.Proceed:
		dh.Use, dh.Refusal = "unusable", refusal(v)
	case set.Usable():
		dh.Use = "dane"
	case set.Status == dane.StatusSecure:
		dh.Use = "dane-unauthenticated"
	default:
		dh.Use = "no-dane"
	}
	return dh
}

func tlsaInfo(set dane.TLSASet, port int) TLSAInfo {
	info := TLSAInfo{Status: set.Status, BaseDomain: set.BaseDomain}
	if info.Status == "" {
		info.Status = dane.StatusNone
	}
	if set.BaseDomain != "" {
		info.QueryName = dane.QueryName(set.BaseDomain, port)
	}
	for _, t := range set.RRset {
		info.Records = append(info.Records, TLSARecord{Record: dane.String(t), Usable: dane.Usable(t)})
	}
	if set.Err != nil {
		info.Error = set.Err.Error()
	}
	return info
}

// Text writes the report for people: the MX RRset's status, one block per host, and a closing verdict.
func (r *DANEReport) Text(w io.Writer) error {
	var b textBuilder
	verb := "DANE lookup"
	if r.Tested {
		verb = "DANE test"
	}
	b.line("%s for %s", verb, r.Domain)
	mxStatus := "insecure: DANE does not apply to this domain (RFC 7672 Section 2.2.1)"
	if r.MXSecure {
		mxStatus = "DNSSEC-secure"
	}
	b.field("MX RRset", mxStatus)
	if r.MXError != "" {
		b.field("mx error", r.MXError)
	}
	usable := 0
	for _, h := range r.Hosts {
		b.hostHeading(h.Pref, h.Host, h.Implicit)
		if h.AddrError != "" {
			b.field("address", h.AddrError)
		} else {
			sec := "insecure"
			if h.AddrSecure {
				sec = "secure"
			}
			b.field("address", fmt.Sprintf("%s (%s)", strings.Join(h.Addresses, ", "), sec))
		}
		tl := string(h.TLSA.Status)
		if h.TLSA.QueryName != "" {
			tl += " at " + h.TLSA.QueryName
		}
		b.field("TLSA", tl)
		for _, rec := range h.TLSA.Records {
			note := ""
			if !rec.Usable {
				note = "  (unusable)"
			}
			b.field("", rec.Record+note)
		}
		if h.TLSA.Error != "" {
			b.field("", h.TLSA.Error)
		}
		b.field("use", h.Use)
		if h.Refusal != nil {
			writeDecision(&b, "refused", h.Refusal)
		}
		if p := h.Probe; p != nil {
			if p.Address != "" {
				b.field("probed", p.Address)
			}
			if p.Error != "" {
				b.field("error", p.Error)
			}
			if p.STARTTLSError != "" {
				b.field("TLS error", p.STARTTLSError)
			}
			if p.TLS != nil {
				writeTLS(&b, p.TLS)
			}
		}
		if h.Decision != nil {
			writeDecision(&b, "decision", h.Decision)
			if h.Decision.Action == Deliver {
				usable++
			}
		} else if h.Refusal == nil {
			usable++
		}
	}
	b.blank()
	switch {
	case r.Blocked():
		b.line("BLOCKED: under DANE no MX host of %s can get mail", r.Domain)
	case len(r.Hosts) == 0:
		b.line("Result: no MX host")
	case !r.MXSecure:
		b.line("Result: the MX RRset is insecure; delivery uses MTA-STS or the TLS rule (dane-only would defer)")
	case r.Tested:
		b.line("Result: under DANE, %d of %d MX hosts would get mail", usable, len(r.Hosts))
	default:
		b.line("Result: under DANE, %d of %d MX hosts are usable", usable, len(r.Hosts))
	}
	return b.writeTo(w)
}

func writeDecision(b *textBuilder, key string, d *Decision) {
	v := string(d.Action)
	if d.Action == Refuse {
		v = "REFUSE " + string(d.ResultType)
		if d.ReasonCode != "" {
			v += " (" + d.ReasonCode + ")"
		}
	}
	b.field(key, v)
	if d.Detail != "" && d.Action != Deliver {
		b.field("", d.Detail)
	}
}
