package tlsreport

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-message"
	"github.com/emersion/go-msgauth/dkim"
	"github.com/google/go-cmp/cmp"

	"github.com/mxgate/mxgate/internal/dnsx/dnstest"
	"github.com/mxgate/mxgate/internal/mtasts"
	"github.com/mxgate/mxgate/internal/testpki"
	"github.com/mxgate/mxgate/internal/tlsrpt"
)

// sendTime is when the tests send testDay's reports.
var sendTime = testDay.Add(24*time.Hour + 30*time.Minute)

func sendDay(t *testing.T, e *env) SendResult {
	t.Helper()
	e.clock.Set(sendTime)
	res, err := e.rep.SendDay(t.Context(), testDay)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func statuses(res SendResult) map[string]string {
	m := map[string]string{}
	for _, d := range res.Domains {
		m[d.Domain] = d.Status
	}
	return m
}

func gunzip(t *testing.T, b []byte) []byte {
	t.Helper()
	if len(b) < 2 || b[0] != 0x1f || b[1] != 0x8b {
		t.Fatalf("RPT-26: not gzip: % x", b[:min(len(b), 4)])
	}
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	out, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestSendMail_RPT4_RPT25_RPT26_RPT28_RPT29_RPT30_RPT31 sends a report by mail and checks the message
// the queue receives: MIME structure, headers, Subject, attachment and DKIM signature.
func TestSendMail_RPT4_RPT25_RPT26_RPT28_RPT29_RPT30_RPT31(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	// RPT-4: a TXT record of two strings is joined with nothing added.
	e.dns.Add(`_smtp._tls.example.com. 300 IN TXT "v=TLSRPTv1; rua=mailto:tls" "rpt@reports.test"`)
	recordStandardDay(e.rec)
	res := sendDay(t, e)
	if len(res.Domains) != 1 || res.Domains[0].Status != "sent" || len(res.Domains[0].Deliveries) != 1 ||
		res.Domains[0].Deliveries[0].Status != StatusQueued {
		t.Fatalf("SendDay = %+v", res)
	}
	subs := e.queue.submissions()
	if len(subs) != 1 {
		t.Fatalf("%d submissions, want 1", len(subs))
	}
	s := subs[0]
	if s.env.From.String() != contact || !s.env.Report || len(s.env.Recipients) != 1 || s.env.Recipients[0].Addr.String() != "tlsrpt@reports.test" {
		t.Errorf("envelope = %+v", s.env)
	}
	if !bytes.Contains(s.body, []byte("\r\n\r\n")) || bytes.Contains(bytes.ReplaceAll(s.body, []byte("\r\n"), nil), []byte("\n")) {
		t.Errorf("body does not use CRLF line endings")
	}

	m, err := message.Read(bytes.NewReader(s.body))
	if err != nil {
		t.Fatal(err)
	}
	subject := m.Header.Get("Subject")
	// RPT-30 (after unfolding).
	unfolded := strings.Join(strings.Fields(subject), " ")
	reSubj := regexp.MustCompile(`^Report Domain: example\.com Submitter: reports\.sender\.test Report-ID: <([^<>@]+@[^<>@]+)>$`)
	sm := reSubj.FindStringSubmatch(unfolded)
	if sm == nil {
		t.Errorf("Subject %q does not match %v", subject, reSubj)
	}
	// RPT-29.
	if got := m.Header.Get("TLS-Report-Domain"); got != "example.com" {
		t.Errorf("TLS-Report-Domain = %q", got)
	}
	if got := m.Header.Get("TLS-Report-Submitter"); got != "reports.sender.test" {
		t.Errorf("TLS-Report-Submitter = %q", got)
	}
	// RPT-28.
	mt, params, err := m.Header.ContentType()
	if err != nil || mt != "multipart/report" || params["report-type"] != "tlsrpt" {
		t.Errorf("Content-Type = %q %v %v", mt, params, err)
	}
	mr := m.MultipartReader()
	if mr == nil {
		t.Fatal("not multipart")
	}
	var types []string
	var report []byte
	var filename string
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		pt, _, _ := p.Header.ContentType()
		types = append(types, pt)
		body, err := io.ReadAll(p.Body)
		if err != nil {
			t.Fatal(err)
		}
		if pt == tlsrpt.MediaTypeGzip {
			if cte := p.Header.Get("Content-Transfer-Encoding"); cte != "base64" {
				t.Errorf("attachment Content-Transfer-Encoding = %q", cte)
			}
			disp, dp, err := mime.ParseMediaType(p.Header.Get("Content-Disposition"))
			if err != nil || disp != "attachment" {
				t.Errorf("Content-Disposition = %q, %v", p.Header.Get("Content-Disposition"), err)
			}
			filename = dp["filename"]
			report = gunzip(t, body)
		}
	}
	if diff := cmp.Diff([]string{"text/plain", tlsrpt.MediaTypeGzip}, types); diff != "" {
		t.Errorf("parts (-want +got):\n%s", diff)
	}
	var rep tlsrpt.Report
	if err := json.Unmarshal(report, &rep); err != nil {
		t.Fatalf("attachment is not JSON: %v", err)
	}
	checkReportJSON(t, report)
	// RPT-37: Subject, file name and headers agree with the JSON.
	if sm != nil && sm[1] != rep.ReportID {
		t.Errorf("Subject report-id %q, JSON %q", sm[1], rep.ReportID)
	}
	if rep.Policies[0].Policy.Domain != "example.com" || !strings.HasSuffix(rep.ContactInfo, "@reports.sender.test") {
		t.Errorf("JSON domain/contact = %q, %q", rep.Policies[0].Policy.Domain, rep.ContactInfo)
	}
	// RPT-25.
	reName := regexp.MustCompile(`^reports\.sender\.test!example\.com!1710028800!1710115200![A-Za-z0-9]+\.json\.gz$`)
	if !reName.MatchString(filename) {
		t.Errorf("file name %q does not match %v", filename, reName)
	}
	if rep.DateRange.Start.Unix() != 1710028800 || rep.DateRange.End.Unix() != 1710115200 {
		t.Errorf("date range %+v disagrees with the file name", rep.DateRange)
	}

	// RPT-31: the DKIM signature verifies against the key in DNS, has no l=, signs the TLS-Report-* fields.
	client := e.dns.Client()
	verifs, err := dkim.VerifyWithOptions(bytes.NewReader(s.body), &dkim.VerifyOptions{
		LookupTXT: func(name string) ([]string, error) {
			txts, _, err := client.LookupTXT(context.Background(), name)
			return txts, err
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(verifs) != 1 || verifs[0].Err != nil {
		t.Fatalf("DKIM verifications = %+v", verifs)
	}
	v := verifs[0]
	if v.Domain != "reports.sender.test" {
		t.Errorf("d= %q", v.Domain)
	}
	signed := strings.ToLower(strings.Join(v.HeaderKeys, ":"))
	for _, h := range []string{"from", "subject", "tls-report-domain", "tls-report-submitter"} {
		if !strings.Contains(signed, h) {
			t.Errorf("h= %q lacks %s", signed, h)
		}
	}
	sig := m.Header.Get("DKIM-Signature")
	if regexp.MustCompile(`(^|;)\s*l\s*=`).MatchString(sig) {
		t.Errorf("DKIM-Signature has l=: %s", sig)
	}
	// A changed header breaks the signature (the check is real).
	tampered := bytes.Replace(s.body, []byte("TLS-Report-Domain: example.com"), []byte("TLS-Report-Domain: evil.test"), 1)
	verifs, err = dkim.VerifyWithOptions(bytes.NewReader(tampered), &dkim.VerifyOptions{
		LookupTXT: func(name string) ([]string, error) {
			txts, _, err := client.LookupTXT(context.Background(), name)
			return txts, err
		},
	})
	if err == nil && len(verifs) == 1 && verifs[0].Err == nil {
		t.Errorf("tampered message still verifies")
	}
}

func TestSendUnsigned(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.rep.DKIM = nil
	e.dns.Add(`_smtp._tls.example.com. 300 IN TXT "v=TLSRPTv1; rua=mailto:a@r.test"`)
	recordStandardDay(e.rec)
	sendDay(t, e)
	subs := e.queue.submissions()
	if len(subs) != 1 || bytes.Contains(subs[0].body, []byte("DKIM-Signature")) {
		t.Errorf("submissions = %d, signed: %v", len(subs), len(subs) == 1 && bytes.Contains(subs[0].body, []byte("DKIM-Signature")))
	}
}

// TestSendDayIdempotent_RPT14 calls SendDay twice: the report goes out once, with one report-id, and the
// report log shows it.
func TestSendDayIdempotent_RPT14(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.dns.Add(`_smtp._tls.example.com. 300 IN TXT "v=TLSRPTv1; rua=mailto:a@r.test"`)
	recordStandardDay(e.rec)
	before := buildOne(t, e, "example.com", testDay)
	first := sendDay(t, e)
	second := sendDay(t, e)
	if got := statuses(second)["example.com"]; got != "already-handled" {
		t.Errorf("second SendDay status = %q", got)
	}
	if first.Domains[0].ReportID != before.Report.ReportID || second.Domains[0].ReportID != before.Report.ReportID {
		t.Errorf("report-ids %s, %s, %s differ", before.Report.ReportID, first.Domains[0].ReportID, second.Domains[0].ReportID)
	}
	if n := len(e.queue.submissions()); n != 1 {
		t.Errorf("%d submissions, want 1", n)
	}
	sent, err := e.rep.Sent(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	want := []SentReport{{Day: testDay, Domain: "example.com", ReportID: before.Report.ReportID, Destination: "mailto:a@r.test",
		Status: StatusQueued, Attempts: 1, FirstAttempt: sendTime, LastAttempt: sendTime, MsgID: "Q1"}}
	if diff := cmp.Diff(want, sent); diff != "" {
		t.Errorf("Sent (-want +got):\n%s", diff)
	}
	// Sent days are no longer pending.
	ps, err := e.rep.Pending(t.Context())
	if err != nil || len(ps) != 0 {
		t.Errorf("Pending = %+v, %v", ps, err)
	}
}

func TestSendNoValidRecord_RPT3_RPT8(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	at := testDay.Add(time.Hour)
	for _, d := range []string{"none.test", "two.test", "bad.test", "spf.test", "http.test", "temp.test", "nx.test"} {
		e.rec.Record(success(tlsrpt.Policy{Type: tlsrpt.PolicyNoPolicyFound, Domain: d}, at))
	}
	e.dns.Add(
		`none.test. 300 IN TXT "unrelated"`,
		`_smtp._tls.two.test. 300 IN TXT "v=TLSRPTv1; rua=mailto:a@r.test"`,
		`_smtp._tls.two.test. 300 IN TXT "v=TLSRPTv1; rua=mailto:b@r.test"`,
		`_smtp._tls.bad.test. 300 IN TXT "v=TLSRPTv1; rua=mailto:a@r.test "`,
		`_smtp._tls.spf.test. 300 IN TXT "v=spf1 -all"`,
		`_smtp._tls.spf.test. 300 IN TXT "v=TLSRPTv1; rua=mailto:spf@r.test"`,
		`_smtp._tls.http.test. 300 IN TXT "v=TLSRPTv1; rua=http://r.test/x"`,
		`_smtp._tls.temp.test. 300 IN TXT "v=TLSRPTv1; rua=mailto:temp@r.test"`,
	)
	e.dns.Fail("_smtp._tls.temp.test.", 0, dnstest.FailServFail)
	res := sendDay(t, e)
	want := map[string]string{
		"bad.test": "no-record", "http.test": "no-record", "none.test": "no-record", "nx.test": "no-record",
		"spf.test": "sent", "temp.test": "error", "two.test": "no-record",
	}
	if diff := cmp.Diff(want, statuses(res)); diff != "" {
		t.Errorf("statuses (-want +got):\n%s", diff)
	}
	subs := e.queue.submissions()
	if len(subs) != 1 || subs[0].env.Recipients[0].Addr.String() != "spf@r.test" {
		t.Errorf("submissions = %+v", subs)
	}
	// A temporary DNS failure is retried by the next SendDay; the others are not looked up again.
	e.dns.Fail("_smtp._tls.temp.test.", 0, dnstest.FailNone)
	before := e.dns.QueryCount("_smtp._tls.two.test.", 16)
	res = sendDay(t, e)
	if got := statuses(res)["temp.test"]; got != "sent" {
		t.Errorf("temp.test on retry: %q", got)
	}
	if after := e.dns.QueryCount("_smtp._tls.two.test.", 16); after != before {
		t.Errorf("two.test looked up again")
	}
	if n := len(e.queue.submissions()); n != 2 {
		t.Errorf("%d submissions, want 2", n)
	}
}

// TestSendRecordBytesAsPublished_RPT6: the _smtp._tls record is parsed as the bytes published, not in the
// resolver's presentation form: a control byte in an extension value breaks the ABNF (no report), while a
// quote or backslash there is allowed (a report).
func TestSendRecordBytesAsPublished_RPT6(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	at := testDay.Add(time.Hour)
	for _, d := range []string{"ctl.test", "high.test", "quote.test"} {
		e.rec.Record(success(tlsrpt.Policy{Type: tlsrpt.PolicyNoPolicyFound, Domain: d}, at))
	}
	e.dns.Add(
		`_smtp._tls.ctl.test. 300 IN TXT "v=TLSRPTv1; rua=mailto:ctl@r.test; x=a\001b"`,
		`_smtp._tls.high.test. 300 IN TXT "v=TLSRPTv1; rua=mailto:high@r.test; x=caf\195\169"`,
		`_smtp._tls.quote.test. 300 IN TXT "v=TLSRPTv1; rua=mailto:quote@r.test; x=a\"b\\c"`,
	)
	res := sendDay(t, e)
	want := map[string]string{"ctl.test": "no-record", "high.test": "no-record", "quote.test": "sent"}
	if diff := cmp.Diff(want, statuses(res)); diff != "" {
		t.Errorf("statuses (-want +got):\n%s", diff)
	}
}

func TestSendSuppressedAndMaxDestinations(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.rep.MaxDestinations = 3
	e.dns.Add(`_smtp._tls.example.com. 300 IN TXT "v=TLSRPTv1; rua=mailto:a@r.test,mailto:b@r.test,mailto:c@blocked.test,mailto:d@r.test,mailto:e@r.test"`)
	recordStandardDay(e.rec)
	if err := e.rep.Suppress(t.Context(), "mailto:A@r.test", "asked us to stop"); err != nil {
		t.Fatal(err)
	}
	if err := e.rep.Suppress(t.Context(), "blocked.test", ""); err != nil {
		t.Fatal(err)
	}
	if err := e.rep.Suppress(t.Context(), "gone@r.test", ""); err != nil {
		t.Fatal(err)
	}
	if err := e.rep.Unsuppress(t.Context(), "gone@r.test"); err != nil {
		t.Fatal(err)
	}
	list, err := e.rep.Suppressions(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].Entry != "a@r.test" || list[0].Note != "asked us to stop" || list[1].Entry != "blocked.test" {
		t.Errorf("Suppressions = %+v", list)
	}
	res := sendDay(t, e)
	var got []string
	for _, d := range res.Domains[0].Deliveries {
		got = append(got, d.Destination+" "+d.Status)
	}
	want := []string{"mailto:a@r.test suppressed", "mailto:b@r.test queued", "mailto:c@blocked.test suppressed"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("deliveries (-want +got):\n%s", diff)
	}
	subs := e.queue.submissions()
	if len(subs) != 1 || subs[0].env.Recipients[0].Addr.String() != "b@r.test" {
		t.Errorf("submissions = %+v", subs)
	}
}

func TestSendSuppressedFunc(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.rep.Suppressed = func(dest string) bool { return dest == "mailto:a@r.test" }
	e.dns.Add(`_smtp._tls.example.com. 300 IN TXT "v=TLSRPTv1; rua=mailto:a@r.test"`)
	recordStandardDay(e.rec)
	sendDay(t, e)
	if n := len(e.queue.submissions()); n != 0 {
		t.Errorf("suppressed address got %d messages", n)
	}
}

func TestSendOnlyFailures(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.rep.OnlyFailures = true
	e.dns.Add(`_smtp._tls.example.com. 300 IN TXT "v=TLSRPTv1; rua=mailto:a@r.test"`,
		`_smtp._tls.other.test. 300 IN TXT "v=TLSRPTv1; rua=mailto:b@r.test"`)
	recordStandardDay(e.rec)
	e.rec.Record(success(noPolicy, testDay.Add(time.Hour)))
	res := sendDay(t, e)
	if diff := cmp.Diff(map[string]string{"example.com": "sent", "other.test": "skipped"}, statuses(res)); diff != "" {
		t.Errorf("statuses (-want +got):\n%s", diff)
	}
}

// sink is a loopback HTTPS report endpoint with a testpki certificate for reports.test.
type sink struct {
	mu       sync.Mutex
	codes    []int // answered in turn; the last one repeats
	requests []sinkRequest
	srv      *httptest.Server
	client   *http.Client
	// hook, if set, is called with each request's number (from 1) and context before it is answered.
	hook func(n int, ctx context.Context)
}

type sinkRequest struct {
	method, uri, contentType string
	body                     []byte
}

func newSink(t *testing.T, codes ...int) *sink {
	t.Helper()
	s := &sink{codes: codes}
	ca, err := testpki.NewCA("tlsreport test root", nil)
	if err != nil {
		t.Fatal(err)
	}
	cert := ca.MustIssue(testpki.Leaf{DNSNames: []string{"reports.test"}})
	s.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		s.mu.Lock()
		s.requests = append(s.requests, sinkRequest{req.Method, req.RequestURI, req.Header.Get("Content-Type"), body})
		n := len(s.requests)
		code := s.codes[min(n, len(s.codes))-1]
		hook := s.hook
		s.mu.Unlock()
		if hook != nil {
			hook(n, req.Context())
		}
		w.WriteHeader(code)
	}))
	s.srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	s.srv.StartTLS()
	t.Cleanup(s.srv.Close)
	port := s.srv.Listener.Addr().(*net.TCPAddr).Port
	s.client = mtasts.NewHTTPClient(mtasts.ClientOptions{
		LookupIP: func(context.Context, string) ([]netip.Addr, error) {
			return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil
		},
		Port:    port,
		RootCAs: ca.Pool(),
		Timeout: 10 * time.Second,
	})
	return s
}

func (s *sink) got() []sinkRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]sinkRequest(nil), s.requests...)
}

// TestSendHTTPSRetried_RPT33_RPT35 posts to an https rua that fails with 500 and then accepts with 201.
func TestSendHTTPSRetried_RPT33_RPT35(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	s := newSink(t, 500, 201)
	e.rep.HTTP = s.client
	e.dns.Add(`_smtp._tls.example.com. 300 IN TXT "v=TLSRPTv1; rua=https://reports.test/v1/tlsrpt?x=1"`)
	recordStandardDay(e.rec)
	res := sendDay(t, e)
	d := res.Domains[0].Deliveries
	if len(d) != 1 || d[0].Status != StatusRetrying || d[0].NextAttempt != sendTime.Add(5*time.Minute) || !strings.Contains(d[0].LastError, "500") {
		t.Fatalf("after the first attempt: %+v", d)
	}
	// Not due yet: nothing happens.
	e.clock.Advance(4 * time.Minute)
	if n, err := e.rep.RetryDue(t.Context()); err != nil || n != 0 {
		t.Errorf("RetryDue before due = %d, %v", n, err)
	}
	e.clock.Advance(time.Minute)
	if n, err := e.rep.RetryDue(t.Context()); err != nil || n != 1 {
		t.Errorf("RetryDue = %d, %v", n, err)
	}
	reqs := s.got()
	if len(reqs) != 2 {
		t.Fatalf("%d POSTs, want 2", len(reqs))
	}
	for _, r := range reqs {
		if r.method != http.MethodPost || r.uri != "/v1/tlsrpt?x=1" || r.contentType != tlsrpt.MediaTypeGzip {
			t.Errorf("request = %s %s %s", r.method, r.uri, r.contentType)
		}
		checkReportJSON(t, gunzip(t, r.body))
	}
	if !bytes.Equal(reqs[0].body, reqs[1].body) {
		t.Errorf("the retry sent a different report")
	}
	sent, err := e.rep.Sent(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(sent) != 1 || sent[0].Status != StatusDelivered || sent[0].Attempts != 2 || !sent[0].FirstAttempt.Equal(sendTime) {
		t.Errorf("Sent = %+v", sent)
	}
}

// TestSendRetriesGiveUpAfterADay_RPT36 keeps an endpoint failing: attempts come at growing intervals and stop
// at first attempt + 24h.
func TestSendRetriesGiveUpAfterADay_RPT36(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	s := newSink(t, 503)
	e.rep.HTTP = s.client
	e.dns.Add(`_smtp._tls.example.com. 300 IN TXT "v=TLSRPTv1; rua=https://reports.test/r"`)
	recordStandardDay(e.rec)
	sendDay(t, e)
	var times []time.Time
	times = append(times, sendTime)
	for i := 0; i < 50; i++ {
		sent, err := e.rep.Sent(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if sent[0].Status == StatusFailed {
			break
		}
		e.clock.Set(sent[0].NextAttempt)
		if n, err := e.rep.RetryDue(t.Context()); err != nil || n != 1 {
			t.Fatalf("RetryDue = %d, %v", n, err)
		}
		times = append(times, sent[0].NextAttempt)
	}
	sent, err := e.rep.Sent(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if sent[0].Status != StatusFailed || sent[0].Attempts != len(times) || len(s.got()) != len(times) {
		t.Fatalf("final = %+v after %d attempts, %d POSTs", sent[0], len(times), len(s.got()))
	}
	for i := 2; i < len(times)-1; i++ {
		if times[i].Sub(times[i-1]) <= times[i-1].Sub(times[i-2]) {
			t.Errorf("interval %d not increasing: %v", i, times)
		}
	}
	if last := times[len(times)-1]; last.After(sendTime.Add(24 * time.Hour)) {
		t.Errorf("last attempt %v after first + 24h", last)
	}
	if last := times[len(times)-1]; !last.Equal(sendTime.Add(24 * time.Hour)) {
		t.Errorf("last attempt %v, want at the deadline", last)
	}
	e.clock.Advance(48 * time.Hour)
	if n, err := e.rep.RetryDue(t.Context()); err != nil || n != 0 {
		t.Errorf("RetryDue after giving up = %d, %v", n, err)
	}
}

// TestSendOneEndpointSuffices_RPT7: the queue refuses the mail, the https endpoint takes the report; the
// mail is retried, the https delivery is done.
func TestSendOneEndpointSuffices_RPT7(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	s := newSink(t, 200)
	e.rep.HTTP = s.client
	e.queue.fail = errQueueDown
	e.dns.Add(`_smtp._tls.example.com. 300 IN TXT "v=TLSRPTv1; rua=mailto:a@r.test, https://reports.test/r"`)
	recordStandardDay(e.rec)
	res := sendDay(t, e)
	var got []string
	for _, d := range res.Domains[0].Deliveries {
		got = append(got, d.Destination+" "+d.Status)
	}
	if diff := cmp.Diff([]string{"mailto:a@r.test retrying", "https://reports.test/r delivered"}, got); diff != "" {
		t.Errorf("deliveries (-want +got):\n%s", diff)
	}
	e.queue.mu.Lock()
	e.queue.fail = nil
	e.queue.mu.Unlock()
	e.clock.Advance(5 * time.Minute)
	if n, err := e.rep.RetryDue(t.Context()); err != nil || n != 1 {
		t.Errorf("RetryDue = %d, %v", n, err)
	}
	if len(e.queue.submissions()) != 1 || len(s.got()) != 1 {
		t.Errorf("submissions %d, POSTs %d; want 1, 1", len(e.queue.submissions()), len(s.got()))
	}
}

func TestHeaderInjectionRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c, err := e.rep.config()
	if err != nil {
		t.Fatal(err)
	}
	good := reportMeta{domain: "example.com", submitter: "reports.sender.test", reportID: "20240310.example.com.ab@reports.sender.test",
		start: testDay, end: testDay.AddDate(0, 0, 1), uniqueID: "ab"}
	if _, err := e.rep.composeMail(c, good, "a@r.test", []byte{0x1f, 0x8b}); err != nil {
		t.Fatalf("good meta: %v", err)
	}
	for _, tc := range []struct {
		name string
		edit func(*reportMeta)
		rcpt string
	}{
		{"domain", func(m *reportMeta) { m.domain = "example.com\r\nBcc: x@evil.test" }, "a@r.test"},
		{"submitter", func(m *reportMeta) { m.submitter = "s.test\nX: y" }, "a@r.test"},
		{"report-id", func(m *reportMeta) { m.reportID = "a\r\nBcc: x@evil.test@b" }, "a@r.test"},
		{"report-id brackets", func(m *reportMeta) { m.reportID = "a>@<b" }, "a@r.test"},
		{"recipient", func(*reportMeta) {}, "a@r.test\r\nBcc: x@evil.test"},
	} {
		m := good
		tc.edit(&m)
		if _, err := e.rep.composeMail(c, m, tc.rcpt, nil); !errors.Is(err, ErrHeader) {
			t.Errorf("%s: error = %v, want ErrHeader", tc.name, err)
		}
	}
	e.rep.Org = "Org\r\nBcc: x@evil.test"
	if err := e.rep.Check(); !errors.Is(err, ErrConfig) {
		t.Errorf("Check with CRLF in Org = %v", err)
	}
}

func TestCheckConfig_RPT29(t *testing.T) {
	t.Parallel()
	db := openDB(t, "")
	for _, tc := range []struct {
		name string
		r    *Reporter
		ok   bool
	}{
		{"minimal", &Reporter{DB: db, Contact: mustAddr(contact)}, true},
		{"submitter equal", &Reporter{DB: db, Contact: mustAddr(contact), Submitter: mustAddr(contact).Domain}, true},
		{"submitter differs", &Reporter{DB: db, Contact: mustAddr(contact), Submitter: mustAddr("x@other.test").Domain}, false},
		{"no contact", &Reporter{DB: db}, false},
		{"no db", &Reporter{Contact: mustAddr(contact)}, false},
		{"dkim without key", &Reporter{DB: db, Contact: mustAddr(contact), DKIM: &DKIMKey{Selector: "s"}}, false},
	} {
		err := tc.r.Check()
		if tc.ok != (err == nil) || (err != nil && !errors.Is(err, ErrConfig)) {
			t.Errorf("%s: Check = %v", tc.name, err)
		}
	}
}

func TestSMTPAddressQuotesDecodedLocalPart_RPT5(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{"a@r.test": "a@r.test", "a,b@r.test": `"a,b"@r.test`, "a.b+c@r.test": "a.b+c@r.test"} {
		if got := smtpAddress(in); got != want {
			t.Errorf("smtpAddress(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestRunSendsPreviousDay_RPT27 runs the loop with the clock after the jittered send time and waits for the
// report to reach the queue.
func TestRunSendsPreviousDay_RPT27(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.queue.got = make(chan struct{}, 1)
	e.rep.MaxJitter = time.Hour
	e.dns.Add(`_smtp._tls.example.com. 300 IN TXT "v=TLSRPTv1; rua=mailto:a@r.test"`)
	recordStandardDay(e.rec)
	e.clock.Set(testDay.Add(25*time.Hour + time.Minute)) // past 00:00 + any jitter below an hour
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- e.rep.Run(ctx) }()
	select {
	case <-e.queue.got:
	case err := <-done:
		t.Fatalf("Run returned %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("no report submitted")
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Run = %v", err)
	}
	if n := len(e.queue.submissions()); n != 1 {
		t.Errorf("%d submissions", n)
	}
}

func TestJitterBounds_RPT27(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for i := 0; i < 100; i++ {
		if j := e.rep.jitter(4 * time.Hour); j < 0 || j >= 4*time.Hour {
			t.Fatalf("jitter = %v", j)
		}
	}
}

func TestSendDayNotOver_RPT27(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.dns.Add(`_smtp._tls.example.com. 300 IN TXT "v=TLSRPTv1; rua=mailto:a@r.test"`)
	recordStandardDay(e.rec)
	e.clock.Set(testDay.Add(24*time.Hour - time.Second))
	if _, err := e.rep.SendDay(t.Context(), testDay); !errors.Is(err, ErrDayNotOver) {
		t.Errorf("SendDay before the day ends = %v, want ErrDayNotOver", err)
	}
	if n := len(e.queue.submissions()); n != 0 {
		t.Errorf("%d submissions", n)
	}
}
