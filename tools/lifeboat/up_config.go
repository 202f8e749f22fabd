package main

// lifeboat.yaml belongs to `lifeboat up`: it holds each service's own
// section (dns, backup), so this file and up.go are the only files of the
// CLI that link service code (integration/imports_test.go). The other
// commands speak to services through lifeboat.dev/events/api and
// lifeboat.dev/pkg/client.

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"lifeboat.dev/events"
	"lifeboat.dev/pkg/bus"
	"lifeboat.dev/pkg/config"
	"lifeboat.dev/pkg/instances"
	"lifeboat.dev/pkg/lease"
	backupscheduler "lifeboat.dev/services/backup-scheduler"
	dnsupdater "lifeboat.dev/services/dns-updater"
	syncer "lifeboat.dev/services/sync"
)

// Config is lifeboat.yaml: the process's settings. Command-line flags
// override it. Every host reads the same file: in a path-valued key,
// {host} stands for the host's name and a relative path is taken from the
// data directory (see resolvePaths).
type Config struct {
	// Host is this process's host identity (default: the hostname).
	Host string `yaml:"host"`
	// Data is the data directory: service databases, the embedded NATS store.
	Data string `yaml:"data"`
	// HTTP is where /healthz, /readyz and /metrics are served.
	HTTP string `yaml:"http"`
	// Targets are the services this process runs ("all" for every one).
	Targets []string   `yaml:"targets"`
	Log     LogConfig  `yaml:"log"`
	NATS    NATSConfig `yaml:"nats"`
	// HeartbeatInterval is how often this host announces itself.
	HeartbeatInterval time.Duration `yaml:"heartbeat_interval"`
	// Instances are the protected instances, each declared once: hosts,
	// active and standby, store, DNS name (package instances).
	Instances instances.Config `yaml:"instances"`
	// DNS configures dns-updater: the zone and the provider; the names it
	// changes are the instances' (instances.<name>.dns; see
	// services/dns-updater/README.md).
	DNS dnsupdater.Config `yaml:"dns"`
	// Leases shape the instances' leases and the services' leaders'.
	Leases LeasesConfig `yaml:"leases"`
	// Backup configures backup-scheduler: the backup plans and the built-in
	// plan lifeboat-self (see deploy/examples/lifeboat.yaml).
	Backup backupscheduler.Config `yaml:"backup"`
	// Sync configures sync: stall timeout, bandwidth, named targets
	// (services/sync/README.md).
	Sync syncer.FileConfig `yaml:"sync"`

	// filePaths are the path-valued keys the file set, as it set them (see
	// resolvePaths).
	filePaths map[string]string
	// hash is the hex SHA-256 of the file's bytes, "" with no file: the
	// heartbeats' and the host info's config_hash.
	hash string
	// sync is Sync checked and resolved by validate, for the service.
	sync syncer.Config
}

// LeasesConfig is leases: how long a lease lives unrenewed (DESIGN §1
// "Instances"). A TTL must outlast an election of the bucket's stream
// leader (renewals stall 4.5–7.5 s here when its node dies) plus the
// margin for clock skew.
type LeasesConfig struct {
	// TTL of an instance's lease (default 20 s).
	TTL time.Duration `yaml:"ttl"`
	// LeaderTTL of a service leader's lease (default 20 s).
	LeaderTTL time.Duration `yaml:"leader_ttl"`
	// Margin covers the clock skew between hosts (default 1 s); a skew
	// above it is an error (lifeboat status).
	Margin time.Duration `yaml:"margin"`
}

// options are the lease options for a bucket with ttl.
func (lc LeasesConfig) options(bucket string, ttl time.Duration) lease.Options {
	o := lease.NewOptions(bucket)
	o.TTL, o.Renew, o.Margin = ttl, ttl/10, lc.Margin
	return o
}

// LogConfig shapes the process log.
type LogConfig struct {
	Level  string `yaml:"level"`  // debug, info, warn, error
	Format string `yaml:"format"` // text or json
}

// NATSConfig says where the bus is.
type NATSConfig struct {
	// URLs of an external cluster; empty runs an embedded server.
	URLs []string `yaml:"urls"`
	// Listen is the embedded server's client address.
	Listen string `yaml:"listen"`
	// Auth is the directory `lifeboat init-cluster` wrote: this host
	// reads cluster.json and host-<host>.nk from it, requires every client
	// and route to authenticate, and acts only on operator commands
	// signed by an operator key.
	Auth string `yaml:"auth"`
	// Insecure lets the embedded node listen beyond loopback without
	// Auth: only on a network where every machine is trusted.
	Insecure    bool   `yaml:"insecure"`
	Credentials string `yaml:"credentials"`
	NKey        string `yaml:"nkey"`
	TLS         struct {
		CA   string `yaml:"ca"`
		Cert string `yaml:"cert"`
		Key  string `yaml:"key"`
	} `yaml:"tls"`
	// Cluster joins the embedded server to the other hosts' nodes.
	Cluster ClusterConfig `yaml:"cluster"`
	// Replicas of each stream: 1 on a single embedded node, min(3, nodes)
	// on an embedded cluster, 3 on an external one.
	Replicas     int           `yaml:"replicas"`
	DedupeWindow time.Duration `yaml:"dedupe_window"`
}

// ClusterConfig is nats.cluster: the embedded node's routes to its peers.
type ClusterConfig struct {
	Name   string   `yaml:"name"`
	Listen string   `yaml:"listen"`
	Peers  []string `yaml:"peers"`
}

// defaultConfig is what `lifeboat up` runs with no file and no flags.
func defaultConfig() Config {
	host, _ := os.Hostname()
	return Config{
		Host:              host,
		Data:              "lifeboat-data",
		HTTP:              "127.0.0.1:9180",
		Targets:           []string{"all"},
		Log:               LogConfig{Level: "info", Format: "text"},
		NATS:              NATSConfig{Listen: "127.0.0.1:4222", DedupeWindow: 2 * time.Minute},
		HeartbeatInterval: 5 * time.Second,
		Leases:            LeasesConfig{TTL: 20 * time.Second, LeaderTTL: 20 * time.Second, Margin: time.Second},
		DNS:               dnsupdater.NewConfig(),
	}
}

// loadConfig reads path over the defaults and validates the result.
func loadConfig(path string) (Config, *config.File, error) {
	cfg := defaultConfig()
	if path == "" {
		return cfg, &config.File{Path: "(defaults)"}, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return cfg, nil, fmt.Errorf("config: %w", err)
	}
	f, err := config.Parse(path, data, &cfg)
	if err != nil {
		return cfg, nil, err
	}
	// The hash of the bytes just parsed, not of a second read: what the
	// heartbeats carry is what this process runs with.
	sum := sha256.Sum256(data)
	cfg.hash = hex.EncodeToString(sum[:])
	cfg.filePaths = map[string]string{}
	cfg.eachPath(func(key string, p *string) {
		if f.Has(key) {
			cfg.filePaths[key] = *p
		}
	})
	return cfg, f, nil
}

// eachPath calls fn with every path-valued key of cfg (the data directory
// aside) and a pointer to its value.
func (cfg *Config) eachPath(fn func(key string, p *string)) {
	for _, k := range []struct {
		key string
		p   *string
	}{
		{"nats.auth", &cfg.NATS.Auth},
		{"nats.credentials", &cfg.NATS.Credentials},
		{"nats.nkey", &cfg.NATS.NKey},
		{"nats.tls.ca", &cfg.NATS.TLS.CA},
		{"nats.tls.cert", &cfg.NATS.TLS.Cert},
		{"nats.tls.key", &cfg.NATS.TLS.Key},
		{"dns.embedded.zone_file", &cfg.DNS.Embedded.ZoneFile},
		{"dns.rfc2136.key_file", &cfg.DNS.RFC2136.KeyFile},
		{"dns.infoblox.credentials_file", &cfg.DNS.Infoblox.CredentialsFile},
		{"dns.infoblox.ca_file", &cfg.DNS.Infoblox.CAFile},
		{"backup.self.directory", &cfg.Backup.Self.Directory},
	} {
		fn(k.key, k.p)
	}
	for i := range cfg.Backup.Plans {
		p := &cfg.Backup.Plans[i]
		fn(fmt.Sprintf("backup.plans[%d].directory", i), &p.Directory)
		fn(fmt.Sprintf("backup.plans[%d].store.path", i), &p.Store.Path)
	}
	for _, name := range cfg.Instances.Names() {
		inst := cfg.Instances[name]
		fn("instances."+name+".store.path", &inst.Store.Path)
		cfg.Instances[name] = inst
	}
	for _, name := range slices.Sorted(maps.Keys(cfg.Sync.Targets)) {
		t := cfg.Sync.Targets[name]
		fn("sync.targets."+name+".path", &t.Path)
		cfg.Sync.Targets[name] = t
	}
}

// resolvePaths makes the shared file's paths this host's, once the flags
// have set the host and the data directory: {host} becomes the host's name
// in the data directory and in every path-valued key, and a relative path
// the file gives is taken from the data directory. A path a flag gave
// (one that differs from what the file said) is the command line's: a
// relative one stays relative to the working directory. Resolving twice
// changes nothing more.
func (cfg *Config) resolvePaths() {
	cfg.Data = strings.ReplaceAll(cfg.Data, "{host}", cfg.Host)
	cfg.eachPath(func(key string, p *string) {
		if *p == "" {
			return
		}
		orig, fromFile := cfg.filePaths[key]
		fromFile = fromFile && orig == *p
		*p = strings.ReplaceAll(*p, "{host}", cfg.Host)
		if fromFile && !filepath.IsAbs(*p) {
			*p = filepath.Join(cfg.Data, *p)
		}
	})
}

// validate checks cfg, naming the key (and its line, when it came from f).
func (cfg *Config) validate(f *config.File) error {
	if cfg.Host == "" || strings.ContainsAny(cfg.Host, ".*> \t") {
		return f.Errorf("host", "%q is not a usable host name (letters, digits, - and _; no dots: it is part of NATS subjects)", cfg.Host)
	}
	cfg.resolvePaths()
	if cfg.Data == "" {
		return f.Errorf("data", "must name a directory")
	}
	if _, _, err := net.SplitHostPort(cfg.HTTP); err != nil && cfg.HTTP != "" {
		return f.Errorf("http", "%q is not host:port (e.g. 127.0.0.1:9180)", cfg.HTTP)
	}
	if _, err := resolveTargets(cfg.Targets); err != nil {
		return f.Errorf("targets", "%v", err)
	}
	if lv := cfg.Log.Level; !slices.Contains([]string{"debug", "info", "warn", "error"}, lv) {
		return f.Errorf("log.level", "%q is not one of debug, info, warn, error", lv)
	}
	if fm := cfg.Log.Format; fm != "text" && fm != "json" {
		return f.Errorf("log.format", "%q is not text or json", fm)
	}
	for i, u := range cfg.NATS.URLs {
		if !strings.Contains(u, "://") {
			return f.Errorf(fmt.Sprintf("nats.urls[%d]", i), "%q is not a NATS URL (e.g. nats://n1:4222)", u)
		}
	}
	if len(cfg.NATS.URLs) == 0 {
		if _, _, err := net.SplitHostPort(cfg.NATS.Listen); err != nil {
			return f.Errorf("nats.listen", "%q is not host:port (e.g. 127.0.0.1:4222)", cfg.NATS.Listen)
		}
	}
	if cfg.NATS.Auth != "" {
		if len(cfg.NATS.URLs) > 0 {
			return f.Errorf("nats.auth", "is the embedded cluster's authentication; with an external cluster (nats.urls) give this host's credential with nats.credentials or nats.nkey")
		}
		if cfg.NATS.NKey != "" || cfg.NATS.Credentials != "" {
			return f.Errorf("nats.auth", "already names this host's key (host-%s.nk): drop nats.nkey and nats.credentials", cfg.Host)
		}
		if cfg.NATS.Insecure {
			return f.Errorf("nats.insecure", "contradicts nats.auth: drop one")
		}
	}
	cl := cfg.NATS.Cluster
	if cl.Listen != "" || len(cl.Peers) > 0 {
		if len(cfg.NATS.URLs) > 0 {
			return f.Errorf("nats.cluster", "an embedded cluster and an external one (nats.urls) exclude each other: drop one")
		}
		if _, _, err := net.SplitHostPort(cl.Listen); err != nil {
			return f.Errorf("nats.cluster.listen", "%q is not host:port (e.g. 10.0.0.1:6222); a cluster needs this node's route address (--cluster-listen)", cl.Listen)
		}
		for i, p := range cl.Peers {
			if _, _, err := net.SplitHostPort(p); err != nil {
				return f.Errorf(fmt.Sprintf("nats.cluster.peers[%d]", i), "%q is not host:port of a peer's cluster address (e.g. 10.0.0.2:6222)", p)
			}
		}
	}
	nodes := bus.ClusterOptions{Listen: cl.Listen, Peers: cl.Peers}.Nodes()
	switch r := cfg.NATS.Replicas; {
	case r == 0:
		cfg.NATS.Replicas = bus.DefaultReplicas(bus.Options{URLs: cfg.NATS.URLs, Cluster: bus.ClusterOptions{Listen: cl.Listen, Peers: cl.Peers}})
	case r < 0 || r > 5:
		return f.Errorf("nats.replicas", "%d is out of range: use 1 (one server) or 3 (a cluster), at most 5", r)
	case r > nodes && len(cfg.NATS.URLs) == 0:
		return f.Errorf("nats.replicas", "%d replicas need as many nodes: the embedded cluster declares %d (nats.cluster.peers), or use an external cluster (nats.urls)", r, nodes)
	}
	if cfg.NATS.DedupeWindow <= 0 {
		return f.Errorf("nats.dedupe_window", "must be positive (e.g. 2m)")
	}
	if cfg.HeartbeatInterval <= 0 {
		return f.Errorf("heartbeat_interval", "must be positive (e.g. 5s)")
	}
	for _, l := range []struct {
		key, what string
		ttl       time.Duration
	}{{"leases.ttl", instances.LeaseBucket, cfg.Leases.TTL}, {"leases.leader_ttl", "lifeboat-leader-<service>", cfg.Leases.LeaderTTL}} {
		if err := cfg.Leases.options(l.what, l.ttl).Validate(); err != nil {
			return f.Errorf(l.key, "%v", err)
		}
	}
	if cfg.Leases.Margin <= 0 {
		return f.Errorf("leases.margin", "must be positive (e.g. 1s): it covers the clock skew between hosts")
	}
	if err := cfg.Instances.Validate(f); err != nil {
		return err
	}
	cfg.DNS.UseInstances(cfg.Instances)
	if err := cfg.DNS.Validate(f, "dns"); err != nil {
		return err
	}
	cfg.Backup.UseInstances(cfg.Instances)
	if err := cfg.Backup.Validate(f, "backup", cfg.Data); err != nil {
		return err
	}
	return cfg.validateSync(f)
}

// validateSync checks the sync section against the plans and hosts and
// keeps the service's view of it.
func (cfg *Config) validateSync(f *config.File) error {
	plans, err := cfg.Backup.Normalize(cfg.Data)
	if err != nil {
		return err
	}
	var pts []syncer.PlanTargets
	for i, p := range plans {
		key := fmt.Sprintf("backup.plans[%d]", i)
		if p.Name == backupscheduler.SelfPlan {
			key = "backup.self"
		}
		pts = append(pts, syncer.PlanTargets{Key: key, Name: p.Name, Directory: p.Directory, Targets: p.Targets})
	}
	hosts := []string{cfg.Host}
	for _, inst := range cfg.Instances {
		for h := range inst.Hosts {
			if !slices.Contains(hosts, h) {
				hosts = append(hosts, h)
			}
		}
	}
	sc, err := cfg.Sync.Resolve(f, "sync", pts, hosts)
	if err != nil {
		return err
	}
	cfg.sync = sc
	return nil
}

// resolveTargets expands "all" and checks every name is a service.
func resolveTargets(targets []string) ([]string, error) {
	var out []string
	for _, t := range targets {
		for _, name := range strings.Split(t, ",") {
			name = strings.TrimSpace(name)
			switch {
			case name == "":
			case name == "all":
				out = append(out, events.Services...)
			case slices.Contains(events.Services, name):
				out = append(out, name)
			default:
				return nil, fmt.Errorf("%q is not a service (choose from all, %s)", name, strings.Join(events.Services, ", "))
			}
		}
	}
	slices.Sort(out)
	out = slices.Compact(out)
	if len(out) == 0 {
		return nil, fmt.Errorf("no service to run (choose from all, %s)", strings.Join(events.Services, ", "))
	}
	return out, nil
}
