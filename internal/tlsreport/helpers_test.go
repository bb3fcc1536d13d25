package tlsreport

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"io"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/mxgate/mxgate/internal/address"
	"github.com/mxgate/mxgate/internal/clocktest"
	"github.com/mxgate/mxgate/internal/dnsx/dnstest"
	"github.com/mxgate/mxgate/internal/queue"
	"github.com/mxgate/mxgate/internal/store"
	"github.com/mxgate/mxgate/internal/tlsrpt"
)

// testDay is the fixed day of the tests (RPT-12's example).
var testDay = time.Date(2024, 3, 10, 0, 0, 0, 0, time.UTC)

func openDB(t testing.TB, path string) *store.DB {
	t.Helper()
	if path == "" {
		path = filepath.Join(t.TempDir(), "state.db")
	}
	db, err := store.OpenSQLite(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// submission is one message handed to the fake queue.
type submission struct {
	env  queue.Envelope
	body []byte
}

// fakeQueue records submissions; fail makes Submit fail.
type fakeQueue struct {
	mu   sync.Mutex
	subs []submission
	fail error
	got  chan struct{} // receives one value per submission, if not nil
}

func (q *fakeQueue) Submit(ctx context.Context, env queue.Envelope, body io.Reader) (string, error) {
	b, err := io.ReadAll(body)
	if err != nil {
		return "", err
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.fail != nil {
		return "", q.fail
	}
	q.subs = append(q.subs, submission{env: env, body: b})
	if q.got != nil {
		select {
		case q.got <- struct{}{}:
		default:
		}
	}
	return "Q" + string(rune('0'+len(q.subs))), nil
}

func (q *fakeQueue) submissions() []submission {
	q.mu.Lock()
	defer q.mu.Unlock()
	return append([]submission(nil), q.subs...)
}

var errQueueDown = errors.New("queue down")

// env is a reporter with a fake queue, a test DNS server, a fixed clock and deterministic randomness.
type env struct {
	t     *testing.T
	db    *store.DB
	dns   *dnstest.Server
	clock *clocktest.Clock
	queue *fakeQueue
	rec   *Recorder
	rep   *Reporter
	dkim  ed25519.PrivateKey
}

const (
	contact   = "tlsrpt@reports.sender.test"
	submitter = "reports.sender.test"
)

func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{
		t:     t,
		db:    openDB(t, ""),
		dns:   dnstest.New(t),
		clock: clocktest.New(testDay.Add(9 * time.Hour)),
		queue: &fakeQueue{},
	}
	rec, err := NewRecorder(t.Context(), e.db, RecorderOptions{Now: e.clock.Now, FlushInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rec.Close(context.Background()) })
	e.rec = rec
	pub, priv, err := ed25519.GenerateKey(rand.NewChaCha8([32]byte{1}))
	if err != nil {
		t.Fatal(err)
	}
	e.dkim = priv
	e.dns.Add(`tlsrpt._domainkey.reports.sender.test. 300 IN TXT "v=DKIM1; k=ed25519; s=email:tlsrpt; p=` +
		base64.StdEncoding.EncodeToString(pub) + `"`)
	e.rep = &Reporter{
		DB:       e.db,
		Resolver: e.dns.Client(),
		Queue:    e.queue,
		Recorder: rec,
		Now:      e.clock.Now,
		Rand:     rand.NewChaCha8([32]byte{2}),
		Org:      "Sender Org",
		Contact:  mustAddr(contact),
		DKIM:     &DKIMKey{Selector: "tlsrpt", Signer: priv},
	}
	return e
}

func mustAddr(s string) address.Address {
	a, err := address.ParseAddress(s)
	if err != nil {
		panic(err)
	}
	return a
}

// Policies used across tests.
var (
	stsPolicy = tlsrpt.Policy{
		Type:   tlsrpt.PolicySTS,
		String: []string{"version: STSv1", "mode: enforce", "mx: mx1.example.com", "mx: *.example.net", "max_age: 604800"},
		Domain: "example.com",
		MXHost: []string{"mx1.example.com", "*.example.net"},
	}
	tlsaPolicy = tlsrpt.Policy{
		Type:   tlsrpt.PolicyTLSA,
		String: []string{"3 1 1 0c72ac70b745ac19998811b131d662c9ac69dbdbe7cb23e5b514b56664c5d3d6"},
		Domain: "mx1.example.com",
	}
	noPolicy = tlsrpt.Policy{Type: tlsrpt.PolicyNoPolicyFound, Domain: "other.test"}
)

// recordN records n sessions.
func recordN(r *Recorder, n int, s tlsrpt.Session) {
	for i := 0; i < n; i++ {
		c := s
		if s.Failure != nil {
			f := *s.Failure
			c.Failure = &f
		}
		r.Record(c)
	}
}

func success(p tlsrpt.Policy, at time.Time) tlsrpt.Session {
	return tlsrpt.Session{Policy: p, Success: true, At: at}
}

func failure(p tlsrpt.Policy, at time.Time, f tlsrpt.FailureDetails) tlsrpt.Session {
	f.FailedSessionCount = 1
	return tlsrpt.Session{Policy: p, At: at, Failure: &f}
}

// recordStandardDay records the sessions of the golden report: RPT-16's 5 successes and 2 bad-certificate
// failures under an enforce policy, RPT-20's aggregation, RPT-18's IPv6 form.
func recordStandardDay(r *Recorder) {
	at := testDay.Add(10 * time.Hour)
	recordN(r, 5, success(stsPolicy, at))
	recordN(r, 2, failure(stsPolicy, at, tlsrpt.FailureDetails{
		ResultType:          tlsrpt.ResultCertificateExpired,
		SendingMTAIP:        "2001:DB8:0:0:0:0:0:1",
		ReceivingMXHostname: "MX1.example.com",
		ReceivingMXHelo:     "mx1.example.com",
		ReceivingIP:         "192.0.2.25",
	}))
	recordN(r, 1, failure(stsPolicy, at, tlsrpt.FailureDetails{
		ResultType:          tlsrpt.ResultValidationFailure,
		SendingMTAIP:        "198.51.100.7",
		ReceivingMXHostname: "mx9.other.test",
		FailureReasonCode:   "mx-not-in-policy",
		AdditionalInfo:      `ext: a"b\c`,
	}))
}
