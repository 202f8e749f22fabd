package backupscheduler

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"lifeboat.dev/events"
	"lifeboat.dev/pkg/backup"
	"lifeboat.dev/pkg/bustest"
	"lifeboat.dev/pkg/schedule"
	"lifeboat.dev/pkg/storekind/sqlite"
	"lifeboat.dev/pkg/testtool"
)

// checkRetention replays plan's events in stream order against the rule:
// every BackupPruned must delete exactly what schedule.Retain deletes at its
// pruned_at from the backups taken and not yet pruned, for the reasons it
// gives. It returns the backups that should remain.
func checkRetention(t *testing.T, evs []recorded, plan string, spec func(at time.Time) schedule.Spec, minKeep int) []string {
	t.Helper()
	var live []schedule.Backup
	for _, e := range evs {
		switch {
		case e.Taken != nil && e.Taken.Plan == plan:
			ts, err := backup.ParseName(e.Taken.Backup)
			if err != nil {
				t.Fatalf("BackupTaken names %q: %v", e.Taken.Backup, err)
			}
			live = append(live, schedule.Backup{Name: e.Taken.Backup, Time: ts, Verified: true})
		case e.Pruned != nil && e.Pruned.Plan == plan:
			want := map[string]string{}
			kept := 0
			for _, d := range spec(e.Pruned.PrunedAt).Retain(e.Pruned.PrunedAt, live, minKeep) {
				if !d.Keep {
					want[d.Backup.Name] = d.Rule
				} else {
					kept++
				}
			}
			got := map[string]string{}
			for _, p := range e.Pruned.Pruned {
				got[p.Backup] = p.Reason
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("pruning at %s of %v:\n got %v\nwant %v", e.Pruned.PrunedAt, live, got, want)
			}
			if e.Pruned.Kept != kept {
				t.Errorf("BackupPruned says %d kept, the rule keeps %d", e.Pruned.Kept, kept)
			}
			live = slices.DeleteFunc(live, func(b schedule.Backup) bool { return got[b.Name] != "" })
		}
	}
	var out []string
	for _, b := range live {
		out = append(out, b.Name)
	}
	sort.Strings(out)
	return out
}

// TestScheduledBackupsUnderWrites is the "done when": a plan
// protecting a SQLite database under concurrent writes takes backups on
// schedule, prunes them exactly by the rule, announces both on the bus, and
// every backup's payload opens with the stock sqlite3 CLI and passes
// integrity_check.
func TestScheduledBackupsUnderWrites(t *testing.T) {
	sqlite3 := testtool.Need(t, "sqlite3", "apt-get install sqlite3")
	_, b := bustest.Embedded(t)
	rec := record(t, b)
	dir := t.TempDir()
	src := filepath.Join(dir, "app.db")
	newStore(t, src)
	w := startWriter(t, src)
	backups := filepath.Join(dir, "backups")
	const sched = "1s,2s/4s"
	n := startNode(t, b, Config{Plans: []Plan{sqlitePlan("app", sched, src, backups)}}, t.TempDir(), rec)

	testtool.WaitFor(t, 60*time.Second, rec.atLeast("app", 8, "BackupTaken", isTaken))
	testtool.WaitFor(t, 30*time.Second, rec.atLeast("app", 3, "BackupPruned", isPruned))
	n.stop()
	if w.commits.Load() == 0 {
		t.Fatal("the writer committed nothing")
	}

	evs := rec.all()
	want := checkRetention(t, evs, "app", func(time.Time) schedule.Spec { return schedule.MustParse(sched) }, 1)
	var got []string
	for _, e := range mustList(t, backups) {
		got = append(got, e.Name)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("backups on disk %v, the rule leaves %v", got, want)
	}
	if len(got) > schedule.MustParse(sched).SteadyState()+1 {
		t.Errorf("%d backups kept; the schedule's steady state is %d", len(got), schedule.MustParse(sched).SteadyState())
	}
	for _, e := range evs {
		if e.Failed != nil {
			t.Errorf("BackupFailed: %+v", e.Failed)
		}
		if e.Taken == nil {
			continue
		}
		ev := e.Taken
		if ev.Kind != events.BackupScheduled || ev.Instance != "app-instance" || ev.Store != "sqlite" || ev.Host != "test-host" || ev.Dir != backups {
			t.Errorf("BackupTaken %+v", ev)
		}
		if len(ev.Files) != 1 || ev.Files[0].Path != sqlite.PayloadName || ev.Bytes != ev.Files[0].Bytes || len(ev.SHA256) != 64 {
			t.Errorf("BackupTaken files %+v bytes %d sha256 %q", ev.Files, ev.Bytes, ev.SHA256)
		}
		if ev.ConsistentAt.Before(ev.TakenAt) || ev.FormatVersion != backup.FormatVersion {
			t.Errorf("BackupTaken taken_at %s consistent_at %s format %d", ev.TakenAt, ev.ConsistentAt, ev.FormatVersion)
		}
	}
	// Every payload still on disk opens with the stock CLI, passes
	// integrity_check, and holds a snapshot of the committed rows.
	for _, name := range got {
		if _, err := backup.Verify(context.Background(), backups, name); err != nil {
			t.Fatal(err)
		}
		rows := checkWithCLI(t, sqlite3, filepath.Join(backups, name, sqlite.PayloadName))
		if rows < 500 {
			t.Errorf("%s holds %d rows, fewer than the 500 seeded", name, rows)
		}
	}
	// Nothing but backups: no temporary directory left behind.
	for _, name := range names(t, backups) {
		if !backup.IsName(name) {
			t.Errorf("%s left in the backup directory", name)
		}
	}
}

func mustList(t *testing.T, dir string) []backup.Entry {
	t.Helper()
	entries, err := backup.List(dir)
	if err != nil {
		t.Fatal(err)
	}
	return entries
}

// TestTakeCommandIsAnswered: backup-scheduler.take is answered with
// BackupTaken (or BackupFailed) carrying the command's id, and two backups
// asked for at once get two names.
func TestTakeCommandIsAnswered(t *testing.T) {
	_, b := bustest.Embedded(t)
	rec := record(t, b)
	dir := t.TempDir()
	src := filepath.Join(dir, "app.db")
	newStore(t, src)
	backups := filepath.Join(dir, "backups")
	off := sqlitePlan("off", "1h,1d/7d", src, filepath.Join(dir, "off"))
	off.Disabled = true
	app := sqlitePlan("app", "1h,1d/7d", src, backups)
	app.MinKeep = ptr(10) // the rule would prune backups taken in one hour's slot
	startNode(t, b, Config{Plans: []Plan{app, off}}, t.TempDir(), rec)
	// The plan's first scheduled backup is due at once.
	testtool.WaitFor(t, 30*time.Second, rec.atLeast("app", 1, "BackupTaken", isTaken))

	ids := map[string]events.BackupKind{
		take(t, b, "app", events.BackupManual): events.BackupManual,
		take(t, b, "app", events.BackupHash):   events.BackupHash,
		take(t, b, "app", ""):                  events.BackupManual,
	}
	missing := take(t, b, "nope", events.BackupFull)
	disabled := take(t, b, "off", events.BackupManual)
	answers := func() map[string]recorded {
		out := map[string]recorded{}
		for _, e := range rec.all() {
			switch {
			case e.Taken != nil && e.Taken.RequestID != "":
				out[e.Taken.RequestID] = e
			case e.Failed != nil && e.Failed.RequestID != "":
				out[e.Failed.RequestID] = e
			}
		}
		return out
	}
	testtool.WaitFor(t, 30*time.Second, func() error {
		if got := len(answers()); got < len(ids)+2 {
			return fmt.Errorf("%d answers, want %d", got, len(ids)+2)
		}
		return nil
	})
	got := answers()
	seen := map[string]bool{}
	for id, kind := range ids {
		e := got[id].Taken
		if e == nil {
			t.Fatalf("take %s answered with %+v", id, got[id].Failed)
		}
		if e.Kind != kind || e.Plan != "app" {
			t.Errorf("take %s (%s) answered with %+v", id, kind, e)
		}
		if seen[e.Backup] {
			t.Errorf("two takes answered with the same backup %s", e.Backup)
		}
		seen[e.Backup] = true
		if _, err := backup.Verify(context.Background(), backups, e.Backup); err != nil {
			t.Error(err)
		}
	}
	if f := got[missing].Failed; f == nil || !strings.Contains(f.Error, `no plan named "nope"`) {
		t.Errorf("take of a missing plan answered with %+v", got[missing])
	}
	if f := got[disabled].Failed; f == nil || !strings.Contains(f.Error, "disabled") || !strings.Contains(f.Error, "lifeboat plan enable off") {
		t.Errorf("take of a disabled plan answered with %+v", got[disabled])
	}
	if got := names(t, filepath.Join(dir, "off")); len(got) != 0 {
		t.Errorf("the disabled plan's directory holds %v", got)
	}
}

// TestScheduleChangeKeepsBackups: a schedule changed at run time takes
// effect at once and prunes only where a slot of the new schedule holds
// more than one backup: each occupied slot keeps one.
func TestScheduleChangeKeepsBackups(t *testing.T) {
	_, b := bustest.Embedded(t)
	rec := record(t, b)
	dir := t.TempDir()
	src := filepath.Join(dir, "app.db")
	newStore(t, src)
	backups := filepath.Join(dir, "backups")
	before, after := "1s,1m/10m", "1s,4s/1m"
	startNode(t, b, Config{Plans: []Plan{sqlitePlan("app", before, src, backups)}}, t.TempDir(), rec)
	testtool.WaitFor(t, 60*time.Second, rec.atLeast("app", 8, "BackupTaken", isTaken))
	if n := rec.count("app", isPruned); n != 0 {
		t.Fatalf("%d pruning passes deleted backups under %s, which keeps every one of them", n, before)
	}
	occupied := func(names []string, now time.Time) map[string]bool {
		slots := map[string]bool{}
		spec := schedule.MustParse(after)
		var bs []schedule.Backup
		for _, n := range names {
			ts, _ := backup.ParseName(n)
			bs = append(bs, schedule.Backup{Name: n, Time: ts})
		}
		for _, d := range spec.Retain(now, bs, 0) {
			if d.Keep {
				slots[d.Rule] = true
			}
		}
		return slots
	}
	var pre []string
	for _, e := range mustList(t, backups) {
		pre = append(pre, e.Name)
	}

	var v PlanView
	changedAt := time.Now()
	mustCall(t, b.NC, EndpointPlanSet, PlanSetRequest{Name: "app", Schedule: ptr(after)}, &v)
	if v.Schedule != after || v.SteadyState != schedule.MustParse(after).SteadyState() {
		t.Fatalf("plan set answered %+v", v)
	}
	testtool.WaitFor(t, 30*time.Second, rec.atLeast("app", 1, "BackupPruned", isPruned))
	var firstPass *events.BackupPruned
	for _, e := range rec.all() {
		if e.Pruned != nil {
			firstPass = e.Pruned
			break
		}
	}
	// The pass after the change keeps one backup in each slot of the new
	// schedule that held one before it.
	slotsBefore := occupied(pre, firstPass.PrunedAt)
	var left []string
	for _, e := range mustList(t, backups) {
		if !e.Time.After(changedAt) {
			left = append(left, e.Name)
		}
	}
	slotsAfter := occupied(left, firstPass.PrunedAt)
	for s := range slotsBefore {
		if !slotsAfter[s] && !strings.HasPrefix(s, "T ") {
			t.Errorf("slot %q held a backup before the change and none after it", s)
		}
	}
	if len(left) == 0 {
		t.Fatal("changing the schedule wiped the backups")
	}
	testtool.WaitFor(t, 30*time.Second, rec.atLeast("app", 12, "BackupTaken", isTaken))
	spec := func(at time.Time) schedule.Spec {
		if at.Before(changedAt) {
			return schedule.MustParse(before)
		}
		return schedule.MustParse(after)
	}
	checkRetention(t, rec.all(), "app", spec, 1)
}

func ptr[T any](v T) *T { return &v }

// TestDisabledPlanTakesAndDeletesNothing: a disabled plan's old backups,
// far past T, stay; it takes none; its catalog still lists them.
func TestDisabledPlanTakesAndDeletesNothing(t *testing.T) {
	_, b := bustest.Embedded(t)
	rec := record(t, b)
	dir := t.TempDir()
	src := filepath.Join(dir, "app.db")
	newStore(t, src)
	offDir := filepath.Join(dir, "off-backups")
	var old []string
	for i := range 3 {
		name, _, err := backup.Write(context.Background(), offDir, backup.Manifest{
			Instance: "off", Plan: "off", StoreKind: "sqlite", Kind: backup.KindScheduled, TakenAt: time.Now().Add(-time.Duration(i+1) * time.Hour),
		}, sqlite.New(src).Dump)
		if err != nil {
			t.Fatal(err)
		}
		old = append(old, name)
	}
	sort.Strings(old)
	off := sqlitePlan("off", "1s,2s/4s", src, offDir)
	off.Disabled = true
	startNode(t, b, Config{Plans: []Plan{sqlitePlan("on", "1s,2s/4s", src, filepath.Join(dir, "on-backups")), off}}, t.TempDir(), rec)
	// The enabled plan shows the scheduler taking and pruning meanwhile.
	testtool.WaitFor(t, 60*time.Second, rec.atLeast("on", 5, "BackupTaken", isTaken))
	testtool.WaitFor(t, 30*time.Second, rec.atLeast("on", 2, "BackupPruned", isPruned))

	// Its only events are the announcements of the backups its catalog
	// found in the directory at start, one each (so sync can ship them):
	// it takes, fails and prunes nothing.
	var announced []string
	for _, e := range rec.all() {
		if planOf(e) != "off" {
			continue
		}
		if e.Taken == nil || !slices.Contains(old, e.Taken.Backup) {
			t.Errorf("the disabled plan has an event other than the announcement of a backup it had: %+v", e)
			continue
		}
		announced = append(announced, e.Taken.Backup)
	}
	sort.Strings(announced)
	if !slices.Equal(announced, old) {
		t.Errorf("the disabled plan announced %v, want each of its backups %v once", announced, old)
	}
	if got := names(t, offDir); !slices.Equal(got, old) {
		t.Errorf("the disabled plan's directory holds %v, want its untouched %v", got, old)
	}
	var list []BackupView
	mustCall(t, b.NC, EndpointBackupList, BackupListRequest{Plan: "off"}, &list)
	if len(list) != 3 {
		t.Errorf("the catalog lists %d backups of the disabled plan, want 3", len(list))
	}
	var detail PlanDetail
	mustCall(t, b.NC, EndpointPlanShow, PlanRequest{Name: "off"}, &detail)
	if !detail.Disabled || detail.NextDueAt != nil {
		t.Errorf("plan show of a disabled plan: %+v", detail.PlanView)
	}
	for _, r := range detail.Retention {
		if !r.Keep {
			t.Errorf("the disabled plan's timeline would delete %s (%s)", r.Backup, r.Rule)
		}
	}
}

// TestOverdueAfterDowntimeTakesOne: a plan found overdue at start (the
// process was down for several intervals) takes one backup at once and
// then keeps its cadence: no burst of catch-up backups.
func TestOverdueAfterDowntimeTakesOne(t *testing.T) {
	_, b := bustest.Embedded(t)
	rec := record(t, b)
	dir := t.TempDir()
	src := filepath.Join(dir, "app.db")
	newStore(t, src)
	data := t.TempDir()
	cfg := Config{Plans: []Plan{sqlitePlan("app", "1h,1d/7d", src, filepath.Join(dir, "backups"))}}
	n := startNode(t, b, cfg, data, rec)
	testtool.WaitFor(t, 30*time.Second, rec.atLeast("app", 1, "BackupTaken", isTaken))
	var v []PlanView
	testtool.WaitFor(t, 10*time.Second, func() error {
		mustCall(t, b.NC, EndpointPlanList, nil, &v)
		if len(v) == 0 || v[0].NextDueAt == nil || v[0].LastAttemptAt == nil {
			return fmt.Errorf("plan state %+v", v)
		}
		return nil
	})
	if d := time.Until(*v[0].NextDueAt); d < 55*time.Minute {
		t.Fatalf("next backup due in %s after one was taken; want an hour", d)
	}
	n.stop()

	// Five hours of downtime: the last attempt was five hours ago.
	db, err := sql.Open("sqlite", dbPath(data))
	if err != nil {
		t.Fatal(err)
	}
	past := time.Now().Add(-5 * time.Hour)
	if _, err := db.Exec(`UPDATE plans SET last_attempt_at = ?, next_due_at = ? WHERE name = 'app'`,
		past.UnixMilli(), past.Add(time.Hour).UnixMilli()); err != nil {
		t.Fatal(err)
	}
	db.Close()

	restarted := time.Now()
	startNode(t, b, cfg, data, rec)
	testtool.WaitFor(t, 30*time.Second, rec.atLeast("app", 2, "BackupTaken", isTaken))
	testtool.WaitFor(t, 10*time.Second, func() error {
		mustCall(t, b.NC, EndpointPlanList, nil, &v)
		if v[0].LastAttemptAt == nil || v[0].LastAttemptAt.Before(restarted) {
			return fmt.Errorf("no attempt recorded since the restart: %+v", v[0])
		}
		return nil
	})
	// The next one is a whole interval away: the four missed slots are not
	// made up.
	if d := time.Until(*v[0].NextDueAt); d < 55*time.Minute {
		t.Errorf("after the overdue backup the next is due in %s; want an hour (no burst)", d)
	}
	if got := rec.count("app", isTaken); got != 2 {
		t.Errorf("%d backups taken; want 2 (one before the downtime, one after)", got)
	}
}

// TestFailuresAreReported: every fault gives BackupFailed with a reason an
// operator can act on and the step, leaves no backup under a final name,
// keeps the plan, and is retried at the next slot.
func TestFailuresAreReported(t *testing.T) {
	_, b := bustest.Embedded(t)
	rec := record(t, b)
	dir := t.TempDir()
	good := filepath.Join(dir, "good.db")
	newStore(t, good)
	notDB := filepath.Join(dir, "notes.db")
	if err := os.WriteFile(notDB, []byte(strings.Repeat("not a database\n", 500)), 0o644); err != nil {
		t.Fatal(err)
	}
	corrupt := filepath.Join(dir, "corrupt.db")
	newStore(t, corrupt)
	scribble(t, corrupt)
	aFile := filepath.Join(dir, "a-file")
	if err := os.WriteFile(aFile, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	const sched = "1s,2s/4s"
	plan := func(name, db string) Plan { return sqlitePlan(name, sched, db, filepath.Join(dir, "backups-"+name)) }
	hooked := func(name string, pre, post *Hook) Plan {
		p := plan(name, good)
		p.Hooks = Hooks{Pre: pre, Post: post}
		return p
	}
	unwritable := plan("unwritable", good)
	unwritable.Directory = filepath.Join(aFile, "backups")
	dump := Plan{Name: "dump", Schedule: sched, Directory: filepath.Join(dir, "backups-dump"),
		Store: Store{Kind: StoreCommand, Dump: []string{"sh", "-c", "echo partial; echo 'pg_dump: connection refused' >&2; exit 3"}, Load: []string{"cat"}}}
	cases := []struct {
		plan       Plan
		step, want string
	}{
		{plan("missing", filepath.Join(dir, "nope", "app.db")), "copy", "does not exist"},
		{plan("notdb", notDB), "copy", "not a database"},
		{plan("corrupt", corrupt), "integrity_check", "integrity_check of the copy failed, so the source database is corrupt and was not backed up"},
		{unwritable, "directory", "not a directory"},
		{hooked("prefails", &Hook{Command: []string{"sh", "-c", "echo cannot freeze >&2; exit 1"}}, nil), "pre-hook", "cannot freeze"},
		{hooked("prehangs", &Hook{Command: []string{"sleep", "60"}, Timeout: Duration(300 * time.Millisecond)}, nil), "pre-hook", "timed out"},
		{hooked("postfails", nil, &Hook{Command: []string{"false"}}), "post-hook", "may still be frozen"},
		{dump, "copy", "connection refused"},
	}
	var plans []Plan
	for _, c := range cases {
		plans = append(plans, c.plan)
	}
	// The schedule runs on a fake clock, moved on a slot at a time.
	n := startClocked(t, b, Config{Plans: plans}, t.TempDir(), rec, testClock())
	var twice []func() error
	for _, c := range cases {
		// Two failures: the plan is kept and retried at its next slot.
		twice = append(twice, rec.atLeast(c.plan.Name, 2, "BackupFailed", isFailed))
	}
	n.advanceUntil(time.Second, 60*time.Second, allOf(twice...))
	for _, c := range cases {
		t.Run(c.plan.Name, func(t *testing.T) {
			if n := rec.count(c.plan.Name, isTaken); n != 0 {
				t.Errorf("%d backups announced", n)
			}
			for _, e := range rec.all() {
				f := e.Failed
				if f == nil || f.Plan != c.plan.Name {
					continue
				}
				t.Logf("step %s: %s", f.Step, f.Error)
				if c.step != "" && f.Step != c.step {
					t.Errorf("step %q, want %q", f.Step, c.step)
				}
				if !matchAny(f.Error, c.want) {
					t.Errorf("reason %q does not say %q", f.Error, c.want)
				}
				inst := c.plan.Instance
				if inst == "" {
					inst = c.plan.Name
				}
				if f.Kind != events.BackupScheduled || f.Instance != inst || f.FailedAt.IsZero() {
					t.Errorf("BackupFailed %+v", f)
				}
			}
			if entries, err := backup.List(c.plan.Directory); err == nil && len(entries) > 0 {
				t.Errorf("final-named directories left: %v", entries)
			}
			var v PlanDetail
			mustCall(t, b.NC, EndpointPlanShow, PlanRequest{Name: c.plan.Name}, &v)
			if v.Disabled || v.LastError == "" || v.LastErrorAt == nil || v.NextDueAt == nil {
				t.Errorf("plan after failures: %+v", v.PlanView)
			}
		})
	}
}

func matchAny(s, alternatives string) bool {
	for _, a := range strings.Split(alternatives, "|") {
		if strings.Contains(s, a) {
			return true
		}
	}
	return false
}

// scribble corrupts the b-tree pages in the middle of a database file.
func scribble(t *testing.T, p string) {
	t.Helper()
	db, err := sql.Open("sqlite", p)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`CREATE INDEX IF NOT EXISTS items_body ON items(body); PRAGMA wal_checkpoint(TRUNCATE); PRAGMA journal_mode=DELETE`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	for i := len(data) / 2; i < len(data)/2+8192 && i < len(data); i++ {
		data[i] = 0x5a
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestCatalogFollowsTheDirectory: the catalog is rebuilt from the directory
// at start and on demand: a backup copied in by hand appears, one deleted by
// hand disappears, one whose manifest does not verify is marked invalid,
// and a full verification finds a changed payload.
func TestCatalogFollowsTheDirectory(t *testing.T) {
	_, b := bustest.Embedded(t)
	rec := record(t, b)
	dir := t.TempDir()
	src := filepath.Join(dir, "app.db")
	newStore(t, src)
	backups := filepath.Join(dir, "backups")
	data := t.TempDir()
	app := sqlitePlan("app", "1h,1d/7d", src, backups)
	app.MinKeep = ptr(10) // the rule would prune backups taken in one hour's slot
	cfg := Config{Plans: []Plan{app}}
	n := startNode(t, b, cfg, data, rec)
	testtool.WaitFor(t, 30*time.Second, rec.atLeast("app", 1, "BackupTaken", isTaken))
	for range 3 {
		take(t, b, "app", events.BackupManual)
	}
	testtool.WaitFor(t, 30*time.Second, rec.atLeast("app", 4, "BackupTaken", isTaken))
	entries := mustList(t, backups)
	if len(entries) != 4 {
		t.Fatalf("%d backups, want 4", len(entries))
	}
	deleted, badManifest, badPayload, source := entries[0].Name, entries[1].Name, entries[2].Name, entries[3].Name
	copied := backup.FormatName(entries[0].Time.Add(-time.Hour).Local())

	if err := os.RemoveAll(filepath.Join(backups, deleted)); err != nil {
		t.Fatal(err)
	}
	copyTree(t, filepath.Join(backups, source), filepath.Join(backups, copied))
	mf := filepath.Join(backups, badManifest, backup.ManifestName)
	m, err := os.ReadFile(mf)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(mf, []byte(strings.Replace(string(m), `"total_bytes": `, `"total_bytes": 1`, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	payload := filepath.Join(backups, badPayload, sqlite.PayloadName)
	f, err := os.OpenFile(payload, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("XXXX"), 5000); err != nil {
		t.Fatal(err)
	}
	f.Close()
	// Things that are not backups are left alone.
	if err := os.WriteFile(filepath.Join(backups, "README"), []byte("hands off"), 0o644); err != nil {
		t.Fatal(err)
	}

	var rebuilt []RebuildResult
	mustCall(t, b.NC, EndpointCatalogRebuild, RebuildRequest{Plan: "app"}, &rebuilt)
	if len(rebuilt) != 1 || rebuilt[0].Added != 1 || rebuilt[0].Removed != 1 || rebuilt[0].Invalid != 1 || rebuilt[0].Total != 4 || rebuilt[0].Announced != 1 {
		t.Errorf("rebuild: %+v", rebuilt)
	}
	// The backup copied in is announced, so that sync ships it; nothing
	// the catalog knew is announced again.
	announced := func(name string) int {
		return rec.count("app", func(e recorded) bool { return e.Taken != nil && e.Taken.Backup == name })
	}
	testtool.WaitFor(t, 10*time.Second, func() error {
		if n := announced(copied); n != 1 {
			return fmt.Errorf("%d BackupTaken for %s, copied in by hand; want 1", n, copied)
		}
		return nil
	})
	for _, name := range []string{source, badPayload} {
		if n := announced(name); n != 1 {
			t.Errorf("%d BackupTaken for %s after the rebuild, want its first one only", n, name)
		}
	}
	states := func() map[string]string {
		var list []BackupView
		mustCall(t, b.NC, EndpointBackupList, BackupListRequest{Plan: "app"}, &list)
		out := map[string]string{}
		for _, v := range list {
			out[v.Name] = v.State
		}
		return out
	}
	want := map[string]string{copied: "valid", badManifest: "invalid", badPayload: "valid", source: "valid"}
	if got := states(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("after the rebuild the catalog is %v, want %v", got, want)
	}
	// A full verification reads the payloads.
	var results []VerifyResult
	mustCall(t, b.NC, EndpointBackupVerify, VerifyRequest{Name: badPayload}, &results)
	if len(results) != 1 || results[0].State != "invalid" || !strings.Contains(results[0].Problem, "sha256") {
		t.Errorf("verify %s: %+v", badPayload, results)
	}
	want[badPayload] = "invalid"
	if got := states(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("after verify the catalog is %v, want %v", got, want)
	}
	if err := call(t, b.NC, EndpointBackupVerify, VerifyRequest{Name: deleted}, nil); err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("verify of a deleted backup: %v, want 404", err)
	}

	// The same at start: delete another by hand while the service is down.
	n.stop()
	if err := os.RemoveAll(filepath.Join(backups, copied)); err != nil {
		t.Fatal(err)
	}
	delete(want, copied)
	startNode(t, b, cfg, data, rec)
	testtool.WaitFor(t, 10*time.Second, func() error {
		if got := states(); fmt.Sprint(got) != fmt.Sprint(want) {
			return fmt.Errorf("after a restart the catalog is %v, want %v", got, want)
		}
		return nil
	})
	if _, err := os.Stat(filepath.Join(backups, "README")); err != nil {
		t.Errorf("a file that is not a backup was touched: %v", err)
	}
}

func copyTree(t *testing.T, from, to string) {
	t.Helper()
	err := filepath.WalkDir(from, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, p)
		dst := filepath.Join(to, rel)
		if d.IsDir() {
			return os.MkdirAll(dst, 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(dst, b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestPlansPersist: run-time changes survive a restart while the config
// file's declaration is unchanged; a changed declaration wins; a plan
// created at run time stays; one removed from the file is dropped and its
// backups are left on disk.
func TestPlansPersist(t *testing.T) {
	_, b := bustest.Embedded(t)
	rec := record(t, b)
	dir := t.TempDir()
	src := filepath.Join(dir, "app.db")
	newStore(t, src)
	data := t.TempDir()
	app := sqlitePlan("app", "1h,1d/7d", src, filepath.Join(dir, "app"))
	gone := sqlitePlan("gone", "1h,1d/7d", src, filepath.Join(dir, "gone"))
	n := startNode(t, b, Config{Plans: []Plan{app, gone}}, data, rec)
	testtool.WaitFor(t, 30*time.Second, rec.atLeast("gone", 1, "BackupTaken", isTaken))
	var v PlanView
	mustCall(t, b.NC, EndpointPlanSet, PlanSetRequest{Name: "app", Schedule: ptr("2h,1d/7d"), Description: ptr("changed at run time")}, &v)
	mustCall(t, b.NC, EndpointPlanSet, PlanSetRequest{Name: "extra", Schedule: ptr("1h,1d/7d"), Directory: ptr(filepath.Join(dir, "extra")),
		Store: &Store{Kind: StoreSQLite, Path: src}}, &v)
	if v.Origin != "api" || v.Instance != "extra" || *v.MinKeep != 1 {
		t.Errorf("created plan: %+v", v)
	}
	// Refused at run time as at config load.
	for _, bad := range []PlanSetRequest{
		{Name: "app", Schedule: ptr("1h,7m/1d")},
		{Name: "app", Directory: ptr(filepath.Join(dir, "extra"))},
		{Name: "new", Schedule: ptr("1h,1d/7d"), Directory: ptr(filepath.Join(dir, "new")), Store: &Store{Kind: "tape"}},
		{Name: "new", Schedule: ptr("1h,1d/7d"), Directory: ptr(filepath.Join(dir, "new")), Store: &Store{Kind: StoreSQLite}},
		{Name: "nope", Disabled: ptr(true)},
	} {
		if err := call(t, b.NC, EndpointPlanSet, bad, nil); err == nil {
			t.Errorf("plan set %+v was accepted", bad)
		} else {
			t.Log(err)
		}
	}
	mustCall(t, b.NC, EndpointPlanDisable, PlanRequest{Name: "app"}, &v)
	if !v.Disabled {
		t.Errorf("plan disable: %+v", v)
	}
	n.stop()

	show := func(name string) (PlanDetail, error) {
		var d PlanDetail
		err := call(t, b.NC, EndpointPlanShow, PlanRequest{Name: name}, &d)
		return d, err
	}
	n = startNode(t, b, Config{Plans: []Plan{app}}, data, rec)
	d, err := show("app")
	if err != nil || d.Schedule != "2h,1d/7d" || !d.Disabled || d.Description != "changed at run time" || d.Origin != "config" {
		t.Errorf("after a restart with the same config: %+v %v", d.PlanView, err)
	}
	if _, err := show("extra"); err != nil {
		t.Errorf("the plan created at run time is gone after a restart: %v", err)
	}
	if _, err := show("gone"); err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("a plan removed from the config: %v", err)
	}
	if len(mustList(t, filepath.Join(dir, "gone"))) == 0 {
		t.Error("dropping a plan deleted its backups")
	}
	mustCall(t, b.NC, EndpointPlanEnable, PlanRequest{Name: "app"}, &v)
	if v.Disabled {
		t.Errorf("plan enable: %+v", v)
	}
	n.stop()

	app.Schedule = "3h,1d/7d"
	startNode(t, b, Config{Plans: []Plan{app}}, data, rec)
	if d, err := show("app"); err != nil || d.Schedule != "3h,1d/7d" || d.Description != "" {
		t.Errorf("after the config's declaration changed: %+v %v", d.PlanView, err)
	}
}

// TestSelfProtection: lifeboat-self, one line to enable, backs up the
// lifeboat service databases with the sqlite kind.
func TestSelfProtection(t *testing.T) {
	sqlite3 := testtool.Need(t, "sqlite3", "apt-get install sqlite3")
	_, b := bustest.Embedded(t)
	rec := record(t, b)
	data := t.TempDir()
	startNode(t, b, Config{Self: SelfConfig{Enabled: true, Schedule: "1h,1d/7d"}}, data, rec)
	testtool.WaitFor(t, 30*time.Second, rec.atLeast(SelfPlan, 1, "BackupTaken", isTaken))
	var ev *events.BackupTaken
	for _, e := range rec.all() {
		if e.Taken != nil {
			ev = e.Taken
		}
	}
	if ev.Store != StoreSQLiteSet || ev.Dir != filepath.Join(data, "backups", SelfPlan) || ev.Instance != "lifeboat" {
		t.Errorf("BackupTaken %+v", ev)
	}
	p := filepath.Join(ev.Dir, ev.Backup, Name, sqlite.PayloadName)
	out, err := execOut(sqlite3, "-readonly", p, "PRAGMA integrity_check; SELECT count(*) FROM plans WHERE name = 'lifeboat-self';")
	if err != nil || out != "ok\n1\n" {
		t.Errorf("sqlite3 %s: %q %v", p, out, err)
	}

	// Off by default: declared, disabled, taking nothing.
	_, b2 := bustest.Embedded(t)
	startNode(t, b2, Config{}, t.TempDir(), record(t, b2))
	var plans []PlanView
	mustCall(t, b2.NC, EndpointPlanList, nil, &plans)
	if len(plans) != 1 || plans[0].Name != SelfPlan || !plans[0].Disabled || plans[0].Origin != "builtin" {
		t.Errorf("plans with no config: %+v", plans)
	}
}

// mountTmpfs mounts a tmpfs of size bytes with extra options at dir (a
// real file system that fills up or is read-only, which a root process
// cannot get from permissions) and unmounts it when the test ends. It
// skips the test where mounting is not allowed.
func mountTmpfs(t *testing.T, dir string, size int, opts ...string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	o := append([]string{fmt.Sprintf("size=%d", size)}, opts...)
	if out, err := execOut("mount", "-t", "tmpfs", "-o", strings.Join(o, ","), "tmpfs", dir); err != nil {
		t.Skipf("cannot mount a tmpfs (needs root or CAP_SYS_ADMIN): %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := execOut("umount", "-l", dir); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
}

// fill writes a file into dir until its file system is full.
func fill(t *testing.T, dir string) string {
	t.Helper()
	p := filepath.Join(dir, "filler")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 4096)
	for {
		if _, err := f.Write(buf); err != nil {
			if !strings.Contains(err.Error(), "no space left") {
				t.Fatalf("filling %s: %v", dir, err)
			}
			return p
		}
	}
}

// TestFullOrReadOnlyBackupDirectory: a backup directory on a full disk or a
// read-only file system gives BackupFailed saying so and what to do,
// leaves nothing under a final name, keeps the plan, and the next slot
// after the operator frees space (none is held by the failed attempts) or
// remounts the disk succeeds.
func TestFullOrReadOnlyBackupDirectory(t *testing.T) {
	_, b := bustest.Embedded(t)
	rec := record(t, b)
	dir := t.TempDir()
	src := filepath.Join(dir, "app.db")
	newStore(t, src)
	fullFS, roFS := filepath.Join(dir, "full-disk"), filepath.Join(dir, "ro-disk")
	mountTmpfs(t, fullFS, 4<<20)
	mountTmpfs(t, roFS, 4<<20, "ro")
	filler := fill(t, fullFS)
	full := sqlitePlan("full", "1s,2s/4s", src, filepath.Join(fullFS, "backups"))
	ro := sqlitePlan("ro", "1s,2s/4s", src, filepath.Join(roFS, "backups"))
	// The schedule runs on a fake clock, moved on a slot at a time.
	n := startClocked(t, b, Config{Plans: []Plan{full, ro}}, t.TempDir(), rec, testClock())
	n.advanceUntil(time.Second, 60*time.Second, allOf(
		rec.atLeast(full.Name, 2, "BackupFailed", isFailed), rec.atLeast(ro.Name, 2, "BackupFailed", isFailed)))

	for _, c := range []struct {
		plan Plan
		want string
	}{
		{full, "is full: free space"},
		{ro, "read-only file system"},
	} {
		for _, e := range rec.all() {
			if f := e.Failed; f != nil && f.Plan == c.plan.Name {
				t.Logf("%s: step %s: %s", c.plan.Name, f.Step, f.Error)
				if !strings.Contains(f.Error, c.want) || !strings.Contains(f.Error, "retries at its next slot") {
					t.Errorf("%s: reason %q does not say %q and that it retries", c.plan.Name, f.Error, c.want)
				}
			}
		}
		// (Not names: the next slot's attempt may have its temporary
		// directory open right now.)
		if entries, err := backup.List(c.plan.Directory); err == nil && len(entries) > 0 {
			t.Errorf("%s: final-named directories after failed backups: %v", c.plan.Name, entries)
		}
		var v PlanDetail
		mustCall(t, b.NC, EndpointPlanShow, PlanRequest{Name: c.plan.Name}, &v)
		if v.Disabled || v.LastError == "" || v.NextDueAt == nil {
			t.Errorf("%s: plan after failures: %+v", c.plan.Name, v.PlanView)
		}
	}
	if n := rec.count("full", isTaken) + rec.count("ro", isTaken); n != 0 {
		t.Fatalf("%d backups announced onto a full or read-only disk", n)
	}

	// The operator frees space and remounts the disk read-write: the next
	// slots succeed without anything else done.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if out, err := execOut("mount", "-o", "remount,rw", roFS); err != nil {
		t.Fatalf("remount: %v: %s", err, out)
	}
	n.advanceUntil(time.Second, 30*time.Second, allOf(
		rec.atLeast(full.Name, 1, "BackupTaken", isTaken), rec.atLeast(ro.Name, 1, "BackupTaken", isTaken)))
	for _, p := range []Plan{full, ro} {
		for _, name := range names(t, p.Directory) {
			if !backup.IsName(name) {
				continue
			}
			if _, err := backup.Verify(context.Background(), p.Directory, name); err != nil {
				t.Errorf("%s: %v", p.Name, err)
			}
		}
	}
}
