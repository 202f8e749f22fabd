package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"lifeboat.dev/pkg/hosttest"
	"lifeboat.dev/pkg/presence"
	"lifeboat.dev/pkg/testtool"
)

// presenceOf reads host h's presence record for service through a live
// host's node.
func presenceOf(t *testing.T, via *hosttest.Host, host, service string) (presence.Record, error) {
	nc := via.Connect(t)
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return presence.Record{}, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	kv, err := js.KeyValue(ctx, presence.BucketName)
	if err != nil {
		return presence.Record{}, err
	}
	e, err := kv.Get(ctx, host+"."+service)
	if err != nil {
		return presence.Record{}, err
	}
	var r presence.Record
	return r, json.Unmarshal(e.Value(), &r)
}

// runRefused runs `lifeboat` with args and requires it to exit non-zero
// within the deadline; it returns what it printed.
func runRefused(t *testing.T, deadline time.Duration, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, hosttest.Binary(t), args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("lifeboat %s still ran after %s (want refused):\n%s", strings.Join(args, " "), deadline, out.String())
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("lifeboat %s: %v, want exit 1:\n%s", strings.Join(args, " "), err, out.String())
	}
	return out.String()
}

// TestPresenceRestartsAreNeverRefusedAndDuplicatesAlways: over 20 cycles
// of kill -9 and restart (rotating the host), the restarted host, from its
// own data directory, always reclaims its presence and becomes ready; a
// duplicate `lifeboat up` with the same --host (its own data directory and
// ports, the same --peers) started while the host is live always exits 1,
// before its NATS node starts, naming the live process's address and
// start time.
func TestPresenceRestartsAreNeverRefusedAndDuplicatesAlways(t *testing.T) {
	c := hosttest.Start(t, hosttest.Options{Hosts: 3})
	var routes []string
	for _, h := range c.Hosts {
		routes = append(routes, h.Route)
	}
	dupDir := t.TempDir()
	duplicate := func(t *testing.T, i, n int) {
		t.Helper()
		h := c.Hosts[i]
		via := c.Hosts[(i+1)%len(c.Hosts)]
		var rec presence.Record
		testtool.WaitFor(t, 10*time.Second, func() error {
			var err error
			rec, err = presenceOf(t, via, h.Name, "sync")
			return err
		})
		ports := testtool.FreePorts(t, 3)
		start := time.Now()
		out := runRefused(t, 30*time.Second, "up", "--host", h.Name, "--data", filepath.Join(dupDir, fmt.Sprint(n)),
			"--nats-listen", fmt.Sprintf("127.0.0.1:%d", ports[0]), "--http", fmt.Sprintf("127.0.0.1:%d", ports[1]),
			"--cluster-listen", fmt.Sprintf("127.0.0.1:%d", ports[2]), "--peers", strings.Join(routes, ","),
			"--log-level", "debug")
		for _, want := range []string{"another live process already runs", "as host " + h.Name, "http " + h.HTTP,
			"started " + rec.StartedAt.UTC().Format(time.RFC3339), fmt.Sprintf("pid %d", rec.PID), "another --host"} {
			if !strings.Contains(out, want) {
				t.Fatalf("duplicate of %s: the refusal lacks %q:\n%s", h.Name, want, out)
			}
		}
		// Refused by the probe, before its node (named like the live
		// one) started and joined the cluster.
		if strings.Contains(out, "Starting nats-server") {
			t.Fatalf("duplicate of %s started its NATS node before it was refused:\n%s", h.Name, out)
		}
		t.Logf("duplicate of %s refused in %s", h.Name, time.Since(start).Round(time.Millisecond))
	}
	duplicate(t, 0, 0)
	for cycle := range 20 {
		i := cycle % len(c.Hosts)
		h := c.Hosts[i]
		killed := time.Now()
		c.Kill(i)
		c.Restart(i) // fails the test if it exits (refused) before ready
		rec, err := presenceOf(t, h, h.Name, "sync")
		if err != nil {
			t.Fatalf("cycle %d: %s's presence: %v", cycle, h.Name, err)
		}
		if !rec.StartedAt.After(killed.Add(-time.Second)) {
			t.Fatalf("cycle %d: %s's presence names a process started %s, before the kill at %s", cycle, h.Name, rec.StartedAt, killed)
		}
		duplicate(t, i, cycle+1)
		t.Logf("cycle %d: %s killed, restarted and its duplicate refused in %s", cycle, h.Name, time.Since(killed).Round(time.Millisecond))
	}
	for _, h := range c.Hosts {
		if strings.Contains(h.Log(), "another live process") {
			t.Fatalf("%s was refused at some restart:\n%s", h.Name, h.Log())
		}
	}
}

// TestPresenceSecondProcessOnADataDirectoryIsRefused: the very command
// line of a running host, run again, is refused at once by the data
// directory's lock, naming the running process's pid and the directory.
func TestPresenceSecondProcessOnADataDirectoryIsRefused(t *testing.T) {
	c := hosttest.Start(t, hosttest.Options{Hosts: 1})
	h := c.Hosts[0]
	rec, err := presenceOf(t, h, h.Name, "sync")
	if err != nil {
		t.Fatal(err)
	}
	out := runRefused(t, 10*time.Second, "up", "--host", h.Name, "--data", h.Data,
		"--nats-listen", strings.TrimPrefix(h.NATS, "nats://"), "--http", h.HTTP)
	abs, _ := filepath.Abs(h.Data)
	for _, want := range []string{"data directory " + abs, fmt.Sprintf("pid %d", rec.PID), "--data"} {
		if !strings.Contains(out, want) {
			t.Fatalf("second process: the refusal lacks %q:\n%s", want, out)
		}
	}
	if !h.Running() {
		t.Fatalf("the running host exited:\n%s", h.Log())
	}
}
