// Package instances is the top-level instances section of lifeboat.yaml:
// every protected instance declared once, with its hosts, which of them is
// the preferred active and which the standby, its store and its DNS name.
// Backup plans, sync targets, restore and dns-updater read instances from
// here (DESIGN.md §1, "Instances").
//
//	instances:
//	  wr-manager:
//	    hosts:
//	      hot:  {address: 10.0.0.1}
//	      cold: {address: 10.0.0.2}
//	    active: hot
//	    standby: cold
//	    store: {kind: sqlite, path: /var/lib/wr/db}
//	    dns: {name: wr.example.com., type: A, ttl: 60}
//
// An instance's hooks (stop, start, health, maintenance), its failover mode
// and its staged-recovery table belong here too; they are added with the
// code that uses them. Until then the config loader refuses them as unknown
// keys.
package instances

import (
	"fmt"
	"maps"
	"net/netip"
	"regexp"
	"slices"
	"strings"

	"lifeboat.dev/pkg/config"
)

// Config is the instances section: instance name → its declaration.
type Config map[string]Instance

// Instance is one protected instance.
type Instance struct {
	// Hosts are the hosts the instance can run on, by host name (the
	// --host of their lifeboat process). One host, or at least two for an
	// instance with a standby.
	Hosts map[string]Host `yaml:"hosts"`
	// Active is the preferred active host, one of Hosts. Which host is
	// active at a given time is decided by the instance's lease.
	Active string `yaml:"active"`
	// Standby is the host the instance fails over to, one of Hosts other
	// than Active; required when there are two hosts or more.
	Standby string `yaml:"standby"`
	// Store is what the instance keeps its state in.
	Store Store `yaml:"store"`
	// DNS is the instance's DNS name, which dns-updater points at the active
	// host's address; an instance without one is not switched in DNS.
	DNS DNS `yaml:"dns"`
}

// Host is one host of an instance.
type Host struct {
	// Address is where clients reach the instance on this host: an IPv4
	// address for a DNS name of type A, IPv6 for AAAA, a domain name for
	// CNAME.
	Address string `yaml:"address"`
}

// Store is an instance's store: one of pkg/storekind's kinds and where it is.
type Store struct {
	// Kind is sqlite, files or command (pkg/storekind's kinds).
	Kind string `yaml:"kind"`
	// Path is the database file (sqlite) or the root of the tree (files);
	// a command store's path is whatever its load command makes of it, and
	// may be empty.
	Path string `yaml:"path"`
}

// DNS is an instance's DNS name.
type DNS struct {
	// Name is the fully qualified name; Validate writes it lower case with
	// the trailing dot.
	Name string `yaml:"name"`
	// Type is A (the default), AAAA or CNAME.
	Type string `yaml:"type"`
	// TTL in seconds; 0 leaves it to dns-updater's default.
	TTL uint32 `yaml:"ttl"`
}

// storeKinds are the names pkg/storekind's kinds return from Name.
var storeKinds = []string{"sqlite", "files", "command"}

// dnsTypes are the record types an instance's name can have.
var dnsTypes = []string{"A", "AAAA", "CNAME"}

// maxTTL is the largest TTL DNS allows (RFC 2181 §8).
const maxTTL = 1<<31 - 1

var instanceName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$`)

// Names returns the instances' names, sorted.
func (c Config) Names() []string { return slices.Sorted(maps.Keys(c)) }

// OnHost returns the names of the instances that list host among their
// hosts, sorted.
func (c Config) OnHost(host string) []string {
	var out []string
	for _, name := range c.Names() {
		if _, ok := c[name].Hosts[host]; ok {
			out = append(out, name)
		}
	}
	return out
}

// DNSNames returns the DNS names the instances declare, sorted: the only
// names lifeboat changes.
func (c Config) DNSNames() []string {
	var out []string
	for _, inst := range c {
		if inst.DNS.Name != "" {
			out = append(out, inst.DNS.Name)
		}
	}
	slices.Sort(out)
	return out
}

// Validate checks the section of the config file f (nil when there is
// none) and fills its defaults: a DNS name's type (A) and its canonical
// form (lower case, trailing dot). An error names the key, under
// "instances", and the line of the key or, for a missing one, of the
// nearest key above it that the file has.
func (c Config) Validate(f *config.File) error {
	if f == nil {
		f = &config.File{Path: "config"}
	}
	owner := map[string]string{} // DNS name -> the instance that has it
	for _, name := range c.Names() {
		inst := c[name]
		if err := inst.validate(f, "instances."+name, name); err != nil {
			return err
		}
		if n := inst.DNS.Name; n != "" {
			if other, ok := owner[n]; ok {
				return f.Errorf("instances."+name+".dns.name", "%s is also the DNS name of instance %q: one name, one instance", n, other)
			}
			owner[n] = name
		}
		c[name] = inst
	}
	return nil
}

func (inst *Instance) validate(f *config.File, key, name string) error {
	if !instanceName.MatchString(name) {
		return f.Errorf(key, "%q is not an instance name (1 to 64 letters, digits, '-' or '_', starting with a letter or digit)", name)
	}
	hosts := slices.Sorted(maps.Keys(inst.Hosts))
	if len(hosts) == 0 {
		return missing(f, key+".hosts", "the hosts the instance runs on, e.g. {hot: {address: 10.0.0.1}, cold: {address: 10.0.0.2}}")
	}
	for _, h := range hosts {
		if h == "" || strings.ContainsAny(h, ".*> \t\r\n") {
			return f.Errorf(key+".hosts."+h, "%q is not a host name (a host's --host: no dots, spaces, '*' or '>')", h)
		}
	}
	inst.DNS.Type = strings.ToUpper(strings.TrimSpace(inst.DNS.Type))
	hasDNS := inst.DNS != (DNS{}) || f.Has(key+".dns")
	if hasDNS && inst.DNS.Type == "" {
		inst.DNS.Type = "A"
	}
	for _, h := range hosts {
		if err := checkAddress(f, key+".hosts."+h, inst.Hosts[h].Address, inst.DNS.Type); err != nil {
			return err
		}
	}
	list := strings.Join(hosts, ", ")
	switch {
	case inst.Active == "":
		return missing(f, key+".active", "the preferred active host, one of %s", list)
	case !slices.Contains(hosts, inst.Active):
		return f.Errorf(key+".active", "%q is not one of the instance's hosts (%s)", inst.Active, list)
	}
	switch {
	case inst.Standby == "" && len(hosts) > 1:
		return missing(f, key+".standby", "the host the instance fails over to, one of %s other than %s", list, inst.Active)
	case inst.Standby == "":
	case !slices.Contains(hosts, inst.Standby):
		return f.Errorf(key+".standby", "%q is not one of the instance's hosts (%s)", inst.Standby, list)
	case inst.Standby == inst.Active:
		return f.Errorf(key+".standby", "%q is also the active host: the standby is another host", inst.Standby)
	}
	switch s := inst.Store; {
	case s.Kind == "":
		return missing(f, key+".store.kind", "what the instance keeps its state in: %s", strings.Join(storeKinds, ", "))
	case !slices.Contains(storeKinds, s.Kind):
		return f.Errorf(key+".store.kind", "%q is not a store kind (use %s)", s.Kind, strings.Join(storeKinds, ", "))
	case strings.TrimSpace(s.Path) == "" && s.Kind != "command":
		what := map[string]string{"sqlite": "the database file", "files": "the root of the tree"}[s.Kind]
		return missing(f, key+".store.path", "%s", what)
	}
	if !hasDNS {
		return nil
	}
	d := &inst.DNS
	if strings.TrimSpace(d.Name) == "" {
		return missing(f, key+".dns.name", "the instance's fully qualified DNS name, e.g. wr.example.com.")
	}
	n, ok := canonicalName(d.Name)
	if !ok {
		return f.Errorf(key+".dns.name", "%q is not a domain name (letters, digits, '-' and '_' in dot-separated labels, e.g. wr.example.com.)", d.Name)
	}
	d.Name = n
	if !slices.Contains(dnsTypes, d.Type) {
		return f.Errorf(key+".dns.type", "%q is not a record type for an instance (use %s)", d.Type, strings.Join(dnsTypes, ", "))
	}
	if d.TTL > maxTTL {
		return f.Errorf(key+".dns.ttl", "%d is larger than the largest TTL, %d", d.TTL, maxTTL)
	}
	return nil
}

// checkAddress checks a host's address at key (instances.<name>.hosts.<h>),
// against the instance's DNS type when it has one.
func checkAddress(f *config.File, key, addr, typ string) error {
	if strings.TrimSpace(addr) == "" {
		return missing(f, key+".address", "where clients reach the instance on this host (an IP address)")
	}
	ip, err := netip.ParseAddr(addr)
	isIP := err == nil && ip.Zone() == ""
	_, isName := canonicalName(addr)
	switch {
	case typ == "A" && !(isIP && ip.Is4()):
		return f.Errorf(key+".address", "%q is not an IPv4 address, which the instance's DNS name (type A) needs", addr)
	case typ == "AAAA" && !(isIP && ip.Is6() && !ip.Is4In6()):
		return f.Errorf(key+".address", "%q is not an IPv6 address, which the instance's DNS name (type AAAA) needs", addr)
	case typ == "CNAME" && (isIP || !isName):
		return f.Errorf(key+".address", "%q is not a domain name, which the instance's DNS name (type CNAME) needs", addr)
	case !isIP && !isName:
		return f.Errorf(key+".address", "%q is neither an IP address nor a domain name", addr)
	}
	return nil
}

// missing reports that key is absent, at the line of the nearest key above
// it that the file has (an absent key has no line of its own).
func missing(f *config.File, key, format string, args ...any) error {
	at := key
	for !f.Has(at) {
		i := strings.LastIndex(at, ".")
		if i < 0 {
			at = key
			break
		}
		at = at[:i]
	}
	return f.Errorf(at, "%s is missing: %s", key, fmt.Sprintf(format, args...))
}

// canonicalName returns name lower case with a trailing dot, and whether it
// is a domain name lifeboat manages: dot-separated labels of 1 to 63
// letters, digits, '-' and '_', at most 253 bytes in all.
func canonicalName(name string) (string, bool) {
	n := strings.ToLower(strings.TrimSuffix(strings.TrimSpace(name), "."))
	if n == "" || len(n) > 253 {
		return "", false
	}
	for _, label := range strings.Split(n, ".") {
		if label == "" || len(label) > 63 {
			return "", false
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
				return "", false
			}
		}
	}
	return n + ".", true
}
