package service_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"testing"
	"time"

	"lifeboat.dev/events"
	"lifeboat.dev/pkg/bus"
	"lifeboat.dev/pkg/bustest"
)

// TestHelperProcess is the subprocess of the crash tests: it runs the test
// skeleton service against the parent's NATS server until killed (by a
// fault point, LIFEBOAT_FAULT) or until the parent ends it.
func TestHelperProcess(t *testing.T) {
	url := os.Getenv("LIFEBOAT_HELPER_NATS")
	if url == "" {
		t.Skip("crash-test subprocess only")
	}
	b := bustest.Connect(t, 1, url)
	ts := &testService{}
	runService(t, b, ts.spec(), os.Getenv("LIFEBOAT_HELPER_DATA"))
	time.Sleep(time.Hour) // until killed
}

// startHelper runs the skeleton service in a subprocess that SIGKILLs itself
// at fault point (none when empty) on its after-th hit.
func startHelper(t *testing.T, url, data, fault string, after int) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.timeout=2h")
	cmd.Env = append(os.Environ(),
		"LIFEBOAT_HELPER_NATS="+url,
		"LIFEBOAT_HELPER_DATA="+data,
		"LIFEBOAT_FAULT="+fault,
		fmt.Sprintf("LIFEBOAT_FAULT_AFTER=%d", after),
	)
	if testing.Verbose() {
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd
}

// TestCrashLosesNothingAndAppliesNothingTwice kills the service with SIGKILL
// between the commit of a batch and its acks, and between the outbox's
// PubAck and the removal of its rows, over and over; after a final clean run
// every event was applied exactly once and every emitted event is on the
// stream exactly once.
func TestCrashLosesNothingAndAppliesNothingTwice(t *testing.T) {
	for _, fault := range []string{"service.after-commit", "store.relay.after-puback"} {
		t.Run(fault, func(t *testing.T) {
			ns, b := bustest.Embedded(t)
			data := t.TempDir()
			const n = 40
			for i := range n {
				h := cloudHeader(fmt.Sprintf("ev-%d", i), "io.lifeboat.host.down.v1")
				publish(t, b.JS, "lifeboat.event.host.down", h, fmt.Sprintf(`{"host":"h%02d"}`, i))
			}
			// Crash repeatedly, each run getting a little further.
			crashes := 0
			for run := 0; run < 6; run++ {
				cmd := startHelper(t, ns.ClientURL(), data, fault, 1+run%3)
				done := make(chan error, 1)
				go func() { done <- cmd.Wait() }()
				select {
				case err := <-done:
					if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != -1 {
						t.Fatalf("helper ended with %v, want death by SIGKILL at %s", err, fault)
					}
					crashes++
				case <-time.After(5 * time.Second):
					// Nothing left to crash on: everything was handled.
					cmd.Process.Kill()
					<-done
				}
			}
			if crashes == 0 {
				t.Fatalf("the fault point %s was never reached", fault)
			}
			// A clean run finishes whatever is left.
			cmd := startHelper(t, ns.ClientURL(), data, "", 1)
			t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
			bustest.WaitFor(t, 20*time.Second, 50*time.Millisecond, func() error {
				if got := len(appliedHosts(t, data)); got < n {
					return fmt.Errorf("%d of %d applied", got, n)
				}
				if got := len(streamMessages(t, b.JS, events.StreamEvents, "lifeboat.event.host.up")); got < n {
					return fmt.Errorf("%d of %d HostUp on the stream", got, n)
				}
				return nil
			})
			waitSettled(t, b.JS, data)
			hosts := appliedHosts(t, data)
			sort.Strings(hosts)
			for i, h := range hosts {
				if want := fmt.Sprintf("h%02d", i); h != want || len(hosts) != n {
					t.Fatalf("after %d crashes the applied hosts are %v: want each of %d exactly once", crashes, hosts, n)
				}
			}
			ups := streamMessages(t, b.JS, events.StreamEvents, "lifeboat.event.host.up")
			seen := map[string]bool{}
			for _, m := range ups {
				id := m.Headers().Get(bus.HeaderID)
				if seen[id] {
					t.Errorf("HostUp %s is on the stream twice", id)
				}
				seen[id] = true
			}
			if len(ups) != n {
				t.Fatalf("after %d crashes %d HostUp are on the stream, want %d", crashes, len(ups), n)
			}
			t.Logf("%d crashes at %s; %d applied once each", crashes, fault, n)
		})
	}
}

// TestClusterNodeLossLosesNoEvent runs the service against a three-node
// JetStream cluster with R3 streams and stops one node while events flow.
func TestClusterNodeLossLosesNoEvent(t *testing.T) {
	c := bustest.StartCluster(t)
	pub := bustest.Connect(t, 3, c.URLs()...)
	svcBus := bustest.Connect(t, 3, c.URLs()...)
	data := t.TempDir()
	ts := &testService{}
	runService(t, svcBus, ts.spec(), data)

	const n = 300
	for i := range n {
		if i == n/3 {
			// Stop the node the publisher is not necessarily on: any node
			// may hold stream leadership; R3 must survive losing it.
			c.Stop(1)
		}
		h := cloudHeader(fmt.Sprintf("c-%d", i), "io.lifeboat.host.down.v1")
		body := fmt.Sprintf(`{"host":"c%03d"}`, i)
		// A publish may fail while a new stream leader is elected: retry
		// with the same Nats-Msg-Id, as any producer would.
		// Each try has its own deadline: on a loaded machine the whole run
		// may take longer than any one publish should.
		bustest.WaitFor(t, 30*time.Second, 100*time.Millisecond, func() error {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_, err := pub.JS.PublishMsg(ctx, natsMsg("lifeboat.event.host.down", h, body))
			return err
		})
	}
	bustest.WaitFor(t, 60*time.Second, 100*time.Millisecond, func() error {
		if got := len(appliedHosts(t, data)); got < n {
			return fmt.Errorf("%d of %d applied", got, n)
		}
		return nil
	})
	hosts := appliedHosts(t, data)
	seen := map[string]bool{}
	for _, h := range hosts {
		if seen[h] {
			t.Errorf("%s applied twice", h)
		}
		seen[h] = true
	}
	if len(seen) != n {
		t.Fatalf("%d distinct events applied, want %d", len(seen), n)
	}
}
