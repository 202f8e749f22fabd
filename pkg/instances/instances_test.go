package instances

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"lifeboat.dev/pkg/config"
	"lifeboat.dev/pkg/storekind/command"
	"lifeboat.dev/pkg/storekind/files"
	"lifeboat.dev/pkg/storekind/sqlite"
)

// file is lifeboat.yaml with only the instances section.
type file struct {
	Instances Config `yaml:"instances"`
}

func parse(t *testing.T, yaml string) (Config, *config.File) {
	t.Helper()
	var c file
	f, err := config.Parse("lifeboat.yaml", []byte(yaml), &c)
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	return c.Instances, f
}

const good = `instances:
  wr-manager:
    hosts:
      hot: {address: 10.0.0.1}
      cold: {address: 10.0.0.2}
    active: hot
    standby: cold
    store: {kind: sqlite, path: /var/lib/wr/db}
    dns: {name: WR.example.com, ttl: 60}
  cycle:
    hosts:
      cold: {address: 10.0.0.2}
      witness: {address: 10.0.0.3}
    active: cold
    standby: witness
    store: {kind: files, path: /opt/cycle_server}
  solo:
    hosts:
      hot: {address: "2001:db8::1"}
    active: hot
    store: {kind: command}
    dns: {name: solo.example.com., type: aaaa}
`

func TestValidate(t *testing.T) {
	c, f := parse(t, good)
	if err := c.Validate(f); err != nil {
		t.Fatal(err)
	}
	if got := c["wr-manager"].DNS; got != (DNS{Name: "wr.example.com.", Type: "A", TTL: 60}) {
		t.Errorf("wr-manager's dns = %+v, want the name canonical and type A", got)
	}
	if got := c["solo"].DNS; got != (DNS{Name: "solo.example.com.", Type: "AAAA"}) {
		t.Errorf("solo's dns = %+v", got)
	}
	if got := c["cycle"].DNS; got != (DNS{}) {
		t.Errorf("cycle declares no DNS name but got %+v", got)
	}
	if got := c.Names(); !slices.Equal(got, []string{"cycle", "solo", "wr-manager"}) {
		t.Errorf("Names = %v", got)
	}
	if got := c.OnHost("hot"); !slices.Equal(got, []string{"solo", "wr-manager"}) {
		t.Errorf("OnHost(hot) = %v", got)
	}
	if got := c.OnHost("witness"); !slices.Equal(got, []string{"cycle"}) {
		t.Errorf("OnHost(witness) = %v", got)
	}
	if got := c.OnHost("elsewhere"); len(got) != 0 {
		t.Errorf("OnHost(elsewhere) = %v", got)
	}
	if got := c.DNSNames(); !slices.Equal(got, []string{"solo.example.com.", "wr.example.com."}) {
		t.Errorf("DNSNames = %v", got)
	}
	var none Config
	if err := none.Validate(nil); err != nil || len(none.Names()) != 0 {
		t.Errorf("an empty section: %v, %v", err, none.Names())
	}
}

// instance is one instance "wr" with the given body lines (6 spaces in).
func instance(lines ...string) string {
	return "instances:\n  wr:\n" + "    " + strings.Join(lines, "\n    ") + "\n"
}

var (
	hosts   = "hosts: {hot: {address: 10.0.0.1}, cold: {address: 10.0.0.2}}"
	active  = "active: hot"
	standby = "standby: cold"
	store   = "store: {kind: sqlite, path: /db}"
)

func TestValidateErrors(t *testing.T) {
	tests := []struct {
		name, yaml string
		key        string // the key the error names
		line       int
		msg        string // part of the message
	}{
		{"bad instance name", "instances:\n  'w r':\n    active: hot\n", "instances.w r", 2, "not an instance name"},
		{"no hosts", instance(active, standby, store), "instances.wr", 2, "instances.wr.hosts is missing"},
		{"host with a dot", instance("hosts: {hot.example: {address: 10.0.0.1}, cold: {address: 10.0.0.2}}", active, standby, store), "instances.wr.hosts.hot.example", 3, "no dots"},
		{"host with a space", instance("hosts: {'hot 1': {address: 10.0.0.1}}", "active: hot 1", store), "instances.wr.hosts.hot 1", 3, "not a host name"},
		{"host without an address", instance("hosts:", "  hot: {}", "  cold: {address: 10.0.0.2}", active, standby, store), "instances.wr.hosts.hot", 4, "instances.wr.hosts.hot.address is missing"},
		{"bad address", instance("hosts: {hot: {address: 'not an address'}, cold: {address: 10.0.0.2}}", active, standby, store), "instances.wr.hosts.hot.address", 3, "neither an IP address nor a domain name"},
		{"missing active", instance(hosts, standby, store), "instances.wr", 2, "instances.wr.active is missing: the preferred active host, one of cold, hot"},
		{"unknown active", instance(hosts, "active: warm", standby, store), "instances.wr.active", 4, `"warm" is not one of the instance's hosts (cold, hot)`},
		{"missing standby", instance(hosts, active, store), "instances.wr", 2, "instances.wr.standby is missing"},
		{"unknown standby", instance(hosts, active, "standby: warm", store), "instances.wr.standby", 5, `"warm" is not one of`},
		{"standby is active", instance(hosts, active, "standby: hot", store), "instances.wr.standby", 5, "also the active host"},
		{"standby with one host", instance("hosts: {hot: {address: 10.0.0.1}}", active, standby, store), "instances.wr.standby", 5, `"cold" is not one of the instance's hosts (hot)`},
		{"no store", instance(hosts, active, standby), "instances.wr", 2, "instances.wr.store.kind is missing"},
		{"store kind not storekind's", instance(hosts, active, standby, "store: {kind: postgres, path: /db}"), "instances.wr.store.kind", 6, `"postgres" is not a store kind (use sqlite, files, command)`},
		{"store without a path", instance(hosts, active, standby, "store:", "  kind: files"), "instances.wr.store", 6, "instances.wr.store.path is missing: the root of the tree"},
		{"missing dns name", instance(hosts, active, standby, store, "dns:", "  type: A", "  ttl: 30"), "instances.wr.dns", 7, "instances.wr.dns.name is missing"},
		{"empty dns", instance(hosts, active, standby, store, "dns: {}"), "instances.wr.dns", 7, "instances.wr.dns.name is missing"},
		{"bad dns name", instance(hosts, active, standby, store, "dns: {name: 'wr..example.com'}"), "instances.wr.dns.name", 7, "not a domain name"},
		{"bad dns type", instance(hosts, active, standby, store, "dns:", "  name: wr.example.com.", "  type: MX"), "instances.wr.dns.type", 9, `"MX" is not a record type for an instance (use A, AAAA, CNAME)`},
		{"ttl too large", instance(hosts, active, standby, store, "dns: {name: wr.example.com., ttl: 4294967295}"), "instances.wr.dns.ttl", 7, "larger than the largest TTL"},
		{"A name, IPv6 address", instance("hosts: {hot: {address: '2001:db8::1'}}", active, store, "dns: {name: wr.example.com.}"), "instances.wr.hosts.hot.address", 3, "not an IPv4 address"},
		{"AAAA name, IPv4 address", instance("hosts: {hot: {address: 10.0.0.1}}", active, store, "dns: {name: wr.example.com., type: AAAA}"), "instances.wr.hosts.hot.address", 3, "not an IPv6 address"},
		{"CNAME name, IP address", instance("hosts: {hot: {address: 10.0.0.1}}", active, store, "dns: {name: wr.example.com., type: CNAME}"), "instances.wr.hosts.hot.address", 3, "not a domain name"},
		{"duplicate dns names", `instances:
  a:
    hosts: {hot: {address: 10.0.0.1}}
    active: hot
    store: {kind: command}
    dns: {name: wr.example.com}
  b:
    hosts: {cold: {address: 10.0.0.2}}
    active: cold
    store: {kind: command}
    dns: {name: WR.example.com.}
`, "instances.b.dns.name", 11, `wr.example.com. is also the DNS name of instance "a"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, f := parse(t, tt.yaml)
			err := c.Validate(f)
			var ce *config.Error
			if !errors.As(err, &ce) {
				t.Fatalf("Validate = %v, want a *config.Error", err)
			}
			if ce.Key != tt.key || ce.Line != tt.line || !strings.Contains(ce.Msg, tt.msg) {
				t.Fatalf("Validate = %q (key %q, line %d), want key %q, line %d and a message with %q", err, ce.Key, ce.Line, tt.key, tt.line, tt.msg)
			}
			if !strings.HasPrefix(err.Error(), "lifeboat.yaml:") {
				t.Fatalf("error %q does not name the file and line", err)
			}
		})
	}
}

// TestStoreKindsAreStorekinds: an instance's store kinds are the names
// pkg/storekind's kinds record, not a list of their own.
func TestStoreKindsAreStorekinds(t *testing.T) {
	want := []string{(*sqlite.Kind)(nil).Name(), (*files.Kind)(nil).Name(), (*command.Kind)(nil).Name()}
	if !slices.Equal(storeKinds, want) {
		t.Fatalf("storeKinds = %v, pkg/storekind's kinds are %v", storeKinds, want)
	}
}

// FuzzValidate: any instances section parses and validates without a
// panic, and one that validates keeps the rules the services rely on.
func FuzzValidate(f *testing.F) {
	f.Add([]byte(good))
	f.Add([]byte(instance(hosts, active, standby, store, "dns: {name: wr.example.com., type: cname}")))
	f.Add([]byte(instance(hosts, "active: cold", "standby: cold", store)))
	f.Add([]byte("instances:\n  a: {hosts: {h: {address: h.example.}}, active: h, store: {kind: command}, dns: {name: a.x, type: CNAME}}\n"))
	f.Add([]byte("instances: {a: null, b: []}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		var c file
		cf, err := config.Parse("fuzz.yaml", data, &c)
		if err != nil {
			return
		}
		if err := c.Instances.Validate(cf); err != nil {
			if !strings.HasPrefix(err.Error(), "fuzz.yaml") {
				t.Fatalf("error %q does not name the file", err)
			}
			return
		}
		names := map[string]bool{}
		for _, name := range c.Instances.Names() {
			inst := c.Instances[name]
			if _, ok := inst.Hosts[inst.Active]; !ok {
				t.Fatalf("%s: active %q is not a host", name, inst.Active)
			}
			if inst.Standby != "" {
				if _, ok := inst.Hosts[inst.Standby]; !ok || inst.Standby == inst.Active {
					t.Fatalf("%s: standby %q", name, inst.Standby)
				}
			} else if len(inst.Hosts) > 1 {
				t.Fatalf("%s: %d hosts and no standby", name, len(inst.Hosts))
			}
			if !slices.Contains(storeKinds, inst.Store.Kind) {
				t.Fatalf("%s: store kind %q", name, inst.Store.Kind)
			}
			if n := inst.DNS.Name; n != "" {
				if names[n] || !strings.HasSuffix(n, ".") || n != strings.ToLower(n) || !slices.Contains(dnsTypes, inst.DNS.Type) {
					t.Fatalf("%s: dns %+v", name, inst.DNS)
				}
				names[n] = true
			}
		}
		// Validating again changes nothing.
		before := len(c.Instances.DNSNames())
		if err := c.Instances.Validate(cf); err != nil || len(c.Instances.DNSNames()) != before {
			t.Fatalf("second Validate: %v", err)
		}
	})
}
