package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"lifeboat.dev/events"
	"lifeboat.dev/events/api"
	"lifeboat.dev/pkg/backup"
	"lifeboat.dev/pkg/testtool"
)

// startUpWithBackups runs `lifeboat up` with a plan "site" backing up a
// small directory tree (the seed's static part, data/ and logs/ excluded)
// and lifeboat-self on; it returns the NATS URL and the plan's backup
// directory.
func startUpWithBackups(t *testing.T) (url, backups string) {
	t.Helper()
	dir := t.TempDir()
	root := filepath.Join(dir, "cycle_server")
	for _, p := range []string{"config/cycle_server.properties", "plugins/a.jar", "data/db/big", "logs/cycle.log"} {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(strings.Repeat(p, 100)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	backups = filepath.Join(dir, "backups")
	cfgPath := filepath.Join(dir, "lifeboat.yaml")
	cfg := fmt.Sprintf(`backup:
  plans:
    - name: site
      instance: cycle
      schedule: 1h,1d/7d
      directory: %s
      store:
        kind: files
        path: %s
        exclude: [data/, logs/]
  self: {enabled: true}
`, backups, root)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	url, _ = startUp(t, "--config", cfgPath)
	testtool.WaitFor(t, 30*time.Second, func() error {
		_, err := runCLI(t, "plan", "list", "--nats", url)
		return err
	})
	return url, backups
}

// runCLI runs lifeboat with args and returns its output, and an error
// saying the exit code when it is not 0.
func runCLI(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	if code := run(args, &out, &out); code != 0 {
		return out.String(), fmt.Errorf("lifeboat %s: exit %d:\n%s", strings.Join(args, " "), code, out.String())
	}
	return out.String(), nil
}

func TestBackupTakeListVerify(t *testing.T) {
	url, backups := startUpWithBackups(t)
	out, err := runCLI(t, "backup", "take", "site", "--nats", url)
	if err != nil || !strings.Contains(out, "of plan site taken") {
		t.Fatalf("backup take: %v\n%s", err, out)
	}
	out, err = runCLI(t, "backup", "take", "site", "--kind", "hash", "--json", "--nats", url)
	var ev events.BackupTaken
	if err != nil || json.Unmarshal([]byte(out), &ev) != nil || ev.Kind != events.BackupHash || ev.Plan != "site" || ev.Instance != "cycle" || ev.Store != "files" || ev.RequestID == "" {
		t.Fatalf("backup take --json: %v\n%s", err, out)
	}

	var list []api.BackupView
	testtool.WaitFor(t, 30*time.Second, func() error {
		out, err := runCLI(t, "backup", "list", "--plan", "site", "--json", "--nats", url)
		if err != nil {
			return err
		}
		if err := json.Unmarshal([]byte(out), &list); err != nil {
			return err
		}
		// The rule may prune some of them (the oldest of the hour's slot is
		// kept, and min_keep keeps the newest); wait for it to settle.
		for _, b := range list {
			if b.State == "pruning" {
				return fmt.Errorf("%s being pruned", b.Name)
			}
		}
		if len(list) < 2 || list[len(list)-1].Name != ev.Backup {
			return fmt.Errorf("listed %+v, want the first and the newest", list)
		}
		return nil
	})
	for _, b := range list {
		if b.State != "valid" || b.Plan != "site" || b.StoreKind != "files" {
			t.Errorf("listed %+v", b)
		}
	}
	testtool.WaitFor(t, 30*time.Second, func() error {
		out, err := runCLI(t, "backup", "list", "--nats", url)
		if err != nil || !strings.Contains(out, ev.Backup) || !strings.Contains(out, "lifeboat-self") {
			return fmt.Errorf("backup list: %v\n%s", err, out)
		}
		return nil
	})
	if out, err := runCLI(t, "backup", "verify", "--nats", url); err != nil || !strings.Contains(out, "ok") {
		t.Errorf("backup verify: %v\n%s", err, out)
	}

	// A damaged payload: verify names it and exits non-zero.
	payload := filepath.Join(backups, ev.Backup, "files.tar.zst")
	if err := os.WriteFile(payload, []byte("damaged"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err = runCLI(t, "backup", "verify", ev.Backup, "--nats", url)
	if err == nil || !strings.Contains(out, "invalid") || !strings.Contains(out, "do not verify") {
		t.Errorf("verify of a damaged backup: %v\n%s", err, out)
	}
	out, _ = runCLI(t, "backup", "list", "--plan", "site", "--nats", url)
	if !strings.Contains(out, ev.Backup) || !strings.Contains(out, "invalid") {
		t.Errorf("backup list after verify:\n%s", out)
	}

	// A backup deleted by hand leaves the catalog at the next rescan.
	if err := os.RemoveAll(filepath.Join(backups, ev.Backup)); err != nil {
		t.Fatal(err)
	}
	if out, err := runCLI(t, "backup", "list", "--rescan", "--plan", "site", "--nats", url); err != nil || strings.Contains(out, ev.Backup) {
		t.Errorf("backup list --rescan still lists %s: %v\n%s", ev.Backup, err, out)
	}

	if out, err := runCLI(t, "backup", "take", "nope", "--nats", url); err == nil || !strings.Contains(out, `no plan named "nope"`) {
		t.Errorf("take of a missing plan: %v\n%s", err, out)
	}
}

func TestBackupBadArguments(t *testing.T) {
	for _, args := range [][]string{
		{"backup", "take"},
		{"backup", "take", "site", "--kind", "scheduled"},
		{"backup", "take", "site", "--wait", "0s"},
		{"backup", "verify", "a", "b"},
		{"backup", "list", "extra"},
		{"backup", "nope"},
	} {
		var out bytes.Buffer
		if code := run(args, &out, &out); code != 2 || !strings.Contains(out.String(), "Usage:") {
			t.Errorf("lifeboat %s: exit %d, want 2 with usage:\n%s", strings.Join(args, " "), code, out.String())
		}
	}
	// No control plane: an error saying so, not a hang.
	out, err := runCLI(t, "backup", "list", "--nats", "nats://"+testtool.FreeAddr(t), "--timeout", "1s")
	if err == nil || !strings.Contains(out, "lifeboat up") {
		t.Errorf("backup list with no control plane: %v\n%s", err, out)
	}
}

// TestExampleBackupSectionLoads keeps deploy/examples/lifeboat.yaml's
// backup section valid.
func TestExampleBackupSectionLoads(t *testing.T) {
	cfg, f, err := loadConfig(filepath.Join("..", "..", "deploy", "examples", "lifeboat.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.validate(f); err != nil {
		t.Fatal(err)
	}
	plans, err := cfg.Backup.Normalize(cfg.Data)
	if err != nil {
		t.Fatal(err)
	}
	if len(plans) != 3 || plans[0].Name != "wr" || plans[1].Store.Kind != "files" || plans[2].Name != api.SelfPlan || !plans[2].Disabled {
		t.Fatalf("backup section = %+v", plans)
	}
}

// TestBackupTakeGoesToTheLeaseHolder: a take of an instance's plan is
// sent to the host holding the instance's lease, and its backup records
// that lease's epoch; --host naming another host is refused, naming the
// holder; an instance nobody holds is said so. A plan of no declared
// instance goes to --host, which must answer.
func TestBackupTakeGoesToTheLeaseHolder(t *testing.T) {
	dir := t.TempDir()
	root := filepath.Join(dir, "tree")
	if err := os.MkdirAll(root, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "f"), []byte("payload"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "lifeboat.yaml")
	cfg := fmt.Sprintf(`instances:
  wr:
    hosts:
      test-host: {address: 10.0.0.1}
      cold: {address: 10.0.0.2}
    active: test-host
    standby: cold
    store: {kind: files, path: %[1]s}
  ghost:
    hosts:
      h8: {address: 10.0.0.8}
      h9: {address: 10.0.0.9}
    active: h8
    standby: h9
    store: {kind: files, path: %[1]s}
backup:
  plans:
    - {name: wr-files, instance: wr, schedule: "1h,1d/7d", directory: %[2]s/wr, store: {kind: files, path: %[1]s}}
    - {name: ghost-files, instance: ghost, schedule: "1h,1d/7d", directory: %[2]s/ghost, store: {kind: files, path: %[1]s}}
    - {name: site, schedule: "1h,1d/7d", directory: %[2]s/site, store: {kind: files, path: %[1]s}}
`, root, filepath.Join(dir, "backups"))
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	url, _ := startUp(t, "--config", cfgPath)
	var epoch uint64
	testtool.WaitFor(t, 30*time.Second, func() error {
		var out, errOut bytes.Buffer
		run([]string{"status", "--json", "--nats", url}, &out, &errOut)
		var rep statusReport
		if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
			return fmt.Errorf("%v: %s%s", err, out.String(), errOut.String())
		}
		for _, il := range rep.Instances {
			if il.Instance == "wr" && il.Holder == "test-host" && il.Epoch != 0 {
				epoch = il.Epoch
				return nil
			}
		}
		return fmt.Errorf("instances %+v, want wr held by test-host", rep.Instances)
	})

	out, err := runCLI(t, "backup", "take", "wr-files", "--json", "--nats", url)
	var ev events.BackupTaken
	if err != nil || json.Unmarshal([]byte(out), &ev) != nil || ev.Host != "test-host" || ev.Instance != "wr" || ev.Epoch != epoch {
		t.Fatalf("backup take wr-files (epoch %d): %v\n%s", epoch, err, out)
	}
	if out, err := runCLI(t, "backup", "take", "wr-files", "--nats", url); err != nil || !strings.Contains(out, fmt.Sprintf("(host test-host, instance wr's lease epoch %d)", epoch)) {
		t.Errorf("backup take wr-files: %v\n%s", err, out)
	}
	if out, err := runCLI(t, "backup", "take", "wr-files", "--host", "cold", "--nats", url); err == nil || !strings.Contains(out, "test-host holds its lease, not cold") {
		t.Errorf("backup take wr-files --host cold: %v\n%s", err, out)
	}
	if out, err := runCLI(t, "backup", "take", "ghost-files", "--nats", url); err == nil ||
		!strings.Contains(out, "instance ghost has no active host (nobody holds its lease): see lifeboat status") {
		t.Errorf("backup take of an instance nobody holds: %v\n%s", err, out)
	}
	out, err = runCLI(t, "backup", "take", "site", "--host", "test-host", "--json", "--nats", url)
	ev = events.BackupTaken{}
	if err != nil || json.Unmarshal([]byte(out), &ev) != nil || ev.Host != "test-host" || ev.Epoch != 0 {
		t.Fatalf("backup take site --host test-host: %v\n%s", err, out)
	}
	if out, err := runCLI(t, "backup", "take", "site", "--host", "nope", "--timeout", "1s", "--nats", url); err == nil || !strings.Contains(out, "host nope's backup-scheduler does not answer") {
		t.Errorf("backup take site --host nope: %v\n%s", err, out)
	}
}

// TestUpRefusesAnUndeclaredInstance: once lifeboat.yaml declares
// instances, a plan naming another is refused at start with its line.
func TestUpRefusesAnUndeclaredInstance(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lifeboat.yaml")
	yaml := `instances:
  wr:
    hosts: {test-host: {address: 10.0.0.1}}
    active: test-host
    store: {kind: sqlite, path: /wr.db}
backup:
  plans:
    - name: a
      instance: wr-manager
      schedule: 1h,1d/7d
      directory: /b/a
      store: {kind: sqlite, path: /a.db}
`
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, f, err := loadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	want := `lifeboat.yaml:9: backup.plans[0].instance: "wr-manager" is not declared in the instances section (it declares wr)`
	if err := cfg.validate(f); err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("validate = %v, want %q", err, want)
	}
}

// TestBackupVerifyDirReadsOnlyTheDisk: --dir verifies the backups in a
// directory with no control plane running, and names a damaged one.
func TestBackupVerifyDirReadsOnlyTheDisk(t *testing.T) {
	dir := t.TempDir()
	name, _, err := backup.Write(context.Background(), dir, backup.Manifest{Instance: "wr", Plan: "wr", StoreKind: "sqlite", Kind: backup.KindScheduled},
		func(ctx context.Context, p string) (backup.Info, error) {
			return backup.Info{ConsistentAt: time.Now()}, os.WriteFile(filepath.Join(p, "store.db"), []byte("pages"), 0o600)
		})
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if code := run([]string{"backup", "verify", "--dir", dir}, &out, &out); code != 0 || !strings.Contains(out.String(), name) {
		t.Fatalf("backup verify --dir exited %d:\n%s", code, out.String())
	}
	if err := os.WriteFile(filepath.Join(dir, name, "store.db"), []byte("pageZ"), 0o600); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if code := run([]string{"backup", "verify", "--dir", dir, name}, &out, &out); code != 1 || !strings.Contains(out.String(), "store.db: sha256") {
		t.Fatalf("backup verify --dir of a damaged backup exited %d:\n%s", code, out.String())
	}
	out.Reset()
	if code := run([]string{"backup", "verify", "--dir", dir, "--plan", "wr"}, &out, &out); code != 2 || !strings.Contains(out.String(), "not both") {
		t.Fatalf("backup verify --dir --plan exited %d:\n%s", code, out.String())
	}
}
