// Package cluster runs three mxgate processes (the built binary) on one PostgreSQL database against a
// simulated internet: a commit on one node is live on the others; one TLS report carries the sessions of
// all three; killing the node that sends the report loses and duplicates nothing; with PostgreSQL stopped
// for 30 s during a 1,000-message run nothing accepted is lost, nothing is sent against an enforce policy,
// and the sessions of the outage are reported afterwards. It takes a few minutes; CI runs it with its own
// timeout (.ci/run).
package cluster

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mxgate/mxgate/internal/admin"
	"github.com/mxgate/mxgate/internal/gatewaytest"
	"github.com/mxgate/mxgate/internal/simnet"
	"github.com/mxgate/mxgate/internal/testpki"
	"github.com/mxgate/mxgate/internal/tlsrpt"
)

var binPath string

func TestMain(m *testing.M) { gatewaytest.Main(m, &binPath, gatewaytest.BuildOptions{}) }

const (
	nodes    = 3
	total    = 1000
	badEvery = 20 // every 20th message goes to the domain whose MX fails the enforce policy
	outage   = 30 * time.Second
	// The report timing of the test: a takeover within seconds rather than the default ten minutes.
	retryInterval = time.Second
	sendLease     = 5 * time.Second
	policyFmt     = "version: STSv1\nmode: enforce\nmx: %s\nmax_age: 604800\n"
	goodDomain    = "good.cluster.test"
	badDomain     = "bad.cluster.test"
)

// node is one gateway process of the cluster.
type node struct {
	name string
	dir  string
	g    *gatewaytest.Gateway
	api  *admin.Client
}

var adminRE = regexp.MustCompile(`"msg":"mxgate running".*"admin":"([^"]+)"`)

func startNode(t *testing.T, n *simnet.Net, dsn string, i int) *node {
	t.Helper()
	nd := &node{name: fmt.Sprintf("node%d.cluster.test", i), dir: filepath.Join(t.TempDir(), "data")}
	cfg := gatewaytest.WriteConfig(t, n, gatewaytest.Config{DataDir: nd.dir, Queue: gatewaytest.FastRetry,
		Extra: fmt.Sprintf("[tlsrpt]\nretry_interval = %q\nsend_lease = %q\n", retryInterval, sendLease)})
	b, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	text := fmt.Sprintf("node = %q\n", nd.name) +
		strings.Replace(string(b), "[data]\n", fmt.Sprintf("[data]\ndatabase = %q\n", dsn), 1)
	if err := os.WriteFile(cfg, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	nd.g = gatewaytest.Start(t, binPath, cfg)
	m := adminRE.FindStringSubmatch(nd.g.Logs())
	if m == nil {
		t.Fatalf("%s: no admin address in the logs:\n%s", nd.name, nd.g.Logs())
	}
	tok, err := admin.ReadToken(admin.TokenPath(nd.dir))
	if err != nil {
		t.Fatal(err)
	}
	nd.api = &admin.Client{BaseURL: "http://" + m[1], Token: tok, HTTP: &http.Client{Timeout: time.Minute}}
	return nd
}

// stsSessions returns the node's count of successful MTA-STS sessions recorded for TLS reporting.
func (nd *node) stsSessions(t *testing.T) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, nd.api.BaseURL+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+nd.api.Token)
	resp, err := nd.api.HTTP.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	m := regexp.MustCompile(`(?m)^mxgate_tlsrpt_sessions_total\{policy_type="sts",result="success"\} (\d+)$`).FindSubmatch(body)
	if m == nil {
		t.Fatalf("%s: no successful sts sessions in /metrics (%s):\n%s", nd.name, resp.Status, body)
	}
	v, _ := strconv.Atoi(string(m[1]))
	return v
}

// reportSink is the HTTPS rua endpoint of goodDomain. The first POST is held open until the sender's
// connection is gone and is not counted (the sender is killed while sending it); every later POST is
// counted as received and answered 200.
type reportSink struct {
	inFlight chan struct{} // closed when the first POST arrives
	got      chan tlsrpt.Report
	mu       sync.Mutex
	n        int
}

func (s *reportSink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.n++
	first := s.n == 1
	s.mu.Unlock()
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	if first {
		close(s.inFlight)
		<-r.Context().Done()
		return
	}
	zr, err := gzip.NewReader(bytes.NewReader(body))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	js, err := io.ReadAll(zr)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var rep tlsrpt.Report
	if err := json.Unmarshal(js, &rep); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	w.WriteHeader(http.StatusOK)
	s.got <- rep
}

func TestClusterThreeNodes(t *testing.T) {
	started := time.Now()
	pg := startPG(t)
	n, err := simnet.New(simnet.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	good, err := n.AddMX(simnet.MXOptions{Domain: goodDomain, Host: "mx." + goodDomain, Pref: 10})
	if err != nil {
		t.Fatal(err)
	}
	// The bad domain's MX presents a certificate from an untrusted CA: its enforce policy forbids delivery.
	evil := n.EvilCA.MustIssue(testpki.Leaf{DNSNames: []string{"mx." + badDomain}})
	bad, err := n.AddMX(simnet.MXOptions{Domain: badDomain, Host: "mx." + badDomain, Pref: 10, Cert: &evil})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{goodDomain, badDomain} {
		n.DNS.AddTXT("_mta-sts."+d, "v=STSv1; id=cluster1")
		if _, err := n.ServeMTASTSPolicy(d, fmt.Sprintf(policyFmt, "mx."+d)); err != nil {
			t.Fatal(err)
		}
	}
	sink := &reportSink{inFlight: make(chan struct{}), got: make(chan tlsrpt.Report, 8)}
	if _, err := n.AddHTTPSHost("reports.cluster.test", sink, nil); err != nil {
		t.Fatal(err)
	}
	n.DNS.AddTXT("_smtp._tls."+goodDomain, "v=TLSRPTv1; rua=https://reports.cluster.test/tlsrpt")

	var ns []*node
	for i := 1; i <= nodes; i++ {
		ns = append(ns, startNode(t, n, pg.DSN, i))
	}
	ctx := context.Background()

	// A commit on node 1 is live on nodes 2 and 3.
	if _, err := ns[0].api.SetSetting(ctx, "TLSRPT.OrganizationName", "Cluster Org"); err != nil {
		t.Fatal(err)
	}
	res, err := ns[0].api.Commit(ctx, admin.CommitRequest{Note: "one organisation name for the cluster's reports"})
	if err != nil {
		t.Fatal(err)
	}
	committed := time.Now()
	for _, nd := range ns[1:] {
		for {
			st, err := nd.api.Status(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if st.Generation.Running == res.Generation {
				t.Logf("generation %d running on %s %v after the commit on node 1", res.Generation, nd.name, time.Since(committed).Round(time.Millisecond))
				break
			}
			if time.Since(committed) > 10*time.Second {
				t.Fatalf("%s still runs generation %d 10 s after the commit of %d", nd.name, st.Generation.Running, res.Generation)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	// 1,000 messages from 8 clients, spread over the three nodes; PostgreSQL stops once 200 are accepted and
	// comes back 30 s later.
	var next, acked atomic.Int64
	var ackMu sync.Mutex
	ackedGood := map[string]bool{}
	outageDone := make(chan struct{})
	var outageOnce sync.Once
	// What the outage showed, checked once it is over: deliveries went on, and the nodes kept their TLS
	// results locally, saying so in their status.
	var deliveredAtStop, deliveredAtRestart int
	heldDuringOutage := map[string]bool{}
	var outageErr error
	startOutage := func() {
		go func() {
			defer close(outageDone)
			if outageErr = pg.stop(); outageErr != nil {
				return
			}
			deliveredAtStop = len(good.Messages())
			t.Logf("PostgreSQL stopped at %d accepted messages", acked.Load())
			time.Sleep(outage)
			deliveredAtRestart = len(good.Messages())
			for _, nd := range ns {
				if st, err := nd.api.Status(ctx); err == nil {
					heldDuringOutage[nd.name] = strings.Contains(strings.Join(st.Warnings, "\n"), "TLS report results kept locally")
				}
			}
			outageErr = pg.start()
			t.Logf("PostgreSQL started again after %v, at %d accepted messages", outage, acked.Load())
		}()
	}
	runStart := time.Now()
	var wg sync.WaitGroup
	var sendErrs atomic.Int64
	for c := 0; c < 8; c++ {
		wg.Go(func() {
			for {
				i := int(next.Add(1))
				if i > total {
					return
				}
				dom := goodDomain
				if i%badEvery == 0 {
					dom = badDomain
				}
				tok := fmt.Sprintf("t%d-%d", c, i)
				rcpt := fmt.Sprintf("u%d@%s", i, dom)
				nd := ns[i%nodes]
				// A refusal is retried (bounded), as a submitting MTA would.
				var err error
				for try := 0; try < 5; try++ {
					if err = gatewaytest.Send(nd.g.SMTP, rcpt, tok); err == nil {
						break
					}
				}
				if err != nil {
					sendErrs.Add(1)
					t.Errorf("%s refused %s: %v", nd.name, tok, err)
					continue
				}
				if dom == goodDomain {
					ackMu.Lock()
					ackedGood[tok] = true
					ackMu.Unlock()
				}
				if acked.Add(1) == 200 {
					outageOnce.Do(startOutage)
				}
			}
		})
	}
	wg.Wait()
	t.Logf("%d messages accepted in %v", acked.Load(), time.Since(runStart).Round(time.Millisecond))
	outageOnce.Do(startOutage)
	<-outageDone
	if outageErr != nil {
		t.Fatal(outageErr)
	}
	t.Logf("delivered while PostgreSQL was down: %d (from %d to %d); nodes holding TLS results locally: %v",
		deliveredAtRestart-deliveredAtStop, deliveredAtStop, deliveredAtRestart, heldDuringOutage)
	if deliveredAtRestart <= deliveredAtStop {
		t.Errorf("no message delivered during the %v outage", outage)
	}
	held := 0
	for _, h := range heldDuringOutage {
		if h {
			held++
		}
	}
	if held == 0 {
		t.Errorf("no node said it kept TLS results locally during the outage")
	}

	// Everything accepted for the good domain arrives, once; nothing reaches the MX the policy forbids.
	deadline := time.Now().Add(2 * time.Minute)
	for {
		got := gatewaytest.Tokens(good)
		missing := 0
		for tok := range ackedGood {
			if got[tok] == 0 {
				missing++
			}
		}
		if missing == 0 {
			dups := 0
			for _, c := range got {
				dups += c - 1
			}
			if dups > 0 {
				t.Errorf("%d messages delivered twice", dups)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d accepted messages not delivered 2 minutes after PostgreSQL returned", missing, len(ackedGood))
		}
		time.Sleep(200 * time.Millisecond)
	}
	if got := len(bad.Messages()); got != 0 {
		t.Fatalf("the MX whose certificate the enforce policy refuses received %d messages", got)
	}
	t.Logf("%d messages delivered to %s, none to %s, %v after the run started", len(ackedGood), goodDomain, badDomain, time.Since(runStart).Round(time.Millisecond))

	// Every node recorded sessions; the shared database has all of them, the outage's included (handed
	// over by each node when PostgreSQL returned).
	sessions := 0
	for _, nd := range ns {
		s := nd.stsSessions(t)
		if s == 0 {
			t.Fatalf("%s recorded no session", nd.name)
		}
		t.Logf("%s recorded %d successful sessions to %s", nd.name, s, goodDomain)
		sessions += s
	}
	conn, err := pgx.Connect(ctx, pg.DSN)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	day := time.Now().UTC().Format("2006-01-02")
	if runDay := runStart.UTC().Format("2006-01-02"); runDay != day {
		// The sessions are split between two days' reports; the comparison below needs one.
		t.Fatalf("the run crossed 00:00 UTC (%s to %s): its sessions are in two reports; run the test again", runDay, day)
	}
	for stored := int64(-1); stored != int64(sessions); {
		if err := conn.QueryRow(ctx, `SELECT COALESCE(SUM(success), 0) FROM tlsreport_policies WHERE day = $1 AND policy_domain = $2`,
			day, goodDomain).Scan(&stored); err != nil {
			t.Fatal(err)
		}
		if stored > int64(sessions) {
			t.Fatalf("the shared database counts %d sessions, the nodes recorded %d", stored, sessions)
		}
		if stored != int64(sessions) {
			if time.Since(runStart) > 5*time.Minute {
				t.Fatalf("the shared database counts %d sessions, the nodes recorded %d", stored, sessions)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	// Node 1 sends today's reports and is killed while its POST is in flight; another node takes the
	// delivery over once node 1's lease has run out. The receiver gets the report once.
	sendDone := make(chan error, 1)
	go func() {
		_, err := ns[0].api.TLSRPTSend(ctx, admin.SendRequest{Today: true})
		sendDone <- err
	}()
	select {
	case <-sink.inFlight:
	case err := <-sendDone:
		t.Fatalf("node 1 sent the reports without posting: %v", err)
	case <-time.After(time.Minute):
		t.Fatal("node 1 did not post the report within a minute")
	}
	ns[0].g.Kill()
	killed := time.Now()
	var rep tlsrpt.Report
	select {
	case rep = <-sink.got:
	case <-time.After(sendLease + 30*time.Second):
		t.Fatalf("no node took the report over within %v of node 1's death", sendLease+30*time.Second)
	}
	t.Logf("report %s received %v after the sender was killed", rep.ReportID, time.Since(killed).Round(time.Millisecond))
	if rep.OrganizationName != "Cluster Org" || len(rep.Policies) != 1 || rep.Policies[0].Policy.Type != tlsrpt.PolicySTS ||
		rep.Policies[0].Summary.Successful != int64(sessions) || rep.Policies[0].Summary.Failed != 0 {
		t.Errorf("report: organization %q, policies %+v; want Cluster Org and %d successful sessions (all three nodes)", rep.OrganizationName, rep.Policies, sessions)
	}
	// Nothing more comes: the takeover recorded its success, and the other surviving node leaves it alone.
	select {
	case again := <-sink.got:
		t.Errorf("report %s received a second time", again.ReportID)
	case <-time.After(2 * (sendLease + retryInterval)):
	}
	var status string
	var attempts int
	if err := conn.QueryRow(ctx, `SELECT status, attempts FROM tlsreport_deliveries WHERE report_id = $1`, rep.ReportID).Scan(&status, &attempts); err != nil {
		t.Fatal(err)
	}
	if status != "delivered" || attempts != 1 {
		t.Errorf("report log: %s after %d attempts; want delivered after 1 (node 1's never recorded)", status, attempts)
	}
	for _, nd := range ns[1:] {
		if err := nd.g.Stop(); err != nil {
			t.Error(err)
		}
	}
	t.Logf("whole test: %v", time.Since(started).Round(time.Second))
}
