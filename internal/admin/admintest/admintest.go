// Package admintest provides in-memory implementations of admin.QueueAPI, admin.STSCacheAPI and
// admin.ReportsAPI, and a real settings store on a temporary database (OpenSettings), for tests of the admin
// API and of its clients (the CLI, the console). The fakes follow the documented behaviour of *queue.Queue,
// *mtastscache.Cache and *tlsreport.Reporter closely enough for that, and nothing more: no delivery, no DSNs,
// no fetching, no report mail.
package admintest

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/mxgate/mxgate/internal/address"
	"github.com/mxgate/mxgate/internal/mtastscache"
	"github.com/mxgate/mxgate/internal/queue"
)

// Queue is a fake queue holding messages in memory. Set Err to make every method fail with it. The zero
// value is empty and ready to use.
type Queue struct {
	mu       sync.Mutex
	msgs     []queue.MessageDetail
	calls    []string
	lastList queue.Filter
	Err      error
	// Summ is what Summary returns.
	Summ queue.Summary
	// Now is the clock of bulk selections by age; nil means time.Now.
	Now func() time.Time
}

// Add adds messages in order (List returns them in that order).
func (q *Queue) Add(msgs ...queue.MessageDetail) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.msgs = append(q.msgs, msgs...)
}

// Calls returns the state-changing calls made so far, as "op id".
func (q *Queue) Calls() []string {
	q.mu.Lock()
	defer q.mu.Unlock()
	return slices.Clone(q.calls)
}

// LastFilter returns the filter of the last List call.
func (q *Queue) LastFilter() queue.Filter {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.lastList
}

// List implements admin.QueueAPI.
func (q *Queue) List(ctx context.Context, f queue.Filter) ([]queue.MessageInfo, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.lastList = f
	if q.Err != nil {
		return nil, q.Err
	}
	var out []queue.MessageInfo
	for _, m := range q.msgs {
		if f.Sender != "" && m.From != f.Sender || f.HeldOnly && !m.Held {
			continue
		}
		if f.Domain != "" && !slices.Contains(m.Domains, strings.ToLower(f.Domain)) {
			continue
		}
		if f.State != "" && !slices.ContainsFunc(m.Rcpts, func(r queue.RecipientInfo) bool { return r.State == f.State }) {
			continue
		}
		out = append(out, m.MessageInfo)
		if f.Limit > 0 && len(out) == f.Limit {
			break
		}
	}
	return out, nil
}

func (q *Queue) find(id string) int {
	return slices.IndexFunc(q.msgs, func(m queue.MessageDetail) bool { return m.ID == id })
}

// Get implements admin.QueueAPI.
func (q *Queue) Get(ctx context.Context, id string) (queue.MessageDetail, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.Err != nil {
		return queue.MessageDetail{}, q.Err
	}
	i := q.find(id)
	if i < 0 {
		return queue.MessageDetail{}, fmt.Errorf("%w: %s", queue.ErrNotFound, id)
	}
	return q.msgs[i], nil
}

// Summary implements admin.QueueAPI.
func (q *Queue) Summary(ctx context.Context) (queue.Summary, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.Summ, q.Err
}

// op records a state-changing call on message id and applies change to it.
func (q *Queue) op(name, id string, change func(i int)) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.Err != nil {
		return q.Err
	}
	i := q.find(id)
	if i < 0 {
		return fmt.Errorf("%w: %s", queue.ErrNotFound, id)
	}
	q.calls = append(q.calls, name+" "+id)
	if change != nil {
		change(i)
	}
	return nil
}

// Retry implements admin.QueueAPI.
func (q *Queue) Retry(ctx context.Context, id string) error { return q.op("retry", id, nil) }

// Hold implements admin.QueueAPI.
func (q *Queue) Hold(ctx context.Context, id string) error {
	return q.op("hold", id, func(i int) { q.msgs[i].Held, q.msgs[i].State = true, "held" })
}

// Release implements admin.QueueAPI.
func (q *Queue) Release(ctx context.Context, id string) error {
	return q.op("release", id, func(i int) { q.msgs[i].Held, q.msgs[i].State = false, "queued" })
}

// Delete implements admin.QueueAPI.
func (q *Queue) Delete(ctx context.Context, id string) error {
	return q.op("delete", id, func(i int) { q.msgs = slices.Delete(q.msgs, i, i+1) })
}

// Bounce implements admin.QueueAPI.
func (q *Queue) Bounce(ctx context.Context, id string) error {
	return q.op("bounce", id, func(i int) {
		m := &q.msgs[i]
		m.Failed += m.Queued + m.Quarantined
		m.Queued, m.Quarantined = 0, 0
	})
}

// STSCache is a fake MTA-STS policy cache. Refresh "fetches" from Fetchable; set Err to make every method
// fail with it, RefreshErr to make Refresh fail. The zero value is empty and ready to use.
type STSCache struct {
	mu         sync.Mutex
	entries    map[address.Domain]mtastscache.Entry
	calls      []string
	Err        error
	RefreshErr error
	// Fetchable are the policies Refresh finds, by domain; Refresh sets Fetched to Now.
	Fetchable map[address.Domain]mtastscache.Entry
	Now       time.Time
}

// Add caches entries.
func (c *STSCache) Add(entries ...mtastscache.Entry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.entries == nil {
		c.entries = map[address.Domain]mtastscache.Entry{}
	}
	for _, e := range entries {
		c.entries[e.Domain] = e
	}
}

// Calls returns the state-changing calls made so far, as "op domain".
func (c *STSCache) Calls() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.calls)
}

// List implements admin.STSCacheAPI.
func (c *STSCache) List(ctx context.Context) ([]mtastscache.Entry, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.Err != nil {
		return nil, c.Err
	}
	out := make([]mtastscache.Entry, 0, len(c.entries))
	for _, e := range c.entries {
		out = append(out, e)
	}
	slices.SortFunc(out, func(a, b mtastscache.Entry) int { return strings.Compare(a.Domain.String(), b.Domain.String()) })
	return out, nil
}

// Show implements admin.STSCacheAPI.
func (c *STSCache) Show(ctx context.Context, domain address.Domain) (mtastscache.Entry, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.Err != nil {
		return mtastscache.Entry{}, c.Err
	}
	e, ok := c.entries[domain]
	if !ok {
		return mtastscache.Entry{}, fmt.Errorf("%w: %s", mtastscache.ErrNotCached, domain)
	}
	return e, nil
}

// Refresh implements admin.STSCacheAPI.
func (c *STSCache) Refresh(ctx context.Context, domain address.Domain) (mtastscache.Entry, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.Err != nil {
		return mtastscache.Entry{}, c.Err
	}
	c.calls = append(c.calls, "refresh "+domain.String())
	if c.RefreshErr != nil {
		return mtastscache.Entry{}, c.RefreshErr
	}
	e, ok := c.Fetchable[domain]
	if !ok {
		return mtastscache.Entry{}, fmt.Errorf("admintest: no policy to fetch for %s", domain)
	}
	e.Domain, e.Fetched = domain, c.Now
	if c.entries == nil {
		c.entries = map[address.Domain]mtastscache.Entry{}
	}
	c.entries[domain] = e
	return e, nil
}

// Flush implements admin.STSCacheAPI.
func (c *STSCache) Flush(ctx context.Context, domain address.Domain) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.Err != nil {
		return c.Err
	}
	if _, ok := c.entries[domain]; !ok {
		return fmt.Errorf("%w: %s", mtastscache.ErrNotCached, domain)
	}
	c.calls = append(c.calls, "flush "+domain.String())
	delete(c.entries, domain)
	return nil
}

// Now is the time the Fixture's data is relative to: 2025-06-01 10:00:00 UTC.
func Now() time.Time { return time.Date(2025, 6, 1, 10, 0, 0, 0, time.UTC) }

// Fixture IDs.
const (
	MsgQueued = "0a1b2c3d4e5f6g7h8i9j0k1l2m" // alice@corp.example → bob@example.org, deferred twice
	MsgHeld   = "0a1b2c3d4e5f6g7h8i9j0k1l2n" // carol@corp.example → example.net (queued), example.com (delivered)
)

// Fixture returns a queue with two messages and a cache with two policies (example.org in enforce mode and
// an expired example.net in testing mode); example.com can be refreshed. Times are relative to Now.
func Fixture() (*Queue, *STSCache) {
	now := Now()
	q := &Queue{Now: Now, Summ: queue.Summary{
		Messages:          2,
		Held:              1,
		Oldest:            now.Add(-2 * time.Hour),
		OldestAge:         2 * time.Hour,
		RecipientsByState: map[string]int{"queued": 2, "delivered": 1},
		QueuedByDomain:    map[string]int{"example.org": 1, "example.net": 1},
	}}
	lastErr := "certificate-host-mismatch: mx1.example.org: x509: certificate is valid for other.example, not mx1.example.org"
	q.Add(queue.MessageDetail{
		MessageInfo: queue.MessageInfo{
			ID: MsgQueued, From: "alice@corp.example", Size: 2048,
			Received: now.Add(-2 * time.Hour), Expires: now.Add(118 * time.Hour), Attempts: 2,
			State: "queued", Queued: 1, Domains: []string{"example.org"},
			NextAttempt: now.Add(10 * time.Minute), LastError: lastErr,
		},
		EnvID: "env-1", Ret: "HDRS", ClientIP: "10.0.0.5",
		Rcpts: []queue.RecipientInfo{{
			Addr: "bob@example.org", Domain: "example.org", Notify: []string{"FAILURE"}, State: "queued",
			NextAttempt: now.Add(10 * time.Minute), Attempts: 2, LastCode: 0, LastText: lastErr,
			LastResultType: "certificate-host-mismatch", LastRemoteMTA: "mx1.example.org", LastPolicy: "sts",
			Updated: now.Add(-50 * time.Minute),
		}},
		Timeline: []queue.Attempt{
			{Rcpt: "bob@example.org", At: now.Add(-110 * time.Minute), Outcome: queue.Deferred, Text: lastErr,
				RemoteMTA: "mx1.example.org", Policy: "sts", ResultType: "certificate-host-mismatch"},
			{Rcpt: "bob@example.org", At: now.Add(-50 * time.Minute), Outcome: queue.Deferred, Text: lastErr,
				RemoteMTA: "mx1.example.org", Policy: "sts", ResultType: "certificate-host-mismatch"},
		},
	}, queue.MessageDetail{
		MessageInfo: queue.MessageInfo{
			ID: MsgHeld, From: "carol@corp.example", Size: 512,
			Received: now.Add(-1 * time.Hour), Expires: now.Add(119 * time.Hour), Attempts: 1, Held: true,
			State: "held", Queued: 1, Delivered: 1, Domains: []string{"example.com", "example.net"},
		},
		Rcpts: []queue.RecipientInfo{
			{Addr: "dave@example.net", Domain: "example.net", State: "queued", Updated: now.Add(-time.Hour)},
			{Addr: "erin@example.com", Domain: "example.com", State: "delivered", Attempts: 1, LastCode: 250,
				LastEnhanced: "2.0.0", LastText: "OK", LastRemoteMTA: "mx.example.com", LastTLS: "TLSv1.3",
				Updated: now.Add(-59 * time.Minute)},
		},
		Timeline: []queue.Attempt{{Rcpt: "erin@example.com", At: now.Add(-59 * time.Minute), Outcome: queue.Delivered,
			Code: 250, Enhanced: "2.0.0", Text: "OK", RemoteMTA: "mx.example.com", TLS: "TLSv1.3"}},
	})

	c := &STSCache{Now: now, Fetchable: map[address.Domain]mtastscache.Entry{
		address.MustParseDomain("example.com"): {
			ID: "20250601T000000", Mode: "enforce", MaxAge: 86400 * time.Second, MX: []string{"mx.example.com"},
			Expires: now.Add(24 * time.Hour), Policy: "version: STSv1\nmode: enforce\nmx: mx.example.com\nmax_age: 86400\n",
		},
	}}
	c.Add(mtastscache.Entry{
		Domain: address.MustParseDomain("example.org"), ID: "2025a", Mode: "enforce", MaxAge: 604800 * time.Second,
		MX: []string{"mx1.example.org", "*.mx.example.org"}, Fetched: now.Add(-time.Hour),
		Expires: now.Add(604800*time.Second - time.Hour), LastUsed: now.Add(-50 * time.Minute),
		Policy: "version: STSv1\nmode: enforce\nmx: mx1.example.org\nmx: *.mx.example.org\nmax_age: 604800\n",
	}, mtastscache.Entry{
		Domain: address.MustParseDomain("example.net"), ID: "old1", Mode: "testing", MaxAge: 3600 * time.Second,
		MX: []string{"mx.example.net"}, Fetched: now.Add(-3 * time.Hour), Expires: now.Add(-2 * time.Hour),
		LastError:   "sts-policy-fetch-error: GET https://mta-sts.example.net/.well-known/mta-sts.txt: 404",
		LastErrorAt: now.Add(-30 * time.Minute), ConsecutiveFailures: 3,
		Policy: "version: STSv1\nmode: testing\nmx: mx.example.net\nmax_age: 3600\n",
	})
	return q, c
}
