package daemon_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mxgate/mxgate/internal/admin"
)

func (g *gw) client(t *testing.T) *admin.Client {
	t.Helper()
	tok, _, err := admin.LoadOrCreateToken(g.dir)
	if err != nil {
		t.Fatal(err)
	}
	return &admin.Client{BaseURL: "http://" + g.d.AdminAddr(), Token: tok}
}

// get fetches path from the admin listener with the token and returns the status and body.
func (g *gw) get(t *testing.T, path string) (int, string) {
	t.Helper()
	c := g.client(t)
	req, err := http.NewRequest(http.MethodGet, c.BaseURL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+c.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

func writeDKIMKey(t *testing.T, path string) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

func componentState(t *testing.T, g *gw, name string) admin.Component {
	t.Helper()
	st, err := g.d.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range st.Components {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("status has no component %q: %+v", name, st.Components)
	return admin.Component{}
}

// Settings the TLS report sender would refuse are refused through the admin API (what the CLI and the
// console use) at staging or at commit, with the key and the reason; nothing refused is committed.
func TestCommitCannotSwitchTLSReportsOff(t *testing.T) {
	n := newSimNet(t)
	g := startGateway(t, n)
	c := g.client(t)
	ctx := context.Background()
	gen := g.d.Settings().Current().Generation

	var apiErr *admin.APIError
	_, err := c.SetSetting(ctx, "TLSRPT.ContactInfo", "notanemail")
	if !errors.As(err, &apiErr) || apiErr.Status != http.StatusBadRequest || !strings.Contains(apiErr.Message, "TLSRPT.ContactInfo") || !strings.Contains(apiErr.Message, "tlsrpt refuses it") {
		t.Fatalf("staging TLSRPT.ContactInfo=notanemail: %v, want 400 naming the key and the component", err)
	}
	_, err = c.SetSetting(ctx, "TLSRPT.DKIMKeyFile", filepath.Join(g.dir, "missing.pem"))
	if !errors.As(err, &apiErr) || apiErr.Status != http.StatusBadRequest || !strings.Contains(apiErr.Message, "missing.pem") {
		t.Fatalf("staging a missing TLSRPT.DKIMKeyFile: %v, want 400 naming the file", err)
	}
	key := filepath.Join(t.TempDir(), "dkim.pem")
	writeDKIMKey(t, key)
	if _, err := c.SetSetting(ctx, "TLSRPT.DKIMKeyFile", key); err != nil {
		t.Fatal(err)
	}
	_, err = c.Commit(ctx, admin.CommitRequest{Note: "sign reports"})
	if !errors.As(err, &apiErr) || apiErr.Status != http.StatusUnprocessableEntity || !strings.Contains(apiErr.Message, "TLSRPT.DKIMSelector") {
		t.Fatalf("commit without a selector: %v, want 422 naming TLSRPT.DKIMSelector", err)
	}
	if got := g.d.Settings().Current().Generation; got != gen {
		t.Fatalf("a refused commit made generation %d", got)
	}
	if _, err := c.SetSetting(ctx, "TLSRPT.DKIMSelector", "r1"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Commit(ctx, admin.CommitRequest{Note: "sign reports"}); err != nil {
		t.Fatalf("commit with a selector: %v", err)
	}
	if got := componentState(t, g, "tlsrpt"); got.State != admin.ComponentRunning {
		t.Fatalf("tlsrpt after a good commit: %+v, want running", got)
	}
}

// A component that cannot run is shown, with its reason, in status, /healthz, and mxgate_component_up;
// /readyz still answers for intake and delivery.
func TestFailedComponentIsShown(t *testing.T) {
	n := newSimNet(t)
	g := startGateway(t, n)
	c := g.client(t)
	ctx := context.Background()
	key := filepath.Join(t.TempDir(), "dkim.pem")
	writeDKIMKey(t, key)
	for k, v := range map[string]string{"TLSRPT.DKIMKeyFile": key, "TLSRPT.DKIMSelector": "r1"} {
		if _, err := c.SetSetting(ctx, k, v); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Commit(ctx, admin.CommitRequest{Note: "sign reports"}); err != nil {
		t.Fatal(err)
	}
	if _, body := g.get(t, "/metrics"); !strings.Contains(body, `mxgate_component_up{component="tlsrpt"} 1`) {
		t.Fatalf("metrics before the failure lack tlsrpt up=1:\n%s", grepLines(body, "mxgate_component_up"))
	}
	// The key file goes away; the next commit (of anything) restarts the report sender, which cannot start.
	if err := os.Remove(key); err != nil {
		t.Fatal(err)
	}
	if _, err := c.SetSetting(ctx, "TLSRPT.OnlyFailures", "true"); err != nil {
		t.Fatalf("staging an unrelated key while the key file is missing: %v", err)
	}
	if _, err := c.Commit(ctx, admin.CommitRequest{Note: "unrelated change"}); err != nil {
		t.Fatalf("an unrelated commit while the key file is missing: %v", err)
	}
	got := componentState(t, g, "tlsrpt")
	if got.State != admin.ComponentFailed || !strings.Contains(got.Reason, "TLSRPT.DKIMKeyFile") {
		t.Fatalf("tlsrpt = %+v, want failed naming TLSRPT.DKIMKeyFile", got)
	}
	if st := g.d.Settings().Current(); !st.Bool("Controller.EnableTLSRPT") {
		t.Fatal("Controller.EnableTLSRPT changed")
	}

	code, body := g.get(t, "/healthz")
	var h admin.Health
	if err := json.Unmarshal([]byte(body), &h); err != nil || code != http.StatusOK {
		t.Fatalf("/healthz: %d %s (%v)", code, body, err)
	}
	want := map[string]admin.ComponentState{"journal": admin.ComponentRunning, "queue": admin.ComponentRunning,
		"smtp": admin.ComponentRunning, "storage": admin.ComponentRunning, "tlsrpt": admin.ComponentFailed}
	gotStates := map[string]admin.ComponentState{}
	for _, c := range h.Components {
		gotStates[c.Name] = c.State
	}
	if h.Status != "degraded" || len(gotStates) != len(want) || gotStates["tlsrpt"] != want["tlsrpt"] || gotStates["queue"] != want["queue"] || gotStates["smtp"] != want["smtp"] ||
		gotStates["journal"] != want["journal"] || gotStates["storage"] != want["storage"] {
		t.Errorf("/healthz = %s, want degraded with %v", body, want)
	}
	if _, body := g.get(t, "/metrics"); !strings.Contains(body, `mxgate_component_up{component="tlsrpt"} 0`) || !strings.Contains(body, `mxgate_component_up{component="smtp"} 1`) {
		t.Errorf("metrics:\n%s\nwant tlsrpt 0 and smtp 1", grepLines(body, "mxgate_component_up"))
	}
	if code, body := g.get(t, "/readyz"); code != http.StatusOK {
		t.Errorf("/readyz = %d %s, want 200: intake and delivery work", code, body)
	}
	var st admin.Status
	if err := c.Do(ctx, http.MethodGet, "/api/v1/status", nil, &st); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, c := range st.Components {
		found = found || (c.Name == "tlsrpt" && c.State == admin.ComponentFailed && c.Reason != "")
	}
	if !found {
		t.Errorf("GET /api/v1/status components = %+v, want tlsrpt failed with a reason", st.Components)
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
