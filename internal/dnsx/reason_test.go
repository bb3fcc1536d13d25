package dnsx_test

import (
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/mxgate/mxgate/internal/dnsx"
	"github.com/mxgate/mxgate/internal/dnsx/dnstest"
)

// TestObservedFailureReasons shows that each kind of temporary DNS failure is reported once with its own
// reason and query type, and that NXDOMAIN and NODATA are not failures.
func TestObservedFailureReasons(t *testing.T) {
	t.Parallel()
	s := dnstest.New(t)
	s.SetChaseCNAME(false)
	s.Add(
		"nodata.example. A 192.0.2.1",
		"servfail.example. MX 10 mx.servfail.example.",
		"refused.example. TXT \"v=STSv1; id=1\"",
		"dropped.example. MX 10 mx.dropped.example.",
		"loop1.example. CNAME loop2.example.",
		"loop2.example. CNAME loop1.example.",
	)
	s.Fail("servfail.example", dns.TypeMX, dnstest.FailServFail)
	s.Fail("refused.example", 0, dnstest.FailRefused)
	s.Fail("dropped.example", dns.TypeMX, dnstest.FailDrop)

	type failure struct {
		qtype  string
		reason dnsx.Reason
	}
	var mu sync.Mutex
	var got []failure
	observe := func(qtype string, r dnsx.Reason) {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, failure{qtype, r})
	}
	client := &dnsx.Client{Servers: []string{s.Addr()}, Timeout: 300 * time.Millisecond, Attempts: 1}
	r := dnsx.Observed{Resolver: client, OnFailure: observe}
	unreachable := dnsx.Observed{Resolver: &dnsx.Client{Servers: []string{"127.0.0.1:1"}, Timeout: 2 * time.Second, Attempts: 1}, OnFailure: observe}

	tests := []struct {
		name   string
		lookup func() error
		want   []failure
	}{
		{"nxdomain", func() error { _, _, err := r.LookupMX(t.Context(), "nx.example"); return err }, nil},
		{"nodata", func() error { _, _, err := r.LookupMX(t.Context(), "nodata.example"); return err }, nil},
		{"servfail", func() error { _, _, err := r.LookupMX(t.Context(), "servfail.example"); return err }, []failure{{"MX", dnsx.ReasonServfail}}},
		{"refused", func() error { _, _, err := r.LookupTXT(t.Context(), "refused.example"); return err }, []failure{{"TXT", dnsx.ReasonRefused}}},
		{"timeout", func() error { _, _, err := r.LookupMX(t.Context(), "dropped.example"); return err }, []failure{{"MX", dnsx.ReasonTimeout}}},
		{"cname loop", func() error { _, _, err := r.LookupIP(t.Context(), "loop1.example"); return err }, []failure{{"IP", dnsx.ReasonCNAME}}},
		{"unreachable", func() error { _, _, err := unreachable.LookupTLSA(t.Context(), "_25._tcp.mx.example"); return err }, []failure{{"TLSA", dnsx.ReasonNetwork}}},
	}
	for _, tt := range tests {
		mu.Lock()
		got = nil
		mu.Unlock()
		err := tt.lookup()
		mu.Lock()
		g := got
		mu.Unlock()
		if len(g) != len(tt.want) {
			t.Errorf("%s: failures %v (err %v), want %v", tt.name, g, err, tt.want)
			continue
		}
		for i := range g {
			if g[i] != tt.want[i] {
				t.Errorf("%s: failure %v (err %v), want %v", tt.name, g[i], err, tt.want[i])
			}
		}
	}
}
