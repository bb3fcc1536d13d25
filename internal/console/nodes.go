package console

import (
	"net/http"
	"strings"

	"github.com/mxgate/mxgate/internal/admin"
	"github.com/mxgate/mxgate/internal/nodes"
)

// TLSMix counts the recipients delivered in the last 24 hours by the protection of their session, for the
// node registry's heartbeat (the dashboard's TLS shares, as counts).
func (c *Console) TLSMix() nodes.TLSMix {
	st := c.timeline.stats(c.now())
	return nodes.TLSMix{Verified: st.Delivered[classVerified], Encrypted: st.Delivered[classUnverified], Plaintext: st.Delivered[classNone]}
}

type nodesData struct {
	List    admin.NodeList
	Err     string
	Flagged int
}

func (c *Console) nodesPage(w http.ResponseWriter, r *http.Request, s *session) {
	var d nodesData
	code := http.StatusOK
	if c.opts.Cluster == nil {
		d.Err, code = "The node registry is not available on this node.", http.StatusNotImplemented
	} else if l, err := c.opts.Cluster.Nodes(r.Context()); err != nil {
		c.log.Error("console: node registry", "err", err)
		d.Err, code = "Cannot read the node registry: "+err.Error(), http.StatusServiceUnavailable
	} else {
		d.List = l
		for _, n := range l.Nodes {
			if len(n.Flags) > 0 {
				d.Flagged++
			}
		}
	}
	c.render(w, r, s, code, "nodes", "Nodes", d)
}

// msgRef is how the queue pages name a message: its id on this node, "id@node" on another node (ids have
// no '@').
func msgRef(node, id string) string {
	if node == "" {
		return id
	}
	return id + "@" + node
}

// parseRef splits a message reference into node ("" for this node) and id.
func parseRef(ref string) (node, id string) {
	id, node, _ = strings.Cut(ref, "@")
	return node, id
}
