package neterr_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/mxgate/mxgate/internal/neterr"
)

// Real failures on loopback sockets read as their cause, without socket addresses or operation prefixes.
func TestTextOfRealFailures(t *testing.T) {
	t.Parallel()
	// Connection refused: a port that was listening and is closed again.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	_, refused := net.Dial("tcp", addr)

	// Timeout and EOF: a server that accepts, says nothing, then closes.
	srv, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	accepted := make(chan net.Conn, 2)
	go func() {
		for {
			c, err := srv.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	c, err := net.Dial("tcp", srv.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sc := <-accepted
	c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	_, timeout := c.Read(make([]byte, 1))
	sc.Close()
	c.SetReadDeadline(time.Time{})
	_, eof := c.Read(make([]byte, 1))

	// A TLS alert from the server: it has no certificate to offer.
	c2, err := net.Dial("tcp", srv.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	sc2 := <-accepted
	defer sc2.Close()
	go tls.Server(sc2, &tls.Config{}).Handshake()
	alert := tls.Client(c2, &tls.Config{InsecureSkipVerify: true}).Handshake()

	tests := []struct {
		name string
		err  error
		want string
	}{
		{"refused", fmt.Errorf("connect: %w", refused), "connection refused"},
		{"timeout", timeout, "timeout waiting for the server"},
		{"eof", eof, "connection closed by the server"},
		{"unexpected eof", io.ErrUnexpectedEOF, "connection closed by the server"},
		{"deadline", context.DeadlineExceeded, "timeout waiting for the server"},
		{"tls alert", alert, `the server sent TLS alert "unrecognized name"`},
		{"other", errors.New("554 no thanks"), "554 no thanks"},
	}
	for _, tt := range tests {
		if tt.err == nil {
			t.Errorf("%s: the failure did not happen", tt.name)
			continue
		}
		if got := neterr.Text(tt.err); got != tt.want {
			t.Errorf("%s: Text(%q) = %q, want %q", tt.name, tt.err, got, tt.want)
		}
	}
}
