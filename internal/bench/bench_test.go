package bench

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mxgate/mxgate/internal/store/storetest"
)

// gatewayProcessEnv makes the test binary act as the gateway process of an external run.
const gatewayProcessEnv = "MXGATE_BENCH_TEST_GATEWAY_PROCESS"

func TestMain(m *testing.M) {
	if os.Getenv(gatewayProcessEnv) == "1" {
		if err := ServeGateway(context.Background(), os.Stdin, os.Stdout, nil); err != nil {
			os.Stderr.WriteString(err.Error() + "\n")
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestRunDeliversEverything: a small in-process run delivers every message over verified TLS.
func TestRunDeliversEverything(t *testing.T) {
	res, err := Run(t.Context(), Options{Domains: 3, Messages: 30, Clients: 2, DataDir: t.TempDir(), Timeout: 2 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Complete || !res.AllVerified || res.Received != 30 || res.Duplicates != 0 || len(res.Errors) > 0 {
		t.Fatalf("run: complete %v, all verified %v, received %d, duplicates %d, errors %v", res.Complete, res.AllVerified, res.Received, res.Duplicates, res.Errors)
	}
	if res.External || res.GatewayCPUSeconds != 0 {
		t.Errorf("in-process run reports an external gateway: %+v", res)
	}
}

// TestRunExternalMeasuresTheGatewayProcess: with External the gateway runs in its own process (this test
// binary, acting as ServeGateway), every message arrives over verified TLS, and the gateway's CPU and memory
// are reported apart from the load side's.
func TestRunExternalMeasuresTheGatewayProcess(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv(gatewayProcessEnv, "1")
	profile := filepath.Join(t.TempDir(), "gateway.prof")
	res, err := Run(t.Context(), Options{Domains: 3, Messages: 30, Clients: 2, DataDir: t.TempDir(), Timeout: 2 * time.Minute,
		External: true, GatewayCommand: []string{exe}, CPUProfile: profile})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Complete || !res.AllVerified || res.Received != 30 || res.Delivered != 30 || len(res.Errors) > 0 {
		t.Fatalf("run: complete %v, all verified %v, received %d, delivered %d, errors %v", res.Complete, res.AllVerified, res.Received, res.Delivered, res.Errors)
	}
	if !res.External || res.GatewayPeakRSSMB <= 0 || res.IndexCommits <= 0 {
		t.Errorf("external run: external %v, gateway peak RSS %v MB, index commits %d; want the gateway process's figures",
			res.External, res.GatewayPeakRSSMB, res.IndexCommits)
	}
	if res.CPUSeconds < res.GatewayCPUSeconds || res.CPUSeconds < res.LoadCPUSeconds {
		t.Errorf("whole-system CPU %.3f s is less than a part (gateway %.3f s, load %.3f s)", res.CPUSeconds, res.GatewayCPUSeconds, res.LoadCPUSeconds)
	}
	// The CPU profile is the gateway process's: a gzip-compressed pprof profile written by it.
	if data, err := os.ReadFile(profile); err != nil || len(data) < 2 || data[0] != 0x1f || data[1] != 0x8b {
		t.Errorf("gateway CPU profile %s: %d bytes, %v; want a gzip-compressed profile", profile, len(data), err)
	}
}

// TestRunRestartExternal: the queue filled in this process is delivered by a gateway restarted in its own
// process on the same data directory, which reports its memory and the first delivery.
func TestRunRestartExternal(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv(gatewayProcessEnv, "1")
	res, err := RunRestart(t.Context(), RestartOptions{Domains: 3, Messages: 40, Submitters: 4, DataDir: t.TempDir(),
		Timeout: 2 * time.Minute, External: true, GatewayCommand: []string{exe}})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Complete || res.Delivered != 40 || !res.External {
		t.Fatalf("restart run: complete %v, delivered %d, external %v; want all 40 delivered by the gateway process", res.Complete, res.Delivered, res.External)
	}
	if res.GatewayPeakRSSMB <= 0 || res.FirstDeliverySeconds <= 0 || res.FirstDeliverySeconds < res.OpenSeconds || res.DrainPerSec <= 0 {
		t.Errorf("restart run: gateway peak RSS %v MB, open %v s, first delivery %v s, drain %v msgs/s; want them measured",
			res.GatewayPeakRSSMB, res.OpenSeconds, res.FirstDeliverySeconds, res.DrainPerSec)
	}
}

// TestRunClusterOfThreeNodes: three gateways on one PostgreSQL database, the clients spread over them,
// deliver every message over verified TLS; several nodes without a database are refused.
func TestRunClusterOfThreeNodes(t *testing.T) {
	dsn := storetest.PostgresDSN(t)
	res, err := Run(t.Context(), Options{Domains: 3, Messages: 30, Clients: 3, DataDir: t.TempDir(), Timeout: 2 * time.Minute,
		Nodes: 3, Database: dsn})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Complete || !res.AllVerified || res.Received != 30 || res.Duplicates != 0 || len(res.Errors) > 0 || res.Nodes != 3 {
		t.Fatalf("run: complete %v, all verified %v, received %d, duplicates %d, nodes %d, errors %v", res.Complete, res.AllVerified, res.Received, res.Duplicates, res.Nodes, res.Errors)
	}
	// Each node committed its own share to its own queue index.
	if res.IndexCommits < 3 {
		t.Errorf("index commits %d: want at least one per node", res.IndexCommits)
	}
	if _, err := Run(t.Context(), Options{Domains: 1, Messages: 1, DataDir: t.TempDir(), Nodes: 2}); err == nil || !strings.Contains(err.Error(), "--database") {
		t.Errorf("two nodes without a database: %v, want an error naming --database", err)
	}
}
