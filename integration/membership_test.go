package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"lifeboat.dev/pkg/hosttest"
	"lifeboat.dev/pkg/testtool"
)

// removeDoc is the part of `lifeboat cluster remove --json` these tests
// read.
type removeDoc struct {
	Peer        string   `json:"peer"`
	SignsOfLife []string `json:"signs_of_life"`
	Refused     bool     `json:"refused"`
	Asked       string   `json:"asked"`
	Result      *struct {
		Meta      string   `json:"meta"`
		MetaPeers []string `json:"meta_peers"`
		Streams   []struct {
			Stream   string   `json:"stream"`
			Replicas int      `json:"replicas"`
			Peers    []string `json:"peers"`
			Added    []string `json:"added"`
			Result   string   `json:"result"`
		} `json:"streams"`
	} `json:"result"`
	Next  []string `json:"next"`
	Error string   `json:"error"`
}

// runRemove runs `lifeboat cluster remove host --json` against h's node.
func runRemove(t *testing.T, h *hosttest.Host, host string, args ...string) (removeDoc, string, error) {
	t.Helper()
	var out, stderr bytes.Buffer
	cmd := exec.Command(hosttest.Binary(t), append([]string{"cluster", "remove", host, "--json", "--nats", h.NATS, "--timeout", "3s"}, args...)...)
	cmd.Stdout, cmd.Stderr = &out, &stderr
	err := cmd.Run()
	var doc removeDoc
	if jerr := json.Unmarshal(out.Bytes(), &doc); jerr != nil {
		t.Fatalf("lifeboat cluster remove --json printed no JSON (%v; exit %v):\n%s\n%s", jerr, err, out.String(), stderr.String())
	}
	return doc, stderr.String(), err
}

// replicationDoc is the part of `lifeboat status --json` about the
// streams' replication.
type replicationDoc struct {
	Streams []struct {
		Name        string `json:"name"`
		Replicas    int    `json:"replicas"`
		Healthy     *int   `json:"healthy_replicas"`
		Replication string `json:"replication"`
		Advice      string `json:"advice"`
	} `json:"streams"`
	Advice   []string `json:"advice"`
	Problems []string `json:"problems"`
}

// fullyReplicated says why the streams (the buckets' included), as h's
// node lists them, are not each at 3 current replicas on exactly the
// nodes want, or nil when they are.
func fullyReplicated(t *testing.T, h *hosttest.Host, want []string) error {
	nc := h.Connect(t)
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	l := js.ListStreams(ctx)
	n := 0
	for info := range l.Info() {
		n++
		ci := info.Cluster
		if info.Config.Replicas != 3 || ci == nil || ci.Leader == "" {
			return fmt.Errorf("%s: %d replicas configured, cluster %+v", info.Config.Name, info.Config.Replicas, ci)
		}
		nodes := []string{ci.Leader}
		for _, r := range ci.Replicas {
			if !r.Current || r.Offline || r.Pending {
				return fmt.Errorf("%s: replica %s not current yet (lag %d, offline %v, pending %v)", info.Config.Name, r.Name, r.Lag, r.Offline, r.Pending)
			}
			nodes = append(nodes, r.Name)
		}
		slices.Sort(nodes)
		if !slices.Equal(nodes, want) {
			return fmt.Errorf("%s: on %v, want %v", info.Config.Name, nodes, want)
		}
	}
	if err := l.Err(); err != nil {
		return err
	}
	if n == 0 {
		return errors.New("no streams listed")
	}
	return nil
}

// TestMembership: `lifeboat cluster remove` refuses a live host; once
// that host is killed it removes its node, every stream keeping 2 of its
// 3 replicas, which status shows with the advice to start a replacement;
// a replacement host (a new name, a fresh data directory, the remaining
// peers and itself in --peers) joins, every stream regains 3 current
// replicas on it, and the hosts agree.
func TestMembership(t *testing.T) {
	start := time.Now()
	c := hosttest.Start(t, hosttest.Options{Hosts: 3, Config: "heartbeat_interval: 1s\nleases:\n  leader_ttl: 10s\n"})
	h1, h2 := c.Hosts[0], c.Hosts[1]
	t.Logf("3 hosts ready after %s", time.Since(start).Round(time.Millisecond))

	// A live host is refused, naming why, and nothing changes.
	doc, stderr, err := runRemove(t, h1, "h3")
	if err == nil || !doc.Refused || doc.Result != nil || !slices.ContainsFunc(doc.SignsOfLife, func(s string) bool { return strings.Contains(s, "lifeboat process answers") }) ||
		!strings.Contains(stderr, "refusing to remove h3: it looks alive") {
		t.Fatalf("remove of a live host: exit %v, %+v\n%s", err, doc, stderr)
	}
	if err := fullyReplicated(t, h1, []string{"h1", "h2", "h3"}); err != nil {
		t.Fatalf("after a refused remove: %v", err)
	}

	// kill -9 h3; it is removed once its signs of life are gone (its
	// heartbeats, every second here, older than three intervals).
	c.Kill(2)
	killed := time.Now()
	testtool.WaitFor(t, 30*time.Second, func() error {
		doc, stderr, err = runRemove(t, h1, "h3")
		if err != nil && doc.Refused {
			return fmt.Errorf("still refused: %s", doc.Error)
		}
		return nil
	})
	if err != nil || doc.Result == nil {
		t.Fatalf("remove of dead h3: exit %v, %+v\n%s", err, doc, stderr)
	}
	t.Logf("h3 removed %s after its kill, by %s: meta %s, %d streams, next %q", time.Since(killed).Round(time.Millisecond), doc.Asked, doc.Result.Meta, len(doc.Result.Streams), doc.Next)
	if doc.Result.Meta != "removed" || !slices.Equal(doc.Result.MetaPeers, []string{"h1", "h2"}) || len(doc.Result.Streams) == 0 {
		t.Fatalf("remove: %+v", doc.Result)
	}
	for _, s := range doc.Result.Streams {
		if s.Result != "fewer replicas" || !slices.Equal(s.Peers, []string{"h1", "h2"}) {
			t.Errorf("stream %s after the remove: %+v, want fewer replicas on h1, h2", s.Stream, s)
		}
	}
	if !slices.ContainsFunc(doc.Next, func(s string) bool { return strings.Contains(s, "start a replacement host") }) {
		t.Errorf("next steps lack the replacement host: %q", doc.Next)
	}

	// Status shows every stream short of a replica and what to do.
	var st replicationDoc
	out, err := exec.Command(hosttest.Binary(t), "status", "--json", "--nats", h1.NATS, "--timeout", "3s").Output()
	if jerr := json.Unmarshal(out, &st); jerr != nil {
		t.Fatalf("status --json: %v (exit %v)\n%s", jerr, err, out)
	}
	if err == nil {
		t.Errorf("status exits 0 with streams short of a replica; problems %q", st.Problems)
	}
	for _, s := range st.Streams {
		if s.Healthy == nil || *s.Healthy != 2 || !strings.HasPrefix(s.Replication, "2 of 3 replicas") || !strings.Contains(s.Advice, "replacement host") {
			t.Errorf("status of %s: healthy %v, %q, advice %q", s.Name, s.Healthy, s.Replication, s.Advice)
		}
	}
	if !slices.ContainsFunc(st.Advice, func(a string) bool { return strings.Contains(a, "start a replacement host (`lifeboat up --host NEW") }) ||
		!slices.ContainsFunc(st.Problems, func(p string) bool { return strings.Contains(p, "2 of 3 replicas") }) {
		t.Errorf("status advice %q, problems %q", st.Advice, st.Problems)
	}

	// Removing it again: nothing to remove.
	if doc, stderr, err := runRemove(t, h2, "h3"); err == nil || !strings.Contains(stderr, "nothing to remove") {
		t.Errorf("second remove: exit %v, %+v\n%s", err, doc, stderr)
	}

	// A replacement: a new name, a fresh data directory, the remaining
	// peers and itself.
	joined := time.Now()
	c.Add("h4", h1, h2)
	t.Logf("h4 ready %s after it started", time.Since(joined).Round(time.Millisecond))
	testtool.WaitFor(t, 60*time.Second, func() error { return fullyReplicated(t, h1, []string{"h1", "h2", "h4"}) })
	t.Logf("every stream at 3 current replicas %s after h4 started", time.Since(joined).Round(time.Millisecond))
	c.Converged(60 * time.Second)
	t.Logf("converged %s after h4 started; %s in all", time.Since(joined).Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
}
