// Package e2e runs the built mxgate binary, as an administrator would, against a simulated internet
// (package simnet) in the test process: restarts, a full disk, cached policies. The crash tests are in
// test/crash.
package e2e

import (
	"testing"

	"github.com/mxgate/mxgate/internal/gatewaytest"
	"github.com/mxgate/mxgate/internal/simnet"
)

var binPath string

func TestMain(m *testing.M) { gatewaytest.Main(m, &binPath, gatewaytest.BuildOptions{}) }

type gateway = gatewaytest.Gateway

// writeConfig writes a configuration that points the gateway at n, with fast retries.
func writeConfig(t *testing.T, n *simnet.Net, dataDir, extra string) string {
	t.Helper()
	return gatewaytest.WriteConfig(t, n, gatewaytest.Config{DataDir: dataDir, Queue: gatewaytest.FastRetry, Extra: extra})
}

// start runs `mxgate serve` and waits for it to report its SMTP address.
func start(t *testing.T, cfgPath string) *gateway {
	t.Helper()
	return gatewaytest.Start(t, binPath, cfgPath)
}

func send(addr, rcpt, token string) error { return gatewaytest.Send(addr, rcpt, token) }

func tokens(rs ...*simnet.Receiver) map[string]int { return gatewaytest.Tokens(rs...) }
