package main

// lifeboat.yaml belongs to `lifeboat up`: it holds each service's own
// section (dns, backup), so this file and up.go are the only files of the
// CLI that link service code (integration/imports_test.go). The other
// commands speak to services through lifeboat.dev/events/api and
// lifeboat.dev/pkg/client.

import (
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"time"

	"lifeboat.dev/events"
	"lifeboat.dev/pkg/bus"
	"lifeboat.dev/pkg/config"
	backupscheduler "lifeboat.dev/services/backup-scheduler"
	dnsupdater "lifeboat.dev/services/dns-updater"
)

// Config is lifeboat.yaml: the process's settings. Command-line flags
// override it.
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
	// DNS configures dns-updater: the zone, the provider and the instances'
	// names (see services/dns-updater/README.md).
	DNS dnsupdater.Config `yaml:"dns"`
	// Backup configures backup-scheduler: the backup plans and the built-in
	// plan lifeboat-self (see deploy/examples/lifeboat.yaml).
	Backup backupscheduler.Config `yaml:"backup"`
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
	Listen      string `yaml:"listen"`
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
		DNS:               dnsupdater.NewConfig(),
	}
}

// loadConfig reads path over the defaults and validates the result.
func loadConfig(path string) (Config, *config.File, error) {
	cfg := defaultConfig()
	if path == "" {
		return cfg, &config.File{Path: "(defaults)"}, nil
	}
	f, err := config.Load(path, &cfg)
	if err != nil {
		return cfg, nil, err
	}
	return cfg, f, nil
}

// validate checks cfg, naming the key (and its line, when it came from f).
func (cfg *Config) validate(f *config.File) error {
	if cfg.Host == "" || strings.ContainsAny(cfg.Host, ".*> \t") {
		return f.Errorf("host", "%q is not a usable host name (letters, digits, - and _; no dots: it is part of NATS subjects)", cfg.Host)
	}
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
	if err := cfg.DNS.Validate(f, "dns"); err != nil {
		return err
	}
	if err := cfg.Backup.Validate(f, "backup", cfg.Data); err != nil {
		return err
	}
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
