package backupscheduler

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"lifeboat.dev/events"
	"lifeboat.dev/events/api"
	"lifeboat.dev/pkg/bus"
	"lifeboat.dev/pkg/bustest"
	"lifeboat.dev/pkg/service"
	"lifeboat.dev/pkg/service/servicetest"
	"lifeboat.dev/pkg/store"
	"lifeboat.dev/pkg/testtool"
	"lifeboat.dev/services/backup-scheduler/internal/db"
)

// Plans changed at run time are PlanChanged events every host applies
// (planset.go): the handler without a bus, the API's side of it without a
// bus, and two hosts on one bus.

// planChange is a plan change as the API makes it, without a bus: checked
// and emitted as the endpoint does, the PlanChanged read back from the
// outbox and applied by the handler as this host's consumer would, then
// answered as the endpoint does.
func (b *bare) planChange(t *testing.T, action events.PlanAction, req api.PlanSetRequest) (api.PlanView, error) {
	t.Helper()
	ev, err := b.s.planChangeOf(action, req)
	if err != nil {
		return api.PlanView{}, err
	}
	id, applied, err := b.s.emitPlanChange(t.Context(), ev)
	if err != nil {
		return api.PlanView{}, err
	}
	b.applyPlanChanged(t, id, b.outboxedPlanChange(t, id))
	if err := b.s.awaitPlanChange(t.Context(), ev, id, applied); err != nil {
		return api.PlanView{}, err
	}
	return b.s.planView(t.Context(), ev.Plan)
}

// outboxedPlanChange is the PlanChanged id waiting in the outbox, decoded
// as a consumer decodes it.
func (b *bare) outboxedPlanChange(t *testing.T, id string) *events.PlanChanged {
	t.Helper()
	var subject string
	var body []byte
	if err := b.db.R.QueryRowContext(t.Context(), `SELECT subject, body FROM outbox WHERE id = ?`, id).Scan(&subject, &body); err != nil {
		t.Fatalf("outbox %s: %v", id, err)
	}
	typ, ok := events.BySubject(subject)
	if !ok || typ.Name != "PlanChanged" {
		t.Fatalf("outbox %s: subject %s", id, subject)
	}
	v, err := events.Decode(typ, body)
	if err != nil {
		t.Fatalf("outbox %s: %v", id, err)
	}
	return v.(*events.PlanChanged)
}

// applyPlanChanged applies ev as the message id the way the runtime does
// (store.Batch.Apply: the inbox skips an id already applied); applied says
// whether the handler ran.
func (b *bare) applyPlanChanged(t *testing.T, id string, ev *events.PlanChanged) (applied bool) {
	t.Helper()
	batch, err := b.db.Begin(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var d service.Delivery
	d.ID, d.Subject = id, events.SubjectOf[events.PlanChanged]()
	applied, err = batch.Apply(t.Context(), id, d.Subject, func(tx *store.Tx) error {
		return b.s.handlePlanChanged(t.Context(), tx, ev, d)
	})
	if err != nil {
		batch.Rollback()
		t.Fatalf("apply %s: %v", id, err)
	}
	if err := batch.Commit(); err != nil {
		t.Fatal(err)
	}
	return applied
}

// planRow is a plan's row, ok false when there is none.
func planRow(t *testing.T, sdb *store.DB, name string) (db.Plan, bool) {
	t.Helper()
	q := db.New(sdb.R)
	rows, err := q.PlanList(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rows {
		if r.Name == name {
			return r, true
		}
	}
	return db.Plan{}, false
}

// replicatedPart is what every host derives from the same changes of a
// plan: its definition less what is each host's own, its origin and when it
// changed.
func replicatedPart(t *testing.T, r db.Plan) string {
	t.Helper()
	p, err := decodePlan(r)
	if err != nil {
		t.Fatal(err)
	}
	if p.Name == SelfPlan {
		p.Store.Path, p.Directory = "", "" // the host's data directory
	}
	return fmt.Sprintf("%s %s %d", jsonOf(t, p), r.Origin, r.UpdatedAt)
}

// TestPlanChangedAppliesIdempotently: set, disable and enable applied to a
// fresh database by the handler, each twice — once more under the same id
// (the inbox skips it) and once under another (the handler itself runs
// again, as a replay would) — leave the plan as applying them once does; a
// second host on another clock and data directory applied the same events
// holds the same plan, with the events' times, never its clock's.
func TestPlanChangedAppliesIdempotently(t *testing.T) {
	one, two := newBare(t, Config{}), newBare(t, Config{})
	two.clock.Advance(5 * time.Hour)
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	keep := 2
	steps := []struct {
		ev   events.PlanChanged
		want func(p Plan) bool
	}{
		{events.PlanChanged{Plan: "extra", Action: events.PlanActionSet, ChangedAt: at, Set: &events.PlanFields{
			Schedule: ptr("1h,1d/7d"), Directory: ptr("/srv/backups/extra"), Store: &events.PlanStore{Kind: StoreSQLite, Path: "/srv/extra.db"},
			Hooks:   &events.PlanHooks{Pre: &events.PlanHook{Command: []string{"sync"}, Timeout: 5000}},
			Targets: &[]string{"cold-disk"}, MinKeep: &keep}},
			func(p Plan) bool {
				return p.Instance == "extra" && p.Schedule == "1h,1d/7d" && p.Directory == "/srv/backups/extra" && p.Store.Path == "/srv/extra.db" &&
					p.Hooks.Pre != nil && p.Hooks.Pre.Timeout == Duration(5*time.Second) && slices.Equal(p.Targets, []string{"cold-disk"}) && *p.MinKeep == 2 && !p.Disabled
			}},
		{events.PlanChanged{Plan: "extra", Action: events.PlanActionSet, ChangedAt: at.Add(time.Minute), Set: &events.PlanFields{
			Schedule: ptr("2h,1d/7d"), Description: ptr("changed at run time")}},
			func(p Plan) bool {
				return p.Schedule == "2h,1d/7d" && p.Description == "changed at run time" && p.Directory == "/srv/backups/extra" && *p.MinKeep == 2
			}},
		{events.PlanChanged{Plan: "extra", Action: events.PlanActionDisable, ChangedAt: at.Add(2 * time.Minute)},
			func(p Plan) bool { return p.Disabled && p.Schedule == "2h,1d/7d" }},
		{events.PlanChanged{Plan: "extra", Action: events.PlanActionEnable, ChangedAt: at.Add(3 * time.Minute)},
			func(p Plan) bool { return !p.Disabled && p.Schedule == "2h,1d/7d" }},
		{events.PlanChanged{Plan: SelfPlan, Action: events.PlanActionSet, ChangedAt: at.Add(4 * time.Minute), Set: &events.PlanFields{Schedule: ptr("1h,1d/14d")}},
			func(p Plan) bool { return p.Schedule == "1h,1d/14d" && p.Store.Kind == StoreSQLiteSet }},
	}
	for i, st := range steps {
		id := fmt.Sprintf("change-%d", i)
		if !one.applyPlanChanged(t, id, &st.ev) {
			t.Fatalf("step %d: not applied", i)
		}
		first, ok := planRow(t, one.db, st.ev.Plan)
		if !ok {
			t.Fatalf("step %d: no plan %s", i, st.ev.Plan)
		}
		p, err := decodePlan(first)
		if err != nil || !st.want(p) {
			t.Fatalf("step %d (%s): plan %+v %v", i, st.ev.Action, p, err)
		}
		if first.UpdatedAt != st.ev.ChangedAt.UnixMilli() {
			t.Errorf("step %d: updated_at %d, want the event's changed_at %d", i, first.UpdatedAt, st.ev.ChangedAt.UnixMilli())
		}
		if one.applyPlanChanged(t, id, &st.ev) {
			t.Errorf("step %d: applied twice under one id", i)
		}
		one.applyPlanChanged(t, id+"-again", &st.ev)
		if again, _ := planRow(t, one.db, st.ev.Plan); again != first {
			t.Errorf("step %d: applying it again changed the plan:\n%+v\n%+v", i, first, again)
		}
		two.applyPlanChanged(t, id, &st.ev)
		other, _ := planRow(t, two.db, st.ev.Plan)
		if a, b := replicatedPart(t, first), replicatedPart(t, other); a != b {
			t.Errorf("step %d: the hosts differ:\n%s\n%s", i, a, b)
		}
	}
	// lifeboat-self keeps each host's own store: its data directory.
	s1, _ := planRow(t, one.db, SelfPlan)
	s2, _ := planRow(t, two.db, SelfPlan)
	p1, _ := decodePlan(s1)
	p2, _ := decodePlan(s2)
	if p1.Store.Path != one.s.dataDir || p2.Store.Path != two.s.dataDir {
		t.Errorf("lifeboat-self's store is %s and %s, want each host's data directory %s and %s", p1.Store.Path, p2.Store.Path, one.s.dataDir, two.s.dataDir)
	}
	if r, _ := planRow(t, one.db, "extra"); r.Origin != originAPI {
		t.Errorf("a plan created at run time has origin %q", r.Origin)
	}
}

// TestPlanChangedLeftOutWhereItDoesNotHold: a change that does not hold on
// a host (no such plan, a directory another plan has, an incomplete new
// plan, a relative path from an outside publisher) is left out there,
// consumed without error; a config-declared plan changed keeps its origin
// and config hash, so the change lasts until the file's declaration
// changes.
func TestPlanChangedLeftOutWhereItDoesNotHold(t *testing.T) {
	dir := t.TempDir()
	app := sqlitePlan("app", "1h,1d/7d", filepath.Join(dir, "app.db"), filepath.Join(dir, "app"))
	b := newBare(t, Config{Plans: []Plan{app}})
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	sqlite := &events.PlanStore{Kind: StoreSQLite, Path: filepath.Join(dir, "app.db")}
	for i, ev := range []events.PlanChanged{
		{Plan: "nope", Action: events.PlanActionDisable, ChangedAt: at},
		{Plan: "nope", Action: events.PlanActionSet, ChangedAt: at, Set: &events.PlanFields{Schedule: ptr("1h,1d/7d")}},
		{Plan: "nope", Action: events.PlanActionSet, ChangedAt: at, Set: &events.PlanFields{Schedule: ptr("1h,1d/7d"), Directory: ptr(filepath.Join(dir, "app")), Store: sqlite}},
		{Plan: "nope", Action: events.PlanActionSet, ChangedAt: at, Set: &events.PlanFields{Schedule: ptr("1h,1d/7d"), Directory: ptr("relative/dir"), Store: sqlite}},
		{Plan: "nope", Action: events.PlanActionSet, ChangedAt: at, Set: &events.PlanFields{Schedule: ptr("1h,7m/1d"), Directory: ptr(filepath.Join(dir, "nope")), Store: sqlite}},
		{Plan: SelfPlan, Action: events.PlanActionSet, ChangedAt: at, Set: &events.PlanFields{Store: sqlite}},
	} {
		if !b.applyPlanChanged(t, fmt.Sprintf("bad-%d", i), &ev) {
			t.Errorf("change %d not consumed", i)
		}
		if _, ok := planRow(t, b.db, "nope"); ok {
			t.Fatalf("change %d (%+v) created the plan", i, ev.Set)
		}
	}
	if r, _ := planRow(t, b.db, SelfPlan); !strings.Contains(r.Definition, StoreSQLiteSet) {
		t.Errorf("lifeboat-self's store changed: %s", r.Definition)
	}

	before, _ := planRow(t, b.db, "app")
	b.applyPlanChanged(t, "config-plan", &events.PlanChanged{Plan: "app", Action: events.PlanActionSet, ChangedAt: at, Set: &events.PlanFields{Schedule: ptr("2h,1d/7d")}})
	after, _ := planRow(t, b.db, "app")
	if after.Origin != originConfig || after.ConfigHash != before.ConfigHash || !strings.Contains(after.Definition, "2h,1d/7d") {
		t.Errorf("a config plan changed at run time: %+v (was %+v)", after, before)
	}
	norm, err := app.Normalize()
	if err != nil {
		t.Fatal(err)
	}
	if err := b.s.applyConfig(t.Context(), []Plan{norm, b.s.cfg.selfPlan(b.s.dataDir)}); err != nil {
		t.Fatal(err)
	}
	if r, _ := planRow(t, b.db, "app"); !strings.Contains(r.Definition, "2h,1d/7d") {
		t.Errorf("the same declaration applied again undid the run-time change: %s", r.Definition)
	}
	changed := app
	changed.Schedule = "3h,1d/7d"
	if norm, err = changed.Normalize(); err != nil {
		t.Fatal(err)
	}
	if err := b.s.applyConfig(t.Context(), []Plan{norm, b.s.cfg.selfPlan(b.s.dataDir)}); err != nil {
		t.Fatal(err)
	}
	if r, _ := planRow(t, b.db, "app"); !strings.Contains(r.Definition, "3h,1d/7d") {
		t.Errorf("a changed declaration did not win over the run-time change: %s", r.Definition)
	}
}

// TestPlanChangeAPI: the API checks a change as the config file is
// checked, emits it normalized (paths absolute, the schedule as the grammar
// prints it), refuses a store environment (secrets stay out of events),
// and answers with this host's handler's outcome: a change that no longer
// holds when this host applies it is answered with the reason.
func TestPlanChangeAPI(t *testing.T) {
	dir := t.TempDir()
	b := newBare(t, Config{Plans: []Plan{sqlitePlan("app", "1h,1d/7d", filepath.Join(dir, "app.db"), filepath.Join(dir, "app"))}})
	t.Chdir(dir)
	v, err := b.planChange(t, events.PlanActionSet, api.PlanSetRequest{Name: "extra", Schedule: ptr("60m,1d/7d"), Directory: ptr("extra"),
		Store: &api.Store{Kind: StoreSQLite, Path: "app.db"}})
	if err != nil {
		t.Fatal(err)
	}
	if v.Directory != filepath.Join(dir, "extra") || v.Origin != originAPI || v.Schedule != "1h,1d/7d" {
		t.Errorf("plan set answered %+v", v)
	}
	var got *events.PlanChanged
	for _, o := range b.outbox(t) {
		if o.Subject == events.SubjectOf[events.PlanChanged]() {
			got = new(events.PlanChanged)
			if err := json.Unmarshal(o.Body, got); err != nil {
				t.Fatal(err)
			}
		}
	}
	if got == nil || got.Action != events.PlanActionSet || *got.Set.Directory != filepath.Join(dir, "extra") || got.Set.Store.Path != filepath.Join(dir, "app.db") ||
		*got.Set.Schedule != "1h,1d/7d" || !got.ChangedAt.Equal(b.clock.Now().UTC()) || got.Set.Instance != nil {
		t.Errorf("emitted %+v", got)
	}

	if _, err := b.planChange(t, events.PlanActionSet, api.PlanSetRequest{Name: "app", Store: &api.Store{Kind: StoreCommand,
		Dump: []string{"pg_dump"}, Load: []string{"pg_restore"}, Env: []string{"PGPASSWORD=x"}}}); err == nil || !strings.Contains(err.Error(), "store.env") {
		t.Errorf("a store env at run time: %v", err)
	}
	if _, err := b.planChange(t, events.PlanActionDisable, api.PlanSetRequest{Name: "nope"}); err == nil || !strings.Contains(err.Error(), "no plan named") {
		t.Errorf("disable a plan that does not exist: %v", err)
	}
	v, err = b.planChange(t, events.PlanActionDisable, api.PlanSetRequest{Name: "app"})
	if err != nil || !v.Disabled || v.NextDueAt != nil {
		t.Errorf("disable: %+v %v", v, err)
	}

	// A change checked and emitted, then overtaken by another that takes
	// its directory before this host applies it: answered with why.
	ev, err := b.s.planChangeOf(events.PlanActionSet, api.PlanSetRequest{Name: "late", Schedule: ptr("1h,1d/7d"), Directory: ptr(filepath.Join(dir, "shared")),
		Store: &api.Store{Kind: StoreSQLite, Path: filepath.Join(dir, "app.db")}})
	if err != nil {
		t.Fatal(err)
	}
	id, applied, err := b.s.emitPlanChange(t.Context(), ev)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.planChange(t, events.PlanActionSet, api.PlanSetRequest{Name: "extra", Directory: ptr(filepath.Join(dir, "shared"))}); err != nil {
		t.Fatal(err)
	}
	b.applyPlanChanged(t, id, b.outboxedPlanChange(t, id))
	err = b.s.awaitPlanChange(t.Context(), ev, id, applied)
	if err == nil || !strings.Contains(err.Error(), "is the directory of plan extra") {
		t.Errorf("a change that no longer holds here was answered %v", err)
	}
	if _, ok := planRow(t, b.db, "late"); ok {
		t.Error("the overtaken change was applied")
	}
}

// planChanges reads the PlanChanged events of the stream, in order.
type planChanges struct {
	mu  sync.Mutex
	evs []events.PlanChanged
}

func recordPlanChanges(t *testing.T, b *bus.Bus) *planChanges {
	t.Helper()
	r := &planChanges{}
	ctx, cancel := context.WithCancel(context.Background())
	c, err := b.JS.OrderedConsumer(ctx, events.StreamEvents, jetstream.OrderedConsumerConfig{FilterSubjects: []string{events.SubjectOf[events.PlanChanged]()}})
	if err != nil {
		t.Fatal(err)
	}
	cc, err := c.Consume(func(m jetstream.Msg) {
		var ev events.PlanChanged
		if err := json.Unmarshal(m.Data(), &ev); err != nil {
			t.Errorf("PlanChanged %s: %v", m.Data(), err)
			return
		}
		r.mu.Lock()
		r.evs = append(r.evs, ev)
		r.mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Stop(); cancel() })
	return r
}

func (r *planChanges) actions() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, ev := range r.evs {
		out = append(out, ev.Plan+" "+string(ev.Action))
	}
	return out
}

// TestPlanChangeReachesEveryHost: two backup-schedulers on one bus, hosts
// hot and cold, each with its own data directory and its own directory for
// the config file's plan (as {host} gives it). A plan set, disable and
// enable through the API, answered by either, becomes a PlanChanged on the
// stream that both apply: the same schedule, flag, origin and time on both,
// each keeping its own directory for the config's plan. A refused change
// emits nothing.
//
// It needs each host's own durable consumer of the events stream
// (<service>_<host>_events, pkg/service/consumers.go): with one durable
// shared by both hosts, each event would reach only one of them.
func TestPlanChangeReachesEveryHost(t *testing.T) {
	ns, b := bustest.Embedded(t)
	dir := t.TempDir()
	src := filepath.Join(dir, "app.db")
	newStore(t, src)
	changes := recordPlanChanges(t, b)
	hosts := map[string]*service.Runtime{}
	for _, host := range []string{"hot", "cold"} {
		spec, err := Spec(Config{Plans: []Plan{sqlitePlan("app", "1h,1d/7d", src, filepath.Join(dir, host, "app"))}})
		if err != nil {
			t.Fatal(err)
		}
		deps := servicetest.Deps(bustest.Connect(t, 1, ns.ClientURL()), t.TempDir())
		deps.Host = host
		hosts[host], _ = servicetest.Start(t, spec, deps)
	}
	// converged waits until every host holds plan name and check passes
	// on it, then says that the hosts hold the same change of it.
	converged := func(name string, check func(host string, p Plan) error) {
		t.Helper()
		testtool.WaitFor(t, 30*time.Second, func() error {
			var first string
			for host, rt := range hosts {
				r, ok := planRow(t, rt.DB, name)
				if !ok {
					return fmt.Errorf("host %s has no plan %s", host, name)
				}
				p, err := decodePlan(r)
				if err != nil {
					return err
				}
				if err := check(host, p); err != nil {
					return fmt.Errorf("host %s: %w", host, err)
				}
				p.Directory = ""
				same := fmt.Sprintf("%s %s %d", jsonOf(t, p), r.Origin, r.UpdatedAt)
				if first != "" && same != first {
					return fmt.Errorf("the hosts differ:\n%s\n%s", first, same)
				}
				first = same
			}
			return nil
		})
	}

	var v PlanView
	mustCall(t, b.NC, EndpointPlanSet, PlanSetRequest{Name: "app", Schedule: ptr("2h,1d/7d")}, &v)
	if v.Schedule != "2h,1d/7d" {
		t.Errorf("plan set answered %+v", v)
	}
	converged("app", func(host string, p Plan) error {
		if p.Schedule != "2h,1d/7d" || p.Directory != filepath.Join(dir, host, "app") {
			return fmt.Errorf("app is %s into %s", p.Schedule, p.Directory)
		}
		return nil
	})
	mustCall(t, b.NC, EndpointPlanSet, PlanSetRequest{Name: "extra", Schedule: ptr("1h,1d/7d"), Directory: ptr(filepath.Join(dir, "extra")),
		Store: &Store{Kind: StoreSQLite, Path: src}, Disabled: ptr(true)}, &v)
	converged("extra", func(host string, p Plan) error {
		if !p.Disabled || p.Directory != filepath.Join(dir, "extra") {
			return fmt.Errorf("extra is %+v", p)
		}
		return nil
	})
	if err := call(t, b.NC, EndpointPlanSet, PlanSetRequest{Name: "app", Schedule: ptr("1h,7m/1d")}, nil); err == nil || !strings.HasPrefix(err.Error(), api.CodeBadRequest) {
		t.Errorf("a bad schedule: %v", err)
	}
	mustCall(t, b.NC, EndpointPlanDisable, PlanRequest{Name: "app"}, &v)
	converged("app", func(_ string, p Plan) error {
		if !p.Disabled || p.Schedule != "2h,1d/7d" {
			return fmt.Errorf("app is %+v", p)
		}
		return nil
	})
	mustCall(t, b.NC, EndpointPlanEnable, PlanRequest{Name: "app"}, &v)
	converged("app", func(_ string, p Plan) error {
		if p.Disabled {
			return fmt.Errorf("app is %+v", p)
		}
		return nil
	})
	for host, rt := range hosts {
		if r, _ := planRow(t, rt.DB, "app"); r.Origin != originConfig {
			t.Errorf("host %s: the config's plan has origin %q", host, r.Origin)
		}
	}
	mustCall(t, b.NC, EndpointPlanSet, PlanSetRequest{Name: SelfPlan, Schedule: ptr("1h,1d/14d")}, &v)
	want := []string{"app set", "extra set", "app disable", "app enable", SelfPlan + " set"}
	testtool.WaitFor(t, 10*time.Second, func() error {
		if got := changes.actions(); !slices.Equal(got, want) {
			return fmt.Errorf("PlanChanged on the stream: %q, want %q", got, want)
		}
		return nil
	})

	// The replicated state (plan_changes, DESIGN §1) is alike on both
	// hosts, as the digest endpoint hashes it, while the plans each runs
	// keep its own paths: app's {host} directory, lifeboat-self's store.
	testtool.WaitFor(t, 30*time.Second, func() error {
		var first *api.Digest
		for host, rt := range hosts {
			d, err := rt.Digest(t.Context())
			if err != nil {
				return err
			}
			i := slices.IndexFunc(d.Tables, func(tb api.TableDigest) bool { return tb.Name == "plan_changes" })
			if i < 0 || d.Tables[i].Rows != 3 {
				return fmt.Errorf("host %s: the digest's tables are %+v, want plan_changes with app, extra and %s", host, d.Tables, SelfPlan)
			}
			if first == nil {
				first = &d
				continue
			}
			if d.Applied != first.Applied || d.SHA256 != first.SHA256 {
				return fmt.Errorf("digests differ: %s at %d %s, %s at %d %s", first.Host, first.Applied, first.SHA256, d.Host, d.Applied, d.SHA256)
			}
		}
		return nil
	})
	local := map[string]Plan{}
	for host, rt := range hosts {
		r, _ := planRow(t, rt.DB, SelfPlan)
		self, err := decodePlan(r)
		if err != nil || self.Schedule != "1h,1d/14d" || self.Store.Path != rt.Deps.DataDir {
			t.Errorf("host %s: lifeboat-self is %+v (%v), want the new schedule and this host's data directory", host, self, err)
		}
		r, _ = planRow(t, rt.DB, "app")
		if local[host], err = decodePlan(r); err != nil {
			t.Fatal(err)
		}
	}
	if local["hot"].Directory == local["cold"].Directory {
		t.Errorf("both hosts back app up into %s", local["hot"].Directory)
	}
}
