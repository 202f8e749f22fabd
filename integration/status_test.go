package integration

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"lifeboat.dev/events"
	"lifeboat.dev/events/api"
	"lifeboat.dev/pkg/client"
	"lifeboat.dev/pkg/hosttest"
	"lifeboat.dev/pkg/testtool"
)

// statusDoc is the part of `lifeboat status --json` these tests read.
type statusDoc struct {
	Nodes      []api.NodeInfo `json:"nodes"`
	MetaLeader string         `json:"meta_leader"`
	Streams    []streamDoc    `json:"streams"`
	Hosts      []struct {
		Host                string        `json:"host"`
		State               string        `json:"state"`
		HeartbeatAgeSeconds *float64      `json:"heartbeat_age_seconds"`
		ConfigHash          string        `json:"config_hash"`
		ConfigDiffers       []string      `json:"config_differs_from"`
		Info                *api.HostInfo `json:"info"`
	} `json:"hosts"`
	Services []struct {
		Service string `json:"service"`
		Hosts   []struct {
			Host   string             `json:"host"`
			Status *api.ServiceStatus `json:"status"`
		} `json:"hosts"`
	} `json:"services"`
	Problems []string `json:"problems"`
}

// streamDoc is one stream of statusDoc.
type streamDoc struct {
	Name     string `json:"name"`
	Replicas int    `json:"replicas"`
	Leader   string `json:"leader"`
	Peers    []struct {
		Name  string `json:"name"`
		State string `json:"state"`
	} `json:"peers"`
}

// runStatus runs `lifeboat status --json --hosts` against h's node and
// returns what it printed, how long it took and its exit error.
func runStatus(t *testing.T, h *hosttest.Host, timeout time.Duration) (statusDoc, time.Duration, error) {
	t.Helper()
	var out, stderr bytes.Buffer
	cmd := exec.Command(hosttest.Binary(t), "status", "--json", "--hosts", "--nats", h.NATS, "--timeout", timeout.String())
	cmd.Stdout, cmd.Stderr = &out, &stderr
	start := time.Now()
	err := cmd.Run()
	took := time.Since(start)
	var doc statusDoc
	if jerr := json.Unmarshal(out.Bytes(), &doc); jerr != nil {
		t.Fatalf("lifeboat status --json printed no JSON (%v; exit %v):\n%s\n%s", jerr, err, out.String(), stderr.String())
	}
	if err != nil {
		err = fmt.Errorf("%w: %s", err, strings.TrimSpace(stderr.String()))
	}
	return doc, took, err
}

// readyz answers host h's /readyz: its status code and body.
func readyz(h *hosttest.Host) (int, string, error) {
	client := &http.Client{Timeout: 3 * time.Second}
	resp, err := client.Get("http://" + h.HTTP + "/readyz")
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b)), nil
}

// TestStatusAndReadyzAcrossHosts, on one three-host cluster: `lifeboat
// status --json --hosts` lists every host with its node, routes and info,
// and LIFEBOAT_EVENTS with three current replicas; after kill -9 of a
// host, status still answers within its timeout and shows that host gone
// and its replicas behind; with a second host stopped the survivor's
// /readyz is 503 saying it has no JetStream quorum, and it is ready again
// once that host is back.
func TestStatusAndReadyzAcrossHosts(t *testing.T) {
	const config = "heartbeat_interval: 1s\n"
	c := hosttest.Start(t, hosttest.Options{Hosts: 3, Config: config})
	sum := sha256.Sum256([]byte(config))
	hash := hex.EncodeToString(sum[:])
	const timeout = 3 * time.Second

	t.Run("Status", func(t *testing.T) {
		testtool.WaitFor(t, 30*time.Second, func() error {
			doc, _, err := runStatus(t, c.Hosts[0], timeout)
			if err != nil {
				return fmt.Errorf("status: %v (problems %v)", err, doc.Problems)
			}
			if len(doc.Nodes) != 3 || doc.MetaLeader == "" {
				return fmt.Errorf("nodes %+v, meta leader %q; want 3 nodes and a leader", doc.Nodes, doc.MetaLeader)
			}
			for _, n := range doc.Nodes {
				others := slices.DeleteFunc([]string{"h1", "h2", "h3"}, func(s string) bool { return s == n.Name })
				if !slices.Equal(n.Routes, others) || n.MetaLeader != doc.MetaLeader || n.Reachable != 3 || n.MetaPeers != 3 {
					return fmt.Errorf("node %+v: want routes %v, meta leader %s, 3 of 3 reachable", n, others, doc.MetaLeader)
				}
			}
			i := slices.IndexFunc(doc.Streams, func(s streamDoc) bool { return s.Name == events.StreamEvents })
			if i < 0 {
				return fmt.Errorf("no %s among %+v", events.StreamEvents, doc.Streams)
			}
			ev := doc.Streams[i]
			var states []string
			current := 0
			for _, p := range ev.Peers {
				states = append(states, p.Name+" "+p.State)
				if p.State == "current" {
					current++
				}
			}
			if ev.Replicas != 3 || len(ev.Peers) != 3 || ev.Leader == "" || current != 2 {
				return fmt.Errorf("%s: %d replicas, %v; want 3, a leader and two current", events.StreamEvents, ev.Replicas, states)
			}
			if len(doc.Hosts) != 3 {
				return fmt.Errorf("hosts %+v, want h1, h2, h3", doc.Hosts)
			}
			for _, h := range doc.Hosts {
				switch {
				case h.State != "up" || h.Info == nil || h.Info.Node == nil:
					return fmt.Errorf("host %s: %s, info %+v", h.Host, h.State, h.Info)
				case h.HeartbeatAgeSeconds == nil || *h.HeartbeatAgeSeconds > 5:
					return fmt.Errorf("host %s: heartbeat age %v, want one within 5s", h.Host, h.HeartbeatAgeSeconds)
				case h.ConfigHash != hash || len(h.ConfigDiffers) > 0:
					return fmt.Errorf("host %s: config %s differs from %v; want %s", h.Host, h.ConfigHash, h.ConfigDiffers, hash)
				case len(h.Info.Services) != len(events.Services) || h.Info.DataFreeBytes == 0 || h.Info.DataDir == "":
					return fmt.Errorf("host %s: info %+v", h.Host, h.Info)
				}
			}
			for _, s := range doc.Services {
				for _, on := range s.Hosts {
					if on.Status == nil || on.Status.Host != on.Host {
						return fmt.Errorf("%s on %s: no status", s.Service, on.Host)
					}
				}
			}
			return nil
		})
	})

	t.Run("StatusAfterKill", func(t *testing.T) {
		nc := c.Hosts[0].Connect(t)
		// Status names a host that is gone from volume-monitor's table of
		// the hosts it has heard: wait until it has heard h3 (CI saw h3
		// killed while h1's volume-monitor was still starting its
		// consumer, and a host no volume-monitor heard before it died is
		// unknown to the control plane).
		testtool.WaitFor(t, 30*time.Second, func() error {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			var known []api.Host
			if err := client.Call(ctx, nc, events.ServiceVolumeMonitor, api.Hosts, nil, &known); err != nil {
				return err
			}
			if !slices.ContainsFunc(known, func(h api.Host) bool { return h.Host == "h3" }) {
				return fmt.Errorf("volume-monitor knows %+v, not yet h3", known)
			}
			return nil
		})
		c.Kill(2)
		// A message only the two survivors hold puts h3 behind.
		js, err := jetstream.New(nc)
		if err != nil {
			t.Fatal(err)
		}
		testtool.WaitFor(t, 30*time.Second, func() error {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			_, err := js.Publish(ctx, events.DLQSubject("status-test"), []byte("h3 misses this"))
			return err
		})
		testtool.WaitFor(t, 30*time.Second, func() error {
			doc, took, err := runStatus(t, c.Hosts[0], timeout)
			if took > 2*timeout+time.Second {
				t.Fatalf("status took %s with --timeout %s and a host gone", took, timeout)
			}
			if err == nil || !slices.ContainsFunc(doc.Problems, func(p string) bool { return strings.HasPrefix(p, "host h3 not answering") }) {
				return fmt.Errorf("status exit %v, problems %v; want h3 not answering", err, doc.Problems)
			}
			for _, h := range doc.Hosts {
				if gone := h.Host == "h3"; gone != (h.State != "up") || gone && h.HeartbeatAgeSeconds == nil {
					return fmt.Errorf("host %s: %s (heartbeat age %v)", h.Host, h.State, h.HeartbeatAgeSeconds)
				}
			}
			for _, s := range doc.Streams {
				if s.Name != events.StreamDLQ {
					continue
				}
				for _, p := range s.Peers {
					if p.Name == "h3" && (strings.HasPrefix(p.State, "lagging") || strings.HasPrefix(p.State, "offline") || p.State == "not current") {
						return nil
					}
				}
				return fmt.Errorf("%s peers %+v: want h3 lagging or offline", s.Name, s.Peers)
			}
			return errors.New("no " + events.StreamDLQ)
		})
	})

	t.Run("Readyz", func(t *testing.T) {
		if c.Hosts[2].Running() {
			c.Kill(2)
		}
		if err := c.Stop(1); err != nil {
			t.Logf("h2 stopped with %v", err)
		}
		want := "no JetStream quorum: 1 of 3 peers reachable (h1); a majority (2) must run"
		testtool.WaitFor(t, 30*time.Second, func() error {
			code, body, err := readyz(c.Hosts[0])
			if err != nil || code != http.StatusServiceUnavailable || !strings.Contains(body, want) {
				return fmt.Errorf("h1 alone: /readyz %d %q (%v), want 503 %q", code, body, err, want)
			}
			return nil
		})
		c.Restart(1)
		testtool.WaitFor(t, 30*time.Second, func() error {
			code, body, err := readyz(c.Hosts[0])
			if err != nil || code != http.StatusOK {
				return fmt.Errorf("h1 with h2 back: /readyz %d %q (%v), want 200", code, body, err)
			}
			return nil
		})
	})
}
