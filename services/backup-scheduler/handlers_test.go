package backupscheduler

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"lifeboat.dev/events"
	"lifeboat.dev/events/api"
	"lifeboat.dev/pkg/backup"
	"lifeboat.dev/pkg/service"
	"lifeboat.dev/pkg/service/servicetest"
	"lifeboat.dev/pkg/store"
	"lifeboat.dev/pkg/storekind"
	"lifeboat.dev/pkg/testtool"
	"lifeboat.dev/services/backup-scheduler/internal/db"
	lbsql "lifeboat.dev/sql"
)

// The handler and the workers, tested without a bus: the service database
// opened with store.Open, the handler called inside db.Update, the jobs
// and the outbox read back from the database.

// bare is the service bound to a database of its own, without a bus, its
// config applied as at start, on a fake clock.
type bare struct {
	s     *Service
	db    *store.DB
	clock *fakeClock
}

func newBare(t *testing.T, cfg Config) *bare {
	t.Helper()
	return newBareAt(t, cfg, t.TempDir())
}

// newBareAt is newBare on the data directory data, whose database may
// exist already.
func newBareAt(t *testing.T, cfg Config, data string) *bare {
	t.Helper()
	migrations, err := lbsql.Migrations(Name)
	if err != nil {
		t.Fatal(err)
	}
	clock := testClock()
	opts := store.NewOptions("lifeboat/test-host/"+Name, migrations)
	opts.Now = clock.Now
	sdb, err := store.Open(t.Context(), service.DBPath(data, Name), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sdb.Close() })
	s := newService(cfg)
	rt := &service.Runtime{DB: sdb, Logger: servicetest.Quiet, Deps: service.Deps{Host: "test-host", DataDir: data, Version: "0.0.1-test", Now: clock.Now}}
	if err := s.init(t.Context(), rt); err != nil {
		t.Fatal(err)
	}
	return &bare{s: s, db: sdb, clock: clock}
}

// take applies a backup-scheduler.take with id as the handler would on
// its consumer.
func (b *bare) take(t *testing.T, id string, cmd events.BackupTake) {
	t.Helper()
	var d service.Delivery
	d.ID = id
	if err := b.db.Update(t.Context(), func(tx *store.Tx) error {
		return b.s.handleTake(t.Context(), tx, &cmd, d)
	}); err != nil {
		t.Fatal(err)
	}
}

// exec changes the database behind the service's back.
func (b *bare) exec(t *testing.T, query string, args ...any) {
	t.Helper()
	if err := b.db.Update(t.Context(), func(tx *store.Tx) error {
		_, err := tx.ExecContext(t.Context(), query, args...)
		return err
	}); err != nil {
		t.Fatal(err)
	}
}

// outboxed is one event waiting in the outbox.
type outboxed struct {
	Subject string
	Body    []byte
}

func (b *bare) outbox(t *testing.T) []outboxed {
	t.Helper()
	rows, err := b.db.R.QueryContext(t.Context(), `SELECT subject, body FROM outbox ORDER BY seq`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []outboxed
	for rows.Next() {
		var o outboxed
		if err := rows.Scan(&o.Subject, &o.Body); err != nil {
			t.Fatal(err)
		}
		out = append(out, o)
	}
	return out
}

// failedEvents are the BackupFailed events in the outbox.
func (b *bare) failedEvents(t *testing.T) []events.BackupFailed {
	t.Helper()
	var out []events.BackupFailed
	for _, o := range b.outbox(t) {
		if o.Subject != events.SubjectOf[events.BackupFailed]() {
			continue
		}
		var ev events.BackupFailed
		if err := json.Unmarshal(o.Body, &ev); err != nil {
			t.Fatal(err)
		}
		out = append(out, ev)
	}
	return out
}

// takenEvents are the BackupTaken events in the outbox.
func (b *bare) takenEvents(t *testing.T) []events.BackupTaken {
	t.Helper()
	var out []events.BackupTaken
	for _, o := range b.outbox(t) {
		if o.Subject != events.SubjectOf[events.BackupTaken]() {
			continue
		}
		var ev events.BackupTaken
		if err := json.Unmarshal(o.Body, &ev); err != nil {
			t.Fatal(err)
		}
		out = append(out, ev)
	}
	return out
}

func (b *bare) jobs(t *testing.T) []store.QueuedJob {
	t.Helper()
	jobs, err := b.db.Jobs(t.Context(), 100)
	if err != nil {
		t.Fatal(err)
	}
	return jobs
}

// run runs the queued job id through the worker, as the queue would, and
// commits its outcome with the job's removal.
func (b *bare) run(t *testing.T, id string, attempt int) {
	t.Helper()
	var job *store.QueuedJob
	for _, j := range b.jobs(t) {
		if j.ID == id {
			job = &j
		}
	}
	if job == nil {
		t.Fatalf("no job %s queued; queued: %+v", id, b.jobs(t))
	}
	var payload []byte
	if err := b.db.R.QueryRowContext(t.Context(), `SELECT payload FROM work WHERE id = ?`, id).Scan(&payload); err != nil {
		t.Fatal(err)
	}
	var p planJob
	if err := json.Unmarshal(payload, &p); err != nil {
		t.Fatal(err)
	}
	finish, err := b.s.runJob(t.Context(), service.Job{ID: id, Kind: job.Kind, Key: job.Key, Owner: job.Owner, Payload: payload, Attempt: attempt}, &p)
	if err != nil {
		t.Fatalf("job %s: %v", id, err)
	}
	if err := b.db.Update(t.Context(), func(tx *store.Tx) error {
		if _, err := tx.WorkDone(t.Context(), id); err != nil {
			return err
		}
		return finish(t.Context(), tx)
	}); err != nil {
		t.Fatal(err)
	}
}

// TestHandleTakeQueuesAJob: a take of an enabled plan is one job of the
// plan — kind "plan", keyed by the plan, owned by this host, named after
// the command — however often the command is applied; nothing is emitted
// until the job has run. Run, the job answers with BackupTaken carrying
// the command's id, catalogs the backup and queues a retention pass.
func TestHandleTakeQueuesAJob(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "app.db")
	newStore(t, src)
	b := newBare(t, Config{Plans: []Plan{sqlitePlan("app", "1h,1d/7d", src, filepath.Join(dir, "backups"))}})
	for range 2 { // a redelivered command, or one applied again
		b.take(t, "cmd-1", events.BackupTake{Plan: "app", Kind: events.BackupHash})
	}
	jobs := b.jobs(t)
	if len(jobs) != 1 {
		t.Fatalf("jobs %+v, want the take's only", jobs)
	}
	if j := jobs[0]; j.ID != "take:cmd-1" || j.Kind != jobKind || j.Key != "app" || j.Owner != service.OwnerHost("test-host") {
		t.Errorf("job %+v", j)
	}
	if out := b.outbox(t); len(out) != 0 {
		t.Fatalf("the handler emitted %+v before the backup was taken", out)
	}

	b.run(t, "take:cmd-1", 1)
	taken := b.takenEvents(t)
	if len(taken) != 1 || taken[0].RequestID != "cmd-1" || taken[0].Kind != events.BackupHash || taken[0].Plan != "app" {
		t.Fatalf("BackupTaken %+v", taken)
	}
	if _, err := backup.Verify(t.Context(), filepath.Join(dir, "backups"), taken[0].Backup); err != nil {
		t.Error(err)
	}
	if nameTime, _ := backup.ParseName(taken[0].Backup); !nameTime.Equal(b.clock.Now().Truncate(time.Second)) {
		t.Errorf("backup %s is not named after the service's clock %s", taken[0].Backup, b.clock.Now())
	}
	row, err := db.New(b.db.R).BackupGet(t.Context(), db.BackupGetParams{Plan: "app", Name: taken[0].Backup})
	if err != nil || row.State != stateValid || row.Sha256 != taken[0].SHA256 {
		t.Errorf("catalog row %+v %v", row, err)
	}
	if jobs := b.jobs(t); len(jobs) != 1 || jobs[0].ID != "prune:app" {
		t.Errorf("after the take, queued %+v; want its retention pass", jobs)
	}
}

// TestHandleTakeAnswersAtOnce: a take that cannot be carried out is
// answered in the handler's own transaction with BackupFailed carrying the
// command's id, and queues nothing.
func TestHandleTakeAnswersAtOnce(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "app.db")
	off := sqlitePlan("off", "1h,1d/7d", src, filepath.Join(dir, "off"))
	off.Disabled = true
	b := newBare(t, Config{Plans: []Plan{sqlitePlan("app", "1h,1d/7d", src, filepath.Join(dir, "app")), off}})
	b.exec(t, `INSERT INTO plans (name, definition, origin, updated_at) VALUES ('broken', '{not json', 'api', 0)`)
	cases := []struct {
		id   string
		cmd  events.BackupTake
		want string
	}{
		{"unknown", events.BackupTake{Plan: "nope", Kind: events.BackupFull}, `no plan named "nope" on host test-host`},
		{"disabled", events.BackupTake{Plan: "off"}, "lifeboat plan enable off"},
		{"scheduled", events.BackupTake{Plan: "app", Kind: events.BackupScheduled}, "ask for manual, hash or full"},
		{"unreadable", events.BackupTake{Plan: "broken"}, "stored definition unreadable"},
	}
	for _, c := range cases {
		b.take(t, c.id, c.cmd)
	}
	got := map[string]events.BackupFailed{}
	for _, f := range b.failedEvents(t) {
		got[f.RequestID] = f
	}
	for _, c := range cases {
		f, ok := got[c.id]
		switch {
		case !ok:
			t.Errorf("%s: no BackupFailed with its request id; outbox %+v", c.id, b.outbox(t))
		case !strings.Contains(f.Error, c.want) || f.Step != "plan" || f.Plan != c.cmd.Plan || f.Host != "test-host":
			t.Errorf("%s: BackupFailed %+v, want an error saying %q", c.id, f, c.want)
		}
	}
	if got["disabled"].Kind != events.BackupManual {
		t.Errorf("a take without a kind is manual: %+v", got["disabled"])
	}
	if jobs := b.jobs(t); len(jobs) != 0 {
		t.Errorf("queued %+v for takes answered at once", jobs)
	}
}

// TestTakeOfAPlanDroppedMeanwhile: a take queued for a plan that is
// dropped before its job runs is answered by the job with BackupFailed.
func TestTakeOfAPlanDroppedMeanwhile(t *testing.T) {
	dir := t.TempDir()
	b := newBare(t, Config{Plans: []Plan{sqlitePlan("app", "1h,1d/7d", filepath.Join(dir, "app.db"), filepath.Join(dir, "app"))}})
	b.take(t, "cmd-1", events.BackupTake{Plan: "app"})
	b.exec(t, `DELETE FROM plans WHERE name = 'app'`)
	b.run(t, "take:cmd-1", 1)
	if f := b.failedEvents(t); len(f) != 1 || f[0].RequestID != "cmd-1" || !strings.Contains(f[0].Error, `no plan named "app"`) {
		t.Errorf("BackupFailed %+v", f)
	}
}

// TestScheduledJobAfterACrashTakesNoSecondBackup: a scheduled job run
// again after a crash finds the backup its first run wrote (the catalog
// rebuild announced it) and records the attempt without taking another.
func TestScheduledJobAfterACrashTakesNoSecondBackup(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "app.db")
	newStore(t, src)
	backups := filepath.Join(dir, "backups")
	b := newBare(t, Config{Plans: []Plan{sqlitePlan("app", "1h,1d/7d", src, backups)}})
	if _, err := b.s.tick(t.Context()); err != nil {
		t.Fatal(err)
	}
	var sched string
	for _, j := range b.jobs(t) {
		if strings.HasPrefix(j.ID, "scheduled:app:") {
			sched = j.ID
		}
	}
	if sched == "" {
		t.Fatalf("a new plan is due at once; queued %+v", b.jobs(t))
	}
	due := b.clock.Now()
	// The first run wrote its backup and died before recording it.
	b.clock.Advance(time.Second)
	name, _, err := backup.Write(t.Context(), backups, backup.Manifest{Instance: "app-instance", Plan: "app", StoreKind: "sqlite", Kind: backup.KindScheduled, TakenAt: b.clock.Now()},
		storeKind(t, b.s, "app").Dump)
	if err != nil {
		t.Fatal(err)
	}
	// The next start rebuilds the catalog first, then runs the job again.
	b.s.mu.Lock()
	b.s.rebuild["app"] = true
	b.s.mu.Unlock()
	b.run(t, sched, 2)
	taken := b.takenEvents(t)
	if len(taken) != 1 || taken[0].Backup != name || taken[0].RequestID != "" {
		t.Fatalf("BackupTaken %+v; want the rebuild's announcement of %s only", taken, name)
	}
	if got := names(t, backups); len(got) != 1 {
		t.Errorf("the directory holds %v; want the first run's backup only", got)
	}
	r, err := db.New(b.db.R).PlanGet(t.Context(), "app")
	if err != nil {
		t.Fatal(err)
	}
	if !r.LastAttemptAt.Valid || r.LastAttemptAt.Int64 != b.clock.Now().UnixMilli() || r.NextDueAt.Int64 != due.Add(time.Hour).UnixMilli() {
		t.Errorf("plan state after the re-run: last attempt %v, next due %v; want %s and %s", r.LastAttemptAt, r.NextDueAt, b.clock.Now(), due.Add(time.Hour))
	}
}

// storeKind is plan's store kind.
func storeKind(t *testing.T, s *Service, plan string) storekind.Kind {
	t.Helper()
	p, _, ok, err := s.loadPlan(t.Context(), plan)
	if err != nil || !ok {
		t.Fatalf("plan %s: %v", plan, err)
	}
	k, err := s.kindOf(p)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestUnreadableStoredPlanKeepsItsCatalog: a plan whose stored definition
// cannot be read is reported and never wipes its catalog — not by putPlan,
// not when the config file's declaration replaces it, and the service
// still starts beside it.
func TestUnreadableStoredPlanKeepsItsCatalog(t *testing.T) {
	dir := t.TempDir()
	app := sqlitePlan("app", "1h,1d/7d", filepath.Join(dir, "app.db"), filepath.Join(dir, "app"))
	b := newBare(t, Config{Plans: []Plan{app}})
	for _, plan := range []string{"app", "other"} {
		b.exec(t, `INSERT INTO plans (name, definition, origin, config_hash, updated_at) VALUES (?, '{not json', ?, 'old', 0)
			ON CONFLICT (name) DO UPDATE SET definition = excluded.definition, config_hash = excluded.config_hash`, plan, map[string]string{"app": originConfig, "other": originAPI}[plan])
		for i := range 3 {
			b.exec(t, `INSERT INTO backups (plan, name, dir, name_time, state, checked_at) VALUES (?, ?, ?, ?, 'valid', 0)`,
				plan, fmt.Sprintf("backup-2025-01-0%d_00-00-00+0000", i+1), "/somewhere", i)
		}
	}
	catalog := func(plan string) int {
		rows, err := db.New(b.db.R).BackupsOfPlan(t.Context(), plan)
		if err != nil {
			t.Fatal(err)
		}
		return len(rows)
	}

	// putPlan over it reports the unreadable definition and changes nothing.
	row, err := db.New(b.db.R).PlanGet(t.Context(), "app")
	if err != nil {
		t.Fatal(err)
	}
	err = b.db.Update(t.Context(), func(tx *store.Tx) error {
		_, err := b.s.putPlan(t.Context(), tx, app, originConfig, app.hash(), &row, b.clock.Now())
		return err
	})
	if err == nil || !strings.Contains(err.Error(), "stored definition unreadable") {
		t.Errorf("putPlan over an unreadable definition: %v", err)
	}
	if n := catalog("app"); n != 3 {
		t.Fatalf("putPlan left %d of the plan's 3 catalog rows", n)
	}

	// At start the config file's declaration replaces it; the catalog stays.
	var logs testtool.LockedBuffer
	b.s.log = slog.New(slog.NewTextHandler(&logs, nil))
	norm, err := app.Normalize()
	if err != nil {
		t.Fatal(err)
	}
	if err := b.s.applyConfig(t.Context(), []Plan{norm}); err != nil {
		t.Fatalf("applyConfig beside an unreadable plan: %v", err)
	}
	if n := catalog("app"); n != 3 {
		t.Errorf("replacing an unreadable definition left %d of 3 catalog rows", n)
	}
	if n := catalog("other"); n != 3 {
		t.Errorf("the unreadable plan the file does not declare has %d of 3 catalog rows", n)
	}
	if p, _, ok, err := b.s.loadPlan(t.Context(), "app"); err != nil || !ok || p.Directory != app.Directory {
		t.Errorf("after applyConfig: %+v %v %v", p, ok, err)
	}
	for _, want := range []string{"plan=app", "stored definition is unreadable", "plan=other", "stored definition unreadable"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("not reported: no %q in the log:\n%s", want, logs.String())
		}
	}
	// The scheduler skips it and queues the readable plan's work.
	if _, err := b.s.tick(t.Context()); err != nil {
		t.Fatal(err)
	}
	for _, j := range b.jobs(t) {
		if j.Key == "other" {
			t.Errorf("queued %+v for the unreadable plan", j)
		}
	}
	if n := catalog("other"); n != 3 {
		t.Errorf("the scheduler left %d of 3 catalog rows", n)
	}

	// The API lists it with the reason, and replaces it only when given
	// the whole plan, keeping its catalog.
	views, err := b.s.planList(t.Context())
	if err != nil {
		t.Fatalf("plan list beside an unreadable plan: %v", err)
	}
	var other *api.PlanView
	for i := range views {
		if views[i].Name == "other" {
			other = &views[i]
		}
	}
	if other == nil || !strings.Contains(other.LastError, "stored definition unreadable") || other.Backups != 3 || other.Origin != originAPI {
		t.Errorf("plan list shows the unreadable plan as %+v", other)
	}
	sched, dirOther := "1h,1d/7d", filepath.Join(dir, "other")
	if _, err := b.planChange(t, events.PlanActionSet, api.PlanSetRequest{Name: "other", Schedule: &sched}); err == nil || !strings.Contains(err.Error(), "give the whole plan") {
		t.Errorf("plan set of a schedule alone over an unreadable plan: %v", err)
	}
	if _, err := b.planChange(t, events.PlanActionSet, api.PlanSetRequest{Name: "other", Schedule: &sched, Directory: &dirOther,
		Store: &api.Store{Kind: StoreSQLite, Path: filepath.Join(dir, "app.db")}}); err != nil {
		t.Fatalf("plan set of the whole plan over an unreadable one: %v", err)
	}
	if p, _, ok, err := b.s.loadPlan(t.Context(), "other"); err != nil || !ok || p.Directory != dirOther {
		t.Errorf("after plan set: %+v %v %v", p, ok, err)
	}
	if n := catalog("other"); n != 3 {
		t.Errorf("replacing the unreadable plan through the API left %d of 3 catalog rows", n)
	}
}

// TestWithPlanWaitsForThePlansJobs: an API call holding a plan (withPlan)
// runs only once the plan's jobs queued before it have finished, and holds
// the jobs queued after it until it returns; a call that gives up leaves
// nothing held.
func TestWithPlanWaitsForThePlansJobs(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "app.db")
	newStore(t, src)
	b := newBare(t, Config{Plans: []Plan{sqlitePlan("app", "1h,1d/7d", src, filepath.Join(dir, "backups"))}})
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	qopts := store.NewQueueOptions()
	qopts.Logger = servicetest.Quiet
	qopts.Workers[jobKind] = func(ctx context.Context, j store.Job) (store.Finish, error) {
		var p planJob
		if err := j.Decode(&p); err != nil {
			return nil, err
		}
		return b.s.runJob(ctx, j, &p)
	}
	queueDone := make(chan error, 1)
	go func() { queueDone <- store.NewQueue(b.db, qopts).Run(ctx) }()

	b.take(t, "before", events.BackupTake{Plan: "app"})
	err := b.s.withPlan(t.Context(), "app", "testing", func() error {
		if got := b.takenEvents(t); len(got) != 1 || got[0].RequestID != "before" {
			return fmt.Errorf("holding the plan while the take queued before is not answered: %+v", got)
		}
		if d := b.s.getDoing("app"); d != "testing" {
			return fmt.Errorf("doing %q", d)
		}
		b.take(t, "after", events.BackupTake{Plan: "app"})
		// The queue runs a key's first job only: the take queued now is
		// not it while the plan is held.
		if jobs := b.jobs(t); len(jobs) < 2 || !strings.HasPrefix(jobs[0].ID, "hold:app:") {
			return fmt.Errorf("queued %+v; want the hold first", jobs)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	testtool.WaitFor(t, 30*time.Second, func() error {
		if got := b.takenEvents(t); len(got) != 2 || got[1].RequestID != "after" {
			return fmt.Errorf("answers %+v; want the take queued during the hold answered after it", got)
		}
		return nil
	})

	// A caller that gives up before its turn holds nothing.
	b.take(t, "slow", events.BackupTake{Plan: "app"})
	gone, giveUp := context.WithCancel(t.Context())
	giveUp()
	if err := b.s.withPlan(gone, "app", "giving up", func() error { return errors.New("ran") }); !errors.Is(err, context.Canceled) {
		t.Errorf("withPlan with an ended context: %v", err)
	}
	testtool.WaitFor(t, 30*time.Second, func() error {
		if jobs := b.jobs(t); len(jobs) != 0 {
			return fmt.Errorf("queued %+v; want everything done", jobs)
		}
		return nil
	})
	cancel()
	if err := <-queueDone; err != nil {
		t.Fatal(err)
	}
}
