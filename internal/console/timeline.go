package console

import (
	"container/list"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/mxgate/mxgate/internal/delivery"
	"github.com/mxgate/mxgate/internal/mtasts"
	"github.com/mxgate/mxgate/internal/queue"
	"github.com/mxgate/mxgate/internal/tlspolicy"
	"github.com/mxgate/mxgate/internal/tlsrpt"
)

// TLS classes of an attempt, from queue.Result.TLS ("none", "unverified TLS 1.3", "verified TLS 1.3").
const (
	classNone       = 0
	classUnverified = 1
	classVerified   = 2
	classNoSession  = 3 // no SMTP session was made (connection refused, DNS failure, policy refused the MX)
	numClasses      = 4
)

// window is how far back the timeline reaches; it keeps one bucket per minute.
const (
	window   = 24 * time.Hour
	nBuckets = int(window / time.Minute)
	// maxResultTypes bounds the distinct result types one bucket counts; more are counted as "other".
	// The RFC 8460 vocabulary has about a dozen.
	maxResultTypes = 24
)

func tlsClass(tls string) int {
	switch {
	case tls == "":
		return classNoSession
	case strings.HasPrefix(tls, "verified"):
		return classVerified
	case strings.HasPrefix(tls, "unverified"):
		return classUnverified
	default:
		return classNone
	}
}

// bucket counts one minute.
type bucket struct {
	minute   int64 // Unix minute this bucket holds; buckets of other minutes are stale
	accepted int
	attempts [numClasses]int
	// delivered by TLS class, deferred and failed recipients.
	delivered [numClasses]int
	deferred  int
	failed    int
	// deferrals by RFC 8460 result type ("" for deferrals that are not TLS or policy failures).
	deferrals map[string]int
}

// domainState is what the console remembers of one destination domain.
type domainState struct {
	Domain   string
	LastSeen time.Time
	// The last attempt's outcome.
	Outcome    string
	TLS        string
	ResultType tlsrpt.ResultType
	MX         string
	Reply      string
	// Plan is the policy applied ("mta-sts enforce", "opportunistic", ...), Source where it came from.
	Plan    string
	Source  tlspolicy.Source
	STSMode mtasts.Mode
	STSID   string
	// Attempts and WouldFail count the sessions observed (since start, within this bounded memory; an
	// attempt that made no session but saw a policy failure counts as one) and how many of them would have
	// failed under an enforcing MTA-STS policy.
	Attempts  int
	WouldFail int
	// LastWouldFail: the last attempt would have failed under enforce.
	LastWouldFail bool
	// FailingSince is when the current run of enforce failures began; zero when the last attempt under an
	// enforce policy did not fail.
	FailingSince time.Time

	// hours counts sessions and would-fail sessions per hour over the last 24 h (see window); recent holds
	// the last session numbers seen, so that the recipients of one session count once.
	hours  [24]hourCount
	recent [8]uint64
	next   int
}

// hourCount is one hour of a domain's sessions.
type hourCount struct {
	hour                int64 // Unix hour; stale when it is not one of the last 24
	sessions, wouldFail int
}

// newSession reports whether session number n was not seen yet, and remembers it. Number 0 (an event
// without a session number) is always new.
func (ds *domainState) newSession(n uint64) bool {
	if n == 0 {
		return true
	}
	for _, r := range ds.recent {
		if r == n {
			return false
		}
	}
	ds.recent[ds.next] = n
	ds.next = (ds.next + 1) % len(ds.recent)
	return true
}

// window returns the sessions seen in the 24 hours ending at now, and how many of them would have failed
// under an enforcing policy. It counts whole hours: the current one and the 23 before it, so nothing older
// than 24 hours is counted (and up to an hour of the oldest part of the day may be missing).
func (ds *domainState) window(now time.Time) (sessions, wouldFail int) {
	h := now.Unix() / 3600
	for _, c := range ds.hours {
		if c.hour > h-24 && c.hour <= h {
			sessions += c.sessions
			wouldFail += c.wouldFail
		}
	}
	return sessions, wouldFail
}

// timeline is the in-memory record of delivery events. Its memory is bounded: nBuckets buckets and
// maxDomains domains.
type timeline struct {
	mu         sync.Mutex
	buckets    []bucket
	maxDomains int
	domains    map[string]*list.Element // of *domainState, most recent at the front
	lru        *list.List
}

func newTimeline(maxDomains int) *timeline {
	return &timeline{buckets: make([]bucket, nBuckets), maxDomains: maxDomains, domains: map[string]*list.Element{}, lru: list.New()}
}

// bucketAt returns the bucket of t's minute, reset if it held an older minute. Callers hold mu.
func (tl *timeline) bucketAt(t time.Time) *bucket {
	m := t.Unix() / 60
	b := &tl.buckets[int(m%int64(nBuckets))]
	if b.minute != m {
		*b = bucket{minute: m}
	}
	return b
}

func (tl *timeline) accepted(now time.Time) {
	tl.mu.Lock()
	tl.bucketAt(now).accepted++
	tl.mu.Unlock()
}

// wouldFailEnforce reports whether an attempt would have failed under an enforcing MTA-STS policy:
// RFC 8461 Section 5 requires TLS with a certificate valid for the MX host (Section 4.2), so a plain-text or
// unverified session fails, and so does any attempt that already carries a TLS or policy failure. Attempts
// that made no session for other reasons (connection refused) say nothing either way.
func wouldFailEnforce(r queue.Result) bool {
	if r.ResultType != "" {
		return true
	}
	switch tlsClass(r.TLS) {
	case classNone, classUnverified:
		return true
	}
	return false
}

func (tl *timeline) observe(now time.Time, ev delivery.Event) {
	r := ev.Result
	class := tlsClass(r.TLS)
	plan := ev.Plan
	if plan == "" {
		plan = r.Policy
	}
	tl.mu.Lock()
	defer tl.mu.Unlock()
	b := tl.bucketAt(now)
	b.attempts[class]++
	switch r.Outcome {
	case queue.Delivered:
		b.delivered[class]++
	case queue.Failed:
		b.failed++
	default:
		b.deferred++
		if b.deferrals == nil {
			b.deferrals = map[string]int{}
		}
		rt := string(r.ResultType)
		if _, ok := b.deferrals[rt]; !ok && len(b.deferrals) >= maxResultTypes {
			rt = "other"
		}
		b.deferrals[rt]++
	}

	dom := ev.Domain.String()
	if dom == "" || tl.maxDomains <= 0 {
		return
	}
	var ds *domainState
	if el, ok := tl.domains[dom]; ok {
		tl.lru.MoveToFront(el)
		ds = el.Value.(*domainState)
	} else {
		ds = &domainState{Domain: dom}
		tl.domains[dom] = tl.lru.PushFront(ds)
		for tl.lru.Len() > tl.maxDomains {
			old := tl.lru.Back()
			tl.lru.Remove(old)
			delete(tl.domains, old.Value.(*domainState).Domain)
		}
	}
	ds.LastSeen = now
	ds.Outcome, ds.TLS, ds.ResultType, ds.MX, ds.Reply = string(r.Outcome), r.TLS, r.ResultType, r.RemoteMTA, r.Text
	ds.Plan, ds.Source, ds.STSMode, ds.STSID = plan, ev.Source, ev.STSMode, ev.STSID
	fail := wouldFailEnforce(r)
	if (class != classNoSession || r.ResultType != "") && ds.newSession(ev.Session) {
		ds.Attempts++
		h := now.Unix() / 3600
		c := &ds.hours[int(h%int64(len(ds.hours)))]
		if c.hour != h {
			*c = hourCount{hour: h}
		}
		c.sessions++
		if fail {
			ds.WouldFail++
			c.wouldFail++
		}
	}
	ds.LastWouldFail = fail
	if plan == "mta-sts enforce" {
		if r.Outcome == queue.Deferred && r.ResultType != "" {
			if ds.FailingSince.IsZero() {
				ds.FailingSince = now
			}
		} else if r.Outcome == queue.Delivered {
			ds.FailingSince = time.Time{}
		}
	} else {
		ds.FailingSince = time.Time{}
	}
}

// stats is the timeline summed over the window ending at now.
type stats struct {
	Accepted  int
	Attempts  [numClasses]int
	Delivered [numClasses]int
	Deferred  int
	Failed    int
	Deferrals map[string]int
	// Hours are the attempt counts by class of the last 24 clock hours, oldest first; Hours[23] is the
	// current hour.
	Hours []hourStats
}

type hourStats struct {
	Start    time.Time
	Attempts [numClasses]int
}

func (tl *timeline) stats(now time.Time) stats {
	s := stats{Deferrals: map[string]int{}, Hours: make([]hourStats, 24)}
	nowMin := now.Unix() / 60
	first := nowMin - int64(nBuckets) + 1
	// Hour slots are clock hours, the last one the current (partial) hour; the first minutes of the
	// window, in the hour before slot 0, count in the totals only.
	firstHour := (nowMin/60 - 23) * 60
	for i := range s.Hours {
		s.Hours[i].Start = time.Unix((firstHour+int64(i)*60)*60, 0).UTC()
	}
	tl.mu.Lock()
	defer tl.mu.Unlock()
	for i := range tl.buckets {
		b := &tl.buckets[i]
		if b.minute < first || b.minute > nowMin {
			continue
		}
		s.Accepted += b.accepted
		s.Deferred += b.deferred
		s.Failed += b.failed
		for c := range numClasses {
			s.Attempts[c] += b.attempts[c]
			s.Delivered[c] += b.delivered[c]
		}
		if b.minute >= firstHour {
			slot := int((b.minute - firstHour) / 60)
			for c := range numClasses {
				s.Hours[slot].Attempts[c] += b.attempts[c]
			}
		}
		for rt, n := range b.deferrals {
			s.Deferrals[rt] += n
		}
	}
	return s
}

// domainList returns copies of the remembered domains, most recently seen first.
func (tl *timeline) domainList() []domainState {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	out := make([]domainState, 0, tl.lru.Len())
	for el := tl.lru.Front(); el != nil; el = el.Next() {
		out = append(out, *el.Value.(*domainState))
	}
	return out
}

func (tl *timeline) domain(name string) (domainState, bool) {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	if el, ok := tl.domains[name]; ok {
		return *el.Value.(*domainState), true
	}
	return domainState{}, false
}

// failingEnforce returns the domains whose latest attempts under an MTA-STS enforce policy were deferred
// by a TLS or policy failure, the longest-failing first.
func (tl *timeline) failingEnforce() []domainState {
	var out []domainState
	for _, d := range tl.domainList() {
		if !d.FailingSince.IsZero() {
			out = append(out, d)
		}
	}
	slices.SortFunc(out, func(a, b domainState) int { return a.FailingSince.Compare(b.FailingSince) })
	return out
}
