// Package bustest starts real NATS servers with JetStream for tests: one
// embedded server, or a three-node cluster in-process for fault tests. No
// mock of NATS is used anywhere.
package bustest

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"lifeboat.dev/pkg/bus"
	"lifeboat.dev/pkg/testtool"
)

// Server starts one embedded JetStream server on a random loopback port,
// stopped when the test ends.
func Server(t testing.TB) *server.Server {
	t.Helper()
	opts := bus.NewOptions()
	opts.Listen = "127.0.0.1:-1"
	opts.DataDir = t.TempDir()
	ns, err := bus.StartEmbedded(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	return ns
}

// Connect returns a Bus connected to urls with the streams provisioned.
func Connect(t testing.TB, replicas int, urls ...string) *bus.Bus {
	t.Helper()
	opts := bus.NewOptions()
	opts.URLs = urls
	opts.Replicas = replicas
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var b *bus.Bus
	var err error
	// A fresh cluster elects its meta leader shortly after start; stream
	// creation waits for it.
	testtool.WaitFor(t, 30*time.Second, func() error {
		b, err = bus.Connect(ctx, opts)
		return err
	})
	t.Cleanup(b.Close)
	return b
}

// Embedded starts a server and connects a Bus to it.
func Embedded(t testing.TB) (*server.Server, *bus.Bus) {
	t.Helper()
	ns := Server(t)
	return ns, Connect(t, 1, ns.ClientURL())
}

// Cluster is a three-node JetStream cluster in this process.
type Cluster struct {
	Servers []*server.Server
	Opts    []*server.Options
	t       testing.TB
}

// StartCluster starts three clustered JetStream servers on loopback.
func StartCluster(t testing.TB) *Cluster {
	t.Helper()
	c := &Cluster{t: t}
	ports := testtool.FreePorts(t, 3)
	var routes []string
	for _, p := range ports {
		routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", p))
	}
	dir := t.TempDir()
	for i := range 3 {
		o := &server.Options{
			ServerName: fmt.Sprintf("n%d", i+1),
			Host:       "127.0.0.1",
			Port:       -1,
			JetStream:  true,
			StoreDir:   filepath.Join(dir, fmt.Sprintf("n%d", i+1)),
			NoSigs:     true,
			NoLog:      true,
			Cluster: server.ClusterOpts{
				Name: "lifeboat-test",
				Host: "127.0.0.1",
				Port: ports[i],
			},
			Routes: server.RoutesFromStr(strings.Join(routes, ",")),
		}
		c.Opts = append(c.Opts, o)
		c.Servers = append(c.Servers, c.start(o))
	}
	t.Cleanup(func() {
		for _, s := range c.Servers {
			if s != nil {
				s.Shutdown()
				s.WaitForShutdown()
			}
		}
	})
	testtool.WaitFor(t, 30*time.Second, func() error {
		for _, s := range c.Servers {
			if !s.JetStreamIsCurrent() {
				return fmt.Errorf("%s: JetStream not current yet", s.Name())
			}
		}
		return nil
	})
	return c
}

func (c *Cluster) start(o *server.Options) *server.Server {
	s, err := server.NewServer(o)
	if err != nil {
		c.t.Fatal(err)
	}
	s.Start()
	if !s.ReadyForConnections(20 * time.Second) {
		c.t.Fatalf("server %s not ready", o.ServerName)
	}
	return s
}

// URLs are the client URLs of the running nodes.
func (c *Cluster) URLs() []string {
	var out []string
	for _, s := range c.Servers {
		if s != nil && s.Running() {
			out = append(out, s.ClientURL())
		}
	}
	return out
}

// Stop shuts node i down (a crash, as far as its peers can tell).
func (c *Cluster) Stop(i int) {
	c.Servers[i].Shutdown()
	c.Servers[i].WaitForShutdown()
}

// Restart starts node i again on its old store.
func (c *Cluster) Restart(i int) {
	o := c.Opts[i].Clone()
	o.Port = -1
	c.Servers[i] = c.start(o)
}

// WaitFor is testtool.WaitFor, the one poll-until helper, for the callers
// that still pass a poll interval: it is ignored, since the kit's interval
// starts at a millisecond and grows. New tests call testtool.WaitFor.
func WaitFor(t testing.TB, timeout, _ time.Duration, cond func() error) {
	t.Helper()
	testtool.WaitFor(t, timeout, cond)
}

// FreePorts is testtool.FreePorts. New tests call testtool.FreePorts.
func FreePorts(t testing.TB, n int) []int {
	t.Helper()
	return testtool.FreePorts(t, n)
}
