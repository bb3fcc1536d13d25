package queue

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mxgate/mxgate/internal/address"
	"github.com/mxgate/mxgate/internal/store"
	"github.com/mxgate/mxgate/internal/testenv"
)

// fillDisk writes path until the file system holding it is full.
func fillDisk(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 4096)
	for range 1 << 20 { // bounded: 4 GiB
		if _, err := f.Write(buf); err != nil {
			if errors.Is(err, syscall.ENOSPC) {
				return
			}
			t.Fatal(err)
		}
	}
	t.Fatal("the file system never filled")
}

// A full disk must never stall the delivery of acknowledged mail. Intake stops with ErrNoSpace while the
// room kept for the index is still free; then something else takes every octet left. The index cannot
// grow, so the queue gives it the reserved room: every delivered message is recorded and its body freed,
// status says "disk full, delivery results cannot be recorded" while it lasts, and once the freed bodies
// leave room the reserve is made again and intake resumes.
func TestFullDiskResultsRecordedFromReserve(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	testenv.Tmpfs(t, dir, "3m")
	db, err := store.OpenSQLite(filepath.Join(dir, "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	var mu sync.Mutex
	var states []error
	settled := make(chan Settled, 1000)
	e := newEnv(t, func(o *Options) {
		o.Dir = filepath.Join(dir, "spool")
		o.DB = db
		o.StorageState = func(err error) {
			mu.Lock()
			states = append(states, err)
			mu.Unlock()
		}
		o.OnSettled = func(s Settled) { settled <- s }
	})
	ctx := context.Background()
	env := Envelope{From: address.MustParsePath("alice@sender.test"),
		Recipients: []Recipient{{Addr: address.MustParseAddress("bob@example.com")}}}
	submit := func(i int) (string, error) {
		body := fmt.Sprintf("Subject: %d\r\n\r\n%s\r\n", i, strings.Repeat("0123456789", 2<<10))
		return e.q.Submit(ctx, env, strings.NewReader(body))
	}

	var ids []string
	for i := 0; i < 500; i++ {
		id, err := submit(i)
		if errors.Is(err, ErrNoSpace) {
			break
		}
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		ids = append(ids, id)
	}
	if len(ids) == 0 || len(ids) == 500 {
		t.Fatalf("%d messages accepted by a 3 MiB file system before ErrNoSpace", len(ids))
	}
	if err := e.q.StorageErr(); !errors.Is(err, ErrNoSpace) || !strings.Contains(err.Error(), "disk nearly full") {
		t.Errorf("StorageErr after intake stopped = %v, want disk nearly full", err)
	}

	// Another writer takes every octet left: recording the attempts and the results needs the reserve.
	fillDisk(t, filepath.Join(dir, "ballast"))
	if _, err := submit(1000); !errors.Is(err, ErrNoSpace) {
		t.Errorf("Submit on a full disk: %v, want ErrNoSpace", err)
	}
	rctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- e.q.Run(rctx) }()
	for n := range ids {
		select {
		case s := <-settled:
			if s.Outcome != Delivered {
				t.Errorf("%s: %s, want delivered", s.MsgID, s.Outcome)
			}
		case <-rctx.Done():
			t.Fatalf("%d of %d delivered messages recorded after 60s; unrecorded %d; storage: %v",
				n, len(ids), e.q.Unrecorded(), e.q.StorageErr())
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if files := e.spoolFiles(t); len(files) != 0 {
		t.Errorf("%d bodies left in the spool after every message was delivered and recorded", len(files))
	}
	if got := len(e.fake.Deliveries()); got != len(ids) {
		t.Errorf("%d deliveries, want %d (each message once)", got, len(ids))
	}
	mu.Lock()
	sawFull := false
	for _, s := range states {
		sawFull = sawFull || s != nil && strings.Contains(s.Error(), "disk full, delivery results cannot be recorded")
	}
	mu.Unlock()
	if !sawFull {
		t.Errorf("StorageState was told %v, want a \"disk full, delivery results cannot be recorded\" among them", states)
	}
	// The bodies' room came back: the reserve is made again and intake resumes, with the ballast in place.
	if fi, err := os.Stat(db.Path + reserveSuffix); err != nil || fi.Size() != DefaultReserve {
		t.Errorf("reserve file after the bodies were freed: %v, %v", fi, err)
	}
	if err := e.q.StorageErr(); err != nil {
		t.Errorf("StorageErr once room came back = %v, want nil", err)
	}
	if _, err := submit(1001); err != nil {
		t.Errorf("Submit once room came back: %v", err)
	}
	mu.Lock()
	last := states[len(states)-1]
	mu.Unlock()
	if last != nil {
		t.Errorf("StorageState last told %v, want nil", last)
	}
}
