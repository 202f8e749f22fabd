package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"lifeboat.dev/events"
	"lifeboat.dev/events/api"
	"lifeboat.dev/pkg/bus"
	"lifeboat.dev/pkg/client"
	"lifeboat.dev/pkg/hosttest"
	"lifeboat.dev/pkg/testtool"
)

// dnsClusterConfig is lifeboat.yaml for every host: the embedded DNS
// server on a port of its own choosing (hosttest gives each host its NATS,
// route and HTTP ports; all three run on this machine, so one fixed DNS
// port would clash), and one instance's name.
const dnsClusterConfig = `dns:
  zone: example.test.
  embedded:
    listen: 127.0.0.1:0
instances:
  wr-manager:
    hosts: {h1: {address: 192.0.2.1}, h2: {address: 192.0.2.2}}
    active: h1
    standby: h2
    store: {kind: command}
    dns: {name: wr.example.test., ttl: 30}
`

// TestEveryHostsEmbeddedDNSAnswersAnActivation: three `lifeboat up`
// processes; one InstanceActivated, and every host's embedded DNS server
// answers the new address (asked with dig at the address each host's
// dns-updater status gives), one DNSRecordUpdated says so once every
// host does, and the hosts' replicated state agrees (hosttest compares
// the digests when the test ends).
func TestEveryHostsEmbeddedDNSAnswersAnActivation(t *testing.T) {
	testtool.Need(t, "dig", "apt-get install bind9-dnsutils (make test installs it)")
	c := hosttest.Start(t, hosttest.Options{Hosts: 3, Config: dnsClusterConfig})
	nc := c.Hosts[0].Connect(t)

	// Each host's embedded server, as its own dns-updater reports it.
	addrs := map[string]string{}
	for _, h := range c.Hosts {
		testtool.WaitFor(t, 30*time.Second, func() error {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			var st struct {
				api.ServiceStatus
				Details api.DNSStatus `json:"details"`
			}
			if err := client.CallHost(ctx, nc, events.ServiceDNSUpdater, h.Name, api.Status, nil, &st); err != nil {
				return err
			}
			if st.Details.Listen == "" {
				return fmt.Errorf("%s's dns-updater gives no listen address: %+v", h.Name, st.Details)
			}
			addrs[h.Name] = st.Details.Listen
			return nil
		})
	}
	for name, addr := range addrs {
		if got := testtool.Dig(t, addr, "wr.example.test", "A", "+short"); got != "" {
			t.Fatalf("before the activation %s's server answers wr with %q", name, got)
		}
	}

	updates := make(chan *nats.Msg, 16)
	sub, err := nc.ChanSubscribe(events.SubjectOf[events.DNSRecordUpdated](), updates)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	env, err := bus.NewEnvelope(ctx, "test", &events.InstanceActivated{Instance: "wr-manager", From: "h1", To: "h2", Address: "192.0.2.2", Epoch: 7, ActivatedAt: time.Now().UTC()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client.Publish(ctx, js, env); err != nil {
		t.Fatal(err)
	}
	var u events.DNSRecordUpdated
	select {
	case m := <-updates:
		if err := json.Unmarshal(m.Data, &u); err != nil {
			t.Fatal(err)
		}
	case <-ctx.Done():
		t.Fatal("no DNSRecordUpdated within 30s")
	}
	if u.Name != "wr.example.test." || u.New != "192.0.2.2" || u.Old != "" || u.Epoch != 7 || u.Provider != "embedded" || u.VerifiedAfter < 1 {
		t.Fatalf("DNSRecordUpdated = %+v", u)
	}
	// The leader emitted it once every host's server answered: each
	// answers now, over UDP and TCP.
	for name, addr := range addrs {
		for _, transport := range []string{"+notcp", "+tcp"} {
			if got := testtool.Dig(t, addr, transport, "wr.example.test", "A", "+short"); got != "192.0.2.2" {
				t.Errorf("%s's server (%s) answers wr %s with %q, want 192.0.2.2", name, addr, transport, got)
			}
		}
	}
	d := c.Converged(60 * time.Second)
	if dns := d[events.ServiceDNSUpdater]; dns.Applied == 0 {
		t.Fatalf("dns-updater's digest %+v", dns)
	}
	// One DNSRecordUpdated on the stream, whichever host led.
	s, err := js.Stream(ctx, events.StreamEvents)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(events.SubjectOf[events.DNSRecordUpdated]()))
	if err != nil {
		t.Fatal(err)
	}
	if n := info.State.Subjects[events.SubjectOf[events.DNSRecordUpdated]()]; n != 1 {
		t.Fatalf("%d DNSRecordUpdated on the stream, want 1", n)
	}
}
