package volumemonitor

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/micro"

	"lifeboat.dev/events"
	"lifeboat.dev/pkg/bus"
	"lifeboat.dev/pkg/bustest"
	"lifeboat.dev/pkg/service/servicetest"
	"lifeboat.dev/pkg/store"
	"lifeboat.dev/pkg/testtool"
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
	testtool.WaitFor(t, 10*time.Second, func() error {
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

// TestUnreadableStoredHostIsReportedNotHidden: a host row whose stored
// services do not decode makes the hosts endpoint and the status answer an
// error naming the host, instead of showing the host with no services.
func TestUnreadableStoredHostIsReportedNotHidden(t *testing.T) {
	_, b := bustest.Embedded(t)
	spec, err := Spec()
	if err != nil {
		t.Fatal(err)
	}
	rt, _ := servicetest.Start(t, spec, servicetest.Deps(b, t.TempDir()))
	if err := rt.DB.Update(t.Context(), func(tx *store.Tx) error {
		_, err := tx.ExecContext(t.Context(), `INSERT INTO heartbeats (host, services, first_seen, last_seen) VALUES ('h2', 'not json', 0, 0)`)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	for _, endpoint := range []string{"hosts", "status"} {
		m, err := b.NC.Request(events.APISubject(Name, endpoint), nil, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		code, desc := m.Header.Get(micro.ErrorCodeHeader), m.Header.Get(micro.ErrorHeader)
		if code != "500" || !strings.Contains(desc, "host h2") || !strings.Contains(desc, "unreadable") {
			t.Fatalf("%s answered %q %q (%s), want a 500 naming host h2's unreadable services", endpoint, code, desc, m.Data)
		}
	}
}
