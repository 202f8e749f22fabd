package dnsupdater

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"lifeboat.dev/events"
	"lifeboat.dev/pkg/bus"
	"lifeboat.dev/pkg/bustest"
	"lifeboat.dev/pkg/service"
	"lifeboat.dev/pkg/service/servicetest"
	"lifeboat.dev/pkg/testtool"
	"lifeboat.dev/services/dns-updater/provider/rfc2136/bindtest"
)

// Two hosts, each running dns-updater with its own database (and, with
// the embedded provider, its own server), on one real bus: every host
// applies every event, and the leader alone makes each change.

// node is one host's dns-updater.
type node struct {
	host string
	data string
	cfg  Config
	svc  *Service
	rt   *service.Runtime
	stop func()
	// made counts the changes this host made (sent to the provider, or
	// began verifying at every host): only the leader makes any.
	made atomic.Int32
	// hold, when set, runs where a change is made (see Service.afterSet).
	hold func(ctx context.Context, host string) error
}

// startNode runs host's dns-updater on b with cfg, its state in data.
func startNode(t *testing.T, b *bus.Bus, host, data string, cfg Config) *node {
	t.Helper()
	if err := cfg.Validate(nil, "dns"); err != nil {
		t.Fatal(err)
	}
	n := &node{host: host, data: data, cfg: cfg}
	n.run(t, b)
	return n
}

func (n *node) run(t *testing.T, b *bus.Bus) {
	t.Helper()
	s := newService(n.cfg)
	s.leaderTTL = 2 * time.Second
	s.afterSet = func(ctx context.Context) error {
		n.made.Add(1)
		if n.hold != nil {
			return n.hold(ctx, n.host)
		}
		return nil
	}
	spec, err := s.spec()
	if err != nil {
		t.Fatal(err)
	}
	deps := servicetest.Deps(b, n.data)
	deps.Host, deps.Logger, deps.LeaseAllowance = n.host, quiet, 500*time.Millisecond
	n.rt, n.stop = servicetest.Start(t, spec, deps)
	n.svc = s
}

// leaderOf waits until exactly one of ns leads and returns it.
func leaderOf(t *testing.T, ns ...*node) *node {
	t.Helper()
	var leader *node
	testtool.WaitFor(t, 20*time.Second, func() error {
		leader = nil
		for _, n := range ns {
			if _, ok := n.rt.Leading(); ok {
				if leader != nil {
					return fmt.Errorf("both %s and %s lead", leader.host, n.host)
				}
				leader = n
			}
		}
		if leader == nil {
			return errors.New("nobody leads dns-updater")
		}
		return nil
	})
	return leader
}

// settled waits until every node has applied every DNS event h collected
// and holds no change job, and checks that their replicated states agree.
func settled(t *testing.T, h *harness, ns ...*node) {
	t.Helper()
	var rts []*service.Runtime
	for _, n := range ns {
		rts = append(rts, n.rt)
	}
	waitApplied(t, h.lastSeq(), rts...)
	testtool.WaitFor(t, 10*time.Second, func() error {
		for _, n := range ns {
			js, err := n.rt.DB.Jobs(context.Background(), 10)
			if err != nil {
				return err
			}
			if len(js) != 0 {
				return fmt.Errorf("%s still holds jobs %+v", n.host, js)
			}
		}
		return nil
	})
	first, err := ns[0].rt.Digest(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range ns[1:] {
		d, err := n.rt.Digest(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if d.SHA256 != first.SHA256 || d.Applied != first.Applied {
			t.Fatalf("replicated state differs: %s %+v, %s %+v", ns[0].host, first, n.host, d)
		}
	}
}

// clusterHarness collects the DNS events of bus b.
func clusterHarness(t *testing.T, b *bus.Bus) *harness {
	h := &harness{t: t, b: b}
	h.collect()
	return h
}

// waitUpdates waits for n DNSRecordUpdated on the stream.
func waitUpdates(t *testing.T, h *harness, n int) []events.DNSRecordUpdated {
	t.Helper()
	var got []events.DNSRecordUpdated
	testtool.WaitFor(t, 30*time.Second, func() error {
		if got = h.updated(); len(got) < n {
			return fmt.Errorf("%d DNSRecordUpdated on the stream, want %d (failed: %+v)", len(got), n, h.failedEvents())
		}
		return nil
	})
	return got
}

// TestTwoHostsEmbeddedOneActivation: one InstanceActivated, and both
// hosts' embedded servers answer the new address, the leader alone
// verified it (at both), one DNSRecordUpdated says so, and both hosts'
// replicated state is the same.
func TestTwoHostsEmbeddedOneActivation(t *testing.T) {
	_, b := bustest.Embedded(t)
	h := clusterHarness(t, b)
	cfg := testConfig(t)
	n1, n2 := startNode(t, b, "h1", t.TempDir(), cfg), startNode(t, b, "h2", t.TempDir(), cfg)
	leader := leaderOf(t, n1, n2)
	h.activate("wr", "198.51.100.7", 1)
	u := waitUpdates(t, h, 1)[0]
	settled(t, h, n1, n2)
	if n := len(h.updated()); n != 1 {
		t.Fatalf("%d DNSRecordUpdated, want 1: %+v", n, h.updated())
	}
	if u.Old != "192.0.2.1" || u.New != "198.51.100.7" || u.Epoch != 1 || u.VerifiedAfter < 1 || u.Provider != "embedded" {
		t.Fatalf("DNSRecordUpdated = %+v", u)
	}
	for _, n := range []*node{n1, n2} {
		expectServed(t, n.svc.emb.Addr(), wr, "198.51.100.7")
		want := int32(0)
		if n == leader {
			want = 1
		}
		if got := n.made.Load(); got != want {
			t.Errorf("%s verified %d changes, want %d (leader %s)", n.host, got, want, leader.host)
		}
	}
	// The history (in the digest) says it was verified, on both.
	var verified int64
	if err := n2.rt.DB.R.QueryRow(`SELECT verified_after_ms FROM dns_history WHERE job <> ''`).Scan(&verified); err != nil || verified < 1 {
		t.Fatalf("h2's history: verified_after_ms %d (%v)", verified, err)
	}
}

// TestTwoHostsBINDOnlyTheLeaderSends: with BIND, both hosts queue the
// change, the leader alone sends it, and both record it from the one
// DNSRecordUpdated.
func TestTwoHostsBINDOnlyTheLeaderSends(t *testing.T) {
	srv := bindtest.StartZone(t, bindtest.Zone, bindtest.DefaultZoneFile(bindtest.Zone)+"wr A 192.0.2.1\n")
	_, b := bustest.Embedded(t)
	h := clusterHarness(t, b)
	cfg := bindConfig(srv)
	n1, n2 := startNode(t, b, "h1", t.TempDir(), cfg), startNode(t, b, "h2", t.TempDir(), cfg)
	leader := leaderOf(t, n1, n2)
	h.activate("wr", "198.51.100.7", 1)
	u := waitUpdates(t, h, 1)[0]
	settled(t, h, n1, n2)
	if n := len(h.updated()); n != 1 || u.Old != "192.0.2.1" || u.New != "198.51.100.7" || u.Provider != "rfc2136" {
		t.Fatalf("DNSRecordUpdated %+v, want one, 192.0.2.1 → 198.51.100.7", h.updated())
	}
	for _, n := range []*node{n1, n2} {
		want := int32(0)
		if n == leader {
			want = 1
		}
		if got := n.made.Load(); got != want {
			t.Errorf("%s sent %d updates to BIND, want %d (leader %s)", n.host, got, want, leader.host)
		}
		var hist int
		if err := n.rt.DB.R.QueryRow(`SELECT COUNT(*) FROM dns_history WHERE new = '198.51.100.7' AND verified_after_ms > 0`).Scan(&hist); err != nil || hist != 1 {
			t.Errorf("%s's history holds %d verified changes (%v), want 1", n.host, hist, err)
		}
	}
	r, err := srv.Query(t.Context(), wr, dns.TypeA)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := answerA(r); len(got) != 1 || got[0] != "198.51.100.7" {
		t.Fatalf("BIND answers %v", got)
	}
}

// TestLeaderStoppedMidChangeTheNextFinishesIt: the leader stops while it
// verifies a change; the other host takes the lease and finishes it: one
// DNSRecordUpdated. The stopped host, back, agrees.
func TestLeaderStoppedMidChangeTheNextFinishesIt(t *testing.T) {
	_, b := bustest.Embedded(t)
	h := clusterHarness(t, b)
	cfg := testConfig(t)
	n1, n2 := startNode(t, b, "h1", t.TempDir(), cfg), startNode(t, b, "h2", t.TempDir(), cfg)
	entered := make(chan string, 2)
	var once sync.Once
	hold := func(ctx context.Context, host string) error {
		first := false
		once.Do(func() { first = true })
		if !first {
			return nil
		}
		entered <- host
		<-ctx.Done() // the leader stops here, mid-change
		return ctx.Err()
	}
	n1.hold, n2.hold = hold, hold
	leader := leaderOf(t, n1, n2)
	other := n1
	if leader == n1 {
		other = n2
	}
	h.activate("wr", "198.51.100.7", 1)
	select {
	case host := <-entered:
		if host != leader.host {
			t.Fatalf("%s made the change; %s leads", host, leader.host)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the leader did not start the change")
	}
	leader.stop()
	if leaderOf(t, other) != other {
		t.Fatal("the other host does not lead")
	}
	u := waitUpdates(t, h, 1)[0]
	if u.Old != "192.0.2.1" || u.New != "198.51.100.7" || u.Epoch != 1 {
		t.Fatalf("DNSRecordUpdated = %+v", u)
	}
	expectServed(t, other.svc.emb.Addr(), wr, "198.51.100.7")
	if got := other.made.Load(); got != 1 {
		t.Fatalf("%s made %d changes, want 1", other.host, got)
	}

	// The stopped host comes back from its data directory and catches up.
	leader.hold = nil
	leader.run(t, b)
	settled(t, h, n1, n2)
	if n := len(h.updated()); n != 1 {
		t.Fatalf("%d DNSRecordUpdated, want 1: %+v", n, h.updated())
	}
	expectServed(t, leader.svc.emb.Addr(), wr, "198.51.100.7")
}

// TestAHostWhoseServerDoesNotAnswerIsNamed: a host runs dns-updater but
// its server does not answer the change: the leader waits for it
// (dns.verify.timeout, then dns.retry) and reports DNSUpdateFailed naming
// it. The change stays applied to every zone, recorded as not verified.
func TestAHostWhoseServerDoesNotAnswerIsNamed(t *testing.T) {
	_, b := bustest.Embedded(t)
	h := clusterHarness(t, b)
	cfg := testConfig(t)
	cfg.Verify.Timeout = 300 * time.Millisecond
	n1, n2 := startNode(t, b, "h1", t.TempDir(), cfg), startNode(t, b, "h2", t.TempDir(), cfg)
	leader := leaderOf(t, n1, n2)
	mute := n1
	if leader == n1 {
		mute = n2
	}
	if err := mute.svc.emb.Close(); err != nil {
		t.Fatal(err)
	}
	h.activate("wr", "198.51.100.7", 1)
	var f events.DNSUpdateFailed
	testtool.WaitFor(t, 30*time.Second, func() error {
		fs := h.failedEvents()
		if len(fs) == 0 {
			return fmt.Errorf("no DNSUpdateFailed (updated: %+v)", h.updated())
		}
		f = fs[0]
		return nil
	})
	settled(t, h, n1, n2)
	t.Logf("DNSUpdateFailed.error: %s", f.Error)
	if f.Reason != "NOT_VERIFIED" || f.Attempts != cfg.Retry.Attempts || f.Epoch != 1 ||
		!strings.Contains(f.Error, "host "+mute.host+" answered") || strings.Contains(f.Error, "host "+leader.host+" answered") {
		t.Fatalf("DNSUpdateFailed = %+v, want NOT_VERIFIED naming %s alone after %d attempts", f, mute.host, cfg.Retry.Attempts)
	}
	if n := len(h.updated()); n != 0 {
		t.Fatalf("DNSRecordUpdated %+v for a change a host does not answer", h.updated())
	}
	expectServed(t, leader.svc.emb.Addr(), wr, "198.51.100.7")
	var verified int64
	if err := mute.rt.DB.R.QueryRow(`SELECT verified_after_ms FROM dns_history WHERE job <> ''`).Scan(&verified); err != nil || verified != -1 {
		t.Fatalf("%s's history: verified_after_ms %d (%v), want -1", mute.host, verified, err)
	}
}
