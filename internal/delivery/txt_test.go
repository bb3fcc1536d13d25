package delivery_test

import (
	"testing"

	"github.com/mxgate/mxgate/internal/queue"
	"github.com/mxgate/mxgate/internal/simnet"
	"github.com/mxgate/mxgate/internal/testpki"
)

// A _mta-sts record that breaks RFC 8461's ABNF anywhere, as published on the wire (simnet's DNS server
// sends the bytes, the resolver decodes miekg/dns's presentation form before parsing), means "no policy":
// the policy is never fetched and delivery is opportunistic. Before decoding, "\001" looked like four
// valid extension-value characters.
func TestInvalidSTSRecordBytesMeanNoPolicy_STS9_STS13(t *testing.T) {
	t.Parallel()
	for name, record := range map[string]string{
		"control byte in extension value": "v=STSv1; id=1; ext=a\x01b",
		"byte over 0x7e in extension":     "v=STSv1; id=1; ext=caf\xc3\xa9",
		"control byte in extension name":  "v=STSv1; id=1; e\x02xt=v",
		"quote in extension name":         `v=STSv1; id=1; e"xt=v`,
		"backslash in id":                 `v=STSv1; id=a\b`,
		"DEL in extension value":          "v=STSv1; id=1; ext=a\x7f",
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			mx1 := h.mx("example.com", "mx1.example.com", 10, simnet.MXOptions{Cert: h.cert(h.n.EvilCA, testpki.Leaf{DNSNames: []string{"mx1.example.com"}})})
			h.n.DNS.AddTXT("_mta-sts.example.com", record)
			p, err := h.n.ServeMTASTSPolicy("example.com", pEnforce)
			if err != nil {
				t.Fatal(err)
			}
			r := one(t, h.deliver("example.com", job("m1", "bob@example.com")))
			if r.Outcome != queue.Delivered || r.Policy != "opportunistic" || len(mx1.Messages()) != 1 {
				t.Fatalf("result = %+v, want opportunistic delivery (no policy)", r)
			}
			if n := len(p.Requests()); n != 0 {
				t.Errorf("the policy was fetched %d times for an invalid record", n)
			}
		})
	}
}

// The same record with bytes the ABNF allows, quotes and backslashes included, is a policy.
func TestValidSTSRecordWithQuoteAndBackslash_STS9(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.mx("example.com", "mx1.example.com", 10, simnet.MXOptions{})
	h.n.DNS.AddTXT("_mta-sts.example.com", `v=STSv1; id=1; ext=a"b\c`)
	p, err := h.n.ServeMTASTSPolicy("example.com", pEnforce)
	if err != nil {
		t.Fatal(err)
	}
	r := one(t, h.deliver("example.com", job("m1", "bob@example.com")))
	if r.Outcome != queue.Delivered || r.Policy != "mta-sts enforce" || len(p.Requests()) != 1 {
		t.Fatalf("result = %+v with %d fetches, want delivery under the fetched enforce policy", r, len(p.Requests()))
	}
}
