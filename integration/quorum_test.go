package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"lifeboat.dev/events"
	"lifeboat.dev/events/api"
	"lifeboat.dev/pkg/bus"
	"lifeboat.dev/pkg/client"
	"lifeboat.dev/pkg/hosttest"
	"lifeboat.dev/pkg/testtool"
)

// lifeboatCLI runs the lifeboat binary with args and returns what it
// printed and its exit error.
func lifeboatCLI(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	cmd := exec.Command(hosttest.Binary(t), args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// outboxPending is how many events wait in service's outbox on host h.
func outboxPending(t *testing.T, h *hosttest.Host, service string) (int64, error) {
	nc := h.Connect(t)
	defer nc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	var st api.ServiceStatus
	if err := client.CallHost(ctx, nc, service, h.Name, api.Status, nil, &st); err != nil {
		return 0, err
	}
	return st.OutboxPending, nil
}

// eventBodies are the bodies of the events on subject in LIFEBOAT_EVENTS,
// read through host h's node, retrying while its JetStream does not answer
// yet (a host just back: CI saw "no responders" on the first read).
func eventBodies(t *testing.T, h *hosttest.Host, subject string) []map[string]any {
	t.Helper()
	var out []map[string]any
	testtool.WaitFor(t, 30*time.Second, func() (err error) {
		out, err = readEventBodies(t, h, subject)
		return err
	})
	return out
}

func readEventBodies(t *testing.T, h *hosttest.Host, subject string) ([]map[string]any, error) {
	t.Helper()
	nc := h.Connect(t)
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cons, err := js.OrderedConsumer(ctx, events.StreamEvents, jetstream.OrderedConsumerConfig{FilterSubjects: []string{subject}})
	if err != nil {
		return nil, err
	}
	info, err := cons.Info(ctx)
	if err != nil {
		return nil, err
	}
	var out []map[string]any
	for range info.NumPending {
		m, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
		if err != nil {
			return nil, fmt.Errorf("%s: read %d of %d: %w", subject, len(out), info.NumPending, err)
		}
		var body map[string]any
		if err := json.Unmarshal(m.Data(), &body); err != nil {
			return nil, fmt.Errorf("%s: unreadable body %q: %w", subject, m.Data(), err)
		}
		out = append(out, body)
	}
	return out, nil
}

// TestQuorumLostAndBack: with two of three hosts stopped, the survivor is
// not ready, a publish through it fails within its deadline and is
// explained as no quorum, and an event a service emits meanwhile waits in
// its outbox (logged by the relay); once one host is back the outbox
// drains, and after the last one returns every host converges and holds
// the events published before the loss and the one emitted during it.
func TestQuorumLostAndBack(t *testing.T) {
	c := hosttest.Start(t, hosttest.Options{Hosts: 3, Config: "heartbeat_interval: 1s\n"})
	survivor := c.Hosts[0]
	hostDown, planChanged := events.SubjectOf[events.HostDown](), events.SubjectOf[events.PlanChanged]()

	// Before the loss: a fact every host must keep.
	if out, err := lifeboatCLI(t, "events", "publish", "HostDown", `{"host":"ghost-before","reason":"published before the loss"}`, "--nats", survivor.NATS); err != nil {
		t.Fatalf("publish before the loss: %v\n%s", err, out)
	}
	for _, i := range []int{1, 2} {
		if err := c.Stop(i); err != nil {
			t.Fatalf("stop %s: %v", c.Hosts[i].Name, err)
		}
	}
	testtool.WaitFor(t, 30*time.Second, func() error {
		code, body, err := readyz(survivor)
		if err != nil || code != 503 || !strings.Contains(body, "no JetStream quorum") {
			return fmt.Errorf("/readyz of %s: %d %q (%v); want 503 saying no quorum", survivor.Name, code, body, err)
		}
		return nil
	})

	// A publish through the survivor fails within its deadline, saying
	// there is no quorum.
	start := time.Now()
	out, err := lifeboatCLI(t, "events", "publish", "HostDown", `{"host":"ghost-during","reason":"published without a quorum"}`, "--nats", survivor.NATS, "--timeout", "2s")
	if took := time.Since(start); err == nil || took > 10*time.Second || !strings.Contains(out, hostDown) || !strings.Contains(out, "JetStream has no quorum") {
		t.Fatalf("publish without a quorum: exit %v after %s:\n%s\nwant a failure naming %s and the lost quorum within the deadline", err, took, out, hostDown)
	}
	t.Logf("lifeboat events publish without a quorum: %s", strings.TrimSpace(out))
	// JetStream's answer, explained.
	nc := survivor.Connect(t)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	_, err = js.Publish(ctx, hostDown, []byte(`{"host":"ghost-during-js"}`))
	cancel()
	err = bus.ExplainUnavailable(ctx, js, hostDown, err)
	if !errors.Is(err, bus.ErrNoQuorum) || !strings.Contains(err.Error(), "JetStream has no quorum: a majority of the cluster's nodes must run") {
		t.Fatalf("publish without a quorum, explained: %v; want it to say there is no quorum", err)
	}
	t.Logf("explained: %v", err)
	nc.Close()

	// A service's event emitted meanwhile waits in its outbox: a plan
	// change is accepted by the survivor's backup-scheduler, which cannot
	// publish it (the CLI gives up waiting for it to be applied).
	const svc = events.ServiceBackupScheduler
	if out, err := lifeboatCLI(t, "plan", "disable", api.SelfPlan, "--nats", survivor.NATS, "--timeout", "3s"); err == nil {
		t.Fatalf("plan disable without a quorum was applied:\n%s", out)
	}
	testtool.WaitFor(t, 10*time.Second, func() error {
		n, err := outboxPending(t, survivor, svc)
		if err != nil || n == 0 {
			return fmt.Errorf("%s on %s: outbox %d (%v); want the plan change waiting", svc, survivor.Name, n, err)
		}
		if !strings.Contains(survivor.Log(), "outbox relay: publish failed; will retry") {
			return errors.New("the relay has not said that it cannot publish")
		}
		return nil
	})

	// One host back: a quorum again, and the outbox drains.
	c.Restart(1)
	c.WaitReady(0)
	testtool.WaitFor(t, 30*time.Second, func() error {
		if n, err := outboxPending(t, survivor, svc); err != nil || n != 0 {
			return fmt.Errorf("%s on %s: outbox %d (%v) with a quorum back; want it drained", svc, survivor.Name, n, err)
		}
		return nil
	})
	// The last host back: every host applied the same events.
	c.Restart(2)
	c.Converged(60 * time.Second)
	testtool.WaitFor(t, 30*time.Second, func() error {
		for _, h := range c.Hosts {
			info, err := streamInfo(t, h, events.StreamEvents)
			if err != nil {
				return err
			}
			for _, r := range info.Cluster.Replicas {
				if !r.Current || r.Offline || r.Lag > 0 {
					return fmt.Errorf("%s: replica %s is behind: %+v", events.StreamEvents, r.Name, r)
				}
			}
		}
		return nil
	})
	var downs []string
	for _, b := range eventBodies(t, c.Hosts[2], hostDown) {
		downs = append(downs, fmt.Sprint(b["host"]))
	}
	if !strings.Contains(strings.Join(downs, ","), "ghost-before") {
		t.Errorf("HostDown events %v: the one published before the loss is missing", downs)
	}
	found := false
	for _, b := range eventBodies(t, c.Hosts[2], planChanged) {
		found = found || b["plan"] == api.SelfPlan && b["action"] == "disable"
	}
	if !found {
		t.Errorf("the plan change emitted without a quorum never reached %s", events.StreamEvents)
	}
	if out, err := lifeboatCLI(t, "plan", "show", api.SelfPlan, "--nats", c.Hosts[2].NATS); err != nil || !strings.Contains(out, "disabled") {
		t.Errorf("plan show after the quorum is back: %v\n%s", err, out)
	}
}
