package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/mxgate/mxgate/internal/simnet"
	"github.com/mxgate/mxgate/internal/testenv"
)

// sendPadded submits one message carrying token and about pad octets of filler.
func sendPadded(addr, rcpt, token string, pad int) error {
	c, err := smtp.Dial(addr)
	if err != nil {
		return err
	}
	defer c.Close()
	var b strings.Builder
	fmt.Fprintf(&b, "From: alice@sender.test\r\nTo: %s\r\nSubject: %s\r\nMessage-ID: <%s@sender.test>\r\n\r\ntoken %s\r\n", rcpt, token, token, token)
	line := strings.Repeat("0123456789", 7) + "\r\n"
	for b.Len() < pad {
		b.WriteString(line)
	}
	if err := c.SendMail("alice@sender.test", []string{rcpt}, strings.NewReader(b.String())); err != nil {
		return err
	}
	c.Quit()
	return nil
}

// A full disk: the gateway's data directory is a 4 MiB tmpfs, partly taken by a 512 KiB ballast file. Intake
// answers 452 4.3.1 once the spool is full (never 250, never a 5xx), nothing acknowledged is lost, intake
// resumes as soon as the ballast is removed, and every acknowledged message is delivered once the
// destination comes back, and its body removed from the spool. Freeing so little leaves the queue's index
// no room to grow its write-ahead log into: it must record the results of the deliveries within the room
// it kept for itself.
func TestFullDiskAnswers452AndResumes(t *testing.T) {
	n, err := simnet.New(simnet.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	mx, err := n.AddMX(simnet.MXOptions{Domain: "example.com", Host: "mx1.example.com", Pref: 10})
	if err != nil {
		t.Fatal(err)
	}
	mx.Stop() // messages stay in the spool
	root := t.TempDir()
	dir := filepath.Join(root, "data")
	testenv.Tmpfs(t, dir, "4m")
	cfg := writeConfig(t, n, dir, "")
	ballast := filepath.Join(dir, "ballast")
	if err := os.WriteFile(ballast, make([]byte, 512<<10), 0o600); err != nil {
		t.Fatal(err)
	}
	g := start(t, cfg)
	t.Logf("before intake: %s", usage(dir))

	const pad = 24 << 10
	sub := &submitter{acked: map[string]bool{}}
	var full *smtp.SMTPError
	i := 0
	for ; i < 200 && full == nil; i++ {
		tok := fmt.Sprintf("t4-%d", i)
		err := sendPadded(g.SMTP, "bob@example.com", tok, pad)
		switch {
		case err == nil:
			sub.ack(tok)
		case errors.As(err, &full):
		default:
			t.Fatalf("message %d: %v", i, err)
		}
	}
	if full == nil {
		t.Fatalf("200 messages of %d octets accepted by an 8 MiB file system", pad)
	}
	if full.Code != 452 || full.EnhancedCode != (smtp.EnhancedCode{4, 3, 1}) {
		t.Fatalf("full disk answered %d %v %q, want 452 4.3.1", full.Code, full.EnhancedCode, full.Message)
	}
	accepted := sub.count()
	t.Logf("disk full after %d accepted messages: %d %v %s", accepted, full.Code, full.EnhancedCode, full.Message)
	// Still full: every further attempt is refused with 452 too, and the gateway keeps running.
	for j := 0; j < 5; j++ {
		err := sendPadded(g.SMTP, "bob@example.com", fmt.Sprintf("t4-full-%d", j), pad)
		var se *smtp.SMTPError
		if !errors.As(err, &se) || se.Code != 452 {
			t.Fatalf("retry %d while full: %v, want 452", j, err)
		}
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err == nil {
		t.Logf("free while full: %d octets; %s", st.Bavail*uint64(st.Bsize), usage(dir))
	}

	// Space returns: intake resumes in the same process.
	if err := os.Remove(ballast); err != nil {
		t.Fatal(err)
	}
	const more = 5
	for j := 0; j < more; j++ {
		tok := fmt.Sprintf("t4-%d", i+j)
		if err := sendPadded(g.SMTP, "bob@example.com", tok, pad); err != nil {
			t.Fatalf("after freeing space, message %d: %v", j, err)
		}
		sub.ack(tok)
	}

	// The destination comes back: every acknowledged message arrives, none twice.
	if err := mx.Start(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("gateway log:\n%s", g.Logs())
		}
	})
	waitAll(ctx, t, mx, sub)
	got := tokens(mx)
	for tok := range sub.acked {
		if got[tok] != 1 {
			t.Errorf("%s delivered %d times, want once", tok, got[tok])
		}
	}
	for tok := range got {
		if !sub.acked[tok] {
			t.Errorf("%s delivered but never acknowledged", tok)
		}
	}
	fmt.Printf("full-disk: accepted=%d then 452 4.3.1 (x6), after freeing space accepted=%d, delivered=%d, lost=0\n",
		accepted, more, len(got))
	if err := g.Stop(); err != nil {
		t.Error(err)
	}
	// Every delivery was recorded: no body is left in the spool (emptied files kept for reuse hold nothing).
	spool := filepath.Join(dir, "spool")
	ents, err := os.ReadDir(spool)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if fi, err := e.Info(); err == nil && fi.Mode().IsRegular() && fi.Size() > 0 && e.Name() != "delivered.journal" {
			t.Errorf("spool file %s (%d octets) left after every message was delivered; %s", e.Name(), fi.Size(), usage(dir))
		}
	}
}

// usage lists the sizes of the files directly in dir, for the log.
func usage(dir string) string {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err.Error()
	}
	var parts []string
	for _, e := range ents {
		if fi, err := e.Info(); err == nil && !e.IsDir() {
			parts = append(parts, fmt.Sprintf("%s=%d", e.Name(), fi.Size()))
		}
	}
	return strings.Join(parts, " ")
}
