package daemon

import (
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/mxgate/mxgate/internal/admin"
)

// Component names, as shown by status, /healthz, the console and mxgate_component_up.
const (
	componentSMTP  = "smtp"
	componentQueue = "queue"
	// componentJournal is the queue's delivery journal (docs/flow.md), failed while its writes fail.
	componentJournal = "journal"
	// componentStorage is the room on the data volume (the queue's space.go): degraded while delivery
	// results cannot be recorded or intake refuses messages for want of room.
	componentStorage = "storage"
	componentTLSRPT  = "tlsrpt"
)

// components holds what each component is doing. A component never stops silently: whatever switches it
// off or fails it is recorded here with the reason, and logged where it happens.
type components struct {
	now func() time.Time

	mu sync.Mutex
	m  map[string]admin.Component
}

// set records a component's state; the time is kept while the state does not change.
func (c *components) set(name string, state admin.ComponentState, reason string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string]admin.Component{}
	}
	old, ok := c.m[name]
	if ok && old.State == state && old.Reason == reason {
		return
	}
	c.m[name] = admin.Component{Name: name, State: state, Reason: reason, Since: c.now().UTC()}
}

// list returns the components sorted by name.
func (c *components) list() []admin.Component {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]admin.Component, 0, len(c.m))
	for _, v := range c.m {
		out = append(out, v)
	}
	slices.SortFunc(out, func(a, b admin.Component) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// up reports, per component, whether it does what the settings ask (running, or off because a setting
// says so; not failed or degraded): the value of mxgate_component_up.
func (c *components) up() map[string]bool {
	out := map[string]bool{}
	for _, v := range c.list() {
		out[v.Name] = v.State != admin.ComponentFailed && v.State != admin.ComponentDegraded
	}
	return out
}

// Components returns the state of the gateway's components.
func (d *Daemon) Components() []admin.Component { return d.comps.list() }
