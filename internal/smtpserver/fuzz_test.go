package smtpserver

import (
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// FuzzSession feeds an arbitrary byte stream to a live server as one client session. The server must
// neither crash nor hang (it must close the session once the client's input ends), and whatever it queued
// must have only CRLF line endings.
func FuzzSession(f *testing.F) {
	// Seeds: testdata/fuzz/FuzzSession.
	h := newHarness(f, nil)
	f.Fuzz(func(t *testing.T, in []byte) {
		conn, err := net.Dial("tcp", h.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		readDone := make(chan error, 1)
		go func() {
			_, err := io.Copy(io.Discard, conn)
			readDone <- err
		}()
		conn.Write(in)
		conn.(*net.TCPConn).CloseWrite()
		if err := <-readDone; err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatalf("server did not end the session after the client's input ended")
			}
		}
		for _, m := range h.sub.got() {
			b := strings.ReplaceAll(m.body, "\r\n", "")
			if strings.ContainsAny(b, "\r\n") {
				t.Fatalf("queued a body with a bare CR or LF: %q", m.body)
			}
		}
	})
}
