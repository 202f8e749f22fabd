package bus_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"lifeboat.dev/pkg/bus"
	"lifeboat.dev/pkg/bustest"
	"lifeboat.dev/pkg/testtool"
)

// TestNodeSeesRoutesMetaLeaderAndQuorum: each node of a three-node cluster
// names its routes and the one meta leader; with two nodes gone the third
// says it has no quorum, with how many peers it reaches; one back, it has.
func TestNodeSeesRoutesMetaLeaderAndQuorum(t *testing.T) {
	c := bustest.StartCluster(t)
	nodes := func() []bus.Node {
		var out []bus.Node
		for _, s := range c.Servers {
			if s == nil || !s.Running() {
				continue
			}
			n, ok := (&bus.Bus{Server: s}).Node()
			if !ok {
				t.Fatalf("%s: Node() says no embedded node", s.Name())
			}
			out = append(out, n)
		}
		return out
	}
	testtool.WaitFor(t, 30*time.Second, func() error {
		ns := nodes()
		for _, n := range ns {
			others := slices.DeleteFunc([]string{"n1", "n2", "n3"}, func(s string) bool { return s == n.Name })
			switch {
			case n.Cluster != "lifeboat-test":
				return fmt.Errorf("%s: cluster %q", n.Name, n.Cluster)
			case !slices.Equal(n.Routes, others):
				return fmt.Errorf("%s: routes %v, want %v", n.Name, n.Routes, others)
			case n.MetaLeader == "" || n.MetaLeader != ns[0].MetaLeader:
				return fmt.Errorf("%s: meta leader %q, %s's is %q", n.Name, n.MetaLeader, ns[0].Name, ns[0].MetaLeader)
			case n.MetaPeers != 3 || n.Reachable != 3:
				return fmt.Errorf("%s: %d of %d peers reachable, want 3 of 3", n.Name, n.Reachable, n.MetaPeers)
			case n.Quorum() != nil:
				return fmt.Errorf("%s: %v", n.Name, n.Quorum())
			}
		}
		return nil
	})

	c.Stop(1)
	c.Stop(2)
	want := "no JetStream quorum: 1 of 3 peers reachable (n1); a majority (2) must run"
	testtool.WaitFor(t, 30*time.Second, func() error {
		n := nodes()[0]
		if err := n.Quorum(); err == nil || err.Error() != want {
			return fmt.Errorf("n1 alone: Quorum() = %v, want %q", err, want)
		}
		return nil
	})
	c.Restart(1)
	testtool.WaitFor(t, 30*time.Second, func() error {
		for _, n := range nodes() {
			if err := n.Quorum(); err != nil {
				return fmt.Errorf("%s with n2 back: %v", n.Name, err)
			}
		}
		return nil
	})
}

// TestNodeSingleAndExternal: a single embedded node leads itself and is
// ready; a bus on an external server has no node and asks JetStream.
func TestNodeSingleAndExternal(t *testing.T) {
	ns, b := bustest.Embedded(t)
	n, ok := (&bus.Bus{Server: ns}).Node()
	if !ok || n.Name != ns.Name() || n.Cluster != "" || len(n.Routes) != 0 || n.MetaLeader != n.Name || !n.MetaCurrent || n.MetaPeers != 1 || n.Reachable != 1 {
		t.Fatalf("single node: %+v, %v", n, ok)
	}
	if err := n.Quorum(); err != nil {
		t.Fatalf("single node: %v", err)
	}
	// bustest.Connect dials ns as an external server.
	if _, ok := b.Node(); ok {
		t.Fatal("a bus on an external server claims an embedded node")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := b.JetStreamReady(ctx); err != nil {
		t.Fatalf("external, running: %v", err)
	}
	ns.Shutdown()
	ns.WaitForShutdown()
	ctx, cancel = context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := b.JetStreamReady(ctx); err == nil || !strings.Contains(err.Error(), "JetStream does not answer") {
		t.Fatalf("external, server gone: %v", err)
	}
}
