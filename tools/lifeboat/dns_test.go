package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/nats-io/nats.go"

	"lifeboat.dev/events"
	"lifeboat.dev/events/api"
	"lifeboat.dev/pkg/testtool"
)

// startUpWithDNS runs `lifeboat up` with a dns section serving
// example.test. from the embedded server on a free port, wr-manager's name
// declared, and returns the NATS URL and the DNS server's address.
func startUpWithDNS(t *testing.T) (natsURL, dnsAddr string) {
	t.Helper()
	dir := t.TempDir()
	zoneFile := filepath.Join(dir, "example.test.zone")
	if err := os.WriteFile(zoneFile, []byte("$ORIGIN example.test.\n$TTL 300\n@ IN SOA ns hostmaster 1 3600 600 604800 60\n@ NS ns\nns A 127.0.0.1\nwr A 192.0.2.1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "lifeboat.yaml")
	cfg := fmt.Sprintf(`dns:
  zone: example.test.
  embedded:
    listen: 127.0.0.1:0
    zone_file: %s
instances:
  wr-manager:
    hosts: {hot: {address: 192.0.2.1}}
    active: hot
    store: {kind: command}
    dns: {name: wr.example.test., ttl: 30}
`, zoneFile)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	url, logs := startUp(t, "--config", cfgPath)
	var addr string
	testtool.WaitFor(t, 30*time.Second, func() error {
		nc, err := nats.Connect(url)
		if err != nil {
			return err
		}
		defer nc.Close()
		var st struct {
			api.ServiceStatus
			Details api.DNSStatus `json:"details"`
		}
		if err := call(t.Context(), nc, time.Second, events.ServiceDNSUpdater, api.Status, nil, &st); err != nil {
			return fmt.Errorf("%v\n%s", err, logs)
		}
		if addr = st.Details.Listen; addr == "" {
			return fmt.Errorf("dns-updater status has no listen address: %+v", st)
		}
		return nil
	})
	return url, addr
}

// TestDNSSetShowHistory: the operator sets a name by hand, sees it in
// show and history, and the embedded server answers it.
func TestDNSSetShowHistory(t *testing.T) {
	url, dnsAddr := startUpWithDNS(t)
	var out bytes.Buffer
	if code := run([]string{"dns", "set", "wr.example.test", "192.0.2.7", "--nats", url}, &out, &out); code != 0 {
		t.Fatalf("dns set exited %d:\n%s", code, out.String())
	}
	if !strings.Contains(out.String(), "wr.example.test. A 192.0.2.1 -> 192.0.2.7 (ttl 30, embedded), verified after") {
		t.Fatalf("dns set printed:\n%s", out.String())
	}

	m := new(dns.Msg)
	m.SetQuestion("wr.example.test.", dns.TypeA)
	r, _, err := (&dns.Client{Timeout: 5 * time.Second}).Exchange(m, dnsAddr)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Answer) != 1 || r.Answer[0].(*dns.A).A.String() != "192.0.2.7" {
		t.Fatalf("the embedded server answers %v", r.Answer)
	}

	out.Reset()
	if code := run([]string{"dns", "show", "--nats", url}, &out, &out); code != 0 {
		t.Fatalf("dns show exited %d:\n%s", code, out.String())
	}
	if !strings.HasPrefix(out.String(), "zone example.test. (embedded, serial 2)\n") ||
		!hasRow(out.String(), "wr.example.test. A 30 192.0.2.7 wr-manager") || !hasRow(out.String(), "ns.example.test. A 300 127.0.0.1 -") {
		t.Fatalf("dns show printed:\n%s", out.String())
	}
	out.Reset()
	if code := run([]string{"dns", "show", "WR.example.test", "--json", "--nats", url}, &out, &out); code != 0 {
		t.Fatalf("dns show NAME exited %d:\n%s", code, out.String())
	}
	var recs api.DNSRecordsReply
	if err := json.Unmarshal(out.Bytes(), &recs); err != nil || len(recs.Records) != 1 || recs.Records[0].Value != "192.0.2.7" {
		t.Fatalf("dns show NAME --json printed %s (%v)", out.String(), err)
	}

	out.Reset()
	if code := run([]string{"dns", "set", "wr.example.test", "192.0.2.8", "--ttl", "10", "--json", "--nats", url}, &out, &out); code != 0 {
		t.Fatalf("dns set --json exited %d:\n%s", code, out.String())
	}
	var u events.DNSRecordUpdated
	if err := json.Unmarshal(out.Bytes(), &u); err != nil || u.Old != "192.0.2.7" || u.New != "192.0.2.8" || u.TTL != 10 {
		t.Fatalf("dns set --json printed %s (%v)", out.String(), err)
	}

	out.Reset()
	if code := run([]string{"dns", "history", "wr.example.test.", "--json", "--nats", url}, &out, &out); code != 0 {
		t.Fatalf("dns history exited %d:\n%s", code, out.String())
	}
	var hist []api.DNSChange
	if err := json.Unmarshal(out.Bytes(), &hist); err != nil || len(hist) != 2 || hist[0].New != "192.0.2.8" || hist[1].Old != "192.0.2.1" || hist[1].Kind != "set" {
		t.Fatalf("dns history --json printed %s (%v)", out.String(), err)
	}
	out.Reset()
	if code := run([]string{"dns", "history", "--nats", url}, &out, &out); code != 0 {
		t.Fatalf("dns history exited %d:\n%s", code, out.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 3 || !strings.Contains(strings.Join(strings.Fields(lines[1]), " "), "wr.example.test. A 192.0.2.7 192.0.2.8 10 set wr-manager 0 ") ||
		!strings.Contains(strings.Join(strings.Fields(lines[2]), " "), "wr.example.test. A 192.0.2.1 192.0.2.7 30 set wr-manager 0 ") {
		t.Fatalf("dns history printed:\n%s", out.String())
	}
}

// TestDNSFailoverDoneWhen is issue 4's "done when", through the binary's
// own commands: after a hand-published InstanceActivated the embedded
// server answers the new address (to dig, over UDP and TCP, and to a
// resolver library), a stale epoch published afterwards changes nothing,
// and `lifeboat dns history` shows every change.
func TestDNSFailoverDoneWhen(t *testing.T) {
	url, dnsAddr := startUpWithDNS(t)
	publish := func(body string) {
		t.Helper()
		var out bytes.Buffer
		if code := run([]string{"events", "publish", "InstanceActivated", body, "--nats", url}, &out, &out); code != 0 {
			t.Fatalf("events publish InstanceActivated %s exited %d:\n%s", body, code, out.String())
		}
	}
	served := func(want string) {
		t.Helper()
		testtool.WaitFor(t, 30*time.Second, func() error {
			m := new(dns.Msg)
			m.SetQuestion("wr.example.test.", dns.TypeA)
			m.RecursionDesired = false
			r, _, err := (&dns.Client{Timeout: 5 * time.Second}).Exchange(m, dnsAddr)
			if err != nil {
				return err
			}
			if len(r.Answer) != 1 || !r.Authoritative || r.Answer[0].(*dns.A).A.String() != want {
				return fmt.Errorf("the embedded server answers %v (aa=%v), want %s", r.Answer, r.Authoritative, want)
			}
			return nil
		})
		for _, transport := range []string{"+notcp", "+tcp"} {
			if got := testtool.Dig(t, dnsAddr, transport, "wr.example.test", "A", "+short"); got != want {
				t.Fatalf("dig %s wr.example.test A +short = %q, want %s", transport, got, want)
			}
		}
	}

	// history waits until dns history --json gives want: served is not
	// yet verified, the leader's change job verifies after the host
	// applied the change.
	history := func(want ...string) {
		t.Helper()
		testtool.WaitFor(t, 30*time.Second, func() error {
			var out bytes.Buffer
			if code := run([]string{"dns", "history", "--json", "--nats", url}, &out, &out); code != 0 {
				return fmt.Errorf("dns history exited %d:\n%s", code, out.String())
			}
			var hist []api.DNSChange
			if err := json.Unmarshal(out.Bytes(), &hist); err != nil {
				return fmt.Errorf("dns history --json printed %s: %v", out.String(), err)
			}
			var got []string
			for _, c := range hist {
				got = append(got, fmt.Sprintf("%s %s %s->%s epoch=%d verified=%v", c.Kind, c.Name, c.Old, c.New, c.Epoch, c.Verified))
			}
			if strings.Join(got, "\n") != strings.Join(want, "\n") {
				return fmt.Errorf("dns history:\n%s\nwant (the stale epoch 1 nowhere):\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
			return nil
		})
	}

	publish(`{"instance":"wr-manager","from":"hot-1","to":"cold-1","address":"198.51.100.7","epoch":2}`)
	served("198.51.100.7")
	// Verified before the next (a change still verifying when a newer one
	// of its name arrives is superseded, and never verified).
	history("activate wr.example.test. 192.0.2.1->198.51.100.7 epoch=2 verified=true")
	// A late activation from an older epoch, then a newer one: once the
	// newer one is served, the stale one has been handled (one consumer,
	// in order), and it must have changed nothing.
	publish(`{"instance":"wr-manager","from":"cold-1","to":"hot-1","address":"192.0.2.66","epoch":1}`)
	publish(`{"instance":"wr-manager","from":"cold-1","to":"cold-2","address":"198.51.100.8","epoch":3}`)
	served("198.51.100.8")
	history("activate wr.example.test. 198.51.100.7->198.51.100.8 epoch=3 verified=true",
		"activate wr.example.test. 192.0.2.1->198.51.100.7 epoch=2 verified=true")
	var out bytes.Buffer
	if code := run([]string{"dns", "history", "wr.example.test", "--nats", url}, &out, &out); code != 0 {
		t.Fatalf("dns history NAME exited %d:\n%s", code, out.String())
	}
	if lines := strings.Split(strings.TrimSpace(out.String()), "\n"); len(lines) != 3 || strings.Contains(out.String(), "192.0.2.66") {
		t.Fatalf("dns history wr.example.test printed:\n%s\nwant a header and the two changes", out.String())
	}
}

// TestDNSSetRefusedSaysWhy: a name lifeboat does not own and a name
// outside the zone fail with the service's reason and a non-zero exit.
func TestDNSSetRefusedSaysWhy(t *testing.T) {
	url, _ := startUpWithDNS(t)
	for _, c := range []struct{ name, want string }{
		{"ns.example.test", "not owned"},
		{"www.example.org", `"www.example.org." is not in zone "example.test."`},
	} {
		var out bytes.Buffer
		code := run([]string{"dns", "set", c.name, "192.0.2.9", "--nats", url}, &out, &out)
		if code != 1 || !strings.Contains(out.String(), c.want) {
			t.Errorf("dns set %s: exit %d, output:\n%s\nwant exit 1 and %q", c.name, code, out.String(), c.want)
		}
	}
	var out bytes.Buffer
	if code := run([]string{"dns", "show", "www.example.org", "--nats", url}, &out, &out); code != 1 || !strings.Contains(out.String(), "not in zone") {
		t.Fatalf("dns show outside the zone: exit %d:\n%s", code, out.String())
	}
}

func TestDNSBadArgumentsExitWithUsage(t *testing.T) {
	for _, args := range [][]string{
		{"dns", "set", "wr.example.test"},
		{"dns", "set", "wr.example.test", "not-an-ip"},
		{"dns", "set", "wr.example.test", "192.0.2.1", "extra"},
		{"dns", "show", "a", "b"},
		{"dns", "history", "a", "b"},
		{"dns", "history", "--limit", "0"},
	} {
		var out bytes.Buffer
		code := run(args, &out, &out)
		if code != 2 || !strings.Contains(out.String(), "Usage:") {
			t.Errorf("lifeboat %s: exit %d, want 2 with usage; output:\n%s", strings.Join(args, " "), code, out.String())
		}
	}
	var out bytes.Buffer
	if code := run([]string{"dns", "set", "wr.example.test", "not-an-ip"}, &out, &out); !strings.Contains(out.String(), `"not-an-ip" is not an IP address`) {
		t.Fatalf("exit %d; the usage error does not quote the address:\n%s", code, out.String())
	}
}

// TestUpRefusesBadDNSConfig: a dns section's mistakes are reported at
// their key and line, like every other key.
func TestUpRefusesBadDNSConfig(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lifeboat.yaml")
	if err := os.WriteFile(path, []byte("host: h1\ndns:\n  zone: example.test.\ninstances:\n  wr:\n    hosts: {hot: {address: 192.0.2.1}}\n    active: hot\n    store: {kind: command}\n    dns:\n      name: wr.example.org\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	code := run([]string{"up", "--config", path, "--data", t.TempDir()}, &out, &out)
	if want := `lifeboat.yaml:10: instances.wr.dns.name: "wr.example.org."`; code == 0 || !strings.Contains(out.String(), want) {
		t.Fatalf("exit %d, output:\n%s\nwant it to contain %q", code, out.String(), want)
	}
}

// hasRow says whether a table printed by the CLI has a line whose
// space-separated fields are those of row.
func hasRow(table, row string) bool {
	for _, line := range strings.Split(table, "\n") {
		if strings.Join(strings.Fields(line), " ") == row {
			return true
		}
	}
	return false
}

// TestExampleDNSSectionLoads keeps deploy/examples/lifeboat.yaml's dns
// section valid.
func TestExampleDNSSectionLoads(t *testing.T) {
	cfg, f, err := loadConfig(filepath.Join("..", "..", "deploy", "examples", "lifeboat.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.validate(f); err != nil {
		t.Fatal(err)
	}
	if cfg.DNS.Zone != "example.com." || cfg.DNS.Instances["wr-manager"].Name != "wr.example.com." || cfg.DNS.Embedded.Listen != "127.0.0.1:5353" {
		t.Fatalf("dns section = %+v", cfg.DNS)
	}
}
