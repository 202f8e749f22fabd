package syncer_test

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"lifeboat.dev/events"
	"lifeboat.dev/events/api"
	"lifeboat.dev/pkg/backup"
	"lifeboat.dev/pkg/bus"
	"lifeboat.dev/pkg/bustest"
	"lifeboat.dev/pkg/client"
	"lifeboat.dev/pkg/instances"
	"lifeboat.dev/pkg/service/servicetest"
	"lifeboat.dev/pkg/testtool"
	syncer "lifeboat.dev/services/sync"
)

const pageSize = 4096

// fixture is two hosts' sync services on one bus: hot holds the plan's
// backups in src, cold is its instance's standby and keeps them in dst.
type fixture struct {
	t        *testing.T
	b        *bus.Bus
	src, dst string
	data     map[string]string
	stops    map[string]func()
	events   chan *nats.Msg
	db       []byte
	at       time.Time
	// targets are the named targets every host's lifeboat.yaml declares,
	// plan the targets its plan lists.
	targets map[string]syncer.Target
	plan    []string
}

func newFixture(t *testing.T) *fixture {
	return newFixtureWith(t, nil, nil)
}

// newFixtureWith is newFixture with named targets (a relative path is
// under the test's root) and the targets the plan lists.
func newFixtureWith(t *testing.T, targets map[string]syncer.Target, plan []string) *fixture {
	_, b := bustest.Embedded(t)
	root := t.TempDir()
	f := &fixture{t: t, b: b, src: filepath.Join(root, "hot", "backups"), dst: filepath.Join(root, "cold", "backups"),
		data: map[string]string{"hot": filepath.Join(root, "hot"), "cold": filepath.Join(root, "cold")}, stops: map[string]func(){},
		events: make(chan *nats.Msg, 256), at: time.Date(2026, 12, 3, 10, 0, 0, 0, time.Local), targets: map[string]syncer.Target{}, plan: plan}
	for name, tg := range targets {
		tg.Path = filepath.Join(root, tg.Path)
		f.targets[name] = tg
	}
	if _, err := b.NC.ChanSubscribe("lifeboat.event.sync.>", f.events); err != nil {
		t.Fatal(err)
	}
	f.start("hot")
	f.start("cold")
	// A database of 2048 pages.
	r := rand.New(rand.NewPCG(1, 1))
	f.db = make([]byte, 2048*pageSize)
	for i := range f.db {
		f.db[i] = byte(r.Uint32())
	}
	copy(f.db, "SQLite format 3\x00")
	binary.BigEndian.PutUint16(f.db[16:], pageSize)
	return f
}

// start runs host's sync service (again, after stop: the same database).
func (f *fixture) start(host string) {
	dirs := map[string]string{"hot": f.src, "cold": f.dst}
	spec, err := syncer.Spec(syncer.Config{
		Plans:        map[string]syncer.Plan{"app": {Directory: dirs[host], Instance: "app", Targets: f.plan}},
		Instances:    instances.Config{"app": {Hosts: map[string]instances.Host{"hot": {Address: "192.0.2.1"}, "cold": {Address: "192.0.2.2"}}, Active: "hot", Standby: "cold"}},
		StallTimeout: time.Second,
		Targets:      f.targets,
		// Retries only when kicked, so that the test sees the kick work.
		Backoff: func(int) time.Duration { return time.Hour },
	})
	if err != nil {
		f.t.Fatal(err)
	}
	deps := servicetest.Deps(f.b, f.data[host])
	deps.Host = host
	deps.Instances = leases{"app": host == "hot"}
	_, f.stops[host] = servicetest.Start(f.t, spec, deps)
}

// leases says which instances this host holds (hot is app's active).
type leases map[string]bool

func (l leases) Holds(instance string) (uint64, bool) { return 1, l[instance] }

// take writes a backup of the database on hot, with pct percent of its
// pages rewritten first, and publishes its BackupTaken.
func (f *fixture) take(pct int) (string, int64) {
	return f.takeFor(pct, backup.KindScheduled, nil)
}

// takeFor is take with the backup's kind and the plan's targets.
func (f *fixture) takeFor(pct int, kind backup.Kind, targets []string) (string, int64) {
	name, m := f.write(pct, kind)
	f.publish(&events.BackupTaken{Plan: "app", Instance: "app", Backup: name, Kind: events.BackupKind(kind), Store: "sqlite",
		Host: "hot", Dir: f.src, Targets: targets, Bytes: m.TotalBytes, TakenAt: m.TakenAt, ConsistentAt: m.ConsistentAt})
	return name, m.TotalBytes
}

// write writes a backup of the database on hot, with pct percent of its
// pages rewritten first, and announces nothing.
func (f *fixture) write(pct int, kind backup.Kind) (string, backup.Manifest) {
	t := f.t
	r := rand.New(rand.NewPCG(uint64(pct), uint64(f.at.Unix())))
	pages := len(f.db) / pageSize
	for range pages * pct / 100 {
		p := 1 + r.IntN(pages-1)
		for i := p * pageSize; i < (p+1)*pageSize; i++ {
			f.db[i] = byte(r.Uint32())
		}
	}
	f.at = f.at.Add(time.Hour)
	name, m, err := backup.Write(context.Background(), f.src, backup.Manifest{Instance: "app", Plan: "app", StoreKind: "sqlite", Kind: kind, TakenAt: f.at},
		func(ctx context.Context, dir string) (backup.Info, error) {
			return backup.Info{ConsistentAt: time.Now()}, os.WriteFile(filepath.Join(dir, "store.db"), f.db, 0o600)
		})
	if err != nil {
		t.Fatal(err)
	}
	return name, m
}

func (f *fixture) publish(ev any) {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	env, err := bus.NewEnvelope(ctx, "test", ev)
	if err != nil {
		f.t.Fatal(err)
	}
	if _, err := client.Publish(ctx, f.b.JS, env); err != nil {
		f.t.Fatal(err)
	}
}

// next waits for the next sync event of type T about backup (any, if
// empty), skipping others.
func next[T any](f *fixture, backup string) *T {
	f.t.Helper()
	subject := events.SubjectOf[T]()
	deadline := time.After(30 * time.Second)
	for {
		select {
		case m := <-f.events:
			if m.Subject != subject {
				continue
			}
			v := new(T)
			if err := json.Unmarshal(m.Data, v); err != nil {
				f.t.Fatal(err)
			}
			var about struct {
				Backup string `json:"backup"`
			}
			_ = json.Unmarshal(m.Data, &about)
			if backup == "" || about.Backup == backup {
				return v
			}
		case <-deadline:
			f.t.Fatalf("no %s about %q within 30s", subject, backup)
		}
	}
}

func (f *fixture) status() api.SyncTarget {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var st struct {
		Details api.SyncStatus `json:"details"`
	}
	if err := client.CallHost(ctx, f.b.NC, events.ServiceSync, "hot", api.Status, nil, &st); err != nil {
		f.t.Fatal(err)
	}
	if len(st.Details.Targets) != 1 {
		f.t.Fatalf("hot's sync status lists targets %+v, want cold alone", st.Details.Targets)
	}
	return st.Details.Targets[0]
}

// TestStandbyGetsEveryBackup: each backup taken on hot appears on cold as
// a plain backup that verifies from cold's disk alone; the next one after
// 1% of pages changed sends about 1%; a prune at the source prunes cold;
// with cold down the target stalls (send_error) and a kick, or cold's
// HostUp, ships what waited.
func TestStandbyGetsEveryBackup(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()

	first, total := f.take(0)
	c := next[events.SyncCompleted](f, first)
	if c.Target != "cold" || c.Host != "cold" || c.BytesSent != total || c.BytesTotal != total || c.ChunksSent != c.ChunksTotal || c.Lag <= 0 {
		t.Fatalf("first SyncCompleted %+v: want every byte sent to cold (%d) and a lag", c, total)
	}
	if _, err := backup.Verify(ctx, f.dst, first); err != nil {
		t.Fatal(err)
	}

	// The standby's catalog announces the copy it received as its own
	// BackupTaken when it rebuilds: cold, not app's active, ships nothing.
	f.publish(&events.BackupTaken{Plan: "app", Instance: "app", Backup: first, Kind: events.BackupKind(backup.KindScheduled), Store: "sqlite",
		Host: "cold", Dir: f.dst, Bytes: total, TakenAt: f.at, ConsistentAt: f.at})
	testtool.WaitFor(t, 10*time.Second, func() error {
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		var st struct {
			api.ServiceStatus
			Details api.SyncStatus `json:"details"`
		}
		if err := client.CallHost(ctx, f.b.NC, events.ServiceSync, "cold", api.Status, nil, &st); err != nil {
			return err
		}
		for _, c := range st.Consumers {
			if c.Pending > 0 {
				return fmt.Errorf("cold's sync has %d events to apply", c.Pending)
			}
		}
		if len(st.Details.Targets) != 0 {
			t.Fatalf("cold ships to %+v; only app's active ships", st.Details.Targets)
		}
		return nil
	})

	second, _ := f.take(1)
	c = next[events.SyncCompleted](f, second)
	if pct := 100 * float64(c.BytesSent) / float64(c.BytesTotal); pct > 2 {
		t.Errorf("1%% of pages rewritten: %d of %d bytes sent (%.2f%%), want at most 2%%", c.BytesSent, c.BytesTotal, pct)
	}
	if _, err := backup.Verify(ctx, f.dst, second); err != nil {
		t.Fatal(err)
	}
	if st := f.status(); st.LastBackup != second || st.Backlog != 0 || st.SendError || st.LastSynced == nil {
		t.Errorf("status after the second sync: %+v", st)
	}

	// Pruned at the source, pruned at the target.
	if err := os.RemoveAll(filepath.Join(f.src, first)); err != nil {
		t.Fatal(err)
	}
	f.publish(&events.BackupPruned{Plan: "app", Instance: "app", Host: "hot", Pruned: []events.PrunedBackup{{Backup: first, Reason: "test"}}, Kept: 1})
	testtool.WaitFor(t, 10*time.Second, func() error {
		if _, err := os.Stat(filepath.Join(f.dst, first)); err == nil {
			return fmt.Errorf("%s is still on cold", first)
		}
		return nil
	})

	// Cold down: the transfer fails, the target stalls.
	f.stops["cold"]()
	third, _ := f.take(1)
	failed := next[events.SyncFailed](f, third)
	if failed.Attempt != 1 || failed.Error == "" || failed.RetryIn <= 0 {
		t.Errorf("SyncFailed %+v", failed)
	}
	stalled := next[events.SyncStalled](f, third)
	if stalled.Target != "cold" || stalled.Error == "" {
		t.Errorf("SyncStalled %+v", stalled)
	}
	if st := f.status(); !st.SendError || st.Backlog != 1 || st.Oldest != third || st.LastError == "" {
		t.Errorf("status while cold is down: %+v; want send_error, the backup waiting and the error", st)
	}
	// Cold back, and a kick: it catches up without waiting out the backoff.
	f.start("cold")
	ctxKick, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := client.CommandTo(ctxKick, f.b.JS, "hot", &events.SyncKick{Host: "cold"}); err != nil {
		t.Fatal(err)
	}
	next[events.SyncCompleted](f, third)
	if st := f.status(); st.SendError || st.Backlog != 0 || st.LastBackup != third || st.LastError != "" {
		t.Errorf("status after the kick: %+v", st)
	}

	// Down again; this time its HostUp retries.
	f.stops["cold"]()
	fourth, _ := f.take(1)
	next[events.SyncFailed](f, fourth)
	f.start("cold")
	f.publish(&events.HostUp{Host: "cold", Reason: "heartbeats again", DetectedBy: "test"})
	next[events.SyncCompleted](f, fourth)
	for _, name := range []string{second, third, fourth} {
		if _, err := backup.Verify(ctx, f.dst, name); err != nil {
			t.Fatal(err)
		}
	}
}

// TestBackupPrunedBeforeItWasSent fails once, naming why, and is dropped.
func TestBackupPrunedBeforeItWasSent(t *testing.T) {
	f := newFixture(t)
	f.stops["hot"]()
	name, _ := f.take(0)
	if err := os.RemoveAll(filepath.Join(f.src, name)); err != nil {
		t.Fatal(err)
	}
	f.start("hot")
	failed := next[events.SyncFailed](f, name)
	if failed.RetryIn != 0 || !strings.Contains(failed.Error, "pruned at the source") {
		t.Errorf("SyncFailed %+v; want it to say the backup was pruned, with no retry", failed)
	}
	testtool.WaitFor(t, 10*time.Second, func() error {
		if st := f.status(); st.Backlog != 0 {
			return fmt.Errorf("backlog %d, want the pruned backup dropped", st.Backlog)
		}
		return nil
	})
}

// TestNamedTargetsFullAndBandwidth: a plan listing standby and two named
// targets (a dir on hot itself, limited to 2 MiB/s, and a dir on cold)
// gets each backup verified at all three; a full backup sends every chunk
// although the targets hold the last; a target no host declares fails,
// naming it.
func TestNamedTargetsFullAndBandwidth(t *testing.T) {
	const limit = 2 << 20
	plan := []string{"standby", "usb", "offsite"}
	f := newFixtureWith(t, map[string]syncer.Target{
		"usb":     {Path: "usb/{plan}", Bandwidth: limit},
		"offsite": {Path: "cold/offsite/{plan}", Host: "cold"},
	}, plan)
	ctx := context.Background()
	dirs := map[string]string{"cold": f.dst, "usb": f.targets["usb"].PathOf("app"), "offsite": f.targets["offsite"].PathOf("app")}

	// completed waits for a SyncCompleted of backup from each target.
	completed := func(name string) map[string]*events.SyncCompleted {
		t.Helper()
		got := map[string]*events.SyncCompleted{}
		for len(got) < len(dirs) {
			c := next[events.SyncCompleted](f, name)
			got[c.Target] = c
		}
		for target, dir := range dirs {
			if _, ok := got[target]; !ok {
				t.Fatalf("no SyncCompleted of %s from %s: %v", name, target, got)
			}
			if _, err := backup.Verify(ctx, dir, name); err != nil {
				t.Fatalf("%s at %s: %v", name, target, err)
			}
		}
		return got
	}

	first, total := f.takeFor(0, backup.KindScheduled, plan)
	got := completed(first)
	if c := got["usb"]; c.Host != "hot" || c.BytesSent != total {
		t.Errorf("usb SyncCompleted %+v: want it on hot, every byte sent", c)
	}
	// The limit holds: 8 MiB at 2 MiB/s, less the first second's burst.
	if c, want := got["usb"], time.Duration(total-limit)*time.Second/limit; c.Duration.Duration() < want*8/10 {
		t.Errorf("usb took %s for %d bytes at %d B/s; want at least %s", c.Duration.Duration(), total, limit, want)
	}
	if c := got["offsite"]; c.Host != "cold" {
		t.Errorf("offsite SyncCompleted %+v: want it on cold", c)
	}

	// A hash backup sends what changed; a full one everything.
	second, _ := f.takeFor(1, backup.KindHash, plan)
	for target, c := range completed(second) {
		if c.BytesSent*50 > c.BytesTotal {
			t.Errorf("hash backup to %s sent %d of %d bytes; want at most 2%%", target, c.BytesSent, c.BytesTotal)
		}
	}
	third, _ := f.takeFor(0, backup.KindFull, plan)
	for target, c := range completed(third) {
		if c.ChunksSent != c.ChunksTotal || c.BytesSent != c.BytesTotal {
			t.Errorf("full backup to %s: %+v; want every chunk sent", target, c)
		}
	}

	// A target no lifeboat.yaml declares (a plan changed at run time).
	fourth, _ := f.takeFor(0, backup.KindScheduled, []string{"nas"})
	failed := next[events.SyncFailed](f, fourth)
	if failed.Target != "nas" || !strings.Contains(failed.Error, `sync target "nas", which host hot's lifeboat.yaml does not declare`) {
		t.Errorf("SyncFailed %+v; want it to name the undeclared target", failed)
	}
}

// TestReconcileShipsWhatNoEventAnnounced: a backup whose BackupTaken hot
// never shipped (applied before it held the lease, after a restart) and a
// standby whose copies were lost both get the plan's newest backup when
// hot's sync starts.
func TestReconcileShipsWhatNoEventAnnounced(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	first, _ := f.take(0)
	next[events.SyncCompleted](f, first)

	f.stops["hot"]()
	second, _ := f.write(1, backup.KindScheduled) // announced to nobody
	f.start("hot")
	c := next[events.SyncCompleted](f, second)
	if c.Target != "cold" || c.BytesSent*50 > c.BytesTotal {
		t.Errorf("SyncCompleted %+v: want cold to get the newest backup against the one it holds", c)
	}
	if _, err := backup.Verify(ctx, f.dst, second); err != nil {
		t.Fatal(err)
	}

	// Cold's disk replaced: hot ships the newest backup whole again.
	f.stops["hot"]()
	if err := os.RemoveAll(f.dst); err != nil {
		t.Fatal(err)
	}
	f.start("hot")
	c = next[events.SyncCompleted](f, second)
	if c.BytesSent != c.BytesTotal {
		t.Errorf("SyncCompleted %+v: want the whole backup sent to the empty standby", c)
	}
	if _, err := backup.Verify(ctx, f.dst, second); err != nil {
		t.Fatal(err)
	}
}
