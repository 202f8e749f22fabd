package bus_test

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"lifeboat.dev/events"
	"lifeboat.dev/pkg/bus"
	"lifeboat.dev/pkg/bustest"
)

// clusterOptions are three embedded nodes' options, each naming all three
// route addresses as its peers (one list for every host).
func clusterOptions(t *testing.T, replicas int) []bus.Options {
	ports := bustest.FreePorts(t, 6)
	var routes []string
	for i := range 3 {
		routes = append(routes, fmt.Sprintf("127.0.0.1:%d", ports[3+i]))
	}
	dir := t.TempDir()
	var out []bus.Options
	for i := range 3 {
		o := bus.NewOptions()
		o.Listen = fmt.Sprintf("127.0.0.1:%d", ports[i])
		o.DataDir = filepath.Join(dir, fmt.Sprintf("h%d", i+1))
		o.ServerName = fmt.Sprintf("h%d", i+1)
		o.Cluster = bus.ClusterOptions{Name: "lifeboat-test", Listen: routes[i], Peers: routes}
		o.Replicas = replicas
		if replicas == 0 {
			o.Replicas = bus.DefaultReplicas(o)
		}
		out = append(out, o)
	}
	return out
}

// connectAll connects the nodes concurrently (hosts start in any order,
// and the first cannot provision its streams until a majority has joined).
func connectAll(t *testing.T, opts []bus.Options) []*bus.Bus {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	buses := make([]*bus.Bus, len(opts))
	errs := make([]error, len(opts))
	var wg sync.WaitGroup
	for i, o := range opts {
		wg.Go(func() { buses[i], errs[i] = bus.Connect(ctx, o) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("node %d: %v", i+1, err)
		}
	}
	t.Cleanup(func() {
		for _, b := range buses {
			b.Close()
		}
	})
	return buses
}

func TestEmbeddedNodesFormOneClusterWithThreeReplicas(t *testing.T) {
	opts := clusterOptions(t, 0)
	if r := opts[0].Replicas; r != 3 {
		t.Fatalf("default replicas of a three-node embedded cluster: %d, want 3", r)
	}
	buses := connectAll(t, opts)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, name := range []string{events.StreamEvents, events.StreamCommands, events.StreamDLQ} {
		s, err := buses[1].JS.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		info, err := s.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if info.Config.Replicas != 3 || info.Cluster == nil || len(info.Cluster.Replicas) != 2 {
			t.Fatalf("%s: replicas %d, cluster %+v; want 3 replicas", name, info.Config.Replicas, info.Cluster)
		}
	}
	// A message published on one node is read on another.
	if _, err := buses[0].JS.Publish(ctx, "lifeboat.event.host.down", []byte(`{"host":"h9"}`)); err != nil {
		t.Fatal(err)
	}
	s, err := buses[2].JS.Stream(ctx, events.StreamEvents)
	if err != nil {
		t.Fatal(err)
	}
	bustest.WaitFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		info, err := s.Info(ctx)
		if err != nil {
			return err
		}
		if info.State.Msgs != 1 {
			return fmt.Errorf("%d messages seen from node 3", info.State.Msgs)
		}
		return nil
	})
}

func TestProvisioningRaisesReplicasWhenTheClusterHasGrown(t *testing.T) {
	opts := clusterOptions(t, 1)
	buses := connectAll(t, opts)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// The same cluster, now configured for three replicas: provisioning
	// again (as a restarted host does) raises them.
	o := opts[0]
	o.Replicas = 3
	b, err := bus.Connect(ctx, bus.Options{URLs: []string{buses[1].ClientURL()}, Replicas: 3, DedupeWindow: o.DedupeWindow,
		EventsMaxAge: o.EventsMaxAge, DLQMaxAge: o.DLQMaxAge, ClientName: "test"})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	s, err := b.JS.Stream(ctx, events.StreamEvents)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Config.Replicas != 3 {
		t.Fatalf("replicas %d after provisioning with 3", info.Config.Replicas)
	}
}

func TestAClusterPortInUseNamesThePortAndTheFlag(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	o := clusterOptions(t, 1)[0]
	o.Cluster.Listen = l.Addr().String()
	_, err = bus.Connect(context.Background(), o)
	if err == nil || !strings.Contains(err.Error(), l.Addr().String()) || !strings.Contains(err.Error(), "--cluster-listen") {
		t.Fatalf("err %v, want the port and --cluster-listen named", err)
	}
}

func TestProvisioningWaitsForAMajorityAndSaysWhy(t *testing.T) {
	o := clusterOptions(t, 0)[0] // its two peers never start
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
	defer cancel()
	_, err := bus.Connect(ctx, o)
	if err == nil || !strings.Contains(err.Error(), "0 of 2 peers connected") || !strings.Contains(err.Error(), "--peers") {
		t.Fatalf("err %v, want it to say how many peers are connected and what to do", err)
	}
}
