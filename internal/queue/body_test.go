package queue

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/mxgate/mxgate/internal/address"
)

// stallReceiver is a loopback TCP receiver standing in for an SMTP server that stops reading in the middle
// of DATA: the first connection is read for a while, then left unread until resume is closed; every
// first connection's bytes are sent on got (later ones, such as the DSN of a bounce, are read and dropped).
type stallReceiver struct {
	ln      net.Listener
	stalled chan struct{}
	resume  chan struct{}
	got     chan []byte
}

func newStallReceiver(t *testing.T) *stallReceiver {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &stallReceiver{ln: ln, stalled: make(chan struct{}), resume: make(chan struct{}), got: make(chan []byte, 4)}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for first := true; ; first = false {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go r.serve(c, first)
		}
	}()
	return r
}

func (r *stallReceiver) serve(c net.Conn, stall bool) {
	defer c.Close()
	var buf bytes.Buffer
	if stall {
		if _, err := io.CopyN(&buf, c, 64<<10); err != nil {
			r.got <- buf.Bytes()
			return
		}
		close(r.stalled)
		<-r.resume
	}
	io.Copy(&buf, c)
	if stall {
		r.got <- buf.Bytes()
	}
}

// streamDeliverer sends each job's body over a loopback connection to addr and reports it delivered.
type streamDeliverer struct{ addr string }

func (d streamDeliverer) Deliver(ctx context.Context, b Batch) []Result {
	var out []Result
	for _, j := range b.Jobs {
		outcome := Delivered
		if err := d.send(j); err != nil {
			outcome = Deferred
		}
		for _, rc := range j.Recipients {
			out = append(out, Result{MsgID: j.MsgID, Rcpt: rc.Addr, Outcome: outcome, Code: 250})
		}
	}
	return out
}

func (d streamDeliverer) send(j Job) error {
	c, err := net.Dial("tcp", d.addr)
	if err != nil {
		return err
	}
	defer c.Close()
	body, err := j.Open()
	if err != nil {
		return err
	}
	defer body.Close()
	_, err = io.Copy(c, body)
	return err
}

// A body is never recycled while a delivery still reads it: delete or bounce a message while its delivery
// is stalled mid-DATA (refused: ErrInFlight), accept a new message (which reuses spare spool files), let the delivery finish: the
// receiver gets the original bytes, never the new message's.
func TestBodyNotRecycledWhileDeliveryReadsIt(t *testing.T) {
	for _, op := range []string{"delete", "bounce"} {
		t.Run(op, func(t *testing.T) {
			rcv := newStallReceiver(t)
			e := newEnv(t, func(o *Options) { o.Deliverer = streamDeliverer{addr: rcv.ln.Addr().String()} })
			// Larger than the socket buffers of an unread loopback connection (the send buffer grows to at most 4 MiB
			// by default): the delivery stops mid-file.
			orig := bytes.Repeat([]byte("original message line, never to be replaced\r\n"), 200000)
			ctx := context.Background()
			id, err := e.q.Submit(ctx, Envelope{From: address.MustParsePath("alice@sender.test"), Recipients: []Recipient{{Addr: address.MustParseAddress("bob@example.com")}}}, bytes.NewReader(orig))
			if err != nil {
				t.Fatal(err)
			}
			ran := make(chan error, 1)
			go func() {
				rctx, cancel := context.WithTimeout(ctx, 60*time.Second)
				defer cancel()
				_, err := e.q.RunOnce(rctx)
				ran <- err
			}()
			waitFor(t, rcv.stalled, "the delivery to stall mid-DATA")
			switch op {
			case "delete":
				err = e.q.Delete(ctx, id)
			case "bounce":
				err = e.q.Bounce(ctx, id)
			}
			// The attempt's result is not recorded yet: the administrator is told to retry later, and
			// nothing of the message goes.
			if !errors.Is(err, ErrInFlight) {
				t.Errorf("%s while the delivery streams the body = %v, want ErrInFlight", op, err)
			}
			other := bytes.Repeat([]byte("NEW MESSAGE FOR SOMEONE ELSE\r\n"), 400000)
			if _, err := e.q.Submit(ctx, Envelope{From: address.MustParsePath("mallory@sender.test"), Recipients: []Recipient{{Addr: address.MustParseAddress("eve@example.org")}}}, bytes.NewReader(other)); err != nil {
				t.Fatal(err)
			}
			close(rcv.resume)
			got := waitFor(t, rcv.got, "the stalled delivery to finish")
			if len(got) != 0 && !bytes.Equal(got, orig) {
				i := 0
				for i < len(got) && i < len(orig) && got[i] == orig[i] {
					i++
				}
				t.Fatalf("the stalled delivery sent %d octets that are not the original %d (first difference at %d: %q)",
					len(got), len(orig), i, got[i:min(len(got), i+40)])
			}
			if err := waitFor(t, ran, "RunOnce"); err != nil {
				t.Fatal(err)
			}
		})
	}
}
