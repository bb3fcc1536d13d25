package queue

import (
	"strings"
	"testing"

	"github.com/mxgate/mxgate/internal/address"
	"github.com/mxgate/mxgate/internal/dsn"
)

// RFC 3461 Section 5.2.2 (SMTP-22): a recipient that asked for NOTIFY=SUCCESS and was delivered to a next hop
// without DSN support gets a "relayed" DSN; with DSN support the next hop reports, so we send nothing.
func TestRelayedDSNForSuccessWithoutNextHopDSN_SMTP22(t *testing.T) {
	tests := []struct {
		name       string
		notify     []string
		nextHopDSN bool
		want       bool
	}{
		{"SUCCESS, next hop without DSN", []string{"SUCCESS"}, false, true},
		{"SUCCESS,FAILURE, next hop without DSN", []string{"SUCCESS", "FAILURE"}, false, true},
		{"SUCCESS, next hop with DSN", []string{"SUCCESS"}, true, false},
		{"no NOTIFY", nil, false, false},
		{"NOTIFY=FAILURE", []string{"FAILURE"}, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, nil)
			e.fake.script = func(Job, Recipient) Result {
				return Result{Outcome: Delivered, Code: 250, Text: "2.0.0 ok", RemoteMTA: "mx1.example.com", NextHopDSN: tt.nextHopDSN}
			}
			e.submitEnv(t, Envelope{From: address.MustParsePath("alice@sender.test"), Recipients: []Recipient{{Addr: address.MustParseAddress("bob@example.com"), Notify: tt.notify, ORcpt: "rfc822;bob@example.com"}}})
			e.runOnce(t)
			dsns := e.fake.dsns()
			if got := len(dsns) == 1; got != tt.want || len(dsns) > 1 {
				t.Fatalf("%d DSNs, want relayed DSN: %v", len(dsns), tt.want)
			}
			if !tt.want {
				return
			}
			rep, err := dsn.Parse([]byte(dsns[0].Body))
			if err != nil {
				t.Fatal(err)
			}
			if len(rep.Recipients) != 1 || rep.Recipients[0].Action != dsn.ActionRelayed || rep.Recipients[0].Status != "2.0.0" {
				t.Fatalf("DSN recipients = %+v, want one relayed 2.0.0", rep.Recipients)
			}
			if !strings.Contains(string(dsns[0].Body), "Remote-MTA: dns; mx1.example.com") {
				t.Errorf("relayed DSN lacks Remote-MTA:\n%s", dsns[0].Body)
			}
		})
	}
}
