package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestUpRefusesBadClusterConfig(t *testing.T) {
	cases := []struct {
		name, yaml, want string
	}{
		{"listen not host:port", "nats:\n  cluster:\n    listen: nowhere\n", `lifeboat.yaml:3: nats.cluster.listen: "nowhere" is not host:port`},
		{"peers without listen", "nats:\n  cluster:\n    peers: [127.0.0.1:6222]\n", "nats.cluster.listen: \"\" is not host:port"},
		{"bad peer", "nats:\n  cluster:\n    listen: 127.0.0.1:6222\n    peers: [127.0.0.1:6223, peer-b]\n", `nats.cluster.peers[1]: "peer-b" is not host:port`},
		{"both clusters", "nats:\n  urls: [nats://n1:4222]\n  cluster:\n    listen: 127.0.0.1:6222\n", "nats.cluster: an embedded cluster and an external one (nats.urls) exclude each other"},
		{"more replicas than nodes", "nats:\n  replicas: 3\n  cluster:\n    listen: 127.0.0.1:6222\n    peers: [127.0.0.1:6223]\n", "nats.replicas: 3 replicas need as many nodes: the embedded cluster declares 2"},
		{"host with a space", "host: hot 1\n", `host: "hot 1" is not a usable host name`},
		{"host with a dot", "host: hot.example.com\n", `host: "hot.example.com" is not a usable host name`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "lifeboat.yaml")
			if err := os.WriteFile(path, []byte(tc.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			code := run([]string{"up", "--config", path, "--data", t.TempDir()}, &out, &out)
			if code == 0 || !strings.Contains(out.String(), tc.want) {
				t.Fatalf("exit %d, output:\n%s\nwant it to contain %q", code, out.String(), tc.want)
			}
		})
	}
	// The flags say the same, as usage errors.
	var out bytes.Buffer
	if code := run([]string{"up", "--cluster-listen", "nowhere", "--data", t.TempDir()}, &out, &out); code != 2 || !strings.Contains(out.String(), "nats.cluster.listen") {
		t.Fatalf("exit %d:\n%s", code, out.String())
	}
}
