package backupscheduler

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"lifeboat.dev/events"
	"lifeboat.dev/pkg/backup"
	"lifeboat.dev/pkg/bustest"
	"lifeboat.dev/pkg/client"
	"lifeboat.dev/pkg/config"
	"lifeboat.dev/pkg/instances"
	"lifeboat.dev/pkg/service"
	"lifeboat.dev/pkg/service/servicetest"
	"lifeboat.dev/pkg/testtool"
)

// An instance's plan is backed up only where the instance's lease is held
// (jobs.go): the runtime's Deps.Instances says which leases this host
// holds; here a small table stands in for pkg/instances' leases.

// leases is the runtime's Instances as a test sets it: the instances this
// host holds, with their epochs.
type leases struct {
	mu   sync.Mutex
	held map[string]uint64
}

func holding(held map[string]uint64) *leases { return &leases{held: held} }

func (l *leases) Holds(instance string) (uint64, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	e, ok := l.held[instance]
	return e, ok
}

// set makes this host hold instance at epoch, or lose it (epoch 0).
func (l *leases) set(instance string, epoch uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if epoch == 0 {
		delete(l.held, instance)
	} else {
		l.held[instance] = epoch
	}
}

// wrInstances declares instance wr on hosts hot and cold.
func wrInstances() instances.Config {
	return instances.Config{"wr": {
		Hosts:  map[string]instances.Host{"hot": {Address: "10.0.0.1"}, "cold": {Address: "10.0.0.2"}},
		Active: "hot", Standby: "cold", Store: instances.Store{Kind: "sqlite", Path: "/var/lib/wr/db"},
	}}
}

// TestPlanInstanceIsDeclared: once the instances section declares
// instances, a plan naming another is refused with its key and line; a
// plan naming none is an instance's plan only when its name is one; a
// config without instances takes any name, as before.
func TestPlanInstanceIsDeclared(t *testing.T) {
	t.Parallel()
	plan := func(name, instance string) Plan {
		return Plan{Name: name, Instance: instance, Schedule: "1h,1d/7d", Directory: "/b/" + name, Store: Store{Kind: StoreSQLite, Path: "/s.db"}}
	}
	cfg := Config{Plans: []Plan{plan("db", "wr"), plan("wr", ""), plan("local", "")}}
	cfg.UseInstances(wrInstances())
	plans, err := cfg.Normalize("/data")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range plans {
		if want := p.Name == "db" || p.Name == "wr"; cfg.leaseBound(p) != want {
			t.Errorf("plan %s (instance %s): lease-bound %v, want %v", p.Name, p.Instance, !want, want)
		}
	}

	bad := Config{Plans: []Plan{plan("db", "wr"), plan("typo", "wr-manager")}}
	if _, err := bad.Normalize("/data"); err != nil {
		t.Errorf("without an instances section: %v", err)
	}
	bad.UseInstances(wrInstances())
	var fe *FieldError
	if _, err := bad.Normalize("/data"); !errors.As(err, &fe) || fe.Key != "plans[1].instance" || !strings.Contains(fe.Msg, `"wr-manager" is not declared in the instances section (it declares wr)`) {
		t.Fatalf("Normalize = %v", err)
	}
	var v struct {
		Backup Config `yaml:"backup"`
	}
	f, err := config.Parse("lifeboat.yaml", []byte(`backup:
  plans:
    - name: typo
      instance: wr-manager
      schedule: 1h,1d/7d
      directory: /b/typo
      store: {kind: sqlite, path: /s.db}
`), &v)
	if err != nil {
		t.Fatal(err)
	}
	v.Backup.UseInstances(wrInstances())
	if err := v.Backup.Validate(f, "backup", "/data"); err == nil || !strings.Contains(err.Error(), "lifeboat.yaml:4: backup.plans[0].instance: ") {
		t.Fatalf("Validate = %v", err)
	}
}

// TestLostLeaseDropsQueuedBackups, without a bus: the holder queues an
// instance's backups as the instance's jobs; once it has lost the lease,
// the scheduler drops them (a take answered with BackupFailed) so they do
// not hold up the plan's retention here, which goes on; a take arriving
// then is refused at once.
func TestLostLeaseDropsQueuedBackups(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := Config{Plans: []Plan{{Name: "wr-db", Instance: "wr", Schedule: "1h,1d/7d", Directory: filepath.Join(dir, "b"), Store: Store{Kind: StoreSQLite, Path: filepath.Join(dir, "wr.db")}}}}
	cfg.UseInstances(wrInstances())
	b := newBare(t, cfg)
	held := holding(map[string]uint64{"wr": 3})
	b.s.rt.Deps.Instances = held

	b.take(t, "req-1", events.BackupTake{Plan: "wr-db"})
	if _, err := b.s.tick(t.Context()); err != nil {
		t.Fatal(err)
	}
	owners := func() map[string]string {
		jobs, err := b.db.Jobs(t.Context(), 100)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]string{}
		for _, j := range jobs {
			out[strings.SplitN(j.ID, ":", 2)[0]] = j.Owner
		}
		return out
	}
	got := owners()
	if got["take"] != "instance:wr" || got["scheduled"] != "instance:wr" || got["rebuild"] != "host:test-host" {
		t.Fatalf("queued while holding the lease: %v", got)
	}

	held.set("wr", 0)
	if _, err := b.s.tick(t.Context()); err != nil {
		t.Fatal(err)
	}
	got = owners()
	if _, ok := got["take"]; ok {
		t.Errorf("the take is still queued: %v", got)
	}
	if _, ok := got["scheduled"]; ok {
		t.Errorf("the scheduled backup is still queued: %v", got)
	}
	if got["prune"] != "host:test-host" {
		t.Errorf("no retention pass of this host's backups: %v", got)
	}
	b.take(t, "req-2", events.BackupTake{Plan: "wr-db"})
	failed := b.failedEvents(t)
	if len(failed) != 2 || failed[0].RequestID != "req-1" || !strings.Contains(failed[0].Error, "host test-host lost instance wr's lease before the backup started") ||
		failed[1].RequestID != "req-2" || failed[1].Instance != "wr" || !strings.Contains(failed[1].Error, "host test-host does not hold instance wr's lease") {
		t.Fatalf("BackupFailed: %+v", failed)
	}
}

// TestInstancePlanRunsOnlyOnTheLeaseHolder: two backup-schedulers on one
// bus, hosts hot and cold, hot holding instance wr's lease at epoch 7. The
// plan of wr is backed up on hot only, its manifest and BackupTaken
// carrying epoch 7; a take addressed to cold is answered by cold saying it
// does not hold wr's lease; one addressed to hot is taken there. A plan of
// no declared instance is backed up on both, with epoch 0.
func TestInstancePlanRunsOnlyOnTheLeaseHolder(t *testing.T) {
	ns, b := bustest.Embedded(t)
	rec := record(t, b)
	dir := t.TempDir()
	wrDB, localDB := filepath.Join(dir, "wr.db"), filepath.Join(dir, "local.db")
	newStore(t, wrDB)
	newStore(t, localDB)
	backups := func(host, plan string) string { return filepath.Join(dir, host, plan) }
	for host, held := range map[string]*leases{"hot": holding(map[string]uint64{"wr": 7}), "cold": holding(map[string]uint64{})} {
		cfg := Config{Plans: []Plan{
			{Name: "wr-db", Instance: "wr", Schedule: "1h,1d/7d", Directory: backups(host, "wr-db"), Store: Store{Kind: StoreSQLite, Path: wrDB}, Targets: []string{"standby", "usb"}},
			{Name: "local", Schedule: "1h,1d/7d", Directory: backups(host, "local"), Store: Store{Kind: StoreSQLite, Path: localDB}},
		}}
		cfg.UseInstances(wrInstances())
		spec, err := Spec(cfg)
		if err != nil {
			t.Fatal(err)
		}
		deps := servicetest.Deps(bustest.Connect(t, 1, ns.ClientURL()), t.TempDir())
		deps.Host, deps.Instances = host, held
		servicetest.Start(t, spec, deps)
	}
	takenOn := func(plan string) []string {
		var hosts []string
		for _, e := range rec.all() {
			if e.Taken != nil && e.Taken.Plan == plan {
				hosts = append(hosts, e.Taken.Host)
			}
		}
		slices.Sort(hosts)
		return hosts
	}
	// The scheduled backups, due at once.
	testtool.WaitFor(t, 60*time.Second, func() error {
		if wr, local := takenOn("wr-db"), takenOn("local"); len(wr) < 1 || !slices.Equal(slices.Compact(local), []string{"cold", "hot"}) {
			return fmt.Errorf("backups of wr-db on %v, of local on %v", wr, local)
		}
		return nil
	})

	answer := func(host, plan string) recorded {
		t.Helper()
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		id, err := client.CommandTo(ctx, b.JS, host, &events.BackupTake{Plan: plan, Reason: "test"})
		if err != nil {
			t.Fatal(err)
		}
		var got recorded
		testtool.WaitFor(t, 60*time.Second, func() error {
			for _, e := range rec.all() {
				if (e.Taken != nil && e.Taken.RequestID == id) || (e.Failed != nil && e.Failed.RequestID == id) {
					got = e
					return nil
				}
			}
			return fmt.Errorf("no answer to the take of %s addressed to %s", plan, host)
		})
		return got
	}
	if e := answer("cold", "wr-db"); e.Failed == nil || e.Failed.Host != "cold" || e.Failed.Instance != "wr" ||
		!strings.Contains(e.Failed.Error, "host cold does not hold instance wr's lease") {
		t.Errorf("a take of wr-db addressed to cold: %+v %+v", e.Taken, e.Failed)
	}
	if e := answer("hot", "wr-db"); e.Taken == nil || e.Taken.Host != "hot" || e.Taken.Epoch != 7 || e.Taken.Kind != events.BackupManual || !slices.Equal(e.Taken.Targets, []string{"standby", "usb"}) {
		t.Errorf("a take of wr-db addressed to hot: %+v %+v", e.Taken, e.Failed)
	}
	if e := answer("cold", "local"); e.Taken == nil || e.Taken.Host != "cold" || e.Taken.Epoch != 0 {
		t.Errorf("a take of local addressed to cold: %+v %+v", e.Taken, e.Failed)
	}

	if hosts := slices.Compact(takenOn("wr-db")); !slices.Equal(hosts, []string{"hot"}) {
		t.Errorf("wr-db backed up on %v, want hot only", hosts)
	}
	if got := names(t, backups("cold", "wr-db")); len(got) != 0 {
		t.Errorf("cold's directory of wr-db holds %v", got)
	}
	for _, e := range rec.all() {
		if e.Taken == nil {
			continue
		}
		want := uint64(0)
		if e.Taken.Plan == "wr-db" {
			want = 7
		}
		m, err := backup.ReadManifest(e.Taken.Dir, e.Taken.Backup)
		if err != nil {
			t.Fatal(err)
		}
		if e.Taken.Epoch != want || m.Epoch != want || m.Instance != e.Taken.Instance {
			t.Errorf("backup %s of %s on %s: BackupTaken epoch %d, manifest epoch %d (instance %s), want %d",
				e.Taken.Backup, e.Taken.Plan, e.Taken.Host, e.Taken.Epoch, m.Epoch, m.Instance, want)
		}
	}
	for plan, want := range map[string]bool{"wr-db": true, "local": false} {
		var v PlanDetail
		if mustCall(t, b.NC, EndpointPlanShow, PlanRequest{Name: plan}, &v); v.LeaseBound != want {
			t.Errorf("plan show %s: lease_bound %v, want %v", plan, v.LeaseBound, want)
		}
	}
}

var _ service.Instances = (*leases)(nil)
