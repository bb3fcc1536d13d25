package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"sync"

	"github.com/mxgate/mxgate/internal/config"
	"github.com/mxgate/mxgate/internal/daemon"
	"github.com/mxgate/mxgate/internal/simnet"
)

// clusterSpec says how to start the nodes of a cluster run.
type clusterSpec struct {
	// base is the configuration of every node (the single node's), to which each node adds its data
	// directory under dir, the database and its name.
	base     *config.Config
	dir      string
	nodes    int
	database string
	net      *simnet.Net
	log      *slog.Logger
}

// clusterGateway is several gateways in this process, one PostgreSQL database between them: the clients
// are spread over their SMTP listeners, and the counters are the sums (CPU and memory are the process's,
// which holds them all).
type clusterGateway struct {
	nodes []*localGateway
	ev    *events
}

func startCluster(ctx context.Context, s clusterSpec) (*clusterGateway, error) {
	c := &clusterGateway{ev: &events{}}
	for i := range s.nodes {
		c0 := *s.base
		cfg := &c0
		cfg.Data.Dir = filepath.Join(s.dir, fmt.Sprintf("node%d", i+1))
		cfg.Data.Database, cfg.Node = s.database, fmt.Sprintf("bench%d", i+1)
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, errors.Join(err, c.close())
		}
		aln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			ln.Close()
			return nil, errors.Join(err, c.close())
		}
		g, err := runLocal(ctx, ln, c.ev, daemon.Options{Config: cfg, Logger: s.log.With("node", cfg.Node),
			Roots: s.net.RootPool(), AdminListener: aln})
		if err != nil {
			ln.Close()
			aln.Close()
			return nil, errors.Join(fmt.Errorf("bench: node %s: %w", cfg.Node, err), c.close())
		}
		c.nodes = append(c.nodes, g)
	}
	return c, nil
}

func (c *clusterGateway) addr() string { return c.nodes[0].addr() }

func (c *clusterGateway) stats(context.Context) (gatewayStats, error) {
	ru := rusage()
	s := gatewayStats{UserSeconds: ru.user, SysSeconds: ru.sys, PeakRSSMB: peakRSSMB()}
	for _, g := range c.nodes {
		s.Commits += g.d.Queue.Commits()
		s.SessionsOffered += g.sessions.hits.Load()
		s.SessionsStored += g.sessions.puts.Load()
	}
	c.ev.snapshot(&s)
	return s, nil
}

func (c *clusterGateway) waitDelivered(ctx context.Context, n int) (gatewayStats, error) {
	if err := c.ev.wait(ctx, n); err != nil {
		s, _ := c.stats(ctx)
		return s, err
	}
	return c.stats(ctx)
}

func (c *clusterGateway) close() error {
	errs := make([]error, len(c.nodes))
	var wg sync.WaitGroup
	for i, g := range c.nodes {
		wg.Go(func() { errs[i] = g.close() })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// addrFor is the SMTP address client c submits to: on a cluster, node c mod nodes.
func addrFor(gw gateway, c int) string {
	if cg, ok := gw.(*clusterGateway); ok {
		return cg.nodes[c%len(cg.nodes)].addr()
	}
	return gw.addr()
}
