// Package consoletest serves a real console (package console) over httptest with in-memory fakes of the
// queue and the MTA-STS cache (package admintest), a real settings store and TLS reporter on a temporary
// SQLite database, and a day of delivery events, for the console's handler and browser tests. Beside it,
// as on the daemon's admin listener, the admin API answers /api/ (the admin token Token, or a console
// session) with the console's accounts.
package consoletest

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mxgate/mxgate/internal/address"
	"github.com/mxgate/mxgate/internal/admin"
	"github.com/mxgate/mxgate/internal/admin/admintest"
	"github.com/mxgate/mxgate/internal/clocktest"
	"github.com/mxgate/mxgate/internal/console"
	"github.com/mxgate/mxgate/internal/delivery"
	"github.com/mxgate/mxgate/internal/mtastscache"
	"github.com/mxgate/mxgate/internal/queue"
	"github.com/mxgate/mxgate/internal/settings"
	"github.com/mxgate/mxgate/internal/store"
	"github.com/mxgate/mxgate/internal/tlspolicy"
	"github.com/mxgate/mxgate/internal/tlsreport"
	"github.com/mxgate/mxgate/internal/tlsrpt"
)

// Password is the console password of every Env.
const Password = "correct horse battery staple"

// Token is the admin API token of every Env.
const Token = "0123456789abcdef0123456789abcdef"

// MsgExpired is the fixture message deferred by an MTA-STS enforce failure with result type
// certificate-expired (alice@corp.example → carol@shop.example), in addition to admintest's two.
const MsgExpired = "0a1b2c3d4e5f6g7h8i9j0k1l2p"

// ExpiredDomain is MsgExpired's destination, failing MTA-STS enforce.
const ExpiredDomain = "shop.example"

// MsgTraced is a delivered message the Tracking page finds by TracedAddr (its recipient) or its ID.
const (
	MsgTraced  = "0t1r2a3c4e5d6m7s8g9x0y1z2w"
	TracedAddr = "dana@partner.example"
)

// trace finds MsgTraced, which left the queue an hour before the clock's start.
func trace(now func() time.Time) func(context.Context, queue.TraceQuery) ([]queue.Traced, error) {
	return func(_ context.Context, q queue.TraceQuery) ([]queue.Traced, error) {
		if q.Any != TracedAddr && q.Any != MsgTraced {
			return nil, nil
		}
		fin := now().Add(-time.Hour)
		return []queue.Traced{{
			ID: MsgTraced, MessageID: "<q3-report@corp.example>", From: "alice@corp.example", Size: 4096,
			Received: fin.Add(-5 * time.Minute), Finished: fin,
			Recipients: []queue.RecipientInfo{{Addr: TracedAddr, Domain: "partner.example", State: "delivered", Attempts: 2,
				LastCode: 250, LastEnhanced: "2.0.0", LastText: "OK", LastRemoteMTA: "mx.partner.example", LastTLS: "verified TLS 1.3", LastPolicy: "mta-sts enforce"}},
			Attempts: []queue.Attempt{
				{Rcpt: TracedAddr, At: fin.Add(-4 * time.Minute), Outcome: queue.Deferred, Code: 451, Enhanced: "4.7.5", Text: "certificate has expired",
					RemoteMTA: "mx.partner.example", Policy: "mta-sts enforce", ResultType: "certificate-expired"},
				{Rcpt: TracedAddr, At: fin, Outcome: queue.Delivered, Code: 250, Enhanced: "2.0.0", Text: "OK",
					RemoteMTA: "mx.partner.example", TLS: "verified TLS 1.3", Policy: "mta-sts enforce"},
			},
		}}, nil
	}
}

// Env is a console under test.
type Env struct {
	Console  *console.Console
	Server   *httptest.Server
	Queue    *admintest.Queue
	STS      *admintest.STSCache
	Settings *settings.Store
	Reporter *tlsreport.Reporter
	DB       *store.DB
	Clock    *clocktest.Clock
	// PasswordFile holds the hash of Password.
	PasswordFile string
	// Token is the admin API's token.
	Token string

	explainMu sync.Mutex
	explained []string
}

// Explained returns the domains the console asked Explain about.
func (e *Env) Explained() []string {
	e.explainMu.Lock()
	defer e.explainMu.Unlock()
	return append([]string(nil), e.explained...)
}

// Components are the component states the fixture's dashboard shows: the report sender failed.
var Components = []admin.Component{
	{Name: "queue", State: admin.ComponentRunning, Since: admintest.Now()},
	{Name: "smtp", State: admin.ComponentRunning, Since: admintest.Now()},
	{Name: "tlsrpt", State: admin.ComponentFailed, Reason: "TLSRPT.DKIMKeyFile: open /etc/mxgate/dkim.pem: no such file or directory", Since: admintest.Now()},
}

// DKIM is the fixture's record of the key report mail is signed with, not yet in DNS.
var DKIM = admin.DKIMRecord{
	Name:    "tlsrpt._domainkey.corp.example",
	Value:   "v=DKIM1; k=rsa; s=email:tlsrpt; p=MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA",
	KeyFile: "/var/lib/mxgate/tlsrpt-dkim.pem",
	Problem: "no TXT record at tlsrpt._domainkey.corp.example",
}

// New starts a console on the fixture. The clock stands at admintest.Now(); everything is closed at the
// end of the test.
func New(t testing.TB) *Env {
	t.Helper()
	return NewOn(t, nil)
}

// NewOn starts a console on the fixture whose accounts are in accounts (nil: the Env's PasswordFile, which
// holds the administrator console.BootstrapAccount with Password either way).
func NewOn(t testing.TB, accounts console.AccountStore) *Env {
	t.Helper()
	return NewNode(t, Node{Accounts: accounts})
}

// Node is what a console of a cluster node shares with the other nodes.
type Node struct {
	// Accounts: see NewOn.
	Accounts console.AccountStore
	// Counters and Name: console.Options.ClusterCounters and Node.
	Counters console.CounterStore
	Name     string
}

// NewNode starts a console on the fixture as a node of a cluster.
func NewNode(t testing.TB, node Node) *Env {
	t.Helper()
	accounts := node.Accounts
	dir := t.TempDir()
	db, err := store.OpenSQLite(filepath.Join(dir, "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	clock := clocktest.New(admintest.Now())
	ctx := context.Background()
	st, err := settings.Open(ctx, db, map[string]string{"Sender.EnableMTASTS": "true"}, clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	rec, err := tlsreport.NewRecorder(ctx, db, tlsreport.RecorderOptions{Now: clock.Now, FlushInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rec.Close(context.Background()) })
	contact, err := address.ParseAddress("postmaster@corp.example")
	if err != nil {
		t.Fatal(err)
	}
	rep := &tlsreport.Reporter{DB: db, Recorder: rec, Contact: contact, Org: "Corp Example", Now: clock.Now}

	q, sts := admintest.Fixture()
	addExpired(q, sts)
	pwFile := filepath.Join(dir, "console-password")
	// A low PBKDF2 cost keeps logins fast under the race detector; production uses DefaultIterations.
	if err := console.WritePassword(pwFile, Password, 1000); err != nil {
		t.Fatal(err)
	}
	e := &Env{Queue: q, STS: sts, Settings: st, Reporter: rep, DB: db, Clock: clock, PasswordFile: pwFile}
	c, err := console.New(console.Options{
		Queue:              q,
		STS:                sts,
		Settings:           st,
		Reports:            func() console.ReportsAPI { return rep },
		Explain:            e.explain,
		Components:         func() []admin.Component { return Components },
		DKIM:               func(context.Context) (admin.DKIMRecord, error) { return DKIM, nil },
		PasswordFile:       pwFile,
		Accounts:           accounts,
		ClusterCounters:    node.Counters,
		Node:               node.Name,
		PasswordIterations: 1000,
		Trace:              trace(clock.Now),
		Now:                clock.Now,
		Logger:             slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		t.Fatal(err)
	}
	e.Console = c
	feed(c, clock)
	recordSessions(t, rec, clock.Now())
	if err := rep.Suppress(ctx, "tlsrpt@bounces.example", "mailbox full since May"); err != nil {
		t.Fatal(err)
	}
	e.Token = Token
	var apiAccounts admin.AccountsAPI = console.PasswordFile{Path: pwFile, Iterations: 1000}
	if accounts != nil {
		apiAccounts = accounts
	}
	api, err := admin.New(admin.Options{
		Token: Token, Queue: q, STS: sts, Settings: st, Now: clock.Now,
		Accounts: apiAccounts,
		Session:  c.Principal,
	})
	if err != nil {
		t.Fatal(err)
	}
	apiH, ui := api.Handler(), c.Handler()
	e.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/api/") {
			apiH.ServeHTTP(w, r)
			return
		}
		ui.ServeHTTP(w, r)
	}))
	t.Cleanup(e.Server.Close)
	return e
}

// testWriter sends the console's warnings and errors to the test log.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// explain stands in for the daemon's Explain (delivery.Explanation), with what the fixture's cache holds.
func (e *Env) explain(ctx context.Context, req delivery.PlanRequest) (delivery.Explanation, error) {
	e.explainMu.Lock()
	e.explained = append(e.explained, req.Domain.String())
	e.explainMu.Unlock()
	dom, ok := req.Domain.Domain()
	if !ok {
		return delivery.Explanation{}, fmt.Errorf("explain %s: the fixture knows domains only", req.Domain)
	}
	mtasts := e.Settings.Current().MTASTSEnabled()
	out := delivery.Explanation{
		Domain: dom.String(), Plan: "opportunistic", Source: tlspolicy.SourceDefault, Level: tlspolicy.LevelOpportunistic,
		Reason:   "no rule, no DANE, no MTA-STS policy: opportunistic TLS",
		Settings: delivery.ExplainedBy{EnableMTASTS: mtasts},
		MX:       []delivery.MXCheck{{Host: "mx." + dom.String(), Pref: 10, Allowed: true}},
	}
	if entry, err := e.STS.Show(ctx, dom); err == nil && mtasts {
		out.Plan, out.Source, out.Level = "mta-sts "+string(entry.Mode), tlspolicy.SourceMTASTS, tlspolicy.LevelRequiredVerify
		out.Reason = "MTA-STS policy " + entry.ID + " in " + string(entry.Mode) + " mode"
		out.STSMode, out.STSID = entry.Mode, entry.ID
	}
	rules, err := e.Settings.Current().DomainRules()
	if err != nil {
		return out, err
	}
	if r, ok := rules[dom.String()]; ok {
		out.Settings.Rule = r.String()
		if r.Override {
			out.Plan, out.Source, out.Level, out.Override = string(r.Level)+" override", tlspolicy.SourceRule, r.Level, true
			out.Reason = "per-domain rule sets " + string(r.Level) + " (override: published policies are not applied)"
		}
	}
	return out, nil
}

func addExpired(q *admintest.Queue, sts *admintest.STSCache) {
	now := admintest.Now()
	sts.Add(mtastscache.Entry{
		Domain: address.MustParseDomain(ExpiredDomain), ID: "20250501T000000", Mode: "enforce", MaxAge: 1209600 * time.Second,
		MX: []string{"mx.shop.example"}, Fetched: now.Add(-20 * time.Hour), Expires: now.Add(1209600*time.Second - 20*time.Hour),
		LastUsed: now.Add(-10 * time.Minute),
		Policy:   "version: STSv1\nmode: enforce\nmx: mx.shop.example\nmax_age: 1209600\n",
	})
	lastErr := "certificate-expired: mx.shop.example: x509: certificate has expired or is not yet valid"
	q.Add(queue.MessageDetail{
		MessageInfo: queue.MessageInfo{
			ID: MsgExpired, From: "alice@corp.example", Size: 4096,
			Received: now.Add(-3 * time.Hour), Expires: now.Add(117 * time.Hour), Attempts: 3,
			State: "queued", Queued: 1, Domains: []string{ExpiredDomain},
			NextAttempt: now.Add(20 * time.Minute), LastError: lastErr,
		},
		ClientIP: "10.0.0.7",
		Rcpts: []queue.RecipientInfo{{
			Addr: "carol@shop.example", Domain: ExpiredDomain, Notify: []string{"FAILURE", "DELAY"}, State: "queued",
			NextAttempt: now.Add(20 * time.Minute), Attempts: 3, LastCode: 451, LastEnhanced: "4.7.5", LastText: lastErr,
			LastResultType: "certificate-expired", LastRemoteMTA: "mx.shop.example", LastPolicy: "mta-sts enforce",
			Updated: now.Add(-10 * time.Minute),
		}},
		Timeline: []queue.Attempt{
			{Rcpt: "carol@shop.example", At: now.Add(-170 * time.Minute), Outcome: queue.Deferred, Code: 451, Enhanced: "4.7.5",
				Text: lastErr, RemoteMTA: "mx.shop.example", Policy: "mta-sts enforce", ResultType: "certificate-expired"},
			{Rcpt: "carol@shop.example", At: now.Add(-100 * time.Minute), Outcome: queue.Deferred, Code: 451, Enhanced: "4.7.5",
				Text: lastErr, RemoteMTA: "mx.shop.example", Policy: "mta-sts enforce", ResultType: "certificate-expired"},
			{Rcpt: "carol@shop.example", At: now.Add(-10 * time.Minute), Outcome: queue.Deferred, Code: 451, Enhanced: "4.7.5",
				Text: lastErr, RemoteMTA: "mx.shop.example", Policy: "mta-sts enforce", ResultType: "certificate-expired"},
		},
	})
}

// feed observes a day of delivery events ending at admintest.Now(), then leaves the clock there.
func feed(c *console.Console, clock *clocktest.Clock) {
	now := admintest.Now()
	ev := func(domain string, r queue.Result, plan string, src tlspolicy.Source) delivery.Event {
		r.Policy = plan
		return delivery.Event{Domain: address.MustParseHost(domain), Result: r, Plan: plan, Source: src, Attempt: 1}
	}
	for h := 23; h >= 0; h-- {
		clock.Set(now.Add(-time.Duration(h)*time.Hour - 30*time.Minute))
		for i := 0; i < 6+(h%5); i++ {
			c.ObserveAccepted()
			c.Observe(ev("example.com", queue.Result{Outcome: queue.Delivered, Code: 250, Text: "OK", RemoteMTA: "mx.example.com",
				TLS: "verified TLS 1.3"}, "mta-sts enforce", tlspolicy.SourceMTASTS))
		}
		for i := 0; i < 2+(h%3); i++ {
			c.Observe(ev("example.net", queue.Result{Outcome: queue.Delivered, Code: 250, Text: "OK", RemoteMTA: "mx.example.net",
				TLS: "unverified TLS 1.2"}, "mta-sts testing", tlspolicy.SourceMTASTS))
		}
		if h%4 == 0 {
			c.Observe(ev("plain.example", queue.Result{Outcome: queue.Delivered, Code: 250, Text: "OK", RemoteMTA: "mx.plain.example",
				TLS: "none"}, "opportunistic", tlspolicy.SourceDefault))
		}
		if h <= 2 {
			c.Observe(ev(ExpiredDomain, queue.Result{Outcome: queue.Deferred, Code: 451, Enhanced: "4.7.5",
				Text:      "certificate-expired: mx.shop.example: x509: certificate has expired or is not yet valid",
				RemoteMTA: "mx.shop.example", ResultType: "certificate-expired"}, "mta-sts enforce", tlspolicy.SourceMTASTS))
		}
	}
	clock.Set(now.Add(-50 * time.Minute))
	c.Observe(ev("example.org", queue.Result{Outcome: queue.Deferred, Code: 451, Enhanced: "4.7.5",
		Text:      "certificate-host-mismatch: mx1.example.org: x509: certificate is valid for other.example, not mx1.example.org",
		RemoteMTA: "mx1.example.org", ResultType: "certificate-host-mismatch"}, "mta-sts enforce", tlspolicy.SourceMTASTS))
	clock.Set(now)
}

// recordSessions records today's TLS sessions so that reports are pending.
func recordSessions(t testing.TB, rec *tlsreport.Recorder, now time.Time) {
	t.Helper()
	pol := tlsrpt.Policy{Type: tlsrpt.PolicySTS, Domain: "example.org",
		String: []string{"version: STSv1", "mode: enforce", "mx: mx1.example.org", "max_age: 604800"}, MXHost: []string{"mx1.example.org"}}
	for i := 0; i < 3; i++ {
		rec.Record(tlsrpt.Session{Policy: pol, Success: true, At: now.Add(-time.Hour)})
	}
	rec.Record(tlsrpt.Session{Policy: pol, At: now.Add(-50 * time.Minute), Failure: &tlsrpt.FailureDetails{
		ResultType: tlsrpt.ResultCertificateHostMismatch, ReceivingMXHostname: "mx1.example.org", ReceivingIP: "192.0.2.10"}})
	if err := rec.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
}
