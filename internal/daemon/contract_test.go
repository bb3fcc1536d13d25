package daemon_test

import (
	"context"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/mxgate/mxgate/internal/address"
	"github.com/mxgate/mxgate/internal/admin"
	"github.com/mxgate/mxgate/internal/delivery"
	"github.com/mxgate/mxgate/internal/mtasts"
	"github.com/mxgate/mxgate/internal/simnet"
	"github.com/mxgate/mxgate/internal/tlspolicy"
)

// The daemon, the admin API and its client share one typed contract: the explanation and the status the
// client decodes are the values the daemon made, field for field.
func TestAdminClientGetsTheDaemonsValues(t *testing.T) {
	n, err := simnet.New(simnet.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	for _, o := range []simnet.MXOptions{
		{Domain: "example.com", Host: "mx1.example.com", Pref: 10},
		{Domain: "example.com", Host: "mx.elsewhere.example", Pref: 20},
	} {
		if _, err := n.AddMX(o); err != nil {
			t.Fatal(err)
		}
	}
	n.DNS.AddTXT("_mta-sts.example.com", "v=STSv1; id=1")
	if _, err := n.ServeMTASTSPolicy("example.com", "version: STSv1\nmode: enforce\nmx: mx1.example.com\nmax_age: 86400\n"); err != nil {
		t.Fatal(err)
	}
	g := startGateway(t, n)
	ctx := context.Background()
	st, err := g.d.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	token, err := admin.ReadToken(admin.TokenPath(st.DataDir))
	if err != nil {
		t.Fatal(err)
	}
	c := &admin.Client{BaseURL: "http://" + g.d.AdminAddr(), Token: token}

	want, err := g.d.Explain(ctx, delivery.PlanRequest{Domain: address.MustParseHost("example.com")})
	if err != nil {
		t.Fatal(err)
	}
	if want.Source != tlspolicy.SourceMTASTS || want.STSMode != mtasts.ModeEnforce || want.STS == nil || len(want.MX) != 2 ||
		!want.MX[0].Allowed || want.MX[1].Allowed || want.MX[1].Failure == "" {
		t.Fatalf("Explain = %+v, want the enforce policy allowing mx1 only", want)
	}
	got, err := c.Explain(ctx, "example.com")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("explanation through the API (-daemon +client):\n%s", diff)
	}

	// The explanation cached a policy: take the daemon's status after it.
	if st, err = g.d.Status(ctx); err != nil {
		t.Fatal(err)
	}
	gotSt, err := c.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Uptime moves, and each status counts its own DNS lookup (the DKIM record) in the resolver's figures.
	gotSt.Uptime, st.Uptime = "", ""
	gotSt.DNSSEC, st.DNSSEC = nil, nil
	if diff := cmp.Diff(st, gotSt); diff != "" {
		t.Errorf("status through the API (-daemon +client):\n%s", diff)
	}
}
