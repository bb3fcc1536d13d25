package console_test

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mxgate/mxgate/internal/admin/admintest"
	"github.com/mxgate/mxgate/internal/console"
	"github.com/mxgate/mxgate/internal/console/consoletest"
	"github.com/mxgate/mxgate/internal/store"
	"github.com/mxgate/mxgate/internal/store/storetest"
)

var mailInRE = regexp.MustCompile(`id="mail-in">(\d+)<`)
var mailOutRE = regexp.MustCompile(`id="mail-out">(\d+)<`)

func figure(t *testing.T, re *regexp.Regexp, body string) int {
	t.Helper()
	m := re.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no %s on the dashboard", re)
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// TestDashboardSumsClusterCounters: in cluster mode the dashboard shows the sums of every node's counters:
// node a's own (live) and what nodes b and c wrote to the shared database; c, which has not written for ten
// minutes, is named stale. Node a's own counters, written by it, are read back by another node.
func TestDashboardSumsClusterCounters(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	counters := newSharedCounters(t)
	now := admintest.Now()
	hour := now.Truncate(time.Hour)
	b := console.HourCounters{Hour: hour, Accepted: 5, Attempts: [4]int{0, 0, 9, 0}, Delivered: [4]int{0, 0, 7, 0},
		Deferred: 2, Deferrals: map[string]int{"certificate-expired": 2}}
	if err := counters.Publish(ctx, "b.example.net", now, []console.HourCounters{b}); err != nil {
		t.Fatal(err)
	}
	c := console.HourCounters{Hour: hour.Add(-3 * time.Hour), Accepted: 3, Attempts: [4]int{1, 0, 0, 0}, Delivered: [4]int{1, 0, 0, 0}}
	old := console.HourCounters{Hour: hour.Add(-30 * time.Hour), Accepted: 1000}
	if err := counters.Publish(ctx, "c.example.net", now.Add(-10*time.Minute), []console.HourCounters{c, old}); err != nil {
		t.Fatal(err)
	}

	env := consoletest.NewNode(t, consoletest.Node{Counters: counters, Name: "a.example.net"})
	p := loginAs(t, env, console.BootstrapAccount, consoletest.Password).get("/")

	// Node a's own figures, by clock hour: the current hour and the 23 before it.
	var ownIn, ownOut, ownAll int
	for _, h := range env.Console.HourCounters(now) {
		ownAll += h.Accepted
		if h.Hour.After(hour.Add(-24 * time.Hour)) {
			ownIn += h.Accepted
			for _, n := range h.Delivered {
				ownOut += n
			}
		}
	}
	if ownIn == 0 || ownOut == 0 {
		t.Fatalf("the fixture counts nothing: in %d, out %d", ownIn, ownOut)
	}
	if got, want := figure(t, mailInRE, p.body), ownIn+5+3; got != want {
		t.Errorf("cluster mail in = %d, want %d (node a %d + b 5 + c 3; c's 30-hour-old 1000 not counted)", got, want, ownIn)
	}
	if got, want := figure(t, mailOutRE, p.body), ownOut+7+1; got != want {
		t.Errorf("cluster mail out = %d, want %d", got, want)
	}
	mustContain(t, p, "the sums of 3 nodes", "certificate-expired", `id="cluster-stale"`, "c.example.net (last written")
	if strings.Contains(p.body, "b.example.net (last written") {
		t.Errorf("node b, written now, is flagged stale")
	}

	// What node a writes, another node reads.
	if err := counters.Publish(ctx, "a.example.net", now, env.Console.HourCounters(now)); err != nil {
		t.Fatal(err)
	}
	rows, err := counters.Read(ctx, hour.Add(-24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	var aIn int
	for _, r := range rows {
		if r.Node == "a.example.net" {
			for _, h := range r.Hours {
				aIn += h.Accepted
			}
		}
	}
	if aIn != ownAll {
		t.Errorf("node a's published mail in = %d, want %d", aIn, ownAll)
	}
}

// TestCountersRetentionByDatabaseClock: a node whose clock runs ten days ahead does not drop the other
// nodes' recent hours when it publishes; hours older than the retention by the database's clock go.
func TestCountersRetentionByDatabaseClock(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	counters := newSharedCounters(t)
	now := time.Now()
	hour := now.Truncate(time.Hour)
	recent := console.HourCounters{Hour: hour, Accepted: 4}
	stale := console.HourCounters{Hour: hour.Add(-72 * time.Hour), Accepted: 9}
	if err := counters.Publish(ctx, "b.example.net", now, []console.HourCounters{recent}); err != nil {
		t.Fatal(err)
	}
	if err := counters.Publish(ctx, "c.example.net", now.Add(-72*time.Hour), []console.HourCounters{stale}); err != nil {
		t.Fatal(err)
	}
	ahead := now.Add(10 * 24 * time.Hour)
	if err := counters.Publish(ctx, "a.example.net", ahead, []console.HourCounters{{Hour: ahead.Truncate(time.Hour), Accepted: 1}}); err != nil {
		t.Fatal(err)
	}
	got, err := counters.Read(ctx, hour.Add(-100*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	var nodes []string
	for _, n := range got {
		nodes = append(nodes, n.Node)
	}
	if fmt.Sprint(nodes) != "[a.example.net b.example.net]" {
		t.Errorf("nodes with counters after a publish from a clock ahead: %v, want a and b (c's hour is past the retention)", nodes)
	}
}

// newSharedCounters returns the counters store on a fresh PostgreSQL database of the test's own, migrated.
func newSharedCounters(t *testing.T) console.PostgresCounters {
	t.Helper()
	pg, err := store.OpenPostgres(t.Context(), storetest.PostgresDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pg.Close)
	counters := console.PostgresCounters{PG: pg}
	if err := counters.Migrate(t.Context()); err != nil {
		t.Fatal(err)
	}
	return counters
}
