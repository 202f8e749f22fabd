package dnsupdater

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/nats-io/nats.go/jetstream"

	"lifeboat.dev/events"
	"lifeboat.dev/events/api"
	"lifeboat.dev/pkg/bus"
	"lifeboat.dev/pkg/bustest"
	"lifeboat.dev/pkg/client"
	"lifeboat.dev/pkg/service"
	"lifeboat.dev/pkg/service/servicetest"
	"lifeboat.dev/pkg/testtool"
)

// The contract's wire types (lifeboat.dev/events/api) under the names this
// package's tests use.
type (
	RecordsRequest = api.DNSRecordsRequest
	RecordsReply   = api.DNSRecordsReply
	Record         = api.DNSRecord
	HistoryRequest = api.DNSHistoryRequest
	HistoryReply   = api.DNSHistoryReply
)

const testZone = "example.test."

// testZoneFile is the embedded zone the tests start from: wr's name
// already points at its first host, and keep is a record lifeboat does
// not own.
const testZoneFile = `$ORIGIN example.test.
$TTL 300
@     IN SOA ns hostmaster 2024010101 3600 600 604800 60
@     NS  ns
ns    A   127.0.0.1
wr    A   192.0.2.1
keep  A   192.0.2.99
`

var quiet = slog.New(slog.DiscardHandler)

// testConfig returns a config for the embedded provider on a free port,
// with instance wr (wr.example.test., A, TTL 60) and quick retries.
func testConfig(t testing.TB) Config {
	t.Helper()
	cfg := NewConfig()
	cfg.Zone = testZone
	cfg.Embedded.Listen = "127.0.0.1:0"
	cfg.Embedded.ZoneFile = filepath.Join(t.TempDir(), "example.test.zone")
	if err := os.WriteFile(cfg.Embedded.ZoneFile, []byte(testZoneFile), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg.Instances = map[string]InstanceConfig{
		"wr":  {Name: "wr.example.test."},
		"web": {Name: "web.example.test.", Type: "AAAA", TTL: 120},
	}
	cfg.Retry = RetryConfig{Attempts: 3, FirstBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond}
	cfg.Verify.Timeout = 5 * time.Second
	cfg.Verify.FirstBackoff = 5 * time.Millisecond
	return cfg
}

// harness is a dns-updater running on a real embedded NATS server, its
// database in a temporary directory, with every DNS event it emits
// collected from the stream.
type harness struct {
	t    testing.TB
	b    *bus.Bus
	svc  *Service
	rt   *service.Runtime
	data string

	mu   sync.Mutex
	seen []jetstream.Msg
	stop func()
}

// start runs the service with cfg on a new bus.
func start(t testing.TB, cfg Config, edit ...func(*Service)) *harness {
	t.Helper()
	_, b := bustest.Embedded(t)
	h := &harness{t: t, b: b, data: t.TempDir()}
	h.collect()
	h.run(cfg, edit...)
	return h
}

// run starts (or restarts) the service on h's bus and data directory.
func (h *harness) run(cfg Config, edit ...func(*Service)) {
	t := h.t
	t.Helper()
	if err := cfg.Validate(nil, "dns"); err != nil {
		t.Fatal(err)
	}
	s := newService(cfg)
	for _, e := range edit {
		e(s)
	}
	spec, err := s.spec()
	if err != nil {
		t.Fatal(err)
	}
	deps := servicetest.Deps(h.b, h.data)
	deps.Logger = quiet
	rt, stop := servicetest.Start(t, spec, deps)
	h.stop = stop
	h.svc, h.rt = s, rt
}

// collect gathers every lifeboat.event.dns.> message on the events stream.
func (h *harness) collect() {
	t := h.t
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	c, err := h.b.JS.OrderedConsumer(ctx, events.StreamEvents, jetstream.OrderedConsumerConfig{FilterSubjects: []string{"lifeboat.event.dns.>"}})
	if err != nil {
		t.Fatal(err)
	}
	cc, err := c.Consume(func(m jetstream.Msg) {
		h.mu.Lock()
		h.seen = append(h.seen, m)
		h.mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cc.Stop)
}

// updated returns the DNSRecordUpdated events on the stream so far.
func (h *harness) updated() []events.DNSRecordUpdated {
	return decodeAll[events.DNSRecordUpdated](h)
}

// failedEvents returns the DNSUpdateFailed events on the stream so far.
func (h *harness) failedEvents() []events.DNSUpdateFailed {
	return decodeAll[events.DNSUpdateFailed](h)
}

func decodeAll[T any](h *harness) []T {
	h.t.Helper()
	subject := events.SubjectOf[T]()
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []T
	for _, m := range h.seen {
		if m.Subject() != subject {
			continue
		}
		var v T
		if err := json.Unmarshal(m.Data(), &v); err != nil {
			h.t.Fatalf("%s on the stream does not decode: %v", subject, err)
		}
		out = append(out, v)
	}
	return out
}

// publish sends ev as a fresh event (a new id).
func (h *harness) publish(ev any) bus.Envelope {
	h.t.Helper()
	env, err := bus.NewEnvelope(context.Background(), "test", ev)
	if err != nil {
		h.t.Fatal(err)
	}
	h.publishEnvelope(env, env.ID)
	return env
}

// publishEnvelope sends env with msgID as its Nats-Msg-Id: the envelope's
// own id for a first delivery, another to get a copy past JetStream's
// duplicate window (what a redelivery looks like to the service). The
// copy keeps the envelope's ce-id.
func (h *harness) publishEnvelope(env bus.Envelope, msgID string) {
	h.t.Helper()
	env.ID = msgID
	if _, err := client.Publish(context.Background(), h.b.JS, env); err != nil {
		h.t.Fatal(err)
	}
}

// activate publishes InstanceActivated of instance at addr under epoch.
func (h *harness) activate(instance, addr string, epoch uint64) bus.Envelope {
	h.t.Helper()
	return h.publish(&events.InstanceActivated{Instance: instance, From: "hot-1", To: "cold-1", Address: addr, Epoch: epoch, ActivatedAt: time.Now().UTC()})
}

// waitUpdated waits for the n-th DNSRecordUpdated and for the service to
// have applied it (every host applies the leader's outcome: the history,
// the epoch), and returns it.
func (h *harness) waitUpdated(n int) events.DNSRecordUpdated {
	h.t.Helper()
	var got []events.DNSRecordUpdated
	testtool.WaitFor(h.t, 20*time.Second, func() error {
		if got = h.updated(); len(got) < n {
			return fmt.Errorf("%d DNSRecordUpdated on the stream, want %d (failed: %+v)", len(got), n, h.failedEvents())
		}
		return nil
	})
	h.settle()
	return got[n-1]
}

// waitFailed waits for the n-th DNSUpdateFailed and for the service to
// have applied it, and returns it.
func (h *harness) waitFailed(n int) events.DNSUpdateFailed {
	h.t.Helper()
	var got []events.DNSUpdateFailed
	testtool.WaitFor(h.t, 30*time.Second, func() error {
		if got = h.failedEvents(); len(got) < n {
			return fmt.Errorf("%d DNSUpdateFailed on the stream, want %d (updated: %+v)", len(got), n, h.updated())
		}
		return nil
	})
	h.settle()
	return got[n-1]
}

// settle waits until the running service has applied every DNS event
// collected so far.
func (h *harness) settle() {
	h.t.Helper()
	waitApplied(h.t, h.lastSeq(), h.rt)
}

// lastSeq is the stream sequence of the newest DNS event collected.
func (h *harness) lastSeq() uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	var seq uint64
	for _, m := range h.seen {
		if md, err := m.Metadata(); err == nil {
			seq = max(seq, md.Sequence.Stream)
		}
	}
	return seq
}

// waitApplied waits until every runtime of rts has applied the events
// stream up to seq.
func waitApplied(t testing.TB, seq uint64, rts ...*service.Runtime) {
	t.Helper()
	testtool.WaitFor(t, 20*time.Second, func() error {
		for _, rt := range rts {
			applied, err := rt.DB.Applied(context.Background(), events.StreamEvents)
			if err != nil {
				return err
			}
			if applied < seq {
				return fmt.Errorf("%s applied the events up to %d, want %d", rt.Deps.Host, applied, seq)
			}
		}
		return nil
	})
}

// request calls one of the service's endpoints and decodes the answer;
// an error the endpoint answered with comes back as "<code> <message>".
func (h *harness) request(endpoint string, req, reply any) error {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := client.Call(ctx, h.b.NC, Name, endpoint, req, reply)
	var ae *client.Error
	if errors.As(err, &ae) {
		return fmt.Errorf("%s %s", ae.Code, ae.Message)
	}
	if err != nil {
		h.t.Fatalf("%s: %v", endpoint, err)
	}
	return nil
}

func (h *harness) history(name string) []Change {
	h.t.Helper()
	var r api.DNSHistoryReply
	if err := h.request(api.DNSHistory, api.DNSHistoryRequest{Name: name}, &r); err != nil {
		h.t.Fatal(err)
	}
	return r.Changes
}

func (h *harness) status() Status {
	h.t.Helper()
	var st api.ServiceStatus
	if err := h.request(api.Status, nil, &st); err != nil {
		h.t.Fatal(err)
	}
	b, _ := json.Marshal(st.Details)
	var d Status
	if err := json.Unmarshal(b, &d); err != nil {
		h.t.Fatal(err)
	}
	return d
}

// query asks server for name and qtype over net (udp or tcp), without
// recursion.
func query(t testing.TB, server, network, name string, qtype uint16) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	m.RecursionDesired = false
	c := &dns.Client{Net: network, Timeout: 5 * time.Second}
	r, _, err := c.Exchange(m, server)
	if err != nil {
		t.Fatalf("query %s over %s at %s: %v", name, network, server, err)
	}
	return r
}

// answerA returns the A or AAAA values and the TTL of an answer.
func answerA(r *dns.Msg) (values []string, ttl uint32) {
	for _, rr := range r.Answer {
		switch v := rr.(type) {
		case *dns.A:
			values, ttl = append(values, v.A.String()), v.Hdr.Ttl
		case *dns.AAAA:
			values, ttl = append(values, v.AAAA.String()), v.Hdr.Ttl
		}
	}
	return values, ttl
}

// expectServed checks that server answers name's A record with exactly
// want, with authority, over UDP and TCP.
func expectServed(t testing.TB, server, name, want string) {
	t.Helper()
	expectServedType(t, server, name, dns.TypeA, want)
}

// expectServedType checks that server answers name and qtype with exactly
// want, with authority, over UDP and TCP.
func expectServedType(t testing.TB, server, name string, qtype uint16, want string) {
	t.Helper()
	for _, network := range []string{"udp", "tcp"} {
		r := query(t, server, network, name, qtype)
		got, _ := answerA(r)
		if !r.Authoritative || len(got) != 1 || got[0] != want {
			t.Fatalf("%s answers %s %s over %s with %v (aa=%v, rcode %s), want [%s]", server, name, dns.TypeToString[qtype], network, got, r.Authoritative, dns.RcodeToString[r.Rcode], want)
		}
	}
}

// TestEveryAnswerToASetCarriesItsID: the outcome of a dns-updater.set,
// DNSRecordUpdated once applied or DNSUpdateFailed when refused, carries
// the command's id as request_id, so that its sender tells it from the
// others (lifeboat dns set waits for it); an activation's carries none.
func TestEveryAnswerToASetCarriesItsID(t *testing.T) {
	h := start(t, testConfig(t))
	set := h.publish(&events.DNSSet{Name: "wr.example.test.", Address: "203.0.113.5"})
	if u := h.waitUpdated(1); u.RequestID != set.ID || u.New != "203.0.113.5" {
		t.Errorf("DNSRecordUpdated answering set %s = %+v", set.ID, u)
	}
	refused := h.publish(&events.DNSSet{Name: "keep.example.test.", Address: "192.0.2.8"})
	if f := h.waitFailed(1); f.RequestID != refused.ID {
		t.Errorf("DNSUpdateFailed answering set %s = %+v", refused.ID, f)
	}
	h.activate("wr", "203.0.113.7", 1)
	if u := h.waitUpdated(2); u.RequestID != "" || u.New != "203.0.113.7" {
		t.Errorf("DNSRecordUpdated after an activation = %+v, want no request_id", u)
	}
}
