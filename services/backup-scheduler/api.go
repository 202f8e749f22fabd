package backupscheduler

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/nats-io/nats.go/micro"

	"lifeboat.dev/events/api"
	"lifeboat.dev/pkg/backup"
	"lifeboat.dev/pkg/schedule"
	"lifeboat.dev/pkg/service"
	"lifeboat.dev/pkg/store"
	"lifeboat.dev/services/backup-scheduler/internal/db"
)

// The service's endpoints are at lifeboat.api.backup-scheduler.<name>;
// their names and their request and reply types are the contract's
// (lifeboat.dev/events/api: api.PlanList, api.PlanView, ...).

// apiTimeout bounds the work of one API call; verification of large
// backups is the longest.
const apiTimeout = time.Hour

func (s *Service) endpoints() []service.Endpoint {
	return []service.Endpoint{
		{Name: api.PlanList, Handler: s.async(func(ctx context.Context, _ []byte) (any, error) { return s.planList(ctx) })},
		{Name: api.PlanShow, Handler: s.async(withReq(s.planShow))},
		{Name: api.PlanSet, Handler: s.async(withReq(s.planSet))},
		{Name: api.PlanDisable, Handler: s.async(withReq(func(ctx context.Context, r api.PlanRequest) (any, error) {
			t := true
			return s.planSet(ctx, api.PlanSetRequest{Name: r.Name, Disabled: &t})
		}))},
		{Name: api.PlanEnable, Handler: s.async(withReq(func(ctx context.Context, r api.PlanRequest) (any, error) {
			f := false
			return s.planSet(ctx, api.PlanSetRequest{Name: r.Name, Disabled: &f})
		}))},
		{Name: api.BackupList, Handler: s.async(withReq(s.backupList))},
		{Name: api.BackupVerify, Handler: s.async(withReq(s.verify))},
		{Name: api.CatalogRebuild, Handler: s.async(withReq(s.rebuildAll))},
	}
}

// async answers each request from its own goroutine, so that a long
// verification does not hold up the endpoint's other callers.
func (s *Service) async(fn func(ctx context.Context, body []byte) (any, error)) micro.HandlerFunc {
	return func(req micro.Request) {
		body := req.Data()
		go func() {
			ctx, cancel := context.WithTimeout(s.base, apiTimeout)
			defer cancel()
			v, err := fn(ctx, body)
			service.RespondJSON(req, v, err)
		}()
	}
}

// withReq decodes the request body into T (an empty body is T's zero).
func withReq[T any](fn func(ctx context.Context, r T) (any, error)) func(context.Context, []byte) (any, error) {
	return func(ctx context.Context, body []byte) (any, error) {
		var r T
		if len(body) > 0 {
			if err := json.Unmarshal(body, &r); err != nil {
				return nil, service.BadRequest(fmt.Errorf("request: %w", err))
			}
		}
		return fn(ctx, r)
	}
}

func ptime(ms sql.NullInt64) *time.Time {
	if !ms.Valid {
		return nil
	}
	t := time.UnixMilli(ms.Int64).UTC()
	return &t
}

func ptimeMs(ms int64) *time.Time {
	if ms == 0 {
		return nil
	}
	t := time.UnixMilli(ms).UTC()
	return &t
}

func (s *Service) view(r db.Plan, backups []db.Backup) (api.PlanView, error) {
	p, err := decodePlan(r)
	if err != nil {
		return api.PlanView{}, err
	}
	v := api.PlanView{
		Plan: wirePlan(p), Origin: r.Origin, NextDueAt: ptime(r.NextDueAt), LastAttemptAt: ptime(r.LastAttemptAt),
		LastBackup: r.LastBackup, LastSuccessAt: ptime(r.LastSuccessAt), LastError: r.LastError, LastErrorAt: ptime(r.LastErrorAt),
		SteadyState: p.Spec().SteadyState(), Doing: s.getDoing(p.Name),
	}
	if p.Disabled {
		v.NextDueAt = nil
	}
	for _, b := range backups {
		switch b.State {
		case stateValid:
			v.Backups++
		case stateInvalid:
			v.Invalid++
		}
	}
	return v, nil
}

func (s *Service) planList(ctx context.Context) ([]api.PlanView, error) {
	q := db.New(s.rt.DB.R)
	rows, err := q.PlanList(ctx)
	if err != nil {
		return nil, err
	}
	all, err := q.BackupsAll(ctx)
	if err != nil {
		return nil, err
	}
	byPlan := map[string][]db.Backup{}
	for _, b := range all {
		byPlan[b.Plan] = append(byPlan[b.Plan], b)
	}
	out := []api.PlanView{}
	for _, r := range rows {
		v, err := s.view(r, byPlan[r.Name])
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

func (s *Service) planShow(ctx context.Context, req api.PlanRequest) (any, error) {
	q := db.New(s.rt.DB.R)
	r, err := q.PlanGet(ctx, req.Name)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, service.NotFound(fmt.Errorf("no plan named %q (lifeboat plan list shows the plans)", req.Name))
	}
	if err != nil {
		return nil, err
	}
	backups, err := q.BackupsOfPlan(ctx, req.Name)
	if err != nil {
		return nil, err
	}
	v, err := s.view(r, backups)
	if err != nil {
		return nil, err
	}
	p, err := decodePlan(r)
	if err != nil {
		return nil, err
	}
	bands := []api.Band{}
	for _, b := range p.Spec().Bands() {
		bands = append(bands, api.Band(b))
	}
	return api.PlanDetail{PlanView: v, Bands: bands, Retention: timeline(p, backups, time.Now())}, nil
}

// timeline is what a pruning pass at now would do with each backup, newest
// first.
func timeline(p Plan, rows []db.Backup, now time.Time) []api.Retained {
	var valid []db.BackupsForRetentionRow
	var invalid []db.BackupsInvalidRow
	for _, r := range rows {
		switch r.State {
		case stateValid:
			valid = append(valid, db.BackupsForRetentionRow{Name: r.Name, NameTime: r.NameTime})
		case stateInvalid:
			invalid = append(invalid, db.BackupsInvalidRow{Name: r.Name, NameTime: r.NameTime, Problem: r.Problem})
		}
	}
	pruned, _ := decide(p.Spec(), p.minKeep(), valid, invalid, now)
	why := map[string]string{}
	for _, b := range pruned {
		why[b.Backup] = b.Reason
	}
	var cands []schedule.Backup
	for _, r := range rows {
		if r.State == stateValid {
			cands = append(cands, schedule.Backup{Name: r.Name, Time: time.Unix(r.NameTime, 0), Verified: true})
		}
	}
	keepWhy := map[string]string{}
	for _, d := range p.Spec().Retain(now, cands, p.minKeep()) {
		if d.Keep {
			keepWhy[d.Backup.Name] = d.Rule
		}
	}
	out := []api.Retained{}
	for _, r := range rows {
		age := now.Sub(time.Unix(r.NameTime, 0))
		t := api.Retained{Backup: r.Name, Age: schedule.FormatDuration(age.Truncate(time.Second)), AgeSecs: int64(age / time.Second), State: r.State}
		switch {
		case why[r.Name] != "":
			t.Rule = why[r.Name]
		case r.State == stateValid:
			t.Keep, t.Rule = true, keepWhy[r.Name]
		case r.State == statePruning:
			t.Rule = "being pruned: " + r.Problem
		default:
			t.Keep, t.Rule = true, "invalid: kept until T old, never restored"
		}
		if p.Disabled {
			t.Keep, t.Rule = true, "plan disabled: nothing is deleted"
		}
		out = append(out, t)
	}
	// Names carry whole seconds, so the ages in whole seconds order them
	// as the exact ages do.
	slices.SortStableFunc(out, func(a, b api.Retained) int { return cmp.Compare(a.AgeSecs, b.AgeSecs) })
	return out
}

// planSet creates or changes a plan. The change is validated like the
// config file; a plan keeps its origin, so a config-declared plan changed
// here keeps the change until the file's declaration of it changes.
func (s *Service) planSet(ctx context.Context, req api.PlanSetRequest) (any, error) {
	var rebuild bool
	var name string
	err := s.rt.DB.Update(ctx, func(tx *store.Tx) error {
		q := db.New(tx)
		r, err := q.PlanGet(ctx, req.Name)
		exists := err == nil
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		p := Plan{Name: req.Name}
		origin, hash := originAPI, ""
		if exists {
			if p, err = decodePlan(r); err != nil {
				return err
			}
			origin, hash = r.Origin, r.ConfigHash
		} else if req.Disabled != nil && req.Schedule == nil && req.Store == nil {
			return service.NotFound(fmt.Errorf("no plan named %q (lifeboat plan list shows the plans)", req.Name))
		}
		if p.Name == SelfPlan && req.Store != nil {
			return service.BadRequest(fmt.Errorf("plan %s: its store is lifeboat's own databases and cannot be changed", SelfPlan))
		}
		applyPatch(&p, req)
		n, err := p.Normalize()
		if err != nil {
			return service.BadRequest(fmt.Errorf("plan %s: %w", req.Name, err))
		}
		if n.Name != SelfPlan && n.Store.Kind == StoreSQLiteSet {
			return service.BadRequest(fmt.Errorf("plan %s: store.kind: %q is the built-in plan %s's kind; use sqlite, files or command", n.Name, n.Store.Kind, SelfPlan))
		}
		others, err := q.PlanList(ctx)
		if err != nil {
			return err
		}
		for _, o := range others {
			op, err := decodePlan(o)
			if err == nil && o.Name != n.Name && op.Directory == n.Directory {
				return service.BadRequest(fmt.Errorf("plan %s: directory: %s is the directory of plan %s; two plans cannot share a backup directory", n.Name, n.Directory, o.Name))
			}
		}
		var prev *db.Plan
		if exists {
			prev = &r
		}
		rebuild, err = s.putPlan(ctx, q, n, origin, hash, prev, time.Now())
		name = n.Name
		return err
	})
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	if rebuild {
		s.rebuild[name] = true
	}
	// A changed schedule takes effect at once: prune by it now.
	delete(s.pruned, name)
	s.mu.Unlock()
	s.poke()
	q := db.New(s.rt.DB.R)
	r, err := q.PlanGet(ctx, name)
	if err != nil {
		return nil, err
	}
	backups, err := q.BackupsOfPlan(ctx, name)
	if err != nil {
		return nil, err
	}
	return s.view(r, backups)
}

func applyPatch(p *Plan, req api.PlanSetRequest) {
	set := func(dst *string, v *string) {
		if v != nil {
			*dst = *v
		}
	}
	set(&p.Instance, req.Instance)
	set(&p.Description, req.Description)
	set(&p.Schedule, req.Schedule)
	set(&p.Directory, req.Directory)
	if req.Store != nil {
		p.Store = storeOf(*req.Store)
	}
	if req.Hooks != nil {
		p.Hooks = hooksOf(*req.Hooks)
	}
	if req.Targets != nil {
		p.Targets = *req.Targets
	}
	if req.MinKeep != nil {
		p.MinKeep = req.MinKeep
	}
	if req.Disabled != nil {
		p.Disabled = *req.Disabled
	}
}

func backupView(b db.Backup) api.BackupView {
	return api.BackupView{
		Plan: b.Plan, Name: b.Name, Dir: b.Dir, Time: time.Unix(b.NameTime, 0).UTC(), Instance: b.Instance,
		StoreKind: b.StoreKind, Kind: b.Kind, Bytes: b.Bytes, SHA256: b.Sha256,
		TakenAt: ptimeMs(b.TakenAt), ConsistentAt: ptimeMs(b.ConsistentAt),
		State: b.State, Problem: b.Problem, CheckedAt: time.UnixMilli(b.CheckedAt).UTC(), VerifiedAt: ptime(b.VerifiedAt),
	}
}

func (s *Service) backupList(ctx context.Context, req api.BackupListRequest) (any, error) {
	q := db.New(s.rt.DB.R)
	var rows []db.Backup
	var err error
	if req.Plan != "" {
		if _, err := q.PlanGet(ctx, req.Plan); errors.Is(err, sql.ErrNoRows) {
			return nil, service.NotFound(fmt.Errorf("no plan named %q (lifeboat plan list shows the plans)", req.Plan))
		}
		rows, err = q.BackupsOfPlan(ctx, req.Plan)
	} else {
		rows, err = q.BackupsAll(ctx)
	}
	if err != nil {
		return nil, err
	}
	out := make([]api.BackupView, 0, len(rows))
	for _, b := range rows {
		out = append(out, backupView(b))
	}
	return out, nil
}

// plansFor returns the named plan, or every plan when name is empty.
func (s *Service) plansFor(ctx context.Context, name string) ([]Plan, error) {
	q := db.New(s.rt.DB.R)
	var rows []db.Plan
	if name != "" {
		r, err := q.PlanGet(ctx, name)
		if errors.Is(err, sql.ErrNoRows) {
			return nil, service.NotFound(fmt.Errorf("no plan named %q (lifeboat plan list shows the plans)", name))
		}
		if err != nil {
			return nil, err
		}
		rows = []db.Plan{r}
	} else {
		var err error
		if rows, err = q.PlanList(ctx); err != nil {
			return nil, err
		}
	}
	var out []Plan
	for _, r := range rows {
		p, err := decodePlan(r)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

func (s *Service) rebuildAll(ctx context.Context, req api.RebuildRequest) (any, error) {
	plans, err := s.plansFor(ctx, req.Plan)
	if err != nil {
		return nil, err
	}
	out := []api.RebuildResult{}
	for _, p := range plans {
		var res RebuildResult
		err := s.withPlan(ctx, p.Name, "rebuilding the catalog", func() error {
			var err error
			res, err = s.rebuildCatalog(ctx, p, req.Full)
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("plan %s: %w", p.Name, err)
		}
		out = append(out, api.RebuildResult(res))
	}
	return out, nil
}

// verify re-reads backups in full and records the outcome in the catalog.
func (s *Service) verify(ctx context.Context, req api.VerifyRequest) (any, error) {
	plans, err := s.plansFor(ctx, req.Plan)
	if err != nil {
		return nil, err
	}
	if req.Name != "" && !backup.IsName(req.Name) {
		return nil, service.BadRequest(fmt.Errorf("%q is not a backup name (want backup-YYYY-MM-DD_HH-MM-SS-ZZZZ; lifeboat backup list shows them)", req.Name))
	}
	out := []api.VerifyResult{}
	for _, p := range plans {
		if req.Name != "" {
			if _, err := os.Stat(filepath.Join(p.Directory, req.Name)); err != nil {
				continue
			}
		}
		err := s.withPlan(ctx, p.Name, "verifying backups", func() error {
			if req.Name == "" {
				if _, err := s.rebuildCatalog(ctx, p, true); err != nil {
					return err
				}
			} else {
				t, _ := backup.ParseName(req.Name)
				put, _ := check(ctx, p, backup.Entry{Name: req.Name, Time: t}, time.Now())
				if err := s.rt.DB.Update(ctx, func(tx *store.Tx) error { return db.New(tx).BackupPut(ctx, put) }); err != nil {
					return err
				}
			}
			rows, err := db.New(s.rt.DB.R).BackupsOfPlan(ctx, p.Name)
			if err != nil {
				return err
			}
			for _, r := range rows {
				if req.Name == "" || r.Name == req.Name {
					out = append(out, api.VerifyResult{Plan: p.Name, Name: r.Name, State: r.State, Problem: r.Problem, Bytes: r.Bytes})
				}
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("plan %s: %w", p.Name, err)
		}
	}
	if req.Name != "" && len(out) == 0 {
		return nil, service.NotFound(fmt.Errorf("no plan's directory holds %s (lifeboat backup list shows the backups)", req.Name))
	}
	return out, nil
}

// status is the service's part of its status reply.
func (s *Service) status(ctx context.Context) (any, error) {
	plans, err := s.planList(ctx)
	if err != nil {
		return nil, err
	}
	return api.BackupSchedulerStatus{Plans: plans}, nil
}

// wirePlan is p as the API shows it.
func wirePlan(p Plan) api.Plan {
	w := api.Plan{
		Name: p.Name, Instance: p.Instance, Description: p.Description, Schedule: p.Schedule, Directory: p.Directory,
		Store: api.Store{Kind: p.Store.Kind, Path: p.Store.Path, Include: p.Store.Include, Exclude: p.Store.Exclude,
			Dump: p.Store.Dump, Load: p.Store.Load, Env: p.Store.Env, Timeout: api.Duration(p.Store.Timeout)},
		Targets: p.Targets, Disabled: p.Disabled, MinKeep: p.MinKeep,
	}
	if h := p.Hooks.Pre; h != nil {
		w.Hooks.Pre = &api.Hook{Command: h.Command, Timeout: api.Duration(h.Timeout)}
	}
	if h := p.Hooks.Post; h != nil {
		w.Hooks.Post = &api.Hook{Command: h.Command, Timeout: api.Duration(h.Timeout)}
	}
	return w
}

// storeOf is the store an API request asks for.
func storeOf(s api.Store) Store {
	return Store{Kind: s.Kind, Path: s.Path, Include: s.Include, Exclude: s.Exclude, Dump: s.Dump, Load: s.Load, Env: s.Env, Timeout: Duration(s.Timeout)}
}

// hooksOf are the hooks an API request asks for.
func hooksOf(h api.Hooks) Hooks {
	var out Hooks
	if h.Pre != nil {
		out.Pre = &Hook{Command: h.Pre.Command, Timeout: Duration(h.Pre.Timeout)}
	}
	if h.Post != nil {
		out.Post = &Hook{Command: h.Post.Command, Timeout: Duration(h.Post.Timeout)}
	}
	return out
}
