// Package nodes implements the node registry of a cluster: every node writes a heartbeat row (its name, the
// admin URL the other nodes reach it at, its version, the settings generation it runs and the newest it has
// seen committed, its queue size and its TLS mix) and reads the others' rows to list the cluster, flagging a
// node that lags behind the committed settings or has gone silent. It also keeps the cluster secret, made
// once, with which nodes authenticate their calls to each other's admin API.
//
// The registry lives where the settings live: the node's own SQLite database on a single node (which then
// lists itself alone), the PostgreSQL database in cluster mode. It does not call other nodes; the daemon and
// the admin API do, with the URLs and the secret kept here.
package nodes

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Defaults of the heartbeat.
const (
	// DefaultInterval is how often a node writes its heartbeat (and at once when its running generation
	// changes).
	DefaultInterval = 5 * time.Second
	// DefaultSilentAfter is how old a heartbeat may be before the node is flagged silent: four missed beats.
	DefaultSilentAfter = 4 * DefaultInterval
	// DefaultLagAfter is how long a node may run an older settings generation than the newest committed
	// before it is flagged lagging: two beats, so that a commit does not flash every node as lagging while
	// it propagates.
	DefaultLagAfter = 2 * DefaultInterval
)

// ErrStorage wraps a failure of the database behind the registry.
var ErrStorage = errors.New("node registry")

// ErrUnknownNode is returned for a node name the registry does not hold.
var ErrUnknownNode = errors.New("no such node in the registry")

// TLSMix counts the recipients a node delivered in the last 24 hours by the protection of the session.
type TLSMix struct {
	Verified  int `json:"verified"`  // TLS with an authenticated server (MTA-STS, DANE or a verifying rule)
	Encrypted int `json:"encrypted"` // TLS without authentication
	Plaintext int `json:"plaintext"` // no TLS
}

// Node is one node's heartbeat row.
type Node struct {
	Name string
	// Instance identifies the process that wrote the row (NewInstance, made at its start): two processes
	// running under one name write different instances into the same row.
	Instance string
	AdminURL string
	Version  string
	// Running is the settings generation the node applies; Committed the newest it has seen in the database.
	Running, Committed int
	// Queued is the number of messages in the node's queue.
	Queued    int
	Started   time.Time
	Heartbeat time.Time
	TLS       TLSMix
	// Clash says, when not empty, that another process writes this node's row too (the same node name):
	// which one, as the writer found it.
	Clash string
}

// Storage keeps the registry and the cluster secret. SQLiteStorage and PostgresStorage implement it; both
// pass the same contract tests.
type Storage interface {
	Migrate(ctx context.Context) error
	// Beat writes n's row, replacing the one of the same name, and returns the row it replaced (its
	// Instance, AdminURL, Started and Heartbeat; the zero Node when there was none).
	Beat(ctx context.Context, n Node) (prev Node, err error)
	// List returns every node's row, by name.
	List(ctx context.Context) ([]Node, error)
	// Forget removes the row of a retired node; ErrUnknownNode when there is none.
	Forget(ctx context.Context, name string) error
	// Secret returns the cluster secret, storing fresh first when there is none yet: of several nodes
	// starting together, one secret wins and every node reads it.
	Secret(ctx context.Context, fresh string) (string, error)
}

// NewSecret returns a fresh cluster secret: 32 random bytes in hex.
func NewSecret() string {
	var b [32]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// NewInstance returns a fresh instance id for a process: 8 random bytes in hex.
func NewInstance() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Clashes reports whether prev, the row a heartbeat of instance replaced at now, was written by another
// process running under the same name: a process other than this one wrote it since this one's previous
// heartbeat (lastBeat, the zero time before the first), and less than silentAfter ago. The first heartbeat
// after a restart finds the row of the process before, which no longer writes, and is no clash.
func Clashes(prev Node, instance string, lastBeat, now time.Time, silentAfter time.Duration) bool {
	return !lastBeat.IsZero() && prev.Instance != "" && prev.Instance != instance && now.Sub(prev.Heartbeat) <= silentAfter
}

// ClashReason says in words that the process instance at selfURL found its row written by prev.
func ClashReason(name, instance, selfURL string, prev Node) string {
	return fmt.Sprintf("two processes run as node %q: this one (instance %s, %s) and another (instance %s, %s, started %s) overwrite one registry row; give each node its own `node` name",
		name, instance, selfURL, prev.Instance, prev.AdminURL, prev.Started.UTC().Format(time.RFC3339))
}

// Flag says what is wrong with a node.
type Flag string

const (
	// FlagLagging: the node runs an older settings generation than the newest committed, and has for longer
	// than the bound.
	FlagLagging Flag = "lagging"
	// FlagSilent: the node's last heartbeat is older than the bound.
	FlagSilent Flag = "silent"
	// FlagNameClash: two processes run under the node's name and overwrite its row.
	FlagNameClash Flag = "name-clash"
)

// View is a node's row as an administrator sees it: the row and what is wrong with it.
type View struct {
	Node
	// Self is true for the node that answers.
	Self  bool
	Flags []Flag
	// Problem says in words why the node is flagged; empty when it is not.
	Problem string
}

// Assess flags each node: lagging when it runs an older generation than committed (the newest generation
// in the database, or seen by any node) and the generation after the one it runs was committed more than
// lagAfter before now (committedAt says when a generation was committed, the zero time when unknown, which
// flags at once; it is asked only about a node that runs an older generation), silent when its heartbeat is
// older than silentAfter at now, and name-clash when its row says another process writes it too.
func Assess(list []Node, self string, committed int, committedAt func(gen int) time.Time, now time.Time, silentAfter, lagAfter time.Duration) []View {
	for _, n := range list {
		committed = max(committed, n.Committed, n.Running)
	}
	out := make([]View, 0, len(list))
	for _, n := range list {
		v := View{Node: n, Self: n.Name == self}
		var why []string
		if n.Running < committed && now.Sub(committedAt(n.Running+1)) > lagAfter {
			v.Flags = append(v.Flags, FlagLagging)
			why = append(why, fmt.Sprintf("runs settings generation %d, %d is committed", n.Running, committed))
		}
		if age := now.Sub(n.Heartbeat); age > silentAfter {
			v.Flags = append(v.Flags, FlagSilent)
			why = append(why, fmt.Sprintf("no heartbeat for %s (bound %s)", age.Round(time.Second), silentAfter))
		}
		if n.Clash != "" {
			v.Flags = append(v.Flags, FlagNameClash)
			why = append(why, n.Clash)
		}
		v.Problem = strings.Join(why, "; ")
		out = append(out, v)
	}
	slices.SortFunc(out, func(a, b View) int { return strings.Compare(a.Name, b.Name) })
	return out
}
