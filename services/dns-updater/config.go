package dnsupdater

import (
	"fmt"
	"maps"
	"net"
	"net/url"
	"slices"
	"strings"
	"time"

	"lifeboat.dev/pkg/config"
	"lifeboat.dev/pkg/instances"
	"lifeboat.dev/services/dns-updater/provider"
	"lifeboat.dev/services/dns-updater/provider/embedded"
	"lifeboat.dev/services/dns-updater/provider/infoblox"
	"lifeboat.dev/services/dns-updater/provider/rfc2136"
)

// The provider kinds Config.Provider names.
const (
	ProviderEmbedded = "embedded"
	ProviderRFC2136  = "rfc2136"
	ProviderInfoblox = "infoblox"
)

// DefaultTTL is an instance's TTL when its config gives none: short, so a
// failover reaches clients within a minute.
const DefaultTTL = 60

// Config is the dns section of lifeboat.yaml. Without a zone the service
// runs idle: it serves no DNS and changes nothing.
type Config struct {
	// Zone is the zone lifeboat changes names in, e.g. "example.com.".
	Zone string `yaml:"zone"`
	// Provider is embedded (the default: lifeboat's own authoritative
	// server), rfc2136 (dynamic updates signed with TSIG) or infoblox (WAPI).
	Provider string         `yaml:"provider"`
	Embedded EmbeddedConfig `yaml:"embedded"`
	RFC2136  RFC2136Config  `yaml:"rfc2136"`
	Infoblox InfobloxConfig `yaml:"infoblox"`
	// Instances maps an instance's name (as restore's InstanceActivated
	// names it) to its DNS name. These names are the only ones lifeboat
	// changes. They are declared in the top-level instances section
	// (instances.<name>.dns), not here: UseInstances fills this map.
	Instances map[string]InstanceConfig `yaml:"-"`
	// MovedInstances is the old dns.instances key, read only to refuse it
	// with a message saying where the names went (instances.<name>.dns).
	MovedInstances map[string]InstanceConfig `yaml:"instances"`
	// LowerTTLBefore, when not 0, is the TTL in seconds an instance's name
	// is lowered to when a (non-drill) failover of it starts, so that
	// resolvers let go of the old address quickly; the instance's TTL is
	// restored once the failover completes (or fails).
	LowerTTLBefore uint32       `yaml:"lower_ttl_before"`
	Verify         VerifyConfig `yaml:"verify"`
	Retry          RetryConfig  `yaml:"retry"`
}

// EmbeddedConfig configures the embedded authoritative server.
type EmbeddedConfig struct {
	// Listen is the UDP and TCP address served (default 127.0.0.1:5353, so
	// no root is needed; port 0 picks a free port).
	Listen string `yaml:"listen"`
	// ZoneFile is an optional RFC 1035 master file with the zone's SOA and
	// the records lifeboat does not own.
	ZoneFile string `yaml:"zone_file"`
}

// RFC2136Config configures dynamic updates (BIND, Knot, PowerDNS).
type RFC2136Config struct {
	// Server is the primary's host:port (port 53 when omitted).
	Server string `yaml:"server"`
	// KeyFile holds the TSIG key, as tsig-keygen prints it, or one line
	// [algorithm:]name:secret. Without it updates go unsigned.
	KeyFile string `yaml:"key_file"`
	// Authoritative are the servers to verify against (default: Server).
	Authoritative []string `yaml:"authoritative"`
	// Timeout bounds one exchange with the server.
	Timeout time.Duration `yaml:"timeout"`
}

// InfobloxConfig configures the Infoblox WAPI provider.
type InfobloxConfig struct {
	// URL is the grid master's base URL, https://gm.example.com.
	URL string `yaml:"url"`
	// Version is the WAPI version (default 2.12).
	Version string `yaml:"version"`
	// View is the DNS view (default "default").
	View string `yaml:"view"`
	// CredentialsFile holds one line username:password.
	CredentialsFile string `yaml:"credentials_file"`
	// CAFile is a PEM file of CAs trusted besides the system's.
	CAFile string `yaml:"ca_file"`
	// Authoritative are the grid members serving the zone (host:port),
	// which changes are verified against.
	Authoritative []string `yaml:"authoritative"`
	// Timeout bounds one HTTP request.
	Timeout time.Duration `yaml:"timeout"`
}

// InstanceConfig is one instance's DNS name (instances.<name>.dns).
type InstanceConfig struct {
	// Name is the fully qualified name, inside the zone.
	Name string `yaml:"name"`
	// Type is A (the default) or AAAA; dns-updater does not set CNAMEs.
	Type string `yaml:"type"`
	// TTL in seconds (default DefaultTTL).
	TTL uint32 `yaml:"ttl"`
}

// VerifyConfig bounds the verification of each change against the
// authoritative servers (see provider.VerifyOptions).
type VerifyConfig struct {
	Timeout      time.Duration `yaml:"timeout"`
	FirstBackoff time.Duration `yaml:"first_backoff"`
	MaxBackoff   time.Duration `yaml:"max_backoff"`
	QueryTimeout time.Duration `yaml:"query_timeout"`
	// Net is udp (the default) or tcp.
	Net string `yaml:"net"`
}

// RetryConfig says how a change that failed for a reason that may pass (an
// unreachable server, SERVFAIL, an answer not yet verified) is retried.
type RetryConfig struct {
	// Attempts in all, the first included (default 5).
	Attempts int `yaml:"attempts"`
	// FirstBackoff is the wait before the second attempt; it doubles up to
	// MaxBackoff.
	FirstBackoff time.Duration `yaml:"first_backoff"`
	MaxBackoff   time.Duration `yaml:"max_backoff"`
}

// NewConfig returns the defaults: no zone (idle), the embedded provider on
// 127.0.0.1:5353, verification within 30s, 5 attempts backing off from 1s
// to 30s.
func NewConfig() Config {
	v := provider.NewVerifyOptions()
	ib := infoblox.NewOptions("", "")
	return Config{
		Provider: ProviderEmbedded,
		Embedded: EmbeddedConfig{Listen: embedded.DefaultAddr},
		RFC2136:  RFC2136Config{Timeout: 5 * time.Second},
		Infoblox: InfobloxConfig{Version: ib.Version, View: ib.View, Timeout: ib.Timeout},
		Verify:   VerifyConfig{Timeout: v.Timeout, FirstBackoff: v.FirstBackoff, MaxBackoff: v.MaxBackoff, QueryTimeout: v.QueryTimeout, Net: v.Net},
		Retry:    RetryConfig{Attempts: 5, FirstBackoff: time.Second, MaxBackoff: 30 * time.Second},
	}
}

// UseInstances takes the instances' DNS names from lifeboat.yaml's
// top-level instances section: every instance that declares one
// (instances.<name>.dns) is an instance whose name dns-updater changes.
func (c *Config) UseInstances(in instances.Config) {
	c.Instances = make(map[string]InstanceConfig, len(in))
	for name, inst := range in {
		if inst.DNS.Name != "" {
			c.Instances[name] = InstanceConfig{Name: inst.DNS.Name, Type: inst.DNS.Type, TTL: inst.DNS.TTL}
		}
	}
}

// Enabled says whether a zone is configured.
func (c *Config) Enabled() bool { return c.Zone != "" }

// Validate checks c, canonicalises its names and fills the defaults of
// what it leaves empty. An error names the key, prefix-qualified (e.g.
// "dns.zone"; an instance's name is the top-level "instances.wr.dns.name"),
// and its line when f (the loaded file, or nil) knows it. The old key
// dns.instances is refused, saying where it moved. Files the provider
// needs (zone file, TSIG key, credentials) are read now, so that a bad one
// is reported at start with its key.
func (c *Config) Validate(f *config.File, prefix string) error {
	if f == nil {
		f = &config.File{Path: "config"}
	}
	key := func(k string) string {
		if prefix == "" {
			return k
		}
		return prefix + "." + k
	}
	// errAt reports at the first of keys the file sets (a missing key has
	// no line, and up reports a key the file lacks as a bad flag), or at
	// the first key.
	errAt := func(keys []string, format string, args ...any) error {
		at := key(keys[0])
		for _, k := range keys {
			if f.Has(key(k)) {
				at = key(k)
				break
			}
		}
		return f.Errorf(at, format, args...)
	}
	// instAt reports at an instance's key (instances.<inst>.dns.<field>,
	// top-level) or, when the file lacks it, the nearest one above it.
	instAt := func(inst, field, format string, args ...any) error {
		at := "instances." + inst + ".dns." + field
		for _, k := range []string{at, "instances." + inst + ".dns", "instances." + inst} {
			if f.Has(k) {
				return f.Errorf(k, format, args...)
			}
		}
		return f.Errorf(at, format, args...)
	}
	if len(c.MovedInstances) > 0 || f.Has(key("instances")) {
		eg := "instances.wr-manager.dns: {name: wr.example.com., type: A, ttl: 60}"
		if names := slices.Sorted(maps.Keys(c.MovedInstances)); len(names) > 0 {
			ic := c.MovedInstances[names[0]]
			eg = fmt.Sprintf("instances.%s.dns: {name: %s", names[0], ic.Name)
			if ic.Type != "" {
				eg += ", type: " + ic.Type
			}
			if ic.TTL != 0 {
				eg += fmt.Sprintf(", ttl: %d", ic.TTL)
			}
			eg += "}"
		}
		return f.Errorf(key("instances"), "%s moved to instances.<name>.dns: declare each instance once in the top-level instances section (its hosts, active, standby and store) and give its DNS name there, e.g. %s", key("instances"), eg)
	}
	d := NewConfig()
	if c.Zone == "" {
		if names := slices.Sorted(maps.Keys(c.Instances)); len(names) > 0 {
			return instAt(names[0], "name", "instance %q has a DNS name but %s is empty: set the zone the names are in (e.g. example.com.), or drop the name", names[0], key("zone"))
		}
		return nil
	}
	zone, err := provider.CheckZone(c.Zone)
	if err == nil {
		// The apex must be a name lifeboat can manage names under
		// (letters, digits, '-', '_'), not just any DNS name.
		_, err = provider.Validate(zone, provider.Record{Name: zone, Type: "A", Value: "192.0.2.1"})
	}
	if err != nil {
		return f.Errorf(key("zone"), "%q is not a domain name (write it like example.com.): %v", c.Zone, err)
	}
	c.Zone = zone

	if c.Provider == "" {
		c.Provider = d.Provider
	}
	switch c.Provider {
	case ProviderEmbedded:
		if c.Embedded.Listen == "" {
			c.Embedded.Listen = d.Embedded.Listen
		}
		if _, _, err := net.SplitHostPort(c.Embedded.Listen); err != nil {
			return f.Errorf(key("embedded.listen"), "%q is not host:port (e.g. 127.0.0.1:5353)", c.Embedded.Listen)
		}
		if c.Embedded.ZoneFile != "" {
			if _, err := embedded.LoadZoneFile(c.Embedded.ZoneFile, zone); err != nil {
				return f.Errorf(key("embedded.zone_file"), "%v", err)
			}
		}
	case ProviderRFC2136:
		r := &c.RFC2136
		if r.Server == "" {
			return errAt([]string{"rfc2136.server", "rfc2136", "provider"}, "the rfc2136 provider needs %s: the primary server's host:port", key("rfc2136.server"))
		}
		host := r.Server
		if h, _, err := net.SplitHostPort(r.Server); err == nil {
			host = h
		}
		if host == "" || strings.ContainsAny(host, " /") {
			return f.Errorf(key("rfc2136.server"), "%q is not host or host:port (e.g. ns1.example.com:53)", r.Server)
		}
		if r.KeyFile != "" {
			if _, err := rfc2136.ReadKeyFile(r.KeyFile); err != nil {
				return f.Errorf(key("rfc2136.key_file"), "%v", err)
			}
		}
		for i, a := range r.Authoritative {
			if _, _, err := net.SplitHostPort(a); err != nil {
				return f.Errorf(key(fmt.Sprintf("rfc2136.authoritative[%d]", i)), "%q is not host:port", a)
			}
		}
		if r.Timeout <= 0 {
			r.Timeout = d.RFC2136.Timeout
		}
	case ProviderInfoblox:
		ib := &c.Infoblox
		if ib.URL == "" {
			return errAt([]string{"infoblox.url", "infoblox", "provider"}, "the infoblox provider needs %s: the grid master's https:// URL", key("infoblox.url"))
		}
		if u, err := url.Parse(ib.URL); err != nil || u.Host == "" || u.Scheme != "https" {
			return f.Errorf(key("infoblox.url"), "%q is not an https:// URL of the grid master (plain http is refused: TLS is always verified)", ib.URL)
		}
		if ib.CredentialsFile == "" {
			return errAt([]string{"infoblox.credentials_file", "infoblox", "provider"}, "the infoblox provider needs %s: a file holding username:password", key("infoblox.credentials_file"))
		}
		if _, _, err := infoblox.ReadCredentials(ib.CredentialsFile); err != nil {
			return f.Errorf(key("infoblox.credentials_file"), "%v", err)
		}
		if len(ib.Authoritative) == 0 {
			return errAt([]string{"infoblox.authoritative", "infoblox", "provider"}, "the infoblox provider needs %s: the grid members serving the zone (host:port), to verify changes against", key("infoblox.authoritative"))
		}
		for i, a := range ib.Authoritative {
			if _, _, err := net.SplitHostPort(a); err != nil {
				return f.Errorf(key(fmt.Sprintf("infoblox.authoritative[%d]", i)), "%q is not host:port", a)
			}
		}
		if ib.Version == "" {
			ib.Version = d.Infoblox.Version
		}
		if ib.View == "" {
			ib.View = d.Infoblox.View
		}
		if ib.Timeout <= 0 {
			ib.Timeout = d.Infoblox.Timeout
		}
	default:
		return f.Errorf(key("provider"), "%q is not a DNS provider (use embedded, rfc2136 or infoblox)", c.Provider)
	}

	owner := map[string]string{}
	for _, inst := range slices.Sorted(maps.Keys(c.Instances)) {
		ic := c.Instances[inst]
		if strings.TrimSpace(inst) == "" {
			return f.Errorf("instances", "an instance has an empty name")
		}
		if ic.Name == "" {
			return instAt(inst, "name", "instance %q has no instances.%s.dns.name: give its fully qualified DNS name", inst, inst)
		}
		if ic.Type == "" {
			ic.Type = "A"
		}
		ic.Type = strings.ToUpper(ic.Type)
		if ic.Type != "A" && ic.Type != "AAAA" {
			return instAt(inst, "type", "%q: dns-updater points an instance's name at its host's IP address, so the type is A or AAAA", ic.Type)
		}
		// Validate with a placeholder address checks the name alone: a
		// domain name, inside the zone.
		sample := map[string]string{"A": "192.0.2.1", "AAAA": "2001:db8::1"}[ic.Type]
		r, err := provider.Validate(zone, provider.Record{Name: ic.Name, Type: ic.Type, Value: sample})
		if err != nil {
			return instAt(inst, "name", "%q: %v", ic.Name, err)
		}
		ic.Name = r.Name
		if other, ok := owner[ic.Name]; ok {
			return instAt(inst, "name", "%s is already the name of instance %q: one name, one instance (or their epochs would fight)", ic.Name, other)
		}
		owner[ic.Name] = inst
		if ic.TTL == 0 {
			ic.TTL = DefaultTTL
		}
		if ic.TTL > 2147483647 {
			return instAt(inst, "ttl", "%d is larger than the largest TTL, 2147483647", ic.TTL)
		}
		c.Instances[inst] = ic
	}
	if c.LowerTTLBefore > 2147483647 {
		return f.Errorf(key("lower_ttl_before"), "%d is larger than the largest TTL, 2147483647", c.LowerTTLBefore)
	}

	v := &c.Verify
	for _, p := range []struct {
		name string
		val  *time.Duration
		def  time.Duration
	}{
		{"verify.timeout", &v.Timeout, d.Verify.Timeout},
		{"verify.first_backoff", &v.FirstBackoff, d.Verify.FirstBackoff},
		{"verify.max_backoff", &v.MaxBackoff, d.Verify.MaxBackoff},
		{"verify.query_timeout", &v.QueryTimeout, d.Verify.QueryTimeout},
		{"retry.first_backoff", &c.Retry.FirstBackoff, d.Retry.FirstBackoff},
		{"retry.max_backoff", &c.Retry.MaxBackoff, d.Retry.MaxBackoff},
	} {
		if *p.val < 0 {
			return f.Errorf(key(p.name), "%s is negative", *p.val)
		}
		if *p.val == 0 {
			*p.val = p.def
		}
	}
	if v.MaxBackoff < v.FirstBackoff {
		return f.Errorf(key("verify.max_backoff"), "%s is shorter than verify.first_backoff (%s)", v.MaxBackoff, v.FirstBackoff)
	}
	if c.Retry.MaxBackoff < c.Retry.FirstBackoff {
		return f.Errorf(key("retry.max_backoff"), "%s is shorter than retry.first_backoff (%s)", c.Retry.MaxBackoff, c.Retry.FirstBackoff)
	}
	if v.Net == "" {
		v.Net = d.Verify.Net
	}
	if v.Net != "udp" && v.Net != "tcp" {
		return f.Errorf(key("verify.net"), "%q is not udp or tcp", v.Net)
	}
	switch {
	case c.Retry.Attempts == 0:
		c.Retry.Attempts = d.Retry.Attempts
	case c.Retry.Attempts < 0 || c.Retry.Attempts > 100:
		return f.Errorf(key("retry.attempts"), "%d is out of range: 1 to 100", c.Retry.Attempts)
	}
	return nil
}

// verifyOptions returns the verification bounds.
func (c *Config) verifyOptions() provider.VerifyOptions {
	v := c.Verify
	return provider.VerifyOptions{Timeout: v.Timeout, FirstBackoff: v.FirstBackoff, MaxBackoff: v.MaxBackoff, QueryTimeout: v.QueryTimeout, Net: v.Net}
}

// owned returns the names declared for instances.
func (c *Config) owned() provider.Owned {
	names := make([]string, 0, len(c.Instances))
	for _, ic := range c.Instances {
		names = append(names, ic.Name)
	}
	return provider.OwnedNames(names...)
}
