package presence_test

import (
	"bufio"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"lifeboat.dev/pkg/bustest"
	"lifeboat.dev/pkg/presence"
	"lifeboat.dev/pkg/testtool"
)

// TestProbeAsksThePeersBeforeJoining: on a three-node cluster (nodes n1,
// n2, n3), the probe reads the route ports' INFO and the presence keys
// through a peer's client URL.
func TestProbeAsksThePeersBeforeJoining(t *testing.T) {
	c := bustest.StartCluster(t)
	var routes []string
	for _, o := range c.Opts {
		routes = append(routes, fmt.Sprintf("127.0.0.1:%d", o.Cluster.Port))
	}
	b := bustest.Connect(t, 3, c.URLs()...)
	o := presence.NewOptions()
	o.Replicas = 3
	p, err := presence.Open(ctxFor(t), b.JS, o)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	live := identityIn(t, dir, "h9", 41, "sync")
	live.Address = "127.0.0.1:9999"
	if _, err := p.Claim(ctxFor(t), live); err != nil {
		t.Fatal(err)
	}
	probe := func(host string, self string, n presence.Nonce, peers ...string) error {
		return presence.Probe(ctxFor(t), presence.ProbeOptions{Peers: peers, Self: self, Host: host, Services: []string{"sync", "restore"}, Nonce: n})
	}
	t.Run("another nonce is refused", func(t *testing.T) {
		err := probe("h9", "", identity(t, "h9", 99).Nonce, routes...)
		var te *presence.TakenError
		if !errors.As(err, &te) || te.Key != "h9.sync" || !strings.Contains(err.Error(), "127.0.0.1:9999") || !strings.Contains(err.Error(), "pid 41") {
			t.Fatalf("probe: %v, want refused naming pid 41 at 127.0.0.1:9999", err)
		}
	})
	t.Run("the same data directory goes on", func(t *testing.T) {
		if err := probe("h9", "", live.Nonce, routes...); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("a free host goes on", func(t *testing.T) {
		if err := probe("h8", "", identity(t, "h8", 1).Nonce, routes...); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("a node named like this host is another process", func(t *testing.T) {
		err := probe("n1", "", identity(t, "n1", 1).Nonce, routes...)
		var te *presence.TakenError
		if !errors.As(err, &te) || te.Node != routes[0] || !strings.Contains(err.Error(), routes[0]) {
			t.Fatalf("probe: %v, want refused naming %s", err, routes[0])
		}
	})
	t.Run("this node's own address is skipped", func(t *testing.T) {
		if err := probe("n1", routes[0], identity(t, "n1", 1).Nonce, routes...); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("no peer answers: go on", func(t *testing.T) {
		dead := testtool.FreeAddr(t)
		start := time.Now()
		if err := probe("h9", "", identity(t, "h9", 99).Nonce, dead); err != nil {
			t.Fatal(err)
		}
		if took := time.Since(start); took > 3*time.Second {
			t.Fatalf("took %s with nothing listening", took)
		}
	})
}

func TestParseInfo(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		ok       bool
	}{
		{"route", `INFO {"server_id":"X","server_name":"h1","connect_urls":["127.0.0.1:4222"]}` + "\r\n", true},
		{"no urls", `INFO {"server_name":"h1"}` + "\r\n", true},
		{"not nats", "HTTP/1.1 400 Bad Request\r\n", false},
		{"bad json", "INFO {\r\n", false},
		{"no line", `INFO {"server_name":"h1"}`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := presence.ParseInfo(bufio.NewReader(strings.NewReader(tc.in)))
			if (err == nil) != tc.ok {
				t.Fatalf("ParseInfo(%q): %v", tc.in, err)
			}
		})
	}
}

func FuzzParseInfo(f *testing.F) {
	f.Add(`INFO {"server_name":"h1","connect_urls":["127.0.0.1:4222"]}` + "\r\n")
	f.Add("PING\r\n")
	f.Fuzz(func(t *testing.T, in string) {
		_, _ = presence.ParseInfo(bufio.NewReader(strings.NewReader(in)))
	})
}
