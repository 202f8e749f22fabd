package dnsupdater

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"lifeboat.dev/events"
	"lifeboat.dev/pkg/bustest"
	"lifeboat.dev/pkg/service"
	"lifeboat.dev/pkg/testtool"
	"lifeboat.dev/services/dns-updater/provider/infoblox/infobloxfake"
	"lifeboat.dev/services/dns-updater/provider/rfc2136/bindtest"
)

const wr = "wr.example.test."

// TestActivationPointsTheNameAtTheNewHost is the "done when": a
// published InstanceActivated makes the embedded server answer the new
// address over UDP and TCP (a resolver library and dig), and
// DNSRecordUpdated is on the stream with how long verification took.
func TestActivationPointsTheNameAtTheNewHost(t *testing.T) {
	h := start(t, testConfig(t))
	addr := h.svc.emb.Addr()
	expectServed(t, addr, wr, "192.0.2.1")

	h.activate("wr", "198.51.100.7", 1)
	u := h.waitUpdated(1)
	want := events.DNSRecordUpdated{Name: wr, Type: "A", Old: "192.0.2.1", New: "198.51.100.7", TTL: 60, Provider: "embedded", Instance: "wr", Epoch: 1}
	got := u
	got.VerifiedAfter, got.UpdatedAt = 0, time.Time{}
	if got != want {
		t.Fatalf("DNSRecordUpdated = %+v, want %+v", got, want)
	}
	if u.VerifiedAfter < 1 || u.UpdatedAt.IsZero() {
		t.Fatalf("DNSRecordUpdated lacks verified_after (%d ms) or updated_at (%v)", u.VerifiedAfter, u.UpdatedAt)
	}
	expectServed(t, addr, wr, "198.51.100.7")
	for _, transport := range []string{"+notcp", "+tcp"} {
		if got := testtool.Dig(t, addr, transport, "wr.example.test", "A", "+short"); got != "198.51.100.7" {
			t.Fatalf("dig %s wr.example.test A +short = %q, want 198.51.100.7", transport, got)
		}
	}

	hist := h.history("")
	if len(hist) != 1 || hist[0].Name != wr || hist[0].Old != "192.0.2.1" || hist[0].New != "198.51.100.7" ||
		hist[0].Kind != kindActivate || hist[0].Epoch != 1 || !hist[0].Verified || hist[0].VerifiedAfterMs < 1 {
		t.Fatalf("history = %+v", hist)
	}
	st := h.status()
	if st.Zone != testZone || st.Provider != "embedded" || st.Listen != addr || st.Serial != 2024010102 ||
		st.Pending != 0 || st.LastChange == nil || st.LastChange.New != "198.51.100.7" {
		t.Fatalf("status details = %+v", st)
	}

	var recs RecordsReply
	if err := h.request("records", RecordsRequest{Name: "WR.example.test"}, &recs); err != nil {
		t.Fatal(err)
	}
	if len(recs.Records) != 1 || recs.Records[0] != (Record{Name: wr, Type: "A", Value: "198.51.100.7", TTL: 60, Instance: "wr"}) {
		t.Fatalf("records of wr = %+v", recs)
	}
	if err := h.request("records", RecordsRequest{}, &recs); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(recs.Records, Record{Name: "keep.example.test.", Type: "A", Value: "192.0.2.99", TTL: 300}) || recs.Serial != 2024010102 {
		t.Fatalf("records of the zone = %+v", recs)
	}
	err := h.request("records", RecordsRequest{Name: "www.example.org"}, &recs)
	if err == nil || !strings.HasPrefix(err.Error(), "400 ") || !strings.Contains(err.Error(), `"www.example.org."`) {
		t.Fatalf("records of a name outside the zone: %v, want a 400 quoting it", err)
	}
}

// TestStaleEpochChangesNothing: an activation not newer than the last
// applied (older, or the same epoch again with another address) changes
// nothing, also after a restart of the service.
func TestStaleEpochChangesNothing(t *testing.T) {
	cfg := testConfig(t)
	h := start(t, cfg)
	h.activate("wr", "198.51.100.5", 5)
	h.waitUpdated(1)

	h.activate("wr", "198.51.100.3", 3)
	h.activate("wr", "198.51.100.4", 5)
	// One consumer handles activations in order: once the next one is
	// applied, the stale ones have been handled.
	h.activate("wr", "198.51.100.6", 6)
	if u := h.waitUpdated(2); u.New != "198.51.100.6" || u.Old != "198.51.100.5" || u.Epoch != 6 {
		t.Fatalf("second DNSRecordUpdated = %+v, want 198.51.100.5 → 198.51.100.6 at epoch 6", u)
	}

	t.Run("after a restart", func(t *testing.T) {
		h.stop()
		h.run(cfg)
		h.activate("wr", "198.51.100.4", 4)
		h.activate("wr", "198.51.100.7", 7)
		if u := h.waitUpdated(3); u.New != "198.51.100.7" || u.Old != "198.51.100.6" {
			t.Fatalf("third DNSRecordUpdated = %+v, want 198.51.100.6 → 198.51.100.7", u)
		}
		expectServed(t, h.svc.emb.Addr(), wr, "198.51.100.7")
	})

	var news []string
	for _, c := range h.history(wr) {
		news = append(news, c.New)
	}
	if !slices.Equal(news, []string{"198.51.100.7", "198.51.100.6", "198.51.100.5"}) {
		t.Fatalf("history of wr (newest first) = %v; a stale epoch was applied", news)
	}
	if n := len(h.updated()); n != 3 {
		t.Fatalf("%d DNSRecordUpdated, want 3: %+v", n, h.updated())
	}
	if f := h.failedEvents(); len(f) != 0 {
		t.Fatalf("stale events produced DNSUpdateFailed: %+v", f)
	}
}

// TestRedeliveredActivationAppliesOnce: the same event delivered twice,
// the same activation republished under a new id, and a crash between the
// provider accepting the change and the outcome being recorded: one
// change, one history row, one DNSRecordUpdated, with the true old value.
func TestRedeliveredActivationAppliesOnce(t *testing.T) {
	var sets atomic.Int32
	h := start(t, testConfig(t), func(s *Service) {
		s.afterSet = func(context.Context) error {
			if sets.Add(1) == 1 {
				return errors.New("simulated crash after the provider accepted the change")
			}
			return nil
		}
	})
	env := h.activate("wr", "198.51.100.9", 1)
	// The same event id past JetStream's duplicate detection: a
	// redelivery, which the inbox must drop.
	h.publishEnvelope(env, "again-"+env.ID)
	// The same activation published again as a new event.
	h.activate("wr", "198.51.100.9", 1)
	u := h.waitUpdated(1)
	if u.Old != "192.0.2.1" || u.New != "198.51.100.9" {
		t.Fatalf("DNSRecordUpdated %s → %s, want 192.0.2.1 → 198.51.100.9 (the value before the first attempt)", u.Old, u.New)
	}
	// A later activation, handled after the copies: they have all been
	// seen by then.
	h.activate("wr", "198.51.100.10", 2)
	h.waitUpdated(2)
	if n := len(h.updated()); n != 2 {
		t.Fatalf("%d DNSRecordUpdated, want 2: %+v", n, h.updated())
	}
	if hist := h.history(wr); len(hist) != 2 || hist[1].New != "198.51.100.9" || hist[1].Old != "192.0.2.1" {
		t.Fatalf("history = %+v, want one row per activation", hist)
	}
	if sets.Load() != 3 {
		t.Fatalf("%d Sets, want 3 (one interrupted, its retry, the next activation)", sets.Load())
	}
}

// TestManualSetAndHistory: dns-updater.set changes an owned name through
// the same flow, epoch-less, and the history shows every change.
func TestManualSetAndHistory(t *testing.T) {
	h := start(t, testConfig(t))
	h.publish(&events.DNSSet{Name: "WR.example.test", Address: "203.0.113.5", Reason: "test"})
	if u := h.waitUpdated(1); u.Name != wr || u.New != "203.0.113.5" || u.Old != "192.0.2.1" || u.Epoch != 0 || u.TTL != 60 || u.Instance != "wr" {
		t.Fatalf("DNSRecordUpdated after a set = %+v", u)
	}
	h.publish(&events.DNSSet{Name: wr, Address: "203.0.113.6", TTL: 30})
	if u := h.waitUpdated(2); u.TTL != 30 || u.Old != "203.0.113.5" {
		t.Fatalf("a set with a TTL = %+v", u)
	}
	h.activate("wr", "203.0.113.7", 1)
	h.waitUpdated(3)
	h.publish(&events.DNSSet{Name: "web.example.test.", Address: "2001:DB8::7"})
	if u := h.waitUpdated(4); u.Type != "AAAA" || u.New != "2001:db8::7" || u.Old != "" || u.TTL != 120 {
		t.Fatalf("a set of an AAAA name = %+v", u)
	}
	r := query(t, h.svc.emb.Addr(), "udp", "web.example.test.", dns.TypeAAAA)
	if got, ttl := answerA(r); len(got) != 1 || got[0] != "2001:db8::7" || ttl != 120 {
		t.Fatalf("web AAAA answers %v ttl %d", got, ttl)
	}

	var got []string
	for _, c := range h.history("") {
		got = append(got, fmt.Sprintf("%s %s %s→%s ttl=%d epoch=%d", c.Kind, c.Name, c.Old, c.New, c.TTL, c.Epoch))
	}
	want := []string{
		"set web.example.test. →2001:db8::7 ttl=120 epoch=0",
		"activate wr.example.test. 203.0.113.6→203.0.113.7 ttl=60 epoch=1",
		"set wr.example.test. 203.0.113.5→203.0.113.6 ttl=30 epoch=0",
		"set wr.example.test. 192.0.2.1→203.0.113.5 ttl=60 epoch=0",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("history:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if n := len(h.history(wr)); n != 3 {
		t.Fatalf("history of wr has %d changes, want 3", n)
	}
}

// TestBadInputIsRefusedWithTheValue: an address that is not an IP (or not
// of the name's type), a name outside the zone, a name lifeboat does not
// own: DNSUpdateFailed at once quoting the value, and nothing changes.
func TestBadInputIsRefusedWithTheValue(t *testing.T) {
	h := start(t, testConfig(t))
	cases := []struct {
		publish func()
		want    []string
	}{
		{func() { h.activate("wr", "not-an-ip", 1) }, []string{`"not-an-ip"`, "not an IP address"}},
		{func() { h.activate("wr", "2001:db8::1", 2) }, []string{`"2001:db8::1"`, "IPv4"}},
		{func() { h.publish(&events.DNSSet{Name: "www.example.org.", Address: "192.0.2.8"}) }, []string{`"www.example.org."`, "not in zone"}},
		{func() { h.publish(&events.DNSSet{Name: "keep.example.test.", Address: "192.0.2.8"}) }, []string{"keep.example.test.", "not owned"}},
		{func() { h.publish(&events.DNSSet{Name: wr, Address: "300.1.1.1"}) }, []string{`"300.1.1.1"`}},
	}
	for i, c := range cases {
		c.publish()
		f := h.waitFailed(i + 1)
		for _, w := range c.want {
			if !strings.Contains(f.Error, w) {
				t.Errorf("DNSUpdateFailed %d: error %q does not say %q", i+1, f.Error, w)
			}
		}
		if f.Attempts != 0 || f.Provider != "embedded" {
			t.Errorf("DNSUpdateFailed %d = %+v: a refusal is not attempted", i+1, f)
		}
	}
	addr := h.svc.emb.Addr()
	expectServed(t, addr, wr, "192.0.2.1")
	expectServed(t, addr, "keep.example.test.", "192.0.2.99")
	if hist := h.history(""); len(hist) != 0 {
		t.Fatalf("refused changes are in the history: %+v", hist)
	}
	// A refused activation is not applied, but a newer valid one is; one
	// older than the refused one is not: its host was superseded.
	h.activate("wr", "192.0.2.4", 1)
	h.activate("wr", "192.0.2.3", 3)
	if u := h.waitUpdated(1); u.New != "192.0.2.3" || u.Old != "192.0.2.1" {
		t.Fatalf("DNSRecordUpdated = %+v", u)
	}
	if n := len(h.updated()); n != 1 {
		t.Fatalf("%d DNSRecordUpdated, want 1: %+v", n, h.updated())
	}
}

// TestPlannedFailoverLowersAndRestoresTTL: with dns.lower_ttl_before, a
// failover's start lowers the TTL (a drill's does not), the switch keeps
// it low, and the failover's completion restores it.
func TestPlannedFailoverLowersAndRestoresTTL(t *testing.T) {
	cfg := testConfig(t)
	cfg.LowerTTLBefore = 5
	cfg.Instances["wr"] = InstanceConfig{Name: wr, TTL: 300}
	h := start(t, cfg)
	addr := h.svc.emb.Addr()
	ttlOf := func() (string, uint32) {
		got, ttl := answerA(query(t, addr, "udp", wr, dns.TypeA))
		return strings.Join(got, ","), ttl
	}

	h.publish(&events.FailoverStarted{Instance: "wr", From: "hot-1", To: "cold-1", Reason: "drill", Epoch: 1, Drill: true})
	h.publish(&events.FailoverStarted{Instance: "wr", From: "hot-1", To: "cold-1", Reason: "operator", Epoch: 1})
	if u := h.waitUpdated(1); u.TTL != 5 || u.Old != "192.0.2.1" || u.New != "192.0.2.1" {
		t.Fatalf("lowering = %+v, want 192.0.2.1 kept with TTL 5", u)
	}
	if v, ttl := ttlOf(); v != "192.0.2.1" || ttl != 5 {
		t.Fatalf("after FailoverStarted the server answers %s ttl %d, want 192.0.2.1 ttl 5", v, ttl)
	}
	if st := h.status(); !slices.Equal(st.Lowered, []string{"wr"}) {
		t.Fatalf("status lowered = %v", st.Lowered)
	}

	h.activate("wr", "192.0.2.2", 1)
	if u := h.waitUpdated(2); u.TTL != 5 || u.New != "192.0.2.2" {
		t.Fatalf("switch = %+v, want 192.0.2.2 with the lowered TTL 5", u)
	}
	h.publish(&events.FailoverCompleted{Instance: "wr", From: "hot-1", To: "cold-1", Address: "192.0.2.2", Epoch: 1})
	if u := h.waitUpdated(3); u.TTL != 300 || u.New != "192.0.2.2" {
		t.Fatalf("restoring = %+v, want 192.0.2.2 with TTL 300", u)
	}
	if v, ttl := ttlOf(); v != "192.0.2.2" || ttl != 300 {
		t.Fatalf("after FailoverCompleted the server answers %s ttl %d, want 192.0.2.2 ttl 300", v, ttl)
	}
	if st := h.status(); len(st.Lowered) != 0 {
		t.Fatalf("status lowered = %v after the failover completed", st.Lowered)
	}
	var kinds []string
	for _, c := range h.history(wr) {
		kinds = append(kinds, fmt.Sprintf("%s ttl=%d", c.Kind, c.TTL))
	}
	if want := []string{"ttl ttl=300", "activate ttl=5", "ttl ttl=5"}; !slices.Equal(kinds, want) {
		t.Fatalf("history = %v, want %v (the drill lowers nothing)", kinds, want)
	}
}

// TestIdleWithoutZone: with no dns.zone the service runs, changes
// nothing, and says why to a set.
func TestIdleWithoutZone(t *testing.T) {
	h := start(t, NewConfig())
	h.activate("wr", "192.0.2.2", 1)
	h.publish(&events.DNSSet{Name: wr, Address: "192.0.2.2"})
	if f := h.waitFailed(1); !strings.Contains(f.Error, "dns.zone") {
		t.Fatalf("DNSUpdateFailed = %+v, want it to point at dns.zone", f)
	}
	if st := h.status(); st.Zone != "" || st.Provider != "" {
		t.Fatalf("status = %+v", st)
	}
	if n := len(h.updated()); n != 0 {
		t.Fatalf("%d DNSRecordUpdated without a zone", n)
	}
}

// bindConfig returns a config for the rfc2136 provider against b.
func bindConfig(b *bindtest.Server) Config {
	cfg := NewConfig()
	cfg.Zone = b.Zone
	cfg.Provider = ProviderRFC2136
	cfg.RFC2136 = RFC2136Config{Server: b.Addr, KeyFile: b.KeyFile}
	cfg.Instances = map[string]InstanceConfig{"wr": {Name: "wr." + b.Zone}}
	cfg.Retry = RetryConfig{Attempts: 3, FirstBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond}
	cfg.Verify.FirstBackoff = 5 * time.Millisecond
	return cfg
}

// TestBINDWithTSIG: the same flow against a real BIND, with updates
// signed by TSIG.
func TestBINDWithTSIG(t *testing.T) {
	b := bindtest.StartZone(t, bindtest.Zone, bindtest.DefaultZoneFile(bindtest.Zone)+"wr A 192.0.2.1\n")
	h := start(t, bindConfig(b))
	h.activate("wr", "198.51.100.7", 1)
	u := h.waitUpdated(1)
	if u.Provider != "rfc2136" || u.Old != "192.0.2.1" || u.New != "198.51.100.7" || u.VerifiedAfter < 1 {
		t.Fatalf("DNSRecordUpdated = %+v", u)
	}
	r, err := b.Query(t.Context(), wr, dns.TypeA)
	if err != nil {
		t.Fatal(err)
	}
	if got, ttl := answerA(r); !r.Authoritative || len(got) != 1 || got[0] != "198.51.100.7" || ttl != 60 {
		t.Fatalf("BIND answers %v ttl %d (aa=%v), want 198.51.100.7 ttl 60", got, ttl, r.Authoritative)
	}
	if got := testtool.Dig(t, b.Addr, "wr.example.test", "A", "+short"); got != "198.51.100.7" {
		t.Fatalf("dig @BIND wr A +short = %q", got)
	}
	if st := h.status(); st.Serial < 2 || st.Provider != "rfc2136" {
		t.Fatalf("status = %+v, want BIND's serial bumped by the update", st)
	}
	var recs RecordsReply
	if err := h.request("records", RecordsRequest{}, &recs); err != nil {
		t.Fatal(err)
	}
	if recs.Serial < 2 || len(recs.Errors) != 0 || len(recs.Records) != 1 || recs.Records[0] != (Record{Name: wr, Type: "A", Value: "198.51.100.7", TTL: 60, Instance: "wr"}) {
		t.Fatalf("records = %+v, want wr at its new address and BIND's bumped serial", recs)
	}
}

// TestBINDWrongSecretIsBADSIG: a wrong TSIG secret fails at once with
// BADSIG (retrying cannot help), and nothing is recorded as applied.
func TestBINDWrongSecretIsBADSIG(t *testing.T) {
	b := bindtest.StartZone(t, bindtest.Zone, bindtest.DefaultZoneFile(bindtest.Zone)+"wr A 192.0.2.1\n")
	cfg := bindConfig(b)
	cfg.RFC2136.KeyFile = filepath.Join(t.TempDir(), "wrong.key")
	wrong := base64.StdEncoding.EncodeToString([]byte("not the secret named knows, 32 b"))
	if err := os.WriteFile(cfg.RFC2136.KeyFile, fmt.Appendf(nil, "key %q {\n\talgorithm hmac-sha256;\n\tsecret %q;\n};\n", b.KeyName, wrong), 0o600); err != nil {
		t.Fatal(err)
	}
	h := start(t, cfg)
	h.activate("wr", "198.51.100.7", 1)
	f := h.waitFailed(1)
	if f.Rcode != "BADSIG" || f.Reason != "BADSIG" || f.Attempts != 1 || f.Provider != "rfc2136" || f.Epoch != 1 || !strings.Contains(f.Error, "secret") {
		t.Fatalf("DNSUpdateFailed = %+v, want BADSIG after 1 attempt, pointing at the secret", f)
	}
	if st := h.status(); st.Pending != 0 {
		t.Fatalf("%d changes still pending after BADSIG: it is retried forever", st.Pending)
	}
	if hist := h.history(""); len(hist) != 0 {
		t.Fatalf("history = %+v after a refused update", hist)
	}
	r, err := b.Query(t.Context(), wr, dns.TypeA)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := answerA(r); len(got) != 1 || got[0] != "192.0.2.1" {
		t.Fatalf("BIND answers %v after a refused update", got)
	}
	// With the epoch not applied, the same activation can be sent again
	// once the key is fixed.
	h.stop()
	h.run(bindConfig(b))
	h.activate("wr", "198.51.100.7", 1)
	if u := h.waitUpdated(1); u.New != "198.51.100.7" {
		t.Fatalf("DNSRecordUpdated after fixing the key = %+v", u)
	}
}

// TestBINDRefusedIsReported: a server that refuses the update (here: an
// unsigned update to a zone that allows only the key) gets
// DNSUpdateFailed with REFUSED and what to do after one attempt (asking
// again cannot help), and the zone and history are unchanged.
func TestBINDRefusedIsReported(t *testing.T) {
	b := bindtest.StartZone(t, bindtest.Zone, bindtest.DefaultZoneFile(bindtest.Zone)+"wr A 192.0.2.1\n")
	cfg := bindConfig(b)
	cfg.RFC2136.KeyFile = ""
	h := start(t, cfg)
	h.activate("wr", "198.51.100.7", 1)
	f := h.waitFailed(1)
	if f.Rcode != "REFUSED" || f.Reason != "REFUSED" || f.Attempts != 1 || f.Provider != "rfc2136" || f.New != "198.51.100.7" || !strings.Contains(f.Error, "allow-update") {
		t.Fatalf("DNSUpdateFailed = %+v, want REFUSED after 1 attempt, pointing at allow-update", f)
	}
	if st := h.status(); st.Pending != 0 {
		t.Fatalf("%d changes still pending after REFUSED", st.Pending)
	}
	if hist := h.history(""); len(hist) != 0 {
		t.Fatalf("history = %+v after a refused update", hist)
	}
	r, err := b.Query(t.Context(), wr, dns.TypeA)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := answerA(r); len(got) != 1 || got[0] != "192.0.2.1" {
		t.Fatalf("BIND answers %v after a refused update", got)
	}
}

// TestUnreachableServerRetriesThenFails: nothing listens at the server's
// address: the change is retried with backoff, then DNSUpdateFailed says
// the server is unreachable.
func TestUnreachableServerRetriesThenFails(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := l.Addr().String()
	l.Close()
	cfg := NewConfig()
	cfg.Zone = testZone
	cfg.Provider = ProviderRFC2136
	cfg.RFC2136 = RFC2136Config{Server: dead, Timeout: time.Second}
	cfg.Instances = map[string]InstanceConfig{"wr": {Name: wr}}
	cfg.Retry = RetryConfig{Attempts: 3, FirstBackoff: 10 * time.Millisecond, MaxBackoff: 20 * time.Millisecond}
	h := start(t, cfg)
	h.activate("wr", "198.51.100.7", 1)
	f := h.waitFailed(1)
	if f.Attempts != 3 || f.Rcode != "" || (f.Reason != "unreachable" && f.Reason != "timeout") || !strings.Contains(f.Error, dead) ||
		!(strings.Contains(f.Error, "unreachable") || strings.Contains(f.Error, "timeout")) || !strings.Contains(f.Error, "gave up after 3 attempts") {
		t.Fatalf("DNSUpdateFailed = %+v, want the server unreachable after 3 attempts", f)
	}
	if st := h.status(); st.Pending != 0 {
		t.Fatalf("%d changes pending after giving up", st.Pending)
	}
}

// TestInfobloxFlow: the same flow through the WAPI provider, against the
// fake grid (nobody can run Infoblox here).
func TestInfobloxFlow(t *testing.T) {
	f := infobloxfake.Start(t, testZone)
	f.Add("A", wr, "192.0.2.1", 60)
	creds := filepath.Join(t.TempDir(), "infoblox.cred")
	if err := os.WriteFile(creds, []byte(f.Username+":"+f.Password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := NewConfig()
	cfg.Zone = testZone
	cfg.Provider = ProviderInfoblox
	cfg.Infoblox = InfobloxConfig{URL: f.URL, CredentialsFile: creds, CAFile: f.CAFile, Authoritative: []string{f.DNSAddr}}
	cfg.Instances = map[string]InstanceConfig{"wr": {Name: wr}}
	h := start(t, cfg)
	h.activate("wr", "198.51.100.7", 1)
	if u := h.waitUpdated(1); u.Provider != "infoblox" || u.Old != "192.0.2.1" || u.New != "198.51.100.7" {
		t.Fatalf("DNSRecordUpdated = %+v", u)
	}
	expectServed(t, f.DNSAddr, wr, "198.51.100.7")
	var recs RecordsReply
	if err := h.request("records", RecordsRequest{}, &recs); err != nil {
		t.Fatal(err)
	}
	if len(recs.Records) != 1 || recs.Records[0].Value != "198.51.100.7" || recs.Records[0].Instance != "wr" {
		t.Fatalf("records = %+v", recs)
	}
}

// TestOutageIsRetriedUntilItPasses: the grid answers 503 for a while;
// the change is retried with backoff (not failed at once, not given up)
// and applied once the grid is back: one DNSRecordUpdated, no failure.
func TestOutageIsRetriedUntilItPasses(t *testing.T) {
	f := infobloxfake.Start(t, testZone)
	f.Add("A", wr, "192.0.2.1", 60)
	creds := filepath.Join(t.TempDir(), "infoblox.cred")
	if err := os.WriteFile(creds, []byte(f.Username+":"+f.Password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := NewConfig()
	cfg.Zone = testZone
	cfg.Provider = ProviderInfoblox
	cfg.Infoblox = InfobloxConfig{URL: f.URL, CredentialsFile: creds, CAFile: f.CAFile, Authoritative: []string{f.DNSAddr}}
	cfg.Instances = map[string]InstanceConfig{"wr": {Name: wr}}
	cfg.Retry = RetryConfig{Attempts: 100, FirstBackoff: 5 * time.Millisecond, MaxBackoff: 20 * time.Millisecond}
	f.SetOutage(true)
	h := start(t, cfg)
	h.activate("wr", "198.51.100.7", 1)
	// Two failed searches: the first attempt and at least one retry.
	testtool.WaitFor(t, 20*time.Second, func() error {
		if n := len(f.Requests()); n < 2 {
			return fmt.Errorf("%d requests to the grid during the outage, want 2 or more", n)
		}
		return nil
	})
	if fe := h.failedEvents(); len(fe) != 0 {
		t.Fatalf("DNSUpdateFailed during a passing outage: %+v", fe)
	}
	f.SetOutage(false)
	if u := h.waitUpdated(1); u.Old != "192.0.2.1" || u.New != "198.51.100.7" {
		t.Fatalf("DNSRecordUpdated = %+v", u)
	}
	expectServed(t, f.DNSAddr, wr, "198.51.100.7")
	if fe := h.failedEvents(); len(fe) != 0 {
		t.Fatalf("DNSUpdateFailed for a change that succeeded: %+v", fe)
	}
}

// TestListenAddressInUseStopsTheStart: the embedded server cannot bind, so
// the service does not start, and says which key to change.
func TestListenAddressInUseStopsTheStart(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	cfg := testConfig(t)
	cfg.Embedded.Listen = pc.LocalAddr().String()
	spec, err := Spec(cfg)
	if err != nil {
		t.Fatal(err)
	}
	_, b := bustest.Embedded(t)
	rt, err := service.New(t.Context(), spec, service.Deps{Bus: b, Host: "test-host", DataDir: t.TempDir(), Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	err = rt.Run(t.Context())
	if err == nil || !strings.Contains(err.Error(), pc.LocalAddr().String()) || !strings.Contains(err.Error(), "dns.embedded.listen") {
		t.Fatalf("Run = %v, want it to name the address in use and dns.embedded.listen", err)
	}
}
