package smtpserver

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/mxgate/mxgate/internal/queue"
	"github.com/mxgate/mxgate/internal/store"
)

type noDelivery struct{}

func (noDelivery) Deliver(context.Context, queue.Batch) []queue.Result { return nil }

// faults are the storage failures a test injects into the real queue's fsync hooks.
type faults struct {
	mu             sync.Mutex
	syncFile, sync error
}

func (f *faults) set(file, dir error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.syncFile, f.sync = file, dir
}

func (f *faults) get() (error, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.syncFile, f.sync
}

// daemonTempError is the daemon's mapping (internal/daemon submitError): 452 4.3.1 for a full disk, 451
// 4.3.0 for anything else.
func daemonTempError(err error) *smtp.SMTPError {
	if errors.Is(err, queue.ErrNoSpace) {
		return &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 3, 1}, Message: "Insufficient system storage, try again later"}
	}
	return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Local error storing the message, try again later"}
}

// Any failure to make a message durable (body fsync, directory fsync, full disk, index commit) answers a
// 4xx, never 250, with the real queue behind the real server; the queue then holds nothing of the message,
// and the same client's retry on the same connection is accepted once storage works again.
func TestStorageFailuresNever250(t *testing.T) {
	eio := syscall.EIO
	tests := []struct {
		name      string
		tempError func(error) *smtp.SMTPError
		file, dir error
		closeDB   bool
		// groupSync: the queue's GroupSync, whose one file-system flush per group gets the dir error.
		groupSync bool
		wantCode  int
		wantEnh   string
	}{
		{name: "body fsync EIO", file: eio, wantCode: 451, wantEnh: "4.3.0"},
		{name: "directory fsync EIO", dir: eio, wantCode: 451, wantEnh: "4.3.0"},
		{name: "body fsync ENOSPC, default mapping", file: syscall.ENOSPC, wantCode: 451, wantEnh: "4.3.0"},
		{name: "body fsync ENOSPC, daemon mapping", tempError: daemonTempError, file: syscall.ENOSPC, wantCode: 452, wantEnh: "4.3.1"},
		{name: "directory fsync EDQUOT, daemon mapping", tempError: daemonTempError, dir: syscall.EDQUOT, wantCode: 452, wantEnh: "4.3.1"},
		{name: "body fsync EIO, daemon mapping", tempError: daemonTempError, file: eio, wantCode: 451, wantEnh: "4.3.0"},
		{name: "index commit fails", tempError: daemonTempError, closeDB: true, wantCode: 451, wantEnh: "4.3.0"},
		{name: "group flush EIO", groupSync: true, dir: eio, wantCode: 451, wantEnh: "4.3.0"},
		{name: "group flush ENOSPC, daemon mapping", groupSync: true, tempError: daemonTempError, dir: syscall.ENOSPC, wantCode: 452, wantEnh: "4.3.1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if err := queue.GroupSyncSupported(); tt.groupSync && err != nil {
				t.Skipf("group sync is not available on this system: %v", err)
			}
			dir := t.TempDir()
			db, err := store.OpenSQLite(filepath.Join(dir, "state.db"))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { db.Close() })
			f := &faults{}
			spool := filepath.Join(dir, "spool")
			q, err := queue.Open(context.Background(), queue.Options{
				Dir: spool, DB: db, Deliverer: noDelivery{}, Hostname: "mx.test",
				SyncFile: func(fh *os.File) error {
					if err, _ := f.get(); err != nil {
						return err
					}
					return fh.Sync()
				},
				SyncDir:   func(string) error { _, err := f.get(); return err },
				GroupSync: tt.groupSync,
				SyncFS: func(fh *os.File) error {
					if _, err := f.get(); err != nil {
						return err
					}
					return queue.SyncFS(fh)
				},
			})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { q.Close() })
			srv, err := New(Config{
				Hostname:      testHost,
				RelayNetworks: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
				TempError:     tt.tempError,
			}, q, slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatal(err)
			}
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			served := make(chan error, 1)
			go func() { served <- srv.Serve(ln) }()
			t.Cleanup(func() {
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				defer cancel()
				srv.Shutdown(ctx)
				<-served
			})
			h := &harness{addr: ln.Addr().String()}

			f.set(tt.file, tt.dir)
			if tt.closeDB {
				db.Close()
			}
			c := h.dial(t)
			c.ehlo()
			code, msg := c.send("a@example.org", []string{"b@example.net"}, simpleMsg)
			if code != tt.wantCode || !strings.HasPrefix(msg, tt.wantEnh) {
				t.Fatalf("reply = %d %q, want %d %s", code, msg, tt.wantCode, tt.wantEnh)
			}
			ents, err := os.ReadDir(spool)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range ents {
				// The queue's delivery journal is not a message.
				if !e.IsDir() && e.Name() != "delivered.journal" {
					t.Errorf("spool holds %s after a refused message", e.Name())
				}
			}
			if tt.closeDB {
				return // the index is gone for good; nothing more to show
			}
			if st, err := q.Stats(context.Background()); err != nil || st.QueuedMessages != 0 {
				t.Errorf("queue holds %d messages (%v) after a refused message", st.QueuedMessages, err)
			}
			f.set(nil, nil)
			if code, msg := c.send("a@example.org", []string{"b@example.net"}, simpleMsg); code != 250 {
				t.Fatalf("retry after storage recovered: %d %q, want 250", code, msg)
			}
			if st, err := q.Stats(context.Background()); err != nil || st.QueuedMessages != 1 {
				t.Errorf("queue holds %d messages (%v) after the retry, want 1", st.QueuedMessages, err)
			}
		})
	}
}
