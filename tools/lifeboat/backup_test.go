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

	"lifeboat.dev/events"
	"lifeboat.dev/events/api"
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
