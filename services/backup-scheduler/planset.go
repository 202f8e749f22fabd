package backupscheduler

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"lifeboat.dev/events"
	"lifeboat.dev/events/api"
	"lifeboat.dev/pkg/schedule"
	"lifeboat.dev/pkg/service"
	"lifeboat.dev/pkg/store"
	"lifeboat.dev/pkg/storekind/files"
	"lifeboat.dev/services/backup-scheduler/internal/db"
)

// A plan changed at run time (plan-set, plan-disable, plan-enable) is an
// event, PlanChanged, that every host applies (DESIGN §1: every change
// other hosts must know is an event):
//
//   - the API (changePlan) validates the change against this host's plans
//     as the config file is validated — what needs the host, such as a
//     relative path made absolute from the working directory, happens
//     here — and emits PlanChanged through the outbox, carrying the fields
//     the operator gave, normalized, and the request's time;
//   - every host's handler (handlePlanChanged, handlers.go) records it in
//     the replicated plan_changes and takes it into its own plans table
//     (planchanges.go), in stream order, from the event and the tables
//     alone: no clock, no file system. A change that no longer holds on a
//     host when its turn comes (the plan is gone, another plan took the
//     directory meanwhile) is left out of that host's plans, and logged;
//   - the API answers once this host's own handler has applied it, so the
//     answer (and the next plan show on this host) shows the change; the
//     other hosts apply it as their consumers reach it.
//
// A plan keeps its origin: a config-declared plan changed at run time
// keeps the change until the file's declaration of it changes (plans.go),
// on every host. No two plans share a directory.
//
// Applying a change does not wait for the plan's running job (withPlan): a
// backup can take hours, and the change is safe without: it commits in one
// transaction; a backup of the old directory still running checks, when
// its outcome commits, that the plan still has that directory before it
// catalogs the backup (record); the rebuild of a new directory is a job on
// the plan's key, so it runs after whatever job is running, and drops any
// row a rebuild of the old directory wrote meanwhile (it is not in the new
// directory).

// planApplyWait bounds how long the API waits for this host to apply a
// change it emitted before answering without it.
const planApplyWait = 30 * time.Second

// planSet creates or changes a plan.
func (s *Service) planSet(ctx context.Context, req api.PlanSetRequest) (any, error) {
	return s.changePlan(ctx, events.PlanActionSet, req)
}

// changePlan validates the change, emits it as PlanChanged, waits until
// this host has applied it and answers the plan as it now is here.
func (s *Service) changePlan(ctx context.Context, action events.PlanAction, req api.PlanSetRequest) (any, error) {
	ev, err := s.planChangeOf(action, req)
	if err != nil {
		return nil, err
	}
	id, applied, err := s.emitPlanChange(ctx, ev)
	if err != nil {
		return nil, err
	}
	if err := s.awaitPlanChange(ctx, ev, id, applied); err != nil {
		return nil, err
	}
	return s.planView(ctx, ev.Plan)
}

// planChangeOf is the event a request asks for, stamped with the request's
// time. A store's environment is refused: it holds secrets, which never
// travel in events.
func (s *Service) planChangeOf(action events.PlanAction, req api.PlanSetRequest) (*events.PlanChanged, error) {
	ev := &events.PlanChanged{Plan: req.Name, Action: action, ChangedAt: s.now().UTC()}
	if action != events.PlanActionSet {
		return ev, nil
	}
	f := &events.PlanFields{Instance: req.Instance, Description: req.Description, Schedule: req.Schedule, Directory: req.Directory,
		Targets: req.Targets, MinKeep: req.MinKeep, Disabled: req.Disabled}
	if st := req.Store; st != nil {
		if len(st.Env) > 0 {
			return nil, service.BadRequest(fmt.Errorf("plan %s: store.env: a run-time change travels to every host in the events stream, where secrets must not go; declare the store's env in the config file", req.Name))
		}
		f.Store = &events.PlanStore{Kind: st.Kind, Path: st.Path, Include: st.Include, Exclude: st.Exclude, Dump: st.Dump, Load: st.Load,
			Timeout: events.MillisOf(time.Duration(st.Timeout))}
	}
	if h := req.Hooks; h != nil {
		f.Hooks = &events.PlanHooks{Pre: eventHook(h.Pre), Post: eventHook(h.Post)}
	}
	ev.Set = f
	return ev, nil
}

func eventHook(h *api.Hook) *events.PlanHook {
	if h == nil {
		return nil
	}
	return &events.PlanHook{Command: h.Command, Timeout: events.MillisOf(time.Duration(h.Timeout))}
}

// emitPlanChange checks ev against this host's plans as the config file is
// checked (Plan.Normalize), writes the normalized values into it and emits
// it, in one transaction. applied receives the outcome of this host's
// handler once it has applied the event whose id is returned.
func (s *Service) emitPlanChange(ctx context.Context, ev *events.PlanChanged) (id string, applied <-chan error, err error) {
	done := make(chan error, 1)
	err = s.rt.DB.Update(ctx, func(tx *store.Tx) error {
		q := db.New(tx)
		row, exists, err := getPlan(ctx, q, ev.Plan)
		if err != nil {
			return err
		}
		vals, err := changeValues(ev)
		if err != nil {
			return err
		}
		p, _, err := mergePlan(ev.Plan, vals, isSet(ev), row, exists)
		if err != nil {
			return err
		}
		n, err := p.Normalize()
		if err == nil && ev.Set != nil && ev.Set.Instance != nil {
			err = s.cfg.checkInstance(*ev.Set.Instance)
		}
		if err != nil {
			return service.BadRequest(fmt.Errorf("plan %s: %w", ev.Plan, err))
		}
		others, err := q.PlanList(ctx)
		if err != nil {
			return fmt.Errorf("plans: %w", err)
		}
		if err := conflicts(n, others); err != nil {
			return err
		}
		normalizeFields(ev.Set, n)
		if id, err = tx.Emit(ctx, ev); err != nil {
			return err
		}
		// Registered before the commit, so before the event can reach the
		// consumer.
		s.mu.Lock()
		s.applying[id] = done
		s.mu.Unlock()
		return nil
	})
	if err != nil {
		if id != "" {
			s.planApplied(id, err)
		}
		return "", nil, err
	}
	return id, done, nil
}

// awaitPlanChange waits until this host has applied the change id, and
// returns the handler's refusal if it left it out.
func (s *Service) awaitPlanChange(ctx context.Context, ev *events.PlanChanged, id string, applied <-chan error) error {
	defer func() {
		s.mu.Lock()
		delete(s.applying, id)
		s.mu.Unlock()
	}()
	timer := time.NewTimer(planApplyWait)
	defer timer.Stop()
	select {
	case err := <-applied:
		return err
	case <-ctx.Done():
		return ctx.Err()
	case <-timer.C:
		return fmt.Errorf("plan %s: the change is accepted (event %s) but host %s has not applied it within %s: every host applies it once its consumer reaches it; lifeboat plan show %s tells when",
			ev.Plan, id, s.host, planApplyWait, ev.Plan)
	}
}

// planApplied hands the outcome of applying the change id on this host to
// the API call waiting for it, if any.
func (s *Service) planApplied(id string, err error) {
	s.mu.Lock()
	ch := s.applying[id]
	delete(s.applying, id)
	s.mu.Unlock()
	if ch != nil {
		ch <- err
	}
}

// planView is the plan name as this host has it.
func (s *Service) planView(ctx context.Context, name string) (api.PlanView, error) {
	q := db.New(s.rt.DB.R)
	r, err := q.PlanGet(ctx, name)
	if err != nil {
		return api.PlanView{}, err
	}
	backups, err := q.BackupsOfPlan(ctx, name)
	if err != nil {
		return api.PlanView{}, err
	}
	return s.view(r, backups)
}

// getPlan reads a plan's row; exists is false when there is none.
func getPlan(ctx context.Context, q *db.Queries, name string) (row db.Plan, exists bool, err error) {
	row, err = q.PlanGet(ctx, name)
	if errors.Is(err, sql.ErrNoRows) {
		return row, false, nil
	}
	if err != nil {
		return row, false, fmt.Errorf("plan %s: %w", name, err)
	}
	return row, true, nil
}

// mergePlan is the plan the changed fields vals (changeValues) make of the
// stored one (row, when it exists), not yet checked. A plan whose stored
// definition cannot be read is replaced only by changes giving the whole
// plan (unreadable says so; its catalog is kept and rebuilt from the
// directory given). A plan that does not exist is made only by a set (set
// says whether the changes include one) giving more than disabled. The
// errors are the API's (service.BadRequest, service.NotFound).
func mergePlan(name string, vals map[string]json.RawMessage, set bool, row db.Plan, exists bool) (p Plan, unreadable bool, err error) {
	has := func(k string) bool { _, ok := vals[k]; return ok }
	p = Plan{Name: name}
	switch {
	case exists:
		var derr error
		if p, derr = decodePlan(row); derr != nil {
			if !has("schedule") || !has("directory") || !has("store") {
				return p, false, service.BadRequest(fmt.Errorf("%w; to replace it give the whole plan: its schedule, directory and store", derr))
			}
			p, unreadable = Plan{Name: name}, true
		}
	case !set || (has("disabled") && !has("schedule") && !has("store")):
		return p, false, service.NotFound(fmt.Errorf("no plan named %q (lifeboat plan list shows the plans)", name))
	}
	if name == SelfPlan && has("store") {
		return p, false, service.BadRequest(fmt.Errorf("plan %s: its store is lifeboat's own databases and cannot be changed", SelfPlan))
	}
	if err := applyValues(&p, vals); err != nil {
		return p, false, service.BadRequest(err)
	}
	return p, unreadable, nil
}

// isSet says whether ev is a set carrying its fields (Set): the only
// change that can make a plan this host does not have.
func isSet(ev *events.PlanChanged) bool {
	return ev.Action == events.PlanActionSet && ev.Set != nil
}

// applyFields sets the fields f gives.
func applyFields(p *Plan, f *events.PlanFields) {
	if f == nil {
		return
	}
	set := func(dst *string, v *string) {
		if v != nil {
			*dst = *v
		}
	}
	set(&p.Instance, f.Instance)
	set(&p.Description, f.Description)
	set(&p.Schedule, f.Schedule)
	set(&p.Directory, f.Directory)
	if st := f.Store; st != nil {
		p.Store = Store{Kind: st.Kind, Path: st.Path, Include: st.Include, Exclude: st.Exclude, Dump: st.Dump, Load: st.Load,
			Timeout: Duration(st.Timeout.Duration())}
	}
	if h := f.Hooks; h != nil {
		p.Hooks = Hooks{Pre: planHook(h.Pre), Post: planHook(h.Post)}
	}
	if f.Targets != nil {
		p.Targets = *f.Targets
	}
	if f.MinKeep != nil {
		k := *f.MinKeep
		p.MinKeep = &k
	}
	if f.Disabled != nil {
		p.Disabled = *f.Disabled
	}
}

func planHook(h *events.PlanHook) *Hook {
	if h == nil {
		return nil
	}
	return &Hook{Command: h.Command, Timeout: Duration(h.Timeout.Duration())}
}

// normalizeFields writes the values of n, the checked plan, into the fields
// f gives: the schedule as the grammar prints it, the paths absolute, the
// instance's default.
func normalizeFields(f *events.PlanFields, n Plan) {
	if f == nil {
		return
	}
	if f.Instance != nil {
		f.Instance = &n.Instance
	}
	if f.Schedule != nil {
		f.Schedule = &n.Schedule
	}
	if f.Directory != nil {
		f.Directory = &n.Directory
	}
	if f.Store != nil {
		f.Store.Path = n.Store.Path
	}
}

// conflicts refuses a plan that would share its directory with another, or
// take lifeboat-self's store kind.
func conflicts(n Plan, others []db.Plan) error {
	if n.Name != SelfPlan && n.Store.Kind == StoreSQLiteSet {
		return service.BadRequest(fmt.Errorf("plan %s: store.kind: %q is the built-in plan %s's kind; use sqlite, files or command", n.Name, n.Store.Kind, SelfPlan))
	}
	for _, o := range others {
		op, err := decodePlan(o)
		if err == nil && o.Name != n.Name && op.Directory == n.Directory {
			return service.BadRequest(fmt.Errorf("plan %s: directory: %s is the directory of plan %s; two plans cannot share a backup directory", n.Name, n.Directory, o.Name))
		}
	}
	return nil
}

// checkApplied checks a plan a PlanChanged made, as the handler may: from
// the plan alone, without the host (Plan.Normalize makes relative paths
// absolute from the working directory; here a relative path is refused,
// since the API sends absolute ones). It fills the defaults as Normalize
// does; a plan Normalize has passed passes unchanged.
func checkApplied(p Plan) (Plan, error) {
	if !planName.MatchString(p.Name) {
		return p, fieldErr("name", "%q is not a plan name", p.Name)
	}
	if p.Instance == "" {
		p.Instance = p.Name
	}
	if strings.ContainsAny(p.Instance, " \t\n*>") {
		return p, fieldErr("instance", "%q is not an instance name (no spaces, '*' or '>')", p.Instance)
	}
	spec, err := schedule.Parse(p.Schedule)
	if err != nil {
		return p, fieldErr("schedule", "%v", err)
	}
	p.Schedule = spec.String()
	abs := func(key, path string) (string, error) {
		if strings.TrimSpace(path) == "" {
			return path, fieldErr(key, "missing")
		}
		if !filepath.IsAbs(path) {
			return path, fieldErr(key, "%q is not an absolute path", path)
		}
		return filepath.Clean(path), nil
	}
	if p.Directory, err = abs("directory", p.Directory); err != nil {
		return p, err
	}
	if p.MinKeep == nil {
		n := DefaultMinKeep
		p.MinKeep = &n
	} else if *p.MinKeep < 0 {
		return p, fieldErr("min_keep", "%d is negative", *p.MinKeep)
	}
	switch p.Store.Kind {
	case StoreSQLite, StoreFiles:
		if p.Store.Path, err = abs("store.path", p.Store.Path); err != nil {
			return p, err
		}
		if p.Store.Kind == StoreFiles {
			if _, err := files.New(files.Options{Root: p.Store.Path, Include: p.Store.Include, Exclude: p.Store.Exclude}); err != nil {
				return p, fieldErr("store", "%v", err)
			}
			if within(p.Directory, p.Store.Path) {
				return p, fieldErr("directory", "%s is inside the files store's path %s", p.Directory, p.Store.Path)
			}
		}
	case StoreCommand:
		if len(p.Store.Dump) == 0 || p.Store.Dump[0] == "" || len(p.Store.Load) == 0 || p.Store.Load[0] == "" {
			return p, fieldErr("store", "a command store needs its dump and load commands")
		}
	case StoreSQLiteSet:
		if p.Name != SelfPlan {
			return p, fieldErr("store.kind", "%q is the built-in plan %s's kind", p.Store.Kind, SelfPlan)
		}
	default:
		return p, fieldErr("store.kind", "%q is not a store kind (sqlite, files or command)", p.Store.Kind)
	}
	for _, h := range []struct {
		key  string
		hook *Hook
	}{{"hooks.pre", p.Hooks.Pre}, {"hooks.post", p.Hooks.Post}} {
		if h.hook != nil && (len(h.hook.Command) == 0 || h.hook.Command[0] == "") {
			return p, fieldErr(h.key+".command", "missing")
		}
	}
	return p, nil
}
