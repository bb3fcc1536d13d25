package daemon

import (
	"errors"
	"testing"

	"github.com/mxgate/mxgate/internal/config"
	"github.com/mxgate/mxgate/internal/settings"
	"github.com/mxgate/mxgate/internal/tlspolicy"
)

// TestUnknownRouteLevelIsAnError: a route level that does not parse stops the daemon; it never becomes
// opportunistic.
func TestUnknownRouteLevelIsAnError(t *testing.T) {
	cfg := config.Default()
	cfg.Routes = []config.Route{
		{Domains: []string{"a.example"}, Hosts: []string{"relay.example"}, Port: 25, TLS: tlspolicy.LevelRequiredVerify},
		{Domains: []string{"b.example"}, Hosts: []string{"relay.example"}, Port: 25, TLS: "secure"},
	}
	routes, err := routesFromConfig(cfg)
	if !errors.Is(err, tlspolicy.ErrUnknownLevel) {
		t.Fatalf("routesFromConfig error = %v, want ErrUnknownLevel", err)
	}
	if len(routes) != 1 || routes[0].Level != tlspolicy.LevelRequiredVerify {
		t.Errorf("routes = %+v", routes)
	}
}

// TestUnparsableRuleIsAnError: a stored rule that does not parse is an error, never a rule dropped.
func TestUnparsableRuleIsAnError(t *testing.T) {
	snap := settings.Snapshot{Generation: 3, Values: map[string]string{"Domain.bank.example.TLS": "verify-please"}}
	if ps, err := policySettings(snap); err == nil {
		t.Fatalf("policySettings = %+v, nil; want an error", ps)
	}
	snap.Values["Domain.bank.example.TLS"] = "dane-only"
	ps, err := policySettings(snap)
	if err != nil {
		t.Fatal(err)
	}
	if got := ps.Rules["bank.example"]; got != (tlspolicy.Rule{Level: tlspolicy.LevelDANEOnly}) {
		t.Errorf("rule = %+v, want dane-only", got)
	}
}
