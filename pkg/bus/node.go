package bus

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/nats-io/nats-server/v2/server"
)

// Node is the embedded NATS node, and the JetStream meta group as that node
// sees it.
type Node struct {
	// Name is the node's server name; Cluster the NATS cluster's name
	// (empty for a single node).
	Name, Cluster string
	// Routes are the names of the nodes this one has routes to, sorted.
	Routes []string
	// MetaLeader is the node leading the JetStream meta group, empty while
	// there is none.
	MetaLeader string
	// MetaCurrent says whether this node leads the meta group or heard
	// from its leader lately.
	MetaCurrent bool
	// MetaPeers is how many nodes the meta group has (1 for a single
	// node); Reachable how many of them this node reaches, itself
	// included.
	MetaPeers, Reachable int
}

// Node returns the embedded node's view of itself and the cluster, and
// false when the bus is an external cluster (no embedded node).
func (b *Bus) Node() (Node, bool) {
	if b.Server == nil {
		return Node{}, false
	}
	s := b.Server
	n := Node{Name: s.Name(), MetaPeers: 1, Reachable: 1, MetaCurrent: s.JetStreamIsCurrent()}
	if s.JetStreamIsClustered() {
		n.Cluster = s.ClusterName()
	}
	if rz, err := s.Routez(nil); err == nil {
		for _, r := range rz.Routes {
			// Route pooling opens several routes to each node.
			if r.RemoteName != "" && !slices.Contains(n.Routes, r.RemoteName) {
				n.Routes = append(n.Routes, r.RemoteName)
			}
		}
		slices.Sort(n.Routes)
	}
	if !s.JetStreamIsClustered() {
		n.MetaLeader = n.Name
		return n, true
	}
	if jsz, err := s.Jsz(&server.JSzOptions{}); err == nil && jsz.Meta != nil {
		n.MetaLeader = jsz.Meta.Leader
		n.MetaPeers = max(jsz.Meta.Size, 1)
	}
	n.Reachable = min(1+len(n.Routes), n.MetaPeers)
	return n, true
}

// Quorum says why JetStream cannot work as the node sees it, or nil when it
// can: a majority of the meta group is reachable, the group has a leader,
// and this node follows it.
func (n Node) Quorum() error {
	majority := n.MetaPeers/2 + 1
	switch {
	case n.Reachable < majority:
		return fmt.Errorf("no JetStream quorum: %d of %d peers reachable (%s); a majority (%d) must run", n.Reachable, n.MetaPeers, strings.Join(append([]string{n.Name}, n.Routes...), ", "), majority)
	case n.MetaLeader == "":
		return fmt.Errorf("no JetStream meta leader yet: %d of %d peers reachable, electing one", n.Reachable, n.MetaPeers)
	case !n.MetaCurrent:
		return fmt.Errorf("JetStream meta group not current on %s (leader %s): catching up", n.Name, n.MetaLeader)
	}
	return nil
}

// JetStreamReady says why JetStream cannot take requests now, or nil when
// it can: for an embedded node, as Node.Quorum judges; for an external
// cluster, whether it answers an account info request before ctx ends.
func (b *Bus) JetStreamReady(ctx context.Context) error {
	if n, ok := b.Node(); ok {
		return n.Quorum()
	}
	if _, err := b.JS.AccountInfo(ctx); err != nil {
		return fmt.Errorf("JetStream does not answer: %w (a majority of the NATS cluster's nodes must run)", err)
	}
	return nil
}
