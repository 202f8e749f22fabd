package integration

import (
	"context"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"lifeboat.dev/events"
	"lifeboat.dev/events/api"
	"lifeboat.dev/pkg/client"
	"lifeboat.dev/pkg/hosttest"
	"lifeboat.dev/pkg/testtool"
)

// call asks service's endpoint, with no request, and decodes the answer
// into reply, waiting at most timeout.
func call(t *testing.T, nc *nats.Conn, timeout time.Duration, service, endpoint string, reply any) error {
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	defer cancel()
	return client.Call(ctx, nc, service, endpoint, nil, reply)
}

// TestLifeboatUpHandlesOutsidePublishersAndStopsOnSIGTERM is the foundation's
// "done when" as an operator would check it, against the real binary: a
// plain `nats pub` of a HostDown is handled, a broken one is dead-lettered
// with a reason while lifeboat keeps running, and SIGTERM stops it cleanly.
func TestLifeboatUpHandlesOutsidePublishersAndStopsOnSIGTERM(t *testing.T) {
	bin := hosttest.Binary(t)
	listen := testtool.FreeAddr(t)
	data := t.TempDir()
	var logs testtool.LockedBuffer
	cmd := exec.Command(bin, "up", "--data", data, "--nats-listen", listen, "--http", testtool.FreeAddr(t), "--host", "it-host")
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
		}
	})
	var nc *nats.Conn
	testtool.WaitFor(t, 30*time.Second, func() (err error) {
		nc, err = nats.Connect("nats://" + listen)
		return err
	})
	defer nc.Close()
	testtool.WaitFor(t, 30*time.Second, func() error {
		return call(t, nc, time.Second, events.ServiceVolumeMonitor, api.Status, nil)
	})
	js, _ := jetstream.New(nc)
	names := js.StreamNames(context.Background())
	// The three streams of DESIGN §2; the rest are buckets' (KV_, OBJ_:
	// leases, snapshots).
	var streams []string
	for n := range names.Name() {
		if strings.HasPrefix(n, "LIFEBOAT_") {
			streams = append(streams, n)
		}
	}
	slices.Sort(streams)
	if want := []string{events.StreamCommands, events.StreamDLQ, events.StreamEvents}; !slices.Equal(streams, want) {
		t.Fatalf("streams %v, want %v", streams, want)
	}

	// Exactly what `nats pub` sends: a body and no headers.
	if err := nc.Publish("lifeboat.event.host.down", []byte(`{"host":"h1"}`)); err != nil {
		t.Fatal(err)
	}
	if err := nc.Publish("lifeboat.event.host.down", []byte(`not json`)); err != nil {
		t.Fatal(err)
	}
	testtool.WaitFor(t, 15*time.Second, func() error {
		var hosts []api.Host
		if err := call(t, nc, time.Second, events.ServiceVolumeMonitor, api.Hosts, &hosts); err != nil {
			return err
		}
		h1Down, selfSeen := false, false
		for _, h := range hosts {
			h1Down = h1Down || (h.Host == "h1" && h.State == "down")
			// lifeboat's own heartbeat, with the services it runs.
			selfSeen = selfSeen || (h.Host == "it-host" && h.LastSeen != nil && len(h.Services) == len(events.Services))
		}
		if !h1Down || !selfSeen {
			return fmt.Errorf("want h1 down and it-host heartbeating in %+v", hosts)
		}
		return nil
	})
	testtool.WaitFor(t, 15*time.Second, func() error {
		out, err := exec.Command(bin, "events", "dlq", "--nats", "nats://"+listen).CombinedOutput()
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		if !strings.Contains(string(out), "not JSON") || !strings.Contains(string(out), `"not json"`) {
			return fmt.Errorf("dlq shows:\n%s", out)
		}
		return nil
	})
	// Still running, still answering.
	if err := call(t, nc, 2*time.Second, events.ServiceVolumeMonitor, api.Status, nil); err != nil {
		t.Fatalf("lifeboat stopped answering after a bad message: %v\n%s", err, logs.String())
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("lifeboat up exited with %v after SIGTERM\n%s", err, logs.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("lifeboat up did not stop within 30s of SIGTERM\n%s", logs.String())
	}
	if !strings.Contains(logs.String(), "shutting down") {
		t.Errorf("no shutdown message in the log:\n%s", logs.String())
	}
}
