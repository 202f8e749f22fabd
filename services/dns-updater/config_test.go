package dnsupdater

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"lifeboat.dev/pkg/config"
	"lifeboat.dev/pkg/instances"
)

func TestStale(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name                         string
		epoch, applied, queued, seen int64
		want                         bool
	}{
		{"first activation", 1, 0, 0, 0, false},
		{"newer than applied", 6, 5, 0, 5, false},
		{"same as applied", 5, 5, 0, 5, true},
		{"older than applied", 3, 5, 0, 5, true},
		{"same as queued", 6, 5, 6, 6, true},
		{"newer than queued", 7, 5, 6, 6, false},
		{"older than one seen and refused", 4, 0, 0, 5, true},
		{"the one seen and failed, sent again", 5, 4, 0, 5, false},
	} {
		if got := stale(c.epoch, c.applied, c.queued, c.seen); got != c.want {
			t.Errorf("%s: stale(%d, applied %d, queued %d, seen %d) = %v, want %v", c.name, c.epoch, c.applied, c.queued, c.seen, got, c.want)
		}
	}
}

// TestConfigErrorsNameTheKey loads dns sections from YAML the way
// lifeboat does and checks that each mistake is reported at its key and
// line.
func TestConfigErrorsNameTheKey(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	badZone := filepath.Join(dir, "bad.zone")
	if err := os.WriteFile(badZone, []byte("$ORIGIN example.test.\n@ IN SOA ns hostmaster 1 2 3 4 5\nwww A 300.1.1.1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	badKey := filepath.Join(dir, "bad.key")
	if err := os.WriteFile(badKey, []byte("key \"k.\" { algorithm hmac-sha256; };\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, yaml, key, msg string
		instances            string // the top-level instances section
	}{
		{"instances without a zone", "provider: embedded", "instances.wr.dns.name", "dns.zone is empty", instance("wr", "192.0.2.1", "{name: wr.example.test.}")},
		{"zone not a name", "zone: 'exa mple'", "dns.zone", "not a domain name", ""},
		{"unknown provider", "zone: example.test.\nprovider: route53", "dns.provider", `"route53"`, ""},
		{"listen not host:port", "zone: example.test.\nembedded: {listen: localhost}", "dns.embedded.listen", `"localhost"`, ""},
		{"zone file that does not load", "zone: example.test.\nembedded: {zone_file: " + badZone + "}", "dns.embedded.zone_file", "300.1.1.1", ""},
		{"missing zone file", "zone: example.test.\nembedded: {zone_file: /nonexistent/z}", "dns.embedded.zone_file", "no such file", ""},
		{"rfc2136 without server", "zone: example.test.\nprovider: rfc2136", "dns.provider", "dns.rfc2136.server", ""},
		{"bad tsig key", "zone: example.test.\nprovider: rfc2136\nrfc2136: {server: 127.0.0.1, key_file: " + badKey + "}", "dns.rfc2136.key_file", "secret", ""},
		{"infoblox not a url", "zone: example.test.\nprovider: infoblox\ninfoblox: {url: gm.example.com}", "dns.infoblox.url", `"gm.example.com"`, ""},
		{"infoblox over plain http", "zone: example.test.\nprovider: infoblox\ninfoblox: {url: 'http://gm.example.com'}", "dns.infoblox.url", "plain http is refused", ""},
		{"infoblox without credentials", "zone: example.test.\nprovider: infoblox\ninfoblox: {url: 'https://gm'}", "dns.infoblox", "credentials_file", ""},
		{"name outside the zone", "zone: example.test.", "instances.wr.dns.name", `"wr.example.org." is not in zone`, instance("wr", "192.0.2.1", "{name: wr.example.org}")},
		{"instance without a name", "zone: example.test.", "instances.wr.dns", "instances.wr.dns.name is missing", instance("wr", "192.0.2.1", "{ttl: 30}")},
		{"CNAME", "zone: example.test.", "instances.wr.dns.type", "A or AAAA", instance("wr", "hot.example.test.", "{name: wr.example.test, type: CNAME}")},
		{"one name for two instances", "zone: example.test.", "instances.b.dns.name", `instance "a"`, instance("a", "192.0.2.1", "{name: wr.example.test}") + instance("b", "192.0.2.1", "{name: WR.example.test.}")},
		{"dns.instances moved", "zone: example.test.\ninstances:\n  wr-manager: {name: wr.example.test., ttl: 30}", "dns.instances",
			"dns.instances moved to instances.<name>.dns: declare each instance once in the top-level instances section (its hosts, active, standby and store) and give its DNS name there, e.g. instances.wr-manager.dns: {name: wr.example.test., ttl: 30}", ""},
		{"empty dns.instances moved too", "instances: {}", "dns.instances", "dns.instances moved to instances.<name>.dns: ", ""},
		{"retry attempts", "zone: example.test.\nretry: {attempts: -1}", "dns.retry.attempts", "out of range", ""},
		{"verify net", "zone: example.test.\nverify: {net: sctp}", "dns.verify.net", `"sctp"`, ""},
		{"backoffs reversed", "zone: example.test.\nverify: {first_backoff: 2s, max_backoff: 1s}", "dns.verify.max_backoff", "shorter", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var doc struct {
				DNS       Config           `yaml:"dns"`
				Instances instances.Config `yaml:"instances"`
			}
			doc.DNS = NewConfig()
			text := "dns:\n  " + strings.ReplaceAll(c.yaml, "\n", "\n  ") + "\n"
			if c.instances != "" {
				text += "instances:\n" + c.instances
			}
			f, err := config.Parse("lifeboat.yaml", []byte(text), &doc)
			if err != nil {
				t.Fatalf("parse: %v", err)
			}
			// As lifeboat up does: the instances section, then the
			// names dns-updater takes from it.
			err = doc.Instances.Validate(f)
			if err == nil {
				doc.DNS.UseInstances(doc.Instances)
				err = doc.DNS.Validate(f, "dns")
			}
			if err == nil {
				t.Fatalf("no error for\n%s", text)
			}
			ce, ok := err.(*config.Error)
			if !ok || ce.Key != c.key || ce.Line == 0 || !strings.Contains(ce.Msg, c.msg) {
				t.Fatalf("error %v (key %q), want key %s with a line and %q in the message", err, keyOf(err), c.key, c.msg)
			}
		})
	}
}

// instance is an entry of the top-level instances section: one host at
// address, and the dns mapping given.
func instance(name, address, dns string) string {
	return "  " + name + ":\n    hosts: {hot: {address: " + address + "}}\n    active: hot\n    store: {kind: command}\n    dns: " + dns + "\n"
}

// TestUseInstances: dns-updater's names are the top-level instances'
// instances.<name>.dns; an instance without one is not dns-updater's.
func TestUseInstances(t *testing.T) {
	t.Parallel()
	in := instances.Config{
		"wr":    {Hosts: map[string]instances.Host{"hot": {Address: "192.0.2.1"}}, Active: "hot", Store: instances.Store{Kind: "command"}, DNS: instances.DNS{Name: "WR.example.test", TTL: 30}},
		"v6":    {Hosts: map[string]instances.Host{"hot": {Address: "2001:db8::1"}}, Active: "hot", Store: instances.Store{Kind: "command"}, DNS: instances.DNS{Name: "v6.example.test", Type: "aaaa"}},
		"plain": {Hosts: map[string]instances.Host{"hot": {Address: "192.0.2.1"}}, Active: "hot", Store: instances.Store{Kind: "command"}},
	}
	if err := in.Validate(nil); err != nil {
		t.Fatal(err)
	}
	cfg := NewConfig()
	cfg.Zone = "example.test."
	cfg.UseInstances(in)
	if err := cfg.Validate(nil, "dns"); err != nil {
		t.Fatal(err)
	}
	want := map[string]InstanceConfig{
		"wr": {Name: "wr.example.test.", Type: "A", TTL: 30},
		"v6": {Name: "v6.example.test.", Type: "AAAA", TTL: DefaultTTL},
	}
	if len(cfg.Instances) != len(want) || cfg.Instances["wr"] != want["wr"] || cfg.Instances["v6"] != want["v6"] {
		t.Fatalf("Instances = %+v, want %+v", cfg.Instances, want)
	}
}

func keyOf(err error) string {
	if ce, ok := err.(*config.Error); ok {
		return ce.Key
	}
	return ""
}

func TestConfigDefaults(t *testing.T) {
	t.Parallel()
	cfg := NewConfig()
	cfg.Zone = "Example.Test"
	cfg.Instances = map[string]InstanceConfig{"wr": {Name: "WR.example.test"}, "v6": {Name: "v6.example.test.", Type: "aaaa", TTL: 30}}
	if err := cfg.Validate(nil, "dns"); err != nil {
		t.Fatal(err)
	}
	if cfg.Zone != "example.test." || cfg.Provider != ProviderEmbedded || cfg.Embedded.Listen != "127.0.0.1:5353" {
		t.Fatalf("zone, provider, listen = %q, %q, %q", cfg.Zone, cfg.Provider, cfg.Embedded.Listen)
	}
	if got := cfg.Instances["wr"]; got != (InstanceConfig{Name: "wr.example.test.", Type: "A", TTL: DefaultTTL}) {
		t.Fatalf("wr = %+v", got)
	}
	if got := cfg.Instances["v6"]; got != (InstanceConfig{Name: "v6.example.test.", Type: "AAAA", TTL: 30}) {
		t.Fatalf("v6 = %+v", got)
	}
	if cfg.Retry.Attempts != 5 || cfg.Verify.Timeout != 30*time.Second {
		t.Fatalf("retry %+v verify %+v", cfg.Retry, cfg.Verify)
	}
	if !cfg.owned().Owns("wr.example.test") || cfg.owned().Owns("keep.example.test.") {
		t.Fatal("owned names are not the instances' names")
	}
	idle := NewConfig()
	if err := idle.Validate(nil, "dns"); err != nil || idle.Enabled() {
		t.Fatalf("the default config: %v, enabled %v; want valid and idle", err, idle.Enabled())
	}
}
