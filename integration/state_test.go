package integration

import (
	"context"
	"errors"
	"fmt"
	"strings"
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

// TestStateAcrossHosts: on three `lifeboat up` processes, a host-scoped
// request reaches exactly the named host and, when that host is down,
// fails naming it; a host that was away while the events it lacks left the
// stream rebuilds its state from a peer and agrees with the others.
func TestStateAcrossHosts(t *testing.T) {
	c := hosttest.Start(t, hosttest.Options{Hosts: 3})
	nc := c.Hosts[0].Connect(t)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ask := func(host string) (api.Digest, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		var d api.Digest
		err := client.CallHost(ctx, nc, events.ServiceVolumeMonitor, host, api.DigestEndpoint, nil, &d)
		return d, err
	}

	t.Run("a host-scoped request reaches the named host", func(t *testing.T) {
		for _, h := range c.Hosts {
			d, err := ask(h.Name)
			if err != nil {
				t.Fatal(err)
			}
			if d.Host != h.Name {
				t.Fatalf("asked %s, answered by %s", h.Name, d.Host)
			}
		}
	})

	t.Run("a host that was away past the stream's head rebuilds from a peer", func(t *testing.T) {
		away := c.Hosts[2]
		c.Kill(2)
		// Events away never applied, then gone from the stream (its age or
		// size limit, here a purge).
		var last uint64
		for i := range 5 {
			testtool.WaitFor(t, 30*time.Second, func() error {
				ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
				defer cancel()
				ack, err := js.Publish(ctx, events.SubjectOf[events.HostDown](), fmt.Appendf(nil, `{"host":"away-%d"}`, i),
					jetstream.WithMsgID(fmt.Sprintf("away-%d", i)))
				if err == nil {
					last = ack.Sequence
				}
				return err
			})
		}
		// The survivors apply them before they go.
		testtool.WaitFor(t, 60*time.Second, func() error {
			for _, h := range c.Running() {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				var d api.Digest
				err := client.CallHost(ctx, nc, events.ServiceVolumeMonitor, h.Name, api.DigestEndpoint, nil, &d)
				cancel()
				if err != nil {
					return err
				}
				if d.Applied < last {
					return fmt.Errorf("%s applied %d of %d", h.Name, d.Applied, last)
				}
			}
			return nil
		})
		s, err := js.Stream(context.Background(), events.StreamEvents)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Purge(context.Background(), jetstream.WithPurgeSequence(last+1)); err != nil {
			t.Fatal(err)
		}

		// While it is down, a question for it fails naming it.
		_, err = ask(away.Name)
		var na *client.NoAnswerError
		if !errors.As(err, &na) || !strings.Contains(err.Error(), "host "+away.Name) {
			t.Fatalf("asking the killed %s: %v, want an error naming it", away.Name, err)
		}
		if !errors.Is(err, nats.ErrNoResponders) && !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("asking the killed %s: %v, want no responders or a timeout", away.Name, err)
		}

		c.Restart(2)
		d := c.Converged(90 * time.Second)
		if d[events.ServiceVolumeMonitor].Applied < last {
			t.Fatalf("volume-monitor stands at %d, want at least %d", d[events.ServiceVolumeMonitor].Applied, last)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		var st api.ServiceStatus
		if err := client.CallHost(ctx, nc, events.ServiceVolumeMonitor, away.Name, api.Status, nil, &st); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(st.Rebuilt, "snapshot") {
			t.Fatalf("%s's volume-monitor says %q, want a rebuild from a peer's snapshot", away.Name, st.Rebuilt)
		}
	})
}
