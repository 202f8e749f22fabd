package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"lifeboat.dev/pkg/testtool"
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

// TestUpClusterRefusesBadNamesAndPeers: a cluster name NATS refuses and
// a peer that is no host:port stop `lifeboat up` at once, naming the
// value and the flag and config key that set it.
func TestUpClusterRefusesBadNamesAndPeers(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{
		{"name with a space", []string{"--cluster-name", "site a"}, []string{`cluster name "site a"`, "--cluster-name", "nats.cluster.name"}},
		{"peer port not a number", []string{"--peers", "127.0.0.1:6223,peer-b:abc"}, []string{`cluster peer "peer-b:abc"`, `"abc" is not a number`, "--peers", "nats.cluster.peers"}},
		{"peer port zero", []string{"--peers", "peer-b:0"}, []string{`cluster peer "peer-b:0"`, "--peers"}},
		{"peer without a host", []string{"--peers", ":6223"}, []string{`cluster peer ":6223"`, "--peers"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"up", "--data", t.TempDir(), "--nats-listen", testtool.FreeAddr(t), "--http", testtool.FreeAddr(t),
				"--host", "test-host", "--cluster-listen", testtool.FreeAddr(t), "--peers", "127.0.0.1:6223"}, tc.args...)
			var out bytes.Buffer
			start := time.Now()
			code := run(args, &out, &out)
			if code == 0 || time.Since(start) > 10*time.Second {
				t.Fatalf("exit %d after %s, want a failure at once:\n%s", code, time.Since(start), out.String())
			}
			for _, w := range tc.want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("output lacks %q:\n%s", w, out.String())
				}
			}
		})
	}
}

// TestUpClusterWaitsForPeersThatDoNotAnswerAndSaysWhich: `lifeboat up`
// whose peers are a closed port and a name that does not resolve keeps
// running, not ready, and logs each peer with why and what to do; stopped,
// it says which peers it was waiting for.
func TestUpClusterWaitsForPeersThatDoNotAnswerAndSaysWhich(t *testing.T) {
	closed := testtool.FreeAddr(t)
	const unresolved = "nosuchhost.invalid:6222"
	httpAddr := testtool.FreeAddr(t)
	args := []string{"up", "--data", t.TempDir(), "--nats-listen", testtool.FreeAddr(t), "--http", httpAddr, "--host", "test-host",
		"--cluster-listen", testtool.FreeAddr(t), "--peers", closed + "," + unresolved}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var logs testtool.LockedBuffer
	done := make(chan error, 1)
	go func() {
		root := newRootCmd()
		root.SetArgs(args)
		root.SetOut(&logs)
		root.SetErr(&logs)
		done <- root.ExecuteContext(ctx)
	}()
	testtool.WaitFor(t, 15*time.Second, func() error {
		out := logs.String()
		for _, w := range []string{
			"cluster peer " + closed + ": nothing listens on that address (connection refused); retrying",
			"--cluster-listen " + closed,
			"cluster peer " + unresolved + ": its host name does not resolve; retrying",
		} {
			if !strings.Contains(out, w) {
				return fmt.Errorf("log lacks %q:\n%s", w, out)
			}
		}
		return nil
	})
	select {
	case err := <-done:
		t.Fatalf("lifeboat up stopped while waiting for its peers: %v\n%s", err, logs.String())
	default:
	}
	resp, err := http.Get("http://" + httpAddr + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("/readyz while waiting for the peers: %d %s, want 503", resp.StatusCode, body)
	}
	cancel()
	select {
	case err := <-done:
		for _, w := range []string{"0 of 2 peers connected", closed + ": nothing listens", unresolved + ": its host name does not resolve"} {
			if err == nil || !strings.Contains(err.Error(), w) {
				t.Errorf("lifeboat up stopped with %v; want it to say %q", err, w)
			}
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("lifeboat up did not stop within 30 s:\n%s", logs.String())
	}
}
