package main

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"lifeboat.dev/pkg/config"
)

// loadYAML writes text as dir/lifeboat.yaml and loads it.
func loadYAML(t *testing.T, dir, text string) (Config, *config.File) {
	t.Helper()
	path := filepath.Join(dir, "lifeboat.yaml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, f, err := loadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	return cfg, f
}

// TestConfigErrorsNameKeyAndLine: the instances section and the key it
// replaced are reported at their key and line when lifeboat up validates.
func TestConfigErrorsNameKeyAndLine(t *testing.T) {
	t.Parallel()
	const inst = "instances:\n  wr:\n    hosts: {hot: {address: 10.0.0.1}, cold: {address: 10.0.0.2}}\n"
	for _, tc := range []struct {
		name, yaml, want string
	}{
		{"unknown active", "host: h1\n" + inst + "    active: warm\n    standby: cold\n    store: {kind: sqlite, path: /db}\n",
			`lifeboat.yaml:5: instances.wr.active: "warm" is not one of the instance's hosts (cold, hot)`},
		{"standby is active", "host: h1\n" + inst + "    active: hot\n    standby: hot\n    store: {kind: sqlite, path: /db}\n",
			`lifeboat.yaml:6: instances.wr.standby: "hot" is also the active host`},
		{"lease too short", "host: h1\nleases:\n  ttl: 5s\n",
			"lifeboat.yaml:3: leases.ttl: lease lifeboat-instances: TTL 5s is too short: it must outlast a stream leader election (7.5s) + the stop hook (0s) + the clock-skew margin (1s) = 8.5s"},
		{"leader lease too short", "host: h1\nleases:\n  leader_ttl: 9s\n  margin: 2s\n",
			"lifeboat.yaml:3: leases.leader_ttl: lease lifeboat-leader-<service>: TTL 9s is too short"},
		{"no margin", "host: h1\nleases:\n  margin: 0s\n", "lifeboat.yaml:3: leases.margin: must be positive"},
		{"dns.instances moved", "host: h1\ndns:\n  zone: example.com.\n  instances:\n    wr-manager: {name: wr.example.com., type: A, ttl: 60}\n",
			"lifeboat.yaml:4: dns.instances: dns.instances moved to instances.<name>.dns: declare each instance once in the top-level instances section (its hosts, active, standby and store) and give its DNS name there, e.g. instances.wr-manager.dns: {name: wr.example.com., type: A, ttl: 60}"},
		{"unknown sync target", "host: h1\nbackup:\n  plans:\n    - {name: a, schedule: 1h/1d, directory: /b/a, store: {kind: sqlite, path: /db/a}, targets: [standby, usb]}\n",
			`lifeboat.yaml:4: backup.plans[0].targets[1]: "usb" is not a sync target: declare it under sync.targets, or list standby`},
		{"two plans in one target directory", "host: h1\nsync:\n  targets:\n    usb: {kind: dir, path: /mnt/usb}\nbackup:\n  plans:\n" +
			"    - {name: a, schedule: 1h/1d, directory: /b/a, store: {kind: sqlite, path: /db/a}, targets: [usb]}\n" +
			"    - {name: b, schedule: 1h/1d, directory: /b/b, store: {kind: sqlite, path: /db/b}, targets: [usb]}\n",
			`lifeboat.yaml:4: sync.targets.usb.path: /mnt/usb, plan b's copy at target usb, is also plan a's copy at target usb: put {plan} in the path`},
		{"target in the plan's own directory", "host: h1\nsync:\n  targets:\n    usb: {kind: dir, path: \"/b/{plan}\"}\nbackup:\n  plans:\n" +
			"    - {name: a, schedule: 1h/1d, directory: /b/a, store: {kind: sqlite, path: /db/a}, targets: [usb]}\n",
			`lifeboat.yaml:4: sync.targets.usb.path: /b/a, plan a's copy at target usb, is also plan a's own backup directory`},
		{"bad bandwidth", "host: h1\nsync:\n  targets:\n    usb: {kind: dir, path: \"/mnt/usb/{plan}\", bandwidth: fast}\n",
			`lifeboat.yaml:4: sync.targets.usb.bandwidth: "fast" is not a rate`},
		{"target named standby", "host: h1\nsync:\n  targets:\n    standby: {kind: dir, path: \"/mnt/usb/{plan}\"}\n",
			`lifeboat.yaml:4: sync.targets.standby: "standby" is the instance's other hosts`},
		{"unknown target kind", "host: h1\nsync:\n  targets:\n    offsite: {kind: s4, path: /x}\n",
			`lifeboat.yaml:4: sync.targets.offsite.kind: "s4" is not a target kind here: use dir`},
		{"negative stall timeout", "host: h1\nsync:\n  stall_timeout: -1s\n", "lifeboat.yaml:3: sync.stall_timeout: must be positive"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg, f := loadYAML(t, t.TempDir(), tc.yaml)
			err := cfg.validate(f)
			var ce *config.Error
			if !errors.As(err, &ce) || !strings.Contains(err.Error(), tc.want) || !f.Has(ce.Key) {
				t.Fatalf("validate = %v, want it to contain %q at a key the file has", err, tc.want)
			}
		})
	}
}

// TestConfigResolvesPaths: every host reads one file; {host} becomes the
// host's name and a relative path the file gives is under the data
// directory, while a path a flag gives keeps its command-line meaning.
func TestConfigResolvesPaths(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	text := `host: h1
data: ` + dir + `/{host}
nats:
  credentials: creds/{host}.creds
  tls: {ca: /etc/lifeboat/ca.pem, cert: "certs/{host}.pem"}
dns:
  zone: example.test.
  embedded: {listen: "127.0.0.1:0", zone_file: example.test.zone}
instances:
  wr:
    hosts: {h1: {address: 192.0.2.1}, h2: {address: 192.0.2.2}}
    active: h1
    standby: h2
    store: {kind: sqlite, path: "wr/{host}.db"}
    dns: {name: wr.example.test.}
backup:
  plans:
    - name: wr
      instance: wr
      schedule: 1h/1d
      directory: backups/wr
      store: {kind: sqlite, path: "/srv/{host}/wr.db"}
  self: {directory: "/mnt/backup/{host}"}
`
	cfg, f := loadYAML(t, dir, text)
	// Flags, laid over the file as up does: the host, and a TLS key given
	// relative to the working directory.
	cfg.Host = "h2"
	cfg.NATS.TLS.Key = "local/key.pem"
	data := filepath.Join(dir, "h2")
	if err := os.MkdirAll(data, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(data, "example.test.zone"), []byte("$ORIGIN example.test.\n@ IN SOA ns hostmaster 1 3600 600 604800 60\n@ NS ns\nns A 127.0.0.1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	check := func() {
		t.Helper()
		for _, c := range []struct{ key, got, want string }{
			{"data", cfg.Data, data},
			{"nats.credentials", cfg.NATS.Credentials, filepath.Join(data, "creds", "h2.creds")},
			{"nats.tls.ca", cfg.NATS.TLS.CA, "/etc/lifeboat/ca.pem"},
			{"nats.tls.cert", cfg.NATS.TLS.Cert, filepath.Join(data, "certs", "h2.pem")},
			{"nats.tls.key (a flag)", cfg.NATS.TLS.Key, "local/key.pem"},
			{"dns.embedded.zone_file", cfg.DNS.Embedded.ZoneFile, filepath.Join(data, "example.test.zone")},
			{"instances.wr.store.path", cfg.Instances["wr"].Store.Path, filepath.Join(data, "wr", "h2.db")},
			{"backup.plans[0].directory", cfg.Backup.Plans[0].Directory, filepath.Join(data, "backups", "wr")},
			{"backup.plans[0].store.path", cfg.Backup.Plans[0].Store.Path, "/srv/h2/wr.db"},
			{"backup.self.directory", cfg.Backup.Self.Directory, "/mnt/backup/h2"},
		} {
			if c.got != c.want {
				t.Errorf("%s = %q, want %q", c.key, c.got, c.want)
			}
		}
	}
	if err := cfg.validate(f); err != nil {
		t.Fatal(err)
	}
	check()
	if err := cfg.validate(f); err != nil {
		t.Fatal(err)
	}
	check() // resolving again changes nothing
	if got := cfg.DNS.Instances["wr"].Name; got != "wr.example.test." {
		t.Errorf("dns-updater's name for wr = %q, want it from instances.wr.dns", got)
	}
}

// TestConfigHash: the heartbeat's config hash is the SHA-256 of the file
// loadConfig parsed, and "" without a file.
func TestConfigHash(t *testing.T) {
	t.Parallel()
	if cfg, _, err := loadConfig(""); cfg.hash != "" || err != nil {
		t.Fatalf("no file: hash %q, %v; want \"\" and no error", cfg.hash, err)
	}
	path := filepath.Join(t.TempDir(), "lifeboat.yaml")
	body := []byte("host: h1\n")
	if err := os.WriteFile(path, body, 0o600); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(body)
	if cfg, _, err := loadConfig(path); err != nil || cfg.hash != hex.EncodeToString(sum[:]) {
		t.Fatalf("hash %q, %v; want %x", cfg.hash, err, sum)
	}
	if err := os.WriteFile(path, []byte("host: h2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if cfg, _, _ := loadConfig(path); cfg.hash == hex.EncodeToString(sum[:]) {
		t.Fatal("an edited file has the same hash")
	}
}

// TestExampleConfigLoads keeps deploy/examples/lifeboat.yaml valid as a
// whole, instances included.
func TestExampleConfigLoads(t *testing.T) {
	t.Parallel()
	cfg, f, err := loadConfig(filepath.Join("..", "..", "deploy", "examples", "lifeboat.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.validate(f); err != nil {
		t.Fatal(err)
	}
	wr, ok := cfg.Instances["wr-manager"]
	if !ok || wr.Active != "manager-1" || wr.Standby != "manager-2" || wr.Store.Kind != "sqlite" || wr.DNS.Name != "wr.example.com." {
		t.Fatalf("instances = %+v", cfg.Instances)
	}
	if got := cfg.Instances.OnHost(cfg.Host); len(got) != 1 || got[0] != "wr-manager" {
		t.Fatalf("instances on %s = %v", cfg.Host, got)
	}
	if got := cfg.DNS.Instances["wr-manager"].Name; got != "wr.example.com." {
		t.Fatalf("dns-updater's name for wr-manager = %q", got)
	}
	if got, want := cfg.Backup.Plans[1].Directory, filepath.Join(cfg.Data, "backups", "cycle-static"); got != want {
		t.Fatalf("cycle-static's relative directory = %q, want %q (under data)", got, want)
	}
}
