package daemon_test

import (
	"context"
	"testing"

	"github.com/mxgate/mxgate/internal/address"
	"github.com/mxgate/mxgate/internal/delivery"
	"github.com/mxgate/mxgate/internal/simnet"
)

// TestExplainUsesDeliveryPlan: `policy explain` gets its plan from delivery's plan builder, so address
// literals, REQUIRETLS and rules come out as delivery would decide them.
func TestExplainUsesDeliveryPlan(t *testing.T) {
	n, err := simnet.New(simnet.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	if _, err := n.AddMX(simnet.MXOptions{Domain: "example.com", Host: "mx1.example.com", Pref: 10}); err != nil {
		t.Fatal(err)
	}
	n.DNS.AddTXT("_mta-sts.example.com", "v=STSv1; id=1")
	if _, err := n.ServeMTASTSPolicy("example.com", "version: STSv1\nmode: testing\nmx: mx1.example.com\nmax_age: 86400\n"); err != nil {
		t.Fatal(err)
	}
	g := startGateway(t, n)
	ctx := context.Background()

	e, err := g.d.Explain(ctx, delivery.PlanRequest{Domain: address.MustParseHost("[192.0.2.7]")})
	if err != nil {
		t.Fatal(err)
	}
	if e.Plan != "opportunistic" || e.Source != "route" || len(e.MX) != 1 || e.MX[0].Host != "192.0.2.7" || !e.MX[0].Allowed {
		t.Errorf("address literal: %+v, want opportunistic to 192.0.2.7 without MTA-STS", e)
	}

	e, err = g.d.Explain(ctx, delivery.PlanRequest{Domain: address.MustParseHost("example.com")})
	if err != nil {
		t.Fatal(err)
	}
	if e.Plan != "mta-sts testing" || len(e.MX) != 1 || !e.MX[0].Allowed {
		t.Errorf("without REQUIRETLS: %+v", e)
	}
	// RFC 8689 Section 4.2.1: an MX name neither DNSSEC-secure nor listed by an enforced policy cannot carry
	// a REQUIRETLS message (a testing policy is not enough), and explain says so as delivery would.
	e, err = g.d.Explain(ctx, delivery.PlanRequest{Domain: address.MustParseHost("example.com"), RequireTLS: true})
	if err != nil {
		t.Fatal(err)
	}
	if !e.RequireTLS || len(e.MX) != 1 || e.MX[0].Allowed || e.MX[0].Failure != "validation-failure" {
		t.Errorf("with REQUIRETLS: %+v, want mx1 refused", e)
	}

	e, err = g.d.Explain(ctx, delivery.PlanRequest{Domain: address.MustParseHost("nxdomain.example")})
	if err != nil {
		t.Fatal(err)
	}
	if e.Undeliverable == "" || e.Plan != "" {
		t.Errorf("a domain that does not exist: %+v, want undeliverable", e)
	}
}
