// Package settings holds mxgate's committed configuration: typed key/value settings with the names
// administrators of appliance gateways know (Sender.EnableMTASTS, Controller.EnableTLSRPT, ...) and per-domain
// TLS rules. Changes are staged, reviewed as a diff, and committed with a note into a numbered generation that
// takes effect at once; every generation is kept and can be rolled back to (as a new generation).
//
// The bootstrap file (mxgate.toml) only seeds the first generation. Unknown keys and ill-typed values are
// refused with a message naming the key.
package settings

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/mxgate/mxgate/internal/address"
	"github.com/mxgate/mxgate/internal/store"
	"github.com/mxgate/mxgate/internal/tlspolicy"
)

// Errors.
var (
	ErrUnknownKey   = errors.New("unknown setting")
	ErrInvalidValue = errors.New("invalid value")
	ErrNoChanges    = errors.New("no staged changes")
	ErrNoGeneration = errors.New("no such generation")
	// ErrRefused means a component that uses the settings would refuse the generation a commit or a
	// rollback would make; nothing is committed.
	ErrRefused = errors.New("refused")
	// ErrStaged means a rollback was asked while changes are staged.
	ErrStaged = errors.New("changes are staged")
)

// KeyError is a component's refusal of one setting's value.
type KeyError struct {
	Key string
	Err error
}

func (e *KeyError) Error() string { return e.Key + ": " + e.Err.Error() }
func (e *KeyError) Unwrap() error { return e.Err }

// keyErrors returns the KeyErrors in err's tree (errors.Join and %w wrapping).
func keyErrors(err error) []*KeyError {
	var out []*KeyError
	var walk func(error)
	walk = func(err error) {
		switch e := err.(type) {
		case nil:
		case *KeyError:
			out = append(out, e)
		case interface{ Unwrap() []error }:
			for _, x := range e.Unwrap() {
				walk(x)
			}
		case interface{ Unwrap() error }:
			walk(e.Unwrap())
		}
	}
	walk(err)
	return out
}

// Check is a component's validation of a whole generation: the code the component itself runs when it takes
// the settings up, so that what it would refuse is refused before it is committed. It returns KeyErrors
// for the settings at fault.
type Check struct {
	// Component names the component ("tlsrpt").
	Component string
	Check     func(Snapshot) error
}

// Kind is a setting's type.
type Kind string

const (
	Bool     Kind = "bool"
	Int      Kind = "int"
	String   Kind = "string"
	TLSLevel Kind = "tls-level"
)

// Def describes one setting.
type Def struct {
	Key     string `json:"key"`
	Kind    Kind   `json:"kind"`
	Default string `json:"default"`
	Help    string `json:"help"`
}

// DomainPrefix starts the per-domain TLS rule keys: "Domain.example.com.TLS" = "required-verify". A rule's
// value is tlspolicy.Rule's text form: a level, optionally followed by "override".
const DomainPrefix = "Domain."

const domainSuffix = ".TLS"

// Keys of the settings that have typed accessors on Snapshot.
const (
	KeyEnableTLSRPT = "Controller.EnableTLSRPT"
	KeyEnableDANE   = "Sender.EnableDANE"
	KeyEnableMTASTS = "Sender.EnableMTASTS"
	// KeyTLSRequiredNoRelaxesRules lets TLS-Required: No relax the administrator's per-domain rules.
	KeyTLSRequiredNoRelaxesRules = "Sender.TLSRequiredNoRelaxesRules"
)

// DomainKey returns the key of d's TLS rule.
func DomainKey(d address.Domain) string { return DomainPrefix + d.String() + domainSuffix }

// Defs returns the known settings, sorted by key.
func Defs() []Def {
	return []Def{
		{"Controller.EnableTLSRPT", Bool, "true", "Record TLS sessions and send daily TLS reports (RFC 8460) to domains that publish _smtp._tls."},
		{"Sender.EnableDANE", Bool, "false", "Validate DANE (RFC 7672) on delivery to MX routes: hosts with DNSSEC-secure TLSA records must be authenticated by them (needs a validating resolver, see dns.validating)."},
		{"Sender.EnableMTASTS", Bool, "true", "Validate MTA-STS (RFC 8461) on delivery to MX routes."},
		{"Sender.TLSRequiredNoRelaxesRules", Bool, "false", "Let a message's TLS-Required: No header (RFC 8689) relax per-domain TLS rules too, not only the recipient's published policies."},
		{"TLSRPT.ContactInfo", String, "", "contact-info of TLS reports: an address responsible for them (default postmaster@<delivery.hostname>)."},
		{"TLSRPT.DKIMKeyFile", String, "", "PEM private key (RSA or Ed25519) that signs TLS report mail (RFC 8460 Section 3); default: the key made at first start in data.dir."},
		{"TLSRPT.DKIMSelector", String, "", "DKIM selector of the signing key (default tlsrpt for the key made at first start; required with TLSRPT.DKIMKeyFile); the d= domain is the submitter domain."},
		{"TLSRPT.From", String, "", "From address of TLS report mail (default: the contact address)."},
		{"TLSRPT.MaxDestinations", Int, "4", "At most this many rua destinations per domain."},
		{"TLSRPT.OnlyFailures", Bool, "false", "Send a report only for days that had failures."},
		{"TLSRPT.OrganizationName", String, "", "organization-name of TLS reports."},
		{"TLSRPT.Submitter", String, "", "Submitter domain of TLS reports (default: the domain of the contact address)."},
	}
}

func defFor(key string) (Def, bool) {
	for _, d := range Defs() {
		if d.Key == key {
			return d, true
		}
	}
	if strings.HasPrefix(key, DomainPrefix) && strings.HasSuffix(key, domainSuffix) {
		return Def{Key: key, Kind: TLSLevel, Help: "TLS rule for one destination domain."}, true
	}
	return Def{}, false
}

// Canonical validates value for key and returns the key and value in canonical form (domain keys in A-labels,
// booleans as true/false).
func Canonical(key, value string) (string, string, error) {
	def, ok := defFor(key)
	if !ok {
		return "", "", fmt.Errorf("%w %q (known: %s, and %s<domain>%s)", ErrUnknownKey, key, knownKeys(), DomainPrefix, domainSuffix)
	}
	switch def.Kind {
	case Bool:
		b, err := strconv.ParseBool(value)
		if err != nil {
			return "", "", fmt.Errorf("%s: %w: %q is not a boolean (true or false)", key, ErrInvalidValue, value)
		}
		return key, strconv.FormatBool(b), nil
	case Int:
		n, err := strconv.Atoi(value)
		if err != nil || n < 0 {
			return "", "", fmt.Errorf("%s: %w: %q is not a non-negative integer", key, ErrInvalidValue, value)
		}
		return key, strconv.Itoa(n), nil
	case String:
		if strings.ContainsAny(value, "\r\n") {
			return "", "", fmt.Errorf("%s: %w: line breaks are not allowed", key, ErrInvalidValue)
		}
		return key, value, nil
	case TLSLevel:
		dom := strings.TrimSuffix(strings.TrimPrefix(key, DomainPrefix), domainSuffix)
		d, err := address.ParseDomain(dom)
		if err != nil {
			return "", "", fmt.Errorf("%s: %w", key, err)
		}
		r, err := tlspolicy.ParseRule(value)
		if err != nil {
			return "", "", fmt.Errorf("%s: %w: %w", key, ErrInvalidValue, err)
		}
		return DomainKey(d), r.String(), nil
	}
	return "", "", fmt.Errorf("%s: %w", key, ErrUnknownKey)
}

// FromTOML validates a [settings] table of TOML values (as decoded into map[string]any) and returns it in
// canonical form. It is the one reading of such tables: the bootstrap file's [settings] and `mxgate config
// apply` files both go through it. Values are booleans, integers or strings; nested tables are flattened with
// dots, so that an unquoted Domain.example.com.TLS key means the same as the quoted one. Every key is checked
// by Canonical, the check a staged change gets. The error joins one error per bad key, each starting with it.
func FromTOML(tbl map[string]any) (map[string]string, error) {
	raw := map[string]string{}
	var errs []error
	flatten("", tbl, raw, &errs)
	out := map[string]string{}
	for _, k := range slices.Sorted(maps.Keys(raw)) {
		ck, cv, err := Canonical(k, raw[k])
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if _, dup := out[ck]; dup {
			errs = append(errs, fmt.Errorf("%q is given twice (keys differ only in spelling): %w", k, ErrInvalidValue))
			continue
		}
		out[ck] = cv
	}
	return out, errors.Join(errs...)
}

func flatten(prefix string, tbl map[string]any, out map[string]string, errs *[]error) {
	for _, k := range slices.Sorted(maps.Keys(tbl)) {
		key := prefix + k
		var v string
		switch t := tbl[k].(type) {
		case map[string]any:
			flatten(key+".", t, out, errs)
			continue
		case bool:
			v = strconv.FormatBool(t)
		case int64:
			v = strconv.FormatInt(t, 10)
		case string:
			v = t
		default:
			*errs = append(*errs, fmt.Errorf("%q: %w: want a boolean, an integer or a string, not %T", key, ErrInvalidValue, t))
			continue
		}
		// A quoted "Domain.x.TLS" key and a [settings.Domain.x] table with TLS = ... name the same setting.
		if _, dup := out[key]; dup {
			*errs = append(*errs, fmt.Errorf("%q is given twice: %w", key, ErrInvalidValue))
			continue
		}
		out[key] = v
	}
}

func knownKeys() string {
	var ks []string
	for _, d := range Defs() {
		ks = append(ks, d.Key)
	}
	return strings.Join(ks, ", ")
}

// Snapshot is one generation's settings.
type Snapshot struct {
	Generation int               `json:"generation"`
	Values     map[string]string `json:"values"`
}

// Bool returns a boolean setting (its default when unset).
func (s Snapshot) Bool(key string) bool {
	v, _ := strconv.ParseBool(s.Get(key))
	return v
}

// Int returns an integer setting.
func (s Snapshot) Int(key string) int {
	n, _ := strconv.Atoi(s.Get(key))
	return n
}

// Get returns a setting's value, or its default.
func (s Snapshot) Get(key string) string {
	if v, ok := s.Values[key]; ok {
		return v
	}
	d, _ := defFor(key)
	return d.Default
}

// MTASTSEnabled is Sender.EnableMTASTS.
func (s Snapshot) MTASTSEnabled() bool { return s.Bool(KeyEnableMTASTS) }

// DANEEnabled is Sender.EnableDANE.
func (s Snapshot) DANEEnabled() bool { return s.Bool(KeyEnableDANE) }

// TLSRequiredNoRelaxesRules is Sender.TLSRequiredNoRelaxesRules.
func (s Snapshot) TLSRequiredNoRelaxesRules() bool { return s.Bool(KeyTLSRequiredNoRelaxesRules) }

// TLSRPTEnabled is Controller.EnableTLSRPT.
func (s Snapshot) TLSRPTEnabled() bool { return s.Bool(KeyEnableTLSRPT) }

// DomainRules returns the per-domain TLS rules: A-label domain → rule. A stored value that does not parse is
// an error naming its key (values are validated when staged, so this means a damaged store), never a rule
// silently dropped.
func (s Snapshot) DomainRules() (map[string]tlspolicy.Rule, error) {
	out := map[string]tlspolicy.Rule{}
	var errs []error
	for k, v := range s.Values {
		if strings.HasPrefix(k, DomainPrefix) && strings.HasSuffix(k, domainSuffix) {
			r, err := tlspolicy.ParseRule(v)
			if err != nil {
				errs = append(errs, fmt.Errorf("settings generation %d: %s: %w", s.Generation, k, err))
				continue
			}
			out[strings.TrimSuffix(strings.TrimPrefix(k, DomainPrefix), domainSuffix)] = r
		}
	}
	return out, errors.Join(errs...)
}

// Change is one staged change.
type Change struct {
	Key string `json:"key"`
	// Old is the committed value ("" with OldSet false when unset); New likewise.
	Old    string `json:"old"`
	OldSet bool   `json:"old_set"`
	New    string `json:"new"`
	NewSet bool   `json:"new_set"`
}

// Generation is one committed generation.
type Generation struct {
	Number    int       `json:"generation"`
	Committed time.Time `json:"committed"`
	Note      string    `json:"note"`
	Author    string    `json:"author"`
	// RollbackOf is the generation this one restored, 0 otherwise.
	RollbackOf int               `json:"rollback_of,omitempty"`
	Values     map[string]string `json:"values"`
}

// Store is the settings store of one node: the committed snapshot in force on it, over the Storage that
// keeps the generations (the node's own SQLite database, or the PostgreSQL database its cluster shares).
type Store struct {
	st  Storage
	now func() time.Time

	// commitMu serialises Commit and Rollback on this node, from reading the staged changes to running the
	// watchers, so that two commits never interleave their checks or put generations in force out of order.
	// The storage's transaction does the same across nodes.
	commitMu sync.Mutex
	notifyMu sync.Mutex
	mu       sync.Mutex
	current  Snapshot
	watchers []func(Snapshot)
	checks   []Check

	// replica, when set (OpenShared), is the node's local copy of the generation in force; replicaErr, the
	// last failure to write it, is guarded by mu, so that a watcher may read it.
	replica    *Replica
	replicaErr error
}

// AddCheck registers a component's validation. Staging a value the check refuses is refused; a commit or
// rollback to a generation it refuses is refused, unless the generation in force is refused for the same
// reason already (a key file removed from disk must not block an unrelated change; the component's state
// shows the failure).
func (s *Store) AddCheck(c Check) {
	s.mu.Lock()
	s.checks = append(s.checks, c)
	s.mu.Unlock()
}

func (s *Store) checkList() []Check {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Check(nil), s.checks...)
}

// staged returns the values the staged changes would commit.
func (s *Store) staged(ctx context.Context) (map[string]string, error) {
	changes, err := s.Diff(ctx)
	if err != nil {
		return nil, err
	}
	vals := maps.Clone(s.Current().Values)
	for _, c := range changes {
		if c.NewSet {
			vals[c.Key] = c.New
		} else {
			delete(vals, c.Key)
		}
	}
	return vals, nil
}

// checkStaging runs the checks on the generation vals would make, and refuses the values of the changed
// keys that a component refuses. Keys not changed are left to the commit (see AddCheck).
func (s *Store) checkStaging(vals map[string]string, changed ...string) error {
	var errs []error
	for _, c := range s.checkList() {
		for _, ke := range keyErrors(c.Check(Snapshot{Values: vals})) {
			if slices.Contains(changed, ke.Key) {
				errs = append(errs, fmt.Errorf("%s: %w: %s refuses it: %w", ke.Key, ErrInvalidValue, c.Component, ke.Err))
			}
		}
	}
	return errors.Join(errs...)
}

// checkCommit runs the checks on the generation vals would make.
func (s *Store) checkCommit(vals map[string]string) error {
	cur := s.Current()
	var errs []error
	for _, c := range s.checkList() {
		err := c.Check(Snapshot{Values: vals})
		if err == nil {
			continue
		}
		if old := c.Check(cur); old != nil && old.Error() == err.Error() {
			continue
		}
		errs = append(errs, fmt.Errorf("%w by %s: %w", ErrRefused, c.Component, err))
	}
	return errors.Join(errs...)
}

// Open opens the settings in a node's embedded SQLite database; see OpenStorage.
func Open(ctx context.Context, db *store.DB, seed map[string]string, now func() time.Time) (*Store, error) {
	return OpenStorage(ctx, SQLiteStorage{DB: db}, seed, now)
}

// OpenStorage migrates st and opens the settings kept in it. When no generation exists yet, generation 1 is
// created from seed (the bootstrap file's [settings] and [[domain]] tables), validated like any change; in a
// cluster, the first node to start seeds and the others take its generation.
func OpenStorage(ctx context.Context, st Storage, seed map[string]string, now func() time.Time) (*Store, error) {
	if now == nil {
		now = time.Now
	}
	if err := st.Migrate(ctx); err != nil {
		return nil, err
	}
	s := &Store{st: st, now: now}
	latest, err := st.Latest(ctx)
	if err != nil {
		return nil, err
	}
	if latest.Number == 0 {
		vals := map[string]string{}
		var errs []error
		for k, v := range seed {
			ck, cv, err := Canonical(k, v)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			vals[ck] = cv
		}
		if err := errors.Join(errs...); err != nil {
			return nil, fmt.Errorf("settings seed: %w", err)
		}
		_, err := st.Commit(ctx, func(latest Generation, _ []Staged) (Generation, error) {
			if latest.Number != 0 {
				return Generation{}, errSeeded
			}
			return Generation{Committed: now(), Note: "initial settings from the bootstrap configuration", Author: "mxgate", Values: vals}, nil
		})
		if err != nil && !errors.Is(err, errSeeded) {
			return nil, err
		}
		if latest, err = st.Latest(ctx); err != nil {
			return nil, err
		}
	}
	s.current = latest.Snapshot()
	return s, nil
}

// Snapshot returns g's settings as a Snapshot.
func (g Generation) Snapshot() Snapshot {
	return Snapshot{Generation: g.Number, Values: g.Values}
}

// Current returns the committed settings in force.
func (s *Store) Current() Snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.current
}

// Watch calls f with every newly committed snapshot (after Commit or Rollback returns it, or when Reload finds
// a generation committed elsewhere).
func (s *Store) Watch(f func(Snapshot)) {
	s.mu.Lock()
	s.watchers = append(s.watchers, f)
	s.mu.Unlock()
}

// Reload reads the newest generation from the storage and, when it is not the one in force, puts it in force
// and tells the watchers. In a cluster this is how a commit made on another node takes effect on this one.
// It returns the snapshot in force.
func (s *Store) Reload(ctx context.Context) (Snapshot, error) {
	latest, err := s.st.Latest(ctx)
	if err != nil {
		return s.Current(), err
	}
	return s.adopt(latest.Snapshot()), nil
}

// Newest returns the number of the newest generation in the storage, which in a cluster may be one this
// node has not put in force yet.
func (s *Store) Newest(ctx context.Context) (int, error) {
	g, err := s.st.Latest(ctx)
	return g.Number, err
}

// adopt puts snap in force and tells the watchers, unless a generation at least as new is in force already
// (a local commit and a notification of it may race).
func (s *Store) adopt(snap Snapshot) Snapshot {
	// notifyMu is held while the watchers run, so that they see generations in order even when Reload and
	// Commit race; mu is not, so that a watcher may call Current.
	s.notifyMu.Lock()
	defer s.notifyMu.Unlock()
	s.mu.Lock()
	if snap.Generation <= s.current.Generation {
		cur := s.current
		s.mu.Unlock()
		return cur
	}
	s.current = snap
	watchers := append([]func(Snapshot){}, s.watchers...)
	s.mu.Unlock()
	if s.replica != nil {
		// The generation is in force whether or not its copy could be written: the copy only matters for a
		// start without the database, and the next generation rewrites it.
		err := s.replica.Save(snap)
		s.mu.Lock()
		s.replicaErr = err
		s.mu.Unlock()
	}
	for _, w := range watchers {
		w(snap)
	}
	return snap
}

// ReplicaError returns the last failure to write the local copy of the generation in force (OpenShared),
// nil when the copy is current. The watchers run after the copy is written, and may call it.
func (s *Store) ReplicaError() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.replicaErr
}

// Set stages key = value.
func (s *Store) Set(ctx context.Context, key, value string) error {
	ck, cv, err := Canonical(key, value)
	if err != nil {
		return err
	}
	vals, err := s.staged(ctx)
	if err != nil {
		return err
	}
	vals[ck] = cv
	if err := s.checkStaging(vals, ck); err != nil {
		return err
	}
	return s.st.Stage(ctx, Staged{Key: ck, Value: cv})
}

// Unset stages the removal of key (back to its default).
func (s *Store) Unset(ctx context.Context, key string) error {
	def, ok := defFor(key)
	if !ok {
		return fmt.Errorf("%w %q", ErrUnknownKey, key)
	}
	ck := def.Key
	if def.Kind == TLSLevel {
		var err error
		if ck, _, err = Canonical(key, "none"); err != nil {
			return err
		}
	}
	vals, err := s.staged(ctx)
	if err != nil {
		return err
	}
	delete(vals, ck)
	if err := s.checkStaging(vals, ck); err != nil {
		return err
	}
	return s.st.Stage(ctx, Staged{Key: ck, Unset: true})
}

// Apply stages a whole settings document: every key in vals is set, and every committed key not in vals is
// unset. All errors are reported together and nothing is staged when any value is invalid.
func (s *Store) Apply(ctx context.Context, vals map[string]string) error {
	canon := map[string]string{}
	var errs []error
	for k, v := range vals {
		ck, cv, err := Canonical(k, v)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		canon[ck] = cv
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	// The document replaces what is staged: it is the whole generation to check.
	var changed []string
	for k, v := range canon {
		if old, ok := s.Current().Values[k]; !ok || old != v {
			changed = append(changed, k)
		}
	}
	for k := range s.Current().Values {
		if _, ok := canon[k]; !ok {
			changed = append(changed, k)
		}
	}
	if err := s.checkStaging(canon, changed...); err != nil {
		return err
	}
	cur := s.Current()
	var changes []Staged
	for k, v := range canon {
		if old, ok := cur.Values[k]; ok && old == v {
			continue
		}
		changes = append(changes, Staged{Key: k, Value: v})
	}
	for k := range cur.Values {
		if _, ok := canon[k]; !ok {
			changes = append(changes, Staged{Key: k, Unset: true})
		}
	}
	return s.st.ReplaceStaged(ctx, changes)
}

// Diff returns the staged changes against the committed settings, sorted by key; changes that would not
// change anything are left out.
func (s *Store) Diff(ctx context.Context) ([]Change, error) {
	staged, err := s.st.Staged(ctx)
	if err != nil {
		return nil, err
	}
	return diff(s.Current().Values, staged), nil
}

// diff returns the changes staged makes to committed, sorted by key, leaving out those that change nothing.
func diff(committed map[string]string, staged []Staged) []Change {
	var out []Change
	for _, st := range staged {
		c := Change{Key: st.Key, New: st.Value, NewSet: !st.Unset}
		if st.Unset {
			c.New = ""
		}
		c.Old, c.OldSet = committed[c.Key]
		if c.OldSet == c.NewSet && c.Old == c.New {
			continue
		}
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}

// Discard drops the staged changes. A change staged while it runs may be kept.
func (s *Store) Discard(ctx context.Context) error {
	staged, err := s.st.Staged(ctx)
	if err != nil {
		return err
	}
	return s.st.DiscardStaged(ctx, staged)
}

// Commit makes the staged changes a new generation, in force at once. It returns ErrNoChanges when nothing
// would change. The changes apply to the newest committed generation, read in the commit's transaction, so
// that a commit made meanwhile on another node of a cluster is kept, not overwritten.
func (s *Store) Commit(ctx context.Context, note, author string) (Snapshot, error) {
	s.commitMu.Lock()
	defer s.commitMu.Unlock()
	g, err := s.st.Commit(ctx, func(latest Generation, staged []Staged) (Generation, error) {
		changes := diff(latest.Values, staged)
		if len(changes) == 0 {
			return Generation{}, ErrNoChanges
		}
		vals := make(map[string]string, len(latest.Values))
		maps.Copy(vals, latest.Values)
		for _, c := range changes {
			if c.NewSet {
				vals[c.Key] = c.New
			} else {
				delete(vals, c.Key)
			}
		}
		if err := s.checkCommit(vals); err != nil {
			return Generation{}, err
		}
		return Generation{Committed: s.now(), Note: note, Author: author, Values: vals}, nil
	})
	if err != nil {
		return Snapshot{}, err
	}
	return s.adopt(g.Snapshot()), nil
}

// History returns every generation, newest first.
func (s *Store) History(ctx context.Context) ([]Generation, error) {
	return s.st.History(ctx)
}

// StagedChanges says what a rollback does with changes staged but not committed.
type StagedChanges int

const (
	// RefuseStaged refuses the rollback while changes are staged (ErrStaged).
	RefuseStaged StagedChanges = iota
	// DiscardStaged drops the staged changes with the rollback.
	DiscardStaged
)

// RollbackResult is what a rollback did.
type RollbackResult struct {
	// Snapshot is the generation in force afterwards: a new one, or the one in force before when InForce.
	Snapshot
	// InForce is true when generation's settings were in force already: no generation was made.
	InForce bool
	// Discarded are the staged changes dropped (with DiscardStaged).
	Discarded []Change
}

// Rollback commits a new generation with the settings of generation gen. While changes are staged it
// refuses (ErrStaged) unless staged is DiscardStaged, so that a rollback never drops work silently. When the
// settings of gen are those in force it makes no generation (InForce).
func (s *Store) Rollback(ctx context.Context, gen int, note, author string, staged StagedChanges) (RollbackResult, error) {
	s.commitMu.Lock()
	defer s.commitMu.Unlock()
	hist, err := s.History(ctx)
	if err != nil {
		return RollbackResult{}, err
	}
	var target *Generation
	for i := range hist {
		if hist[i].Number == gen {
			target = &hist[i]
			break
		}
	}
	if target == nil {
		return RollbackResult{}, fmt.Errorf("%w %d", ErrNoGeneration, gen)
	}
	if note == "" {
		note = fmt.Sprintf("rollback to generation %d", gen)
	}
	// The staged changes are judged inside the commit's transaction, against the newest generation: a change
	// staged after a check made outside it would otherwise be dropped without being refused or listed.
	var (
		res      RollbackResult
		inForce  Generation
		dropping []Staged
	)
	g, err := s.st.Commit(ctx, func(latest Generation, st []Staged) (Generation, error) {
		changes := diff(latest.Values, st)
		if len(changes) > 0 && staged != DiscardStaged {
			keys := make([]string, 0, len(changes))
			for _, c := range changes {
				keys = append(keys, c.Key)
			}
			return Generation{}, fmt.Errorf("%w: %d (%s); commit or discard them first, or discard them with the rollback",
				ErrStaged, len(changes), strings.Join(keys, ", "))
		}
		if len(changes) > 0 {
			res.Discarded, dropping = changes, st
		}
		if maps.Equal(target.Values, latest.Values) {
			inForce = latest
			return Generation{}, errInForce
		}
		if err := s.checkCommit(target.Values); err != nil {
			return Generation{}, err
		}
		return Generation{Committed: s.now(), Note: note, Author: author, RollbackOf: gen, Values: target.Values}, nil
	})
	switch {
	case errors.Is(err, errInForce):
		// No generation is made; the staged changes read are dropped as asked (DiscardStaged).
		if len(dropping) > 0 {
			if err := s.st.DiscardStaged(ctx, dropping); err != nil {
				return RollbackResult{}, err
			}
		}
		res.Snapshot, res.InForce = s.adopt(inForce.Snapshot()), true
		return res, nil
	case err != nil:
		return RollbackResult{}, err
	}
	// The commit dropped the staged changes read in its transaction.
	res.Snapshot = s.adopt(g.Snapshot())
	return res, nil
}

// errInForce ends a rollback's transaction without a new generation: the settings asked for are in force.
var errInForce = errors.New("settings: generation in force")

// Entry is one setting as listed: committed value, default, staged change.
type Entry struct {
	Def
	Value  string  `json:"value"`
	IsSet  bool    `json:"set"`
	Staged *Change `json:"staged,omitempty"`
}

// List returns every known setting and every per-domain rule with its committed value and staged change.
func (s *Store) List(ctx context.Context) ([]Entry, error) {
	cur := s.Current()
	changes, err := s.Diff(ctx)
	if err != nil {
		return nil, err
	}
	staged := map[string]*Change{}
	for i := range changes {
		staged[changes[i].Key] = &changes[i]
	}
	keys := map[string]Def{}
	for _, d := range Defs() {
		keys[d.Key] = d
	}
	for k := range cur.Values {
		if d, ok := defFor(k); ok {
			keys[k] = d
		}
	}
	for k := range staged {
		if d, ok := defFor(k); ok {
			keys[k] = d
		}
	}
	var out []Entry
	for k, d := range keys {
		v, set := cur.Values[k]
		if !set {
			v = d.Default
		}
		out = append(out, Entry{Def: d, Value: v, IsSet: set, Staged: staged[k]})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, nil
}

func wrap(err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("settings: %w", err)
}
