package backupscheduler

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"lifeboat.dev/events"
	"lifeboat.dev/pkg/service"
	"lifeboat.dev/pkg/store"
	"lifeboat.dev/services/backup-scheduler/internal/db"
	lbsql "lifeboat.dev/sql"
)

// The run-time changes are replicated apart from the plans each host runs
// (planchanges.go): the fields of a change, the replicated rows two hosts
// write, a rebuild from a peer, the config file winning, and the
// migration that carries the changes made before.

// changesOf is the plan_changes table as text, row by row.
func changesOf(t *testing.T, b *bare) string {
	t.Helper()
	rows, err := db.New(b.db.R).PlanChangeList(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	for _, r := range rows {
		fmt.Fprintf(&out, "%s %d %d %q %s\n", r.Plan, r.Rev, r.ChangedAt, r.ChangeID, r.Fields)
	}
	return out.String()
}

// loadChanges replaces to's plan_changes with from's, as a rebuild from a
// peer's snapshot does (service.Runtime.loadSnapshot: DELETE, then INSERT
// the peer's rows; the other tables untouched).
func loadChanges(t *testing.T, from, to *bare) {
	t.Helper()
	rows, err := db.New(from.db.R).PlanChangeList(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if err := to.db.Update(t.Context(), func(tx *store.Tx) error {
		if _, err := tx.ExecContext(t.Context(), "DELETE FROM plan_changes"); err != nil {
			return err
		}
		for _, r := range rows {
			if err := db.New(tx).PlanChangePut(t.Context(), db.PlanChangePutParams(r)); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// runningPlan is a plan as host b runs it.
func runningPlan(t *testing.T, b *bare, name string) (Plan, db.Plan) {
	t.Helper()
	r, ok := planRow(t, b.db, name)
	if !ok {
		t.Fatalf("no plan %s", name)
	}
	p, err := decodePlan(r)
	if err != nil {
		t.Fatal(err)
	}
	return p, r
}

// alike is a plan less what is each host's own (its directory as {host}
// gives it, lifeboat-self's store), with its origin and the time it
// changed.
func alike(t *testing.T, p Plan, r db.Plan) string {
	t.Helper()
	p.Directory = ""
	if p.Name == SelfPlan {
		p.Store.Path = ""
	}
	return fmt.Sprintf("%s %s %d", jsonOf(t, p), r.Origin, r.UpdatedAt)
}

// TestChangeValuesApplyAsFields: the fields a change records, applied to a
// plan, make what applying the event's fields makes (applyFields), for
// every field: a store and the hooks replaced whole (a store's env gone),
// the targets emptied, the flag cleared.
func TestChangeValuesApplyAsFields(t *testing.T) {
	t.Parallel()
	keep := 0
	base := Plan{Name: "app", Instance: "app", Description: "from the file", Schedule: "1h,1d/7d", Directory: "/b/app",
		Store:   Store{Kind: StoreCommand, Dump: []string{"pg_dump"}, Load: []string{"pg_restore"}, Env: []string{"PGPASSWORD=x"}, Timeout: Duration(time.Hour)},
		Hooks:   Hooks{Pre: &Hook{Command: []string{"freeze"}}, Post: &Hook{Command: []string{"thaw"}, Timeout: Duration(time.Second)}},
		Targets: []string{"cold-disk"}, Disabled: true, MinKeep: ptr(3)}
	for _, tc := range []struct {
		name string
		ev   events.PlanChanged
	}{
		{"every field", events.PlanChanged{Action: events.PlanActionSet, Set: &events.PlanFields{Instance: ptr("wr"), Description: ptr(""),
			Schedule: ptr("2h,1d/7d"), Directory: ptr("/c/app"), Store: &events.PlanStore{Kind: StoreFiles, Path: "/srv", Include: []string{"data/"}, Timeout: 1500},
			Hooks: &events.PlanHooks{Post: &events.PlanHook{Command: []string{"sync"}, Timeout: 5000}}, Targets: &[]string{}, MinKeep: &keep, Disabled: ptr(false)}}},
		{"one field", events.PlanChanged{Action: events.PlanActionSet, Set: &events.PlanFields{Schedule: ptr("2h,1d/7d")}}},
		{"no field", events.PlanChanged{Action: events.PlanActionSet, Set: &events.PlanFields{}}},
		{"disable", events.PlanChanged{Action: events.PlanActionDisable}},
		{"enable", events.PlanChanged{Action: events.PlanActionEnable}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.ev.Plan = "app"
			want := base
			switch tc.ev.Action {
			case events.PlanActionDisable:
				want.Disabled = true
			case events.PlanActionEnable:
				want.Disabled = false
			default:
				applyFields(&want, tc.ev.Set)
			}
			vals, err := changeValues(&tc.ev)
			if err != nil {
				t.Fatal(err)
			}
			got := base
			if err := applyValues(&got, vals); err != nil {
				t.Fatal(err)
			}
			if a, b := jsonOf(t, got), jsonOf(t, want); a != b {
				t.Errorf("the recorded fields %v make\n%s\nthe event's make\n%s", vals, a, b)
			}
		})
	}
}

// TestPlanChangesTakenAfterRebuild: host cold missed changes host hot
// applied, and rebuilds from hot's snapshot, which replaces its
// plan_changes; the scheduler's next pass (catchUpChanges) takes them into
// the plans cold runs — hot's plans, each with cold's own directory and
// store — and from then on both apply the next change alike, with equal
// plan_changes.
func TestPlanChangesTakenAfterRebuild(t *testing.T) {
	dir := t.TempDir()
	cfgOf := func(host string) Config {
		return Config{Plans: []Plan{sqlitePlan("app", "1h,1d/7d", filepath.Join(dir, "app.db"), filepath.Join(dir, host, "app"))}}
	}
	hot, cold := newBare(t, cfgOf("hot")), newBare(t, cfgOf("cold"))
	cold.clock.Advance(3 * time.Hour)
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	keep := 3
	evs := []events.PlanChanged{
		{Plan: "app", Action: events.PlanActionSet, ChangedAt: at, Set: &events.PlanFields{Schedule: ptr("2h,1d/7d"), MinKeep: &keep}},
		{Plan: "extra", Action: events.PlanActionSet, ChangedAt: at.Add(time.Minute), Set: &events.PlanFields{Schedule: ptr("1h,1d/7d"),
			Directory: ptr(filepath.Join(dir, "extra")), Store: &events.PlanStore{Kind: StoreSQLite, Path: filepath.Join(dir, "extra.db")},
			Hooks: &events.PlanHooks{Pre: &events.PlanHook{Command: []string{"sync"}, Timeout: 5000}}}},
		{Plan: "app", Action: events.PlanActionDisable, ChangedAt: at.Add(2 * time.Minute)},
		{Plan: SelfPlan, Action: events.PlanActionSet, ChangedAt: at.Add(3 * time.Minute), Set: &events.PlanFields{Schedule: ptr("1h,1d/14d")}},
		{Plan: "app", Action: events.PlanActionSet, ChangedAt: at.Add(4 * time.Minute), Set: &events.PlanFields{Description: ptr("changed at run time")}},
	}
	for i := range evs {
		hot.applyPlanChanged(t, fmt.Sprintf("change-%d", i), &evs[i])
	}
	cold.applyPlanChanged(t, "change-0", &evs[0])
	loadChanges(t, hot, cold)
	if err := cold.s.catchUpChanges(t.Context()); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"app", "extra", SelfPlan} {
		hp, hr := runningPlan(t, hot, name)
		cp, cr := runningPlan(t, cold, name)
		if a, b := alike(t, hp, hr), alike(t, cp, cr); a != b {
			t.Errorf("plan %s: hot runs\n%s\ncold, rebuilt, runs\n%s", name, a, b)
		}
		if name == "app" && (hp.Directory != filepath.Join(dir, "hot", "app") || cp.Directory != filepath.Join(dir, "cold", "app")) {
			t.Errorf("app's directories are %s and %s: each host's own", hp.Directory, cp.Directory)
		}
		if name == SelfPlan && (hp.Store.Path != hot.s.dataDir || cp.Store.Path != cold.s.dataDir) {
			t.Errorf("lifeboat-self's stores are %s and %s: each host's data directory", hp.Store.Path, cp.Store.Path)
		}
	}
	if p, r := runningPlan(t, cold, "extra"); r.Origin != originAPI || p.Hooks.Pre == nil {
		t.Errorf("extra on cold: %+v %s", p, r.Origin)
	}
	cold.s.mu.Lock()
	rebuild := cold.s.rebuild["extra"]
	cold.s.mu.Unlock()
	if !rebuild {
		t.Error("the new plan extra's catalog is not rebuilt")
	}
	before, _ := planRow(t, cold.db, "app")
	if err := cold.s.catchUpChanges(t.Context()); err != nil {
		t.Fatal(err)
	}
	if after, _ := planRow(t, cold.db, "app"); after != before {
		t.Errorf("taking the changes again changed the plan:\n%+v\n%+v", before, after)
	}

	next := events.PlanChanged{Plan: "app", Action: events.PlanActionEnable, ChangedAt: at.Add(5 * time.Minute)}
	hot.applyPlanChanged(t, "change-5", &next)
	cold.applyPlanChanged(t, "change-5", &next)
	if a, b := changesOf(t, hot), changesOf(t, cold); a != b {
		t.Errorf("plan_changes differ:\n%s\n%s", a, b)
	}
	hp, hr := runningPlan(t, hot, "app")
	cp, cr := runningPlan(t, cold, "app")
	if a, b := alike(t, hp, hr), alike(t, cp, cr); a != b || hp.Disabled || hp.Description != "changed at run time" {
		t.Errorf("app after the next change:\n%s\n%s", a, b)
	}
}

// TestPlanChangesConfigWins: the config file's changed declaration wins
// over the changes made before it, also when a rebuild brings them back
// with later ones (only the later ones apply on top of it); a plan the
// file drops is not brought back by its changes.
func TestPlanChangesConfigWins(t *testing.T) {
	dir := t.TempDir()
	app := sqlitePlan("app", "1h,1d/7d", filepath.Join(dir, "app.db"), filepath.Join(dir, "app"))
	b, peer := newBare(t, Config{Plans: []Plan{app}}), newBare(t, Config{Plans: []Plan{app}})
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	apply := func(id string, ev events.PlanChanged, hosts ...*bare) {
		t.Helper()
		for _, h := range hosts {
			h.applyPlanChanged(t, id, &ev)
		}
	}
	rebuild := func() {
		t.Helper()
		loadChanges(t, peer, b)
		if err := b.s.catchUpChanges(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	apply("c1", events.PlanChanged{Plan: "app", Action: events.PlanActionSet, ChangedAt: at, Set: &events.PlanFields{Description: ptr("run time")}}, b, peer)

	changed := app
	changed.Schedule = "3h,1d/7d"
	norm, err := changed.Normalize()
	if err != nil {
		t.Fatal(err)
	}
	self := b.s.cfg.selfPlan(b.s.dataDir)
	if err := b.s.applyConfig(t.Context(), []Plan{norm, self}); err != nil {
		t.Fatal(err)
	}
	keep := 4
	apply("c2", events.PlanChanged{Plan: "app", Action: events.PlanActionSet, ChangedAt: at.Add(time.Minute), Set: &events.PlanFields{MinKeep: &keep}}, peer)
	rebuild()
	p, r := runningPlan(t, b, "app")
	if p.Schedule != "3h,1d/7d" || p.Description != "" || *p.MinKeep != 4 || r.Origin != originConfig {
		t.Errorf("app after the file won and a rebuild: %+v (%s)", p, r.Origin)
	}

	if err := b.s.applyConfig(t.Context(), []Plan{self}); err != nil {
		t.Fatal(err)
	}
	rebuild()
	if _, ok := planRow(t, b.db, "app"); ok {
		t.Error("the changes of a plan the file dropped brought it back")
	}
	apply("c3", events.PlanChanged{Plan: "app", Action: events.PlanActionSet, ChangedAt: at.Add(2 * time.Minute), Set: &events.PlanFields{Schedule: ptr("2h,1d/7d")}}, peer)
	rebuild()
	if _, ok := planRow(t, b.db, "app"); ok {
		t.Error("a partial change of a plan this host does not have made it")
	}
}

// TestPlanChangesMigration: 0006 carries a plan created at run time into
// plan_changes, as one change giving its whole definition, which a host
// rebuilding from this one derives back exactly; a config-declared plan
// changed at run time keeps its change in plans, and has no replicated
// row (which of its fields were changed is not recorded).
func TestPlanChangesMigration(t *testing.T) {
	dir, data := t.TempDir(), t.TempDir()
	all, err := lbsql.Migrations(Name)
	if err != nil {
		t.Fatal(err)
	}
	names, err := fs.Glob(all, "*.sql")
	if err != nil {
		t.Fatal(err)
	}
	before := fstest.MapFS{}
	for _, n := range names {
		if n < "0006" {
			b, err := fs.ReadFile(all, n)
			if err != nil {
				t.Fatal(err)
			}
			before[n] = &fstest.MapFile{Data: b}
		}
	}
	sdb, err := store.Open(t.Context(), service.DBPath(data, Name), store.NewOptions("lifeboat/test-host/"+Name, before))
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Plans: []Plan{sqlitePlan("app", "1h,1d/7d", filepath.Join(dir, "app.db"), filepath.Join(dir, "app"))}}
	decls, err := cfg.Normalize(data)
	if err != nil {
		t.Fatal(err)
	}
	app := decls[0]
	changedApp := app
	changedApp.Schedule = "2h,1d/7d"
	extra := Plan{Name: "extra", Instance: "extra", Description: "made <at> run time & \u2028kept", Schedule: "2h,1d/7d", Directory: filepath.Join(dir, "extra"),
		Store:   Store{Kind: StoreCommand, Dump: []string{"dump"}, Load: []string{"load"}, Timeout: Duration(90 * time.Second)},
		Hooks:   Hooks{Pre: &Hook{Command: []string{"sync"}, Timeout: Duration(5 * time.Second)}},
		Targets: []string{"cold-disk"}, Disabled: true, MinKeep: ptr(2)}
	const updated = 1772366400000
	for _, r := range []db.PlanPutParams{
		{Name: "extra", Definition: jsonOf(t, extra), Origin: originAPI, UpdatedAt: updated},
		{Name: "app", Definition: jsonOf(t, changedApp), Origin: originConfig, ConfigHash: app.hash(), UpdatedAt: updated},
	} {
		if err := sdb.Update(t.Context(), func(tx *store.Tx) error { return db.New(tx).PlanPut(t.Context(), r) }); err != nil {
			t.Fatal(err)
		}
	}
	sdb.Close()

	b := newBareAt(t, cfg, data)
	c, err := db.New(b.db.R).PlanChangeGet(t.Context(), "extra")
	if err != nil {
		t.Fatal(err)
	}
	if c.Rev != 1 || c.ChangedAt != updated || c.ChangeID != "" {
		t.Errorf("extra's carried change: %+v", c)
	}
	fields, err := changedFields(c)
	if err != nil {
		t.Fatal(err)
	}
	if canon, _ := json.Marshal(fields); c.Fields != string(canon) || !strings.Contains(c.Fields, `"disabled":{"rev":1,"value":true}`) || len(fields) != 9 {
		t.Errorf("extra's carried fields:\n%s\nnot as the service writes them:\n%s", c.Fields, canon)
	}
	if _, err := db.New(b.db.R).PlanChangeGet(t.Context(), "app"); err == nil {
		t.Error("app's change was carried over, though which fields it gave is not recorded")
	}
	if p, _ := runningPlan(t, b, "app"); p.Schedule != "2h,1d/7d" {
		t.Errorf("app lost its run-time change: %+v", p)
	}
	if p, _ := runningPlan(t, b, "extra"); jsonOf(t, p) != jsonOf(t, extra) {
		t.Errorf("extra changed at start: %s", jsonOf(t, p))
	}

	fresh := newBare(t, Config{})
	loadChanges(t, b, fresh)
	if err := fresh.s.catchUpChanges(t.Context()); err != nil {
		t.Fatal(err)
	}
	gp, gr := runningPlan(t, fresh, "extra")
	if jsonOf(t, gp) != jsonOf(t, extra) || gr.UpdatedAt != updated || gr.Origin != originAPI {
		t.Errorf("a host rebuilt from the migrated one runs extra as\n%s (%s, %d)\nnot\n%s", jsonOf(t, gp), gr.Origin, gr.UpdatedAt, jsonOf(t, extra))
	}

	b.applyPlanChanged(t, "enable", &events.PlanChanged{Plan: "extra", Action: events.PlanActionEnable, ChangedAt: time.UnixMilli(updated + 1000)})
	if p, _ := runningPlan(t, b, "extra"); p.Disabled || p.Schedule != extra.Schedule {
		t.Errorf("extra after enable: %+v", p)
	}
	if c, _ := db.New(b.db.R).PlanChangeGet(t.Context(), "extra"); c.Rev != 2 || c.ChangeID != "enable" {
		t.Errorf("extra's changes after enable: %+v", c)
	}
}
