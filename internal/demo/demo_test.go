package demo

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"
)

// The demo is the product's own end-to-end story: run it and check every row it prints.
func TestDemoShowsEveryCase(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	var out bytes.Buffer
	// With --keep, the demo prints where to reach the running gateway: the printed CLI line's URL and
	// token answer, and the console asks for the printed password.
	keepReady := func() {
		defer cancel()
		m := regexp.MustCompile(`(?m)^  CLI:      mxgate --admin (\S+) --token (\S+) status$`).FindStringSubmatch(out.String())
		pw := regexp.MustCompile(`(?m)^  Console:  (\S+)/  password: (\S+)$`).FindStringSubmatch(out.String())
		if m == nil || pw == nil || pw[1] != m[1] || len(pw[2]) < 12 {
			t.Errorf("--keep output lacks the admin URL, console password or CLI line:\n%s", out.String())
			return
		}
		req, _ := http.NewRequest("GET", m[1]+"/api/v1/status", nil)
		req.Header.Set("Authorization", "Bearer "+m[2])
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Errorf("the printed CLI line's gateway: %v", err)
			return
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("status with the printed token: %s", resp.Status)
		}
		resp, err = http.Get(pw[1] + "/login")
		if err != nil {
			t.Errorf("the printed console URL: %v", err)
			return
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(body), `id="password"`) {
			t.Errorf("console login page at the printed URL: %s", resp.Status)
		}
	}
	if err := Run(ctx, Options{Out: &out, Keep: true, KeepReady: keepReady}); err != nil {
		t.Fatalf("demo: %v\n%s", err, out.String())
	}
	text := out.String()
	rows := []string{
		// Failures are visible whatever the mode: delivered rows show the failure their session saw.
		`plain\.example .* opportunistic +mx\.plain\.example +none +delivered +starttls-not-supported`,
		`tls\.example .* opportunistic +mx\.tls\.example +verified TLS 1\.3 +delivered +-`,
		`selfsigned\.example .* opportunistic +mx\.selfsigned\.example +unverified TLS 1\.3 +delivered +certificate-not-trusted`,
		`strict\.example .* required-verify +mx\.strict\.example +- +deferred +certificate-not-trusted`,
		`enforce\.example .* mta-sts enforce +mx\.enforce\.example +verified TLS 1\.3 +delivered`,
		`expired\.example .* mta-sts enforce .* deferred +certificate-expired`,
		`wrongname\.example .* mta-sts enforce .* deferred +certificate-host-mismatch`,
		`nostarttls\.example .* mta-sts enforce .* deferred +starttls-not-supported`,
		`unlisted\.example .* mta-sts enforce .* deferred +validation-failure`,
		`testing\.example .* mta-sts testing +mx\.testing\.example +unverified TLS 1\.3 +delivered +certificate-not-trusted`,
		`override\.example .* opportunistic override +mx\.override\.example +unverified TLS 1\.3 +delivered +certificate-not-trusted`,
		// DANE (RFC 7672): authenticated by TLSA where PKIX would not trust, refused on a mismatch or a bogus
		// answer, and taking precedence over a failing MTA-STS policy; reports go to the TLSA base domain.
		`dane-ee\.example .* dane +mx\.dane-ee\.example +verified TLS 1\.3 \(DANE\) +delivered`,
		`dane-ta\.example .* dane +mx\.dane-ta\.example +verified TLS 1\.3 \(DANE\) +delivered`,
		`tlsa-mismatch\.example .* dane .* deferred +tlsa-invalid`,
		`bogus\.example .* dane .* deferred +dnssec-invalid`,
		`dane-sts\.example .* dane +mx\.dane-sts\.example +verified TLS 1\.3 \(DANE\) +delivered`,
		`mx\.dane-ee\.example +mail +pass d=gw\.demo\.example +tlsa +1 +0 +-`,
		`mx\.tlsa-mismatch\.example +mail .* tlsa +0 +1 +tlsa-invalid x1`,
		`mx\.bogus\.example +mail .* tlsa +0 +1 +dnssec-invalid x1`,
		// RPT: the testing-mode failure reaches the domain by signed mail, with the right type and counts.
		`testing\.example +mail +pass d=gw\.demo\.example +sts +0 +1 +certificate-not-trusted x1 \(mx\.testing\.example\)`,
		`enforce\.example +mail +pass d=gw\.demo\.example +sts +1 +0 +-`,
		`enforce\.example +https +- +sts +1 +0 +-`,
		`expired\.example +mail .* certificate-expired x1`,
	}
	for _, r := range rows {
		if !regexp.MustCompile(r).MatchString(text) {
			t.Errorf("demo output lacks a line matching %q", r)
		}
	}
	// Reports go only to domains that publish _smtp._tls, and report mail itself is never reported.
	for _, never := range []string{"reports.example  ", "plain.example     mail", "tls.example       mail"} {
		if strings.Contains(text, never) {
			t.Errorf("demo output unexpectedly contains %q", never)
		}
	}
	if t.Failed() {
		t.Logf("demo output:\n%s", text)
	}
}
