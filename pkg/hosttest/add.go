package hosttest

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	"lifeboat.dev/pkg/testtool"
)

// Add starts one more host, named name, with a fresh data directory and
// free ports, its --peers the route addresses of peers and its own (a
// replacement for a dead host: the remaining hosts and itself), and
// otherwise the command line the cluster's hosts have (its config, its
// Options.Args). It returns once the host is ready; it is stopped, its
// log shown and its state compared like the others'. A name a dead host
// had is allowed (a replacement under the same name). Not for a cluster
// started with Options.Auth: cluster.json names no key for a new host.
func (c *Cluster) Add(name string, peers ...*Host) *Host {
	c.t.Helper()
	if c.Auth != "" {
		c.t.Fatalf("hosttest: Add %s: a cluster with Options.Auth has no key for a new host", name)
	}
	if len(c.Hosts) == 0 || len(c.Hosts[0].args) == 0 {
		c.t.Fatalf("hosttest: Add %s: no host to copy the command line from", name)
	}
	for _, h := range c.Hosts {
		if h.Name == name && h.Running() {
			c.t.Fatalf("hosttest: Add %s: a host of that name runs", name)
		}
	}
	ports := testtool.FreePorts(c.t, 3)
	h := &Host{
		Name:  name,
		Data:  filepath.Join(c.t.TempDir(), name),
		NATS:  fmt.Sprintf("nats://127.0.0.1:%d", ports[0]),
		HTTP:  fmt.Sprintf("127.0.0.1:%d", ports[1]),
		Route: fmt.Sprintf("127.0.0.1:%d", ports[2]),
		CA:    c.Hosts[0].CA,
		log:   &testtool.LockedBuffer{},
	}
	var routes []string
	for _, p := range peers {
		routes = append(routes, p.Route)
	}
	routes = append(routes, h.Route)
	h.args = replaceArgs(c.Hosts[0].args, map[string]string{
		"--host":           h.Name,
		"--data":           h.Data,
		"--nats-listen":    strings.TrimPrefix(h.NATS, "nats://"),
		"--http":           h.HTTP,
		"--cluster-listen": h.Route,
		"--peers":          strings.Join(routes, ","),
	})
	c.Hosts = append(c.Hosts, h)
	i := len(c.Hosts) - 1
	c.start(i)
	c.WaitReady(i)
	return h
}

// replaceArgs returns args with the value of each flag in values
// replaced (flags given as "--flag value").
func replaceArgs(args []string, values map[string]string) []string {
	out := slices.Clone(args)
	for i := 0; i+1 < len(out); i++ {
		if v, ok := values[out[i]]; ok {
			out[i+1] = v
			i++
		}
	}
	return out
}
