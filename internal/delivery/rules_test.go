package delivery_test

import (
	"testing"

	"github.com/mxgate/mxgate/internal/queue"
	"github.com/mxgate/mxgate/internal/simnet"
	"github.com/mxgate/mxgate/internal/tlspolicy"
	"github.com/mxgate/mxgate/internal/tlsrpt"
)

// forgedMX answers the MX query for example.com with a host outside the enforce policy that holds a valid,
// trusted certificate for its own name: what an attacker who forges the DNS answer brings.
func forgedMX(h *harness) *simnet.Receiver {
	h.t.Helper()
	return h.mx("example.com", "forged.test", 10, simnet.MXOptions{})
}

// Strongest rule wins: a required-verify rule for a domain with an enforce policy keeps the policy's MX check,
// so the forged MX is never contacted and the message waits.
func TestRuleKeepsEnforceMXCheckAgainstForgedMX(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.settings.Rules["example.com"] = tlspolicy.Rule{Level: tlspolicy.LevelRequiredVerify}
	forged := forgedMX(h)
	h.sts("example.com", "1", pEnforce)
	r := one(t, h.deliver("example.com", job("m1", "bob@example.com")))
	if r.Outcome != queue.Deferred || forged.Connections() != 0 || len(forged.Messages()) != 0 {
		t.Fatalf("result = %+v with %d connections to the forged MX, want deferred and none", r, forged.Connections())
	}
	if r.ResultType != tlsrpt.ResultValidationFailure {
		t.Errorf("result type = %q, want validation-failure (mx-not-in-policy)", r.ResultType)
	}
	// The session is recorded under the policy the domain publishes, rule or not.
	if f := h.rec.stsFailures(); len(f) != 1 || f[0] != tlsrpt.ResultValidationFailure {
		t.Errorf("sts-policy failures recorded = %v, want [validation-failure]", f)
	}
}

// A rule weaker than the published policy does not lower it either.
func TestWeakerRuleDoesNotLowerEnforce(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.settings.Rules["example.com"] = tlspolicy.Rule{Level: tlspolicy.LevelOpportunistic}
	forged := forgedMX(h)
	h.sts("example.com", "1", pEnforce)
	r := one(t, h.deliver("example.com", job("m1", "bob@example.com")))
	if r.Outcome != queue.Deferred || forged.Connections() != 0 || r.Policy != "mta-sts enforce" {
		t.Fatalf("result = %+v with %d connections to the forged MX, want deferred under mta-sts enforce", r, forged.Connections())
	}
}

// With override = true the rule replaces the policy (a deliberate downgrade): the same MX gets the message,
// the result names the override (it reaches the delivery log event as policy), and the MX mismatch is still
// recorded for the domain's TLS report.
func TestOverrideRuleReplacesPolicyAndSaysSo(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.settings.Rules["example.com"] = tlspolicy.Rule{Level: tlspolicy.LevelRequiredVerify, Override: true}
	forged := forgedMX(h)
	h.sts("example.com", "1", pEnforce)
	r := one(t, h.deliver("example.com", job("m1", "bob@example.com")))
	if r.Outcome != queue.Delivered || r.RemoteMTA != "forged.test" || len(forged.Messages()) != 1 {
		t.Fatalf("result = %+v, want delivery to forged.test under the override", r)
	}
	if r.Policy != "required-verify override" {
		t.Errorf("policy = %q, want %q", r.Policy, "required-verify override")
	}
	if f := h.rec.stsFailures(); len(f) != 1 || f[0] != tlsrpt.ResultValidationFailure {
		t.Errorf("sts-policy failures recorded = %v, want [validation-failure]", f)
	}
}
