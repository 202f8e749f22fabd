package volumemonitor

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"lifeboat.dev/events"
	"lifeboat.dev/pkg/bus"
	"lifeboat.dev/pkg/bustest"
	"lifeboat.dev/pkg/service/servicetest"
)

// TestHeartbeatsAreRecordedAndMalformedOnesDropped: a heartbeat on core
// NATS updates the host table; a malformed one is dropped without harm.
func TestHeartbeatsAreRecordedAndMalformedOnesDropped(t *testing.T) {
	_, b := bustest.Embedded(t)
	spec, err := Spec()
	if err != nil {
		t.Fatal(err)
	}
	rt, _ := servicetest.Start(t, spec, servicetest.Deps(b, t.TempDir()))
	if err := b.NC.Publish(events.HeartbeatSubject("broken"), []byte("not json")); err != nil {
		t.Fatal(err)
	}
	sent := time.Now().UTC().Truncate(time.Millisecond)
	env, err := bus.NewEnvelope(context.Background(), "test", &events.HostHeartbeat{Host: "h1", Address: "10.0.0.1:9180", Services: []string{"sync"}, SentAt: sent})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.NC.Publish(env.Subject, env.Body); err != nil {
		t.Fatal(err)
	}
	bustest.WaitFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		m, err := b.NC.Request(events.APISubject(Name, "hosts"), nil, 2*time.Second)
		if err != nil {
			return err
		}
		var hosts []Host
		if err := json.Unmarshal(m.Data, &hosts); err != nil {
			return fmt.Errorf("%s: %w", m.Data, err)
		}
		if len(hosts) != 1 || hosts[0].Host != "h1" || hosts[0].LastSeen == nil || !hosts[0].LastSeen.Equal(sent) ||
			len(hosts[0].Services) != 1 || hosts[0].State != "up" {
			return fmt.Errorf("hosts %s", m.Data)
		}
		return nil
	})
	// The runtime is still running: the bad heartbeat did not stop it.
	select {
	case <-rt.Context().Done():
		t.Fatal("the service stopped")
	default:
	}
}
