package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"lifeboat.dev/events"
	"lifeboat.dev/events/api"
	"lifeboat.dev/pkg/backup"
	"lifeboat.dev/pkg/client"
	"lifeboat.dev/pkg/hosttest"
	"lifeboat.dev/pkg/store"
	"lifeboat.dev/pkg/testtool"
)

// backupCLI runs the lifeboat binary as an operator would.
func backupCLI(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	// A CLI that never ends (sync status --watch that never sees the
	// targets caught up) fails the test instead of hanging it.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, hosttest.Binary(t), args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// TestBackupClusterTakesAnInstanceOnItsLeaseHolder: three hosts, instance
// wr declared on h1 (the preferred active) and h2 (the standby), and a
// backup plan of wr, its store a SQLite file of each host. h1 holds wr's
// lease; `lifeboat backup take wr`, asked through h3, is carried out on
// h1 alone, its BackupTaken and manifest recording h1's epoch; no other
// host backs wr up, and sync ships the backup to h2 (lifeboat sync status
// says so); a take addressed to h2 is refused by h2. A plan set through
// one host reaches every host.
func TestBackupClusterTakesAnInstanceOnItsLeaseHolder(t *testing.T) {
	dir := t.TempDir()
	for _, h := range []string{"h1", "h2", "h3"} {
		db, err := store.Open(t.Context(), filepath.Join(dir, h, "wr.db"), store.NewOptions("wr",
			fstest.MapFS{"0001_items.sql": {Data: []byte("CREATE TABLE items (id INTEGER PRIMARY KEY, body TEXT NOT NULL);\nINSERT INTO items (body) VALUES ('wr');\n")}}))
		if err != nil {
			t.Fatal(err)
		}
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
	}
	backups := func(h string) string { return filepath.Join(dir, h, "backups", "wr") }
	c := hosttest.Start(t, hosttest.Options{Hosts: 3, Config: fmt.Sprintf(`heartbeat_interval: 1s
instances:
  wr:
    hosts:
      h1: {address: 127.0.0.1}
      h2: {address: 127.0.0.1}
    active: h1
    standby: h2
    store: {kind: sqlite, path: "%[1]s/{host}/wr.db"}
backup:
  plans:
    - name: wr
      instance: wr
      schedule: 1h,1d/7d
      directory: "%[1]s/{host}/backups/wr"
      store: {kind: sqlite, path: "%[1]s/{host}/wr.db"}
`, dir)})
	h2, h3 := c.Hosts[1], c.Hosts[2]

	// h1 takes wr's lease (status reads it from the lease bucket).
	var epoch uint64
	testtool.WaitFor(t, 30*time.Second, func() error {
		out, _ := exec.Command(hosttest.Binary(t), "status", "--json", "--nats", h3.NATS).Output()
		var doc struct {
			Instances []api.InstanceLease `json:"instances"`
		}
		if err := json.Unmarshal(out, &doc); err != nil {
			return err
		}
		for _, il := range doc.Instances {
			if il.Instance == "wr" && il.Holder == "h1" && il.Epoch != 0 {
				epoch = il.Epoch
				return nil
			}
		}
		return fmt.Errorf("instances %+v, want wr held by h1", doc.Instances)
	})

	out, err := backupCLI(t, "backup", "take", "wr", "--json", "--nats", h3.NATS, "--wait", "30s")
	var taken events.BackupTaken
	if err != nil || json.Unmarshal([]byte(out), &taken) != nil {
		t.Fatalf("lifeboat backup take wr: %v\n%s", err, out)
	}
	if taken.Host != "h1" || taken.Epoch != epoch || taken.Instance != "wr" || taken.RequestID == "" {
		t.Fatalf("backup take wr answered %+v, want a backup on h1 in epoch %d", taken, epoch)
	}
	m, err := backup.ReadManifest(backups("h1"), taken.Backup)
	if err != nil || m.Epoch != epoch || m.Instance != "wr" {
		t.Fatalf("manifest of %s: %+v, %v; want epoch %d", taken.Backup, m, err, epoch)
	}

	// A take addressed to the standby is refused there.
	nc := h3.Connect(t)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	answers, err := client.Listen(nc, events.BackupTaken{}, events.BackupFailed{})
	if err != nil {
		t.Fatal(err)
	}
	defer answers.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	id, err := client.CommandTo(ctx, js, h2.Name, &events.BackupTake{Plan: "wr", Reason: "test"})
	if err != nil {
		t.Fatal(err)
	}
	ans, err := answers.Wait(ctx, id)
	if f, ok := ans.(*events.BackupFailed); err != nil || !ok || f.Host != "h2" || !strings.Contains(f.Error, "host h2 does not hold instance wr's lease") {
		t.Fatalf("a take addressed to h2 answered %+v, %v", ans, err)
	}

	// Every backup of wr on the stream is h1's, in h1's epoch, and one
	// answers the take; h2 and h3 hold none.
	var takenWR []events.BackupTaken
	testtool.WaitFor(t, 10*time.Second, func() error {
		takenWR = nil
		cons, err := js.OrderedConsumer(ctx, events.StreamEvents, jetstream.OrderedConsumerConfig{FilterSubjects: []string{events.SubjectOf[events.BackupTaken]()}})
		if err != nil {
			return err
		}
		for {
			batch, err := cons.FetchNoWait(100)
			if err != nil {
				return err
			}
			n := 0
			for msg := range batch.Messages() {
				n++
				var ev events.BackupTaken
				if err := json.Unmarshal(msg.Data(), &ev); err != nil {
					return err
				}
				if ev.Plan == "wr" {
					takenWR = append(takenWR, ev)
				}
			}
			if n == 0 {
				break
			}
		}
		for _, ev := range takenWR {
			if ev.RequestID == taken.RequestID {
				return nil
			}
		}
		return fmt.Errorf("the stream has no BackupTaken answering %s yet", taken.RequestID)
	})
	answering := 0
	for _, ev := range takenWR {
		if ev.Host != "h1" || ev.Epoch != epoch {
			t.Errorf("backup %s of wr on %s in epoch %d; only h1 (epoch %d) backs wr up", ev.Backup, ev.Host, ev.Epoch, epoch)
		}
		if ev.RequestID == taken.RequestID {
			answering++
		}
	}
	if answering != 1 {
		t.Errorf("%d BackupTaken answer the take, want 1", answering)
	}
	if entries, err := os.ReadDir(backups("h3")); err == nil && len(entries) > 0 {
		t.Errorf("h3's directory of wr holds %d entries; h3 is no host of wr", len(entries))
	}
	// h2, wr's standby, receives h1's backup from sync: a plain copy in
	// its own directory of wr that verifies from h2's disk alone, and
	// nothing else (no backup of its own).
	testtool.WaitFor(t, 30*time.Second, func() error {
		_, err := backup.Verify(ctx, backups("h2"), taken.Backup)
		return err
	})
	held, err := backup.List(backups("h2"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range held {
		if _, err := os.Stat(filepath.Join(backups("h1"), e.Name)); err != nil {
			t.Errorf("h2 holds %s, which is no backup of h1", e.Name)
		}
	}
	testtool.WaitFor(t, 10*time.Second, func() error {
		out, err := backupCLI(t, "sync", "status", "--json", "--nats", h3.NATS)
		var targets []api.SyncTarget
		if err != nil || json.Unmarshal([]byte(out), &targets) != nil {
			return fmt.Errorf("lifeboat sync status: %v\n%s", err, out)
		}
		if len(targets) != 1 || targets[0].Target != "h2" || targets[0].From != "h1" || targets[0].Backlog != 0 || targets[0].SendError || targets[0].LastBackup == "" {
			return fmt.Errorf("lifeboat sync status: %+v; want h1 shipping to h2, nothing waiting", targets)
		}
		return nil
	})
	if out, err := backupCLI(t, "sync", "kick", "--target", "h2", "--host", "h2", "--nats", h3.NATS); err == nil || !strings.Contains(out, "not both") {
		t.Errorf("sync kick with --target and --host: %v\n%s", err, out)
	}
	if out, err := backupCLI(t, "sync", "kick", "--host", "h2", "--nats", h3.NATS); err != nil || !strings.Contains(out, "h1") {
		t.Errorf("sync kick --host h2: %v\n%s", err, out)
	}

	// A plan changed through one host is every host's.
	if out, err := backupCLI(t, "plan", "set", "wr", "--schedule", "2h,1d/7d", "--nats", h2.NATS); err != nil {
		t.Fatalf("lifeboat plan set: %v\n%s", err, out)
	}
	testtool.WaitFor(t, 20*time.Second, func() error {
		for _, h := range c.Hosts {
			var st struct {
				api.ServiceStatus
				Details api.BackupSchedulerStatus `json:"details"`
			}
			cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
			err := client.CallHost(cctx, nc, events.ServiceBackupScheduler, h.Name, api.Status, nil, &st)
			ccancel()
			if err != nil {
				return fmt.Errorf("%s: %w", h.Name, err)
			}
			found := false
			for _, p := range st.Details.Plans {
				if p.Name == "wr" {
					found = true
					if p.Schedule != "2h,1d/7d" || !p.LeaseBound || p.Directory != backups(h.Name) {
						return fmt.Errorf("%s has plan wr %s into %s (lease-bound %v)", h.Name, p.Schedule, p.Directory, p.LeaseBound)
					}
				}
			}
			if !found {
				return fmt.Errorf("%s has no plan wr", h.Name)
			}
		}
		return nil
	})
}
