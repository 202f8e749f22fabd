package integration

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"lifeboat.dev/events"
	"lifeboat.dev/events/api"
	"lifeboat.dev/pkg/client"
	"lifeboat.dev/pkg/hosttest"
	"lifeboat.dev/pkg/testtool"
)

// streamInfo reads a stream's info through host h's node.
func streamInfo(t *testing.T, h *hosttest.Host, stream string) (*jetstream.StreamInfo, error) {
	nc := h.Connect(t)
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return nil, err
	}
	return s.Info(ctx)
}

// TestThreeHostsFormOneClusterAndSurviveAnyKill: three `lifeboat up`
// processes form one cluster with R3 streams; after kill -9 of any one,
// the other two still take events and still decide (a survivor leads
// dns-updater and reconciles); restarted from its data directory, the
// killed host rejoins, applies what it missed, and agrees with the others.
func TestThreeHostsFormOneClusterAndSurviveAnyKill(t *testing.T) {
	// A short leader lease (the shortest an election allows) keeps the
	// takeovers below quick.
	c := hosttest.Start(t, hosttest.Options{Hosts: 3, Config: "leases:\n  leader_ttl: 10s\n"})
	info, err := streamInfo(t, c.Hosts[0], events.StreamEvents)
	if err != nil {
		t.Fatal(err)
	}
	if info.Config.Replicas != 3 || info.Cluster == nil || len(info.Cluster.Replicas) != 2 {
		t.Fatalf("%s: %d replicas (%+v), want 3", events.StreamEvents, info.Config.Replicas, info.Cluster)
	}
	published := info.State.Msgs
	for victim := range c.Hosts {
		t.Run(c.Hosts[victim].Name, func(t *testing.T) {
			killed := time.Now()
			c.Kill(victim)
			survivor := c.Hosts[(victim+1)%len(c.Hosts)]
			nc := survivor.Connect(t)
			js, err := jetstream.New(nc)
			if err != nil {
				t.Fatal(err)
			}
			// Publishing goes on once the survivors have a stream leader.
			var seq uint64
			testtool.WaitFor(t, 30*time.Second, func() error {
				ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
				defer cancel()
				ack, err := js.Publish(ctx, events.SubjectOf[events.HostDown](), fmt.Appendf(nil, `{"host":"gone-%d"}`, victim),
					jetstream.WithMsgID(fmt.Sprintf("test-down-%d", victim)))
				if err == nil {
					seq = ack.Sequence
				}
				return err
			})
			published++
			// The survivors still decide: one of them leads dns-updater
			// and has reconciled since the kill.
			testtool.WaitFor(t, 60*time.Second, func() error {
				for _, h := range c.Running() {
					ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
					var st api.ServiceStatus
					err := client.CallHost(ctx, nc, events.ServiceDNSUpdater, h.Name, api.Status, nil, &st)
					cancel()
					if err == nil && st.Leader != nil && st.Leader.Self && st.Leader.ReconciledAt != nil && st.Leader.ReconciledAt.After(killed) {
						return nil
					}
				}
				return fmt.Errorf("no survivor of %s's kill leads dns-updater and has reconciled since", c.Hosts[victim].Name)
			})
			c.Restart(victim)
			// The restarted host catches up: its node holds every event.
			testtool.WaitFor(t, 30*time.Second, func() error {
				info, err := streamInfo(t, c.Hosts[victim], events.StreamEvents)
				if err != nil {
					return err
				}
				if info.State.Msgs < published {
					return fmt.Errorf("%s holds %d events, want %d", c.Hosts[victim].Name, info.State.Msgs, published)
				}
				for _, r := range info.Cluster.Replicas {
					if !r.Current || r.Offline {
						return fmt.Errorf("replica %s not current yet (lag %d)", r.Name, r.Lag)
					}
				}
				return nil
			})
			// Every host, the restarted one too, applied the event the
			// survivors took, and the replicas agree.
			d := c.Converged(60 * time.Second)
			if vm := d[events.ServiceVolumeMonitor]; vm.Applied < seq {
				t.Fatalf("volume-monitor stands at %d on every host, want at least %d (the HostDown published while %s was down)", vm.Applied, seq, c.Hosts[victim].Name)
			}
		})
	}
}
