package demo

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/emersion/go-message"
	"github.com/emersion/go-msgauth/dkim"

	"github.com/mxgate/mxgate/internal/daemon"
	"github.com/mxgate/mxgate/internal/dnsx"
	"github.com/mxgate/mxgate/internal/simnet"
	"github.com/mxgate/mxgate/internal/tlsreport"
	"github.com/mxgate/mxgate/internal/tlsrpt"
)

const (
	reportsDomain = "reports.example"
	dkimSelector  = "tlsrpt2026"
)

// reportSinks are the simulated domains' TLSRPT endpoints.
type reportSinks struct {
	mail  *simnet.Receiver
	https *simnet.Sink
}

// publishTLSRPT gives every MTA-STS domain of the demo an _smtp._tls record: mail reports to
// tlsrpt@reports.example, and for enforce.example also an HTTPS endpoint.
func publishTLSRPT(n *simnet.Net, domains []string) (*reportSinks, error) {
	mail, err := n.AddMX(simnet.MXOptions{Domain: reportsDomain, Host: "mx." + reportsDomain, Pref: 10})
	if err != nil {
		return nil, err
	}
	sink, err := n.AddHTTPSSink("tlsrpt."+reportsDomain, "/v1/reports")
	if err != nil {
		return nil, err
	}
	for _, d := range domains {
		rua := "mailto:tlsrpt@" + reportsDomain
		if d == "enforce.example" {
			rua += ",https://tlsrpt." + reportsDomain + "/v1/reports"
		}
		n.DNS.AddTXT("_smtp._tls."+d, "v=TLSRPTv1; rua="+rua)
	}
	return &reportSinks{mail: mail, https: sink}, nil
}

// configureDKIM writes a signing key, publishes its public half, and commits the settings that use it:
// the way an administrator turns on signed reports.
func configureDKIM(ctx context.Context, n *simnet.Net, d *daemon.Daemon, dir, submitter string) error {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return err
	}
	keyFile := filepath.Join(dir, "tlsrpt-dkim.pem")
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return err
	}
	n.DNS.AddTXT(dkimSelector+"._domainkey."+submitter, "v=DKIM1; k=ed25519; s=email:tlsrpt; p="+base64.StdEncoding.EncodeToString(pub))
	s := d.Settings()
	for k, v := range map[string]string{
		"TLSRPT.DKIMKeyFile":      keyFile,
		"TLSRPT.DKIMSelector":     dkimSelector,
		"TLSRPT.OrganizationName": "mxgate demo",
	} {
		if err := s.Set(ctx, k, v); err != nil {
			return err
		}
	}
	_, err = s.Commit(ctx, "demo: sign TLS reports", "demo")
	return err
}

// receivedReport is a report as a domain received it.
type receivedReport struct {
	via    string
	dkim   string
	report tlsrpt.Report
}

// sendReports sends today's reports now and collects what the simulated domains received.
func sendReports(ctx context.Context, n *simnet.Net, d *daemon.Daemon, sinks *reportSinks) ([]receivedReport, error) {
	rep := d.Reporter()
	if rep == nil {
		return nil, fmt.Errorf("TLS reporting is off")
	}
	if err := d.Recorder.Flush(ctx); err != nil {
		return nil, err
	}
	res, err := rep.SendPartialDay(ctx, tlsreport.Day(time.Now()))
	if err != nil {
		return nil, err
	}
	mails, posts := 0, 0
	for _, dr := range res.Domains {
		for _, del := range dr.Deliveries {
			if strings.HasPrefix(del.Destination, "mailto:") {
				mails++
			} else {
				posts++
			}
		}
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := sinks.mail.WaitMessages(wctx, mails); err != nil {
		return nil, fmt.Errorf("waiting for %d report mails: %w", mails, err)
	}
	if err := sinks.https.WaitPosts(wctx, posts); err != nil {
		return nil, fmt.Errorf("waiting for %d report posts: %w", posts, err)
	}
	var out []receivedReport
	for _, m := range sinks.mail.Messages() {
		rr, err := parseReportMail(n, m.Data)
		if err != nil {
			return nil, err
		}
		out = append(out, rr)
	}
	for _, p := range sinks.https.Posts() {
		r, err := gunzipReport(bytes.NewReader(p.Body))
		if err != nil {
			return nil, err
		}
		out = append(out, receivedReport{via: "https", dkim: "-", report: r})
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i].report.Policies, out[j].report.Policies
		if len(a) == 0 || len(b) == 0 {
			return len(a) < len(b)
		}
		if a[0].Policy.Domain != b[0].Policy.Domain {
			return a[0].Policy.Domain < b[0].Policy.Domain
		}
		return out[i].via > out[j].via
	})
	return out, nil
}

func parseReportMail(n *simnet.Net, data []byte) (receivedReport, error) {
	rr := receivedReport{via: "mail", dkim: "none"}
	resolver := &dnsx.Client{Servers: []string{n.DNSAddr}, Timeout: 2 * time.Second}
	vs, err := dkim.VerifyWithOptions(bytes.NewReader(data), &dkim.VerifyOptions{LookupTXT: func(name string) ([]string, error) {
		txts, _, err := resolver.LookupTXT(context.Background(), name)
		return txts, err
	}})
	if err == nil && len(vs) > 0 {
		rr.dkim = "fail"
		if vs[0].Err == nil {
			rr.dkim = "pass d=" + vs[0].Domain
		}
	}
	e, err := message.Read(bytes.NewReader(data))
	if err != nil {
		return rr, err
	}
	mr := e.MultipartReader()
	if mr == nil {
		return rr, fmt.Errorf("report mail is not multipart")
	}
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			return rr, fmt.Errorf("report mail has no application/tlsrpt+gzip part")
		}
		if err != nil {
			return rr, err
		}
		if t, _, _ := p.Header.ContentType(); t == "application/tlsrpt+gzip" {
			rr.report, err = gunzipReport(p.Body)
			return rr, err
		}
	}
}

func gunzipReport(r io.Reader) (tlsrpt.Report, error) {
	var rep tlsrpt.Report
	zr, err := gzip.NewReader(r)
	if err != nil {
		return rep, err
	}
	err = json.NewDecoder(zr).Decode(&rep)
	return rep, err
}

func printReports(w io.Writer, reports []receivedReport) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "POLICY DOMAIN\tVIA\tDKIM\tPOLICY\tSUCCESS\tFAILURE\tFAILURE DETAILS")
	for _, rr := range reports {
		for _, p := range rr.report.Policies {
			var details []string
			for _, f := range p.FailureDetails {
				details = append(details, fmt.Sprintf("%s x%d (%s)", f.ResultType, f.FailedSessionCount, f.ReceivingMXHostname))
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%s\n", p.Policy.Domain, rr.via, rr.dkim, p.Policy.Type,
				p.Summary.Successful, p.Summary.Failed, dash(strings.Join(details, "; ")))
		}
	}
	tw.Flush()
}
