package integration

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/nats-io/nats.go"

	"lifeboat.dev/events"
	"lifeboat.dev/events/api"
	"lifeboat.dev/pkg/backup"
	"lifeboat.dev/pkg/hosttest"
	"lifeboat.dev/pkg/store"
	"lifeboat.dev/pkg/testtool"
)

// TestStandbyReceivesEveryBackup is the sync issue's story on three
// `lifeboat up` processes: wr's store on hot (h1) is a 100 MiB SQLite
// database, cold (h2) its standby. Each backup hot takes appears on cold
// as a plain backup directory that a separate process (lifeboat's own
// verify, run against cold's directory) verifies; the next backup after
// 1% of the rows rewritten ships at most 2% of its bytes; with cold
// killed the target stalls (send_error in lifeboat sync status), and
// once cold is back and kicked it catches up.
func TestStandbyReceivesEveryBackup(t *testing.T) {
	dir := t.TempDir()
	const rows, rowBytes = 25_000, 4000 // about 100 MiB in 4 KiB pages
	db, err := store.Open(t.Context(), filepath.Join(dir, "h1", "wr.db"), store.NewOptions("wr",
		fstest.MapFS{"0001_items.sql": {Data: []byte("CREATE TABLE items (id INTEGER PRIMARY KEY, body BLOB NOT NULL);\n")}}))
	if err != nil {
		t.Fatal(err)
	}
	fill := func(ids func(i int) int, n int) {
		t.Helper()
		err := db.Update(t.Context(), func(tx *store.Tx) error {
			for i := range n {
				b := make([]byte, rowBytes)
				rand.Read(b)
				if _, err := tx.ExecContext(t.Context(), `INSERT OR REPLACE INTO items (id, body) VALUES (?, ?)`, ids(i), b); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	fill(func(i int) int { return i + 1 }, rows)
	backups := func(h string) string { return filepath.Join(dir, h, "backups", "wr") }
	c := hosttest.Start(t, hosttest.Options{Hosts: 3, Config: fmt.Sprintf(`heartbeat_interval: 1s
sync:
  stall_timeout: 3s
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
	h3 := c.Hosts[2]
	nc := h3.Connect(t)
	syncEvents := make(chan *nats.Msg, 1024)
	if _, err := nc.ChanSubscribe("lifeboat.event.sync.>", syncEvents); err != nil {
		t.Fatal(err)
	}
	wait := func(subject, name string, within time.Duration) map[string]any {
		t.Helper()
		deadline := time.After(within)
		for {
			select {
			case m := <-syncEvents:
				var ev map[string]any
				if json.Unmarshal(m.Data, &ev) == nil && m.Subject == subject && ev["backup"] == name {
					return ev
				}
			case <-deadline:
				t.Fatalf("no %s of %s within %s", subject, name, within)
			}
		}
	}
	take := func() events.BackupTaken {
		t.Helper()
		var taken events.BackupTaken
		testtool.WaitFor(t, 60*time.Second, func() error {
			out, err := backupCLI(t, "backup", "take", "wr", "--json", "--nats", h3.NATS, "--wait", "60s")
			if err != nil || json.Unmarshal([]byte(out), &taken) != nil {
				return fmt.Errorf("lifeboat backup take wr: %v\n%s", err, out) // h1 may not hold wr's lease yet
			}
			return nil
		})
		return taken
	}
	// verifyOnCold runs a separate process reading only cold's disk (every
	// backup there when name is empty).
	verifyOnCold := func(name string) {
		t.Helper()
		args := []string{"backup", "verify", "--dir", backups("h2")}
		if name != "" {
			args = append(args, name)
		}
		out, err := exec.Command(hosttest.Binary(t), args...).CombinedOutput()
		if err != nil {
			t.Fatalf("lifeboat backup verify --dir %s %s: %v\n%s", backups("h2"), name, err, out)
		}
	}
	completed := events.SubjectOf[events.SyncCompleted]()

	first := take()
	start := time.Now()
	ev := wait(completed, first.Backup, 60*time.Second)
	t.Logf("first copy of %d bytes: SyncCompleted %.1fs after the take answered, %v", first.Bytes, time.Since(start).Seconds(), ev)
	verifyOnCold(first.Backup)

	// 1% of the rows rewritten: at most 2% of the bytes shipped.
	fill(func(i int) int { return 1 + i*100 }, rows/100)
	second := take()
	ev = wait(completed, second.Backup, 10*time.Second)
	sent, total := ev["bytes_sent"].(float64), ev["bytes_total"].(float64)
	t.Logf("1%% of rows rewritten: %.0f of %.0f bytes sent (%.2f%%)", sent, total, 100*sent/total)
	if sent > 0.02*total {
		t.Errorf("%.0f of %.0f bytes sent (%.2f%%), want at most 2%%", sent, total, 100*sent/total)
	}
	verifyOnCold(second.Backup)

	// Cold killed: the next backup waits, the target stalls.
	c.Kill(1)
	fill(func(i int) int { return 2 + i*100 }, rows/100)
	third := take()
	wait(events.SubjectOf[events.SyncStalled](), third.Backup, 30*time.Second)
	status := func() api.SyncTarget {
		t.Helper()
		out, err := backupCLI(t, "sync", "status", "--json", "--nats", h3.NATS)
		var targets []api.SyncTarget
		if err != nil || json.Unmarshal([]byte(out), &targets) != nil || len(targets) != 1 {
			t.Fatalf("lifeboat sync status: %v\n%s", err, out)
		}
		return targets[0]
	}
	if st := status(); !st.SendError || st.Backlog != 1 || st.Oldest != third.Backup {
		t.Errorf("sync status with cold down: %+v; want send_error and the backup waiting", st)
	}
	// Cold back and kicked: it catches up, and the stall clears.
	c.Restart(1)
	c.WaitReady(1)
	if out, err := backupCLI(t, "sync", "kick", "--host", "h2", "--nats", h3.NATS); err != nil {
		t.Fatalf("lifeboat sync kick: %v\n%s", err, out)
	}
	// The CLI follows the transfer until every target holds every backup.
	if out, err := backupCLI(t, "sync", "status", "--watch", "200ms", "--nats", h3.NATS); err != nil || !strings.Contains(out, "every target holds every backup") {
		t.Errorf("lifeboat sync status --watch: %v\n%s", err, out)
	}
	wait(completed, third.Backup, 60*time.Second)
	verifyOnCold(third.Backup)
	if st := status(); st.SendError || st.Backlog != 0 || st.LastBackup != third.Backup {
		t.Errorf("sync status after cold caught up: %+v", st)
	}
	// The same on hot's /metrics.
	resp, err := http.Get("http://" + c.Hosts[0].HTTP + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`lifeboat_sync_backlog{target="h2"} 0`, `lifeboat_sync_send_error{target="h2"} 0`, `lifeboat_sync_lag_seconds{target="h2"}`} {
		if !strings.Contains(string(body), want) {
			t.Errorf("hot's /metrics lacks %s", want)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	// Cold holds exactly hot's backups (the plan's first, scheduled one
	// included), each verifying.
	onHot, err := backup.List(backups("h1"))
	if err != nil {
		t.Fatal(err)
	}
	onCold, err := backup.List(backups("h2"))
	if err != nil {
		t.Fatal(err)
	}
	if len(onCold) != len(onHot) {
		t.Errorf("cold holds %v, hot %v", onCold, onHot)
	}
	verifyOnCold("")
}
