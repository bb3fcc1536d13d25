package daemon

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// TestSwapTransportClosesIdleConnections: replacing the HTTPS transport (a tls.ca_file reload) closes the
// keep-alive connection the old one kept idle, instead of leaving it open until the server drops it.
func TestSwapTransportClosesIdleConnections(t *testing.T) {
	closed := make(chan net.Addr, 4)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "version: STSv1\n")
	}))
	srv.Config.ConnState = func(c net.Conn, st http.ConnState) {
		if st == http.StateClosed {
			closed <- c.RemoteAddr()
		}
	}
	srv.StartTLS()
	t.Cleanup(srv.Close)

	var sw swapTransport
	sw.set(srv.Client().Transport.(*http.Transport).Clone())
	client := &http.Client{Transport: &sw}
	resp, err := client.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()

	sw.set(srv.Client().Transport.(*http.Transport).Clone())
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("the idle connection of the replaced transport was not closed")
	}
	// The new transport works.
	resp, err = client.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
}
