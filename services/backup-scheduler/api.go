package backupscheduler

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/micro"

	"lifeboat.dev/events"
	"lifeboat.dev/events/api"
	"lifeboat.dev/pkg/service"
	"lifeboat.dev/services/backup-scheduler/internal/db"
)

// The API's transport and its read endpoints. The service's endpoints are
// at lifeboat.api.backup-scheduler.<name>; their names and their request
// and reply types are the contract's (lifeboat.dev/events/api:
// api.PlanList, api.PlanView, ...). Plan changes are in planset.go, the
// retention timeline of plan show in timeline.go, the catalog's rebuild and
// verification in api_catalog.go.

// apiTimeout bounds the work of one API call; verification of large
// backups is the longest.
const apiTimeout = time.Hour

func (s *Service) endpoints() []service.Endpoint {
	return []service.Endpoint{
		{Name: api.PlanList, Handler: s.async(func(ctx context.Context, _ []byte) (any, error) { return s.planList(ctx) })},
		{Name: api.PlanShow, Handler: s.async(withReq(s.planShow))},
		{Name: api.PlanSet, Handler: s.async(withReq(s.planSet)), Operator: true},
		{Name: api.PlanDisable, Handler: s.async(withReq(func(ctx context.Context, r api.PlanRequest) (any, error) {
			return s.changePlan(ctx, events.PlanActionDisable, api.PlanSetRequest{Name: r.Name})
		})), Operator: true},
		{Name: api.PlanEnable, Handler: s.async(withReq(func(ctx context.Context, r api.PlanRequest) (any, error) {
			return s.changePlan(ctx, events.PlanActionEnable, api.PlanSetRequest{Name: r.Name})
		})), Operator: true},
		{Name: api.BackupList, Handler: s.async(withReq(s.backupList))},
		{Name: api.BackupVerify, Handler: s.async(withReq(s.verify))},
		{Name: api.CatalogRebuild, Handler: s.async(withReq(s.rebuildAll)), Operator: true},
	}
}

// async answers each request from its own goroutine, so that a long
// verification does not hold up the endpoint's other callers. The
// goroutine is the service's (rt.Go): shutdown cancels its context and
// waits for it before the database closes; once shutdown has begun a
// request is answered 503.
func (s *Service) async(fn func(ctx context.Context, body []byte) (any, error)) micro.HandlerFunc {
	return func(req micro.Request) {
		body := req.Data()
		started := s.rt.Go(func(ctx context.Context) error {
			ctx, cancel := context.WithTimeout(ctx, apiTimeout)
			defer cancel()
			v, err := fn(ctx, body)
			service.RespondJSON(req, v, err)
			return nil // the caller has the error; the service goes on
		})
		if !started {
			_ = req.Error("503", Name+" is shutting down; try again once it is back", nil)
		}
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

// view is a plan and its scheduler state as the API shows it. A plan whose
// stored definition cannot be read shows its name, origin and catalog, and
// the reason as its last error.
func (s *Service) view(r db.Plan, backups []db.Backup) (api.PlanView, error) {
	p, err := decodePlan(r)
	if err != nil {
		v := api.PlanView{Plan: api.Plan{Name: r.Name}, Origin: r.Origin, LastError: err.Error()}
		countBackups(&v, backups)
		return v, nil
	}
	v := api.PlanView{
		Plan: wirePlan(p), Origin: r.Origin, NextDueAt: ptime(r.NextDueAt), LastAttemptAt: ptime(r.LastAttemptAt),
		LastBackup: r.LastBackup, LastSuccessAt: ptime(r.LastSuccessAt), LastError: r.LastError, LastErrorAt: ptime(r.LastErrorAt),
		SteadyState: p.Spec().SteadyState(), Doing: s.getDoing(p.Name), LeaseBound: s.cfg.leaseBound(p),
	}
	if p.Disabled {
		v.NextDueAt = nil
	}
	countBackups(&v, backups)
	return v, nil
}

// countBackups counts a plan's valid and invalid backups into v.
func countBackups(v *api.PlanView, backups []db.Backup) {
	for _, b := range backups {
		switch b.State {
		case stateValid:
			v.Backups++
		case stateInvalid:
			v.Invalid++
		}
	}
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
		return api.PlanDetail{PlanView: v, Bands: []api.Band{}, Retention: []api.Retained{}}, nil // v says why
	}
	bands := []api.Band{}
	for _, b := range p.Spec().Bands() {
		bands = append(bands, api.Band(b))
	}
	return api.PlanDetail{PlanView: v, Bands: bands, Retention: timeline(p, backups, s.now())}, nil
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
			Dump: p.Store.Dump, Load: p.Store.Load, Env: redactEnv(p.Store.Env), Timeout: api.Duration(p.Store.Timeout)},
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

// redactEnv shows an environment's names, never its values: they are
// where a dump command's password goes (PGPASSWORD=…), and plan show,
// status and the status page are read by anyone who can reach the API.
func redactEnv(env []string) []string {
	if env == nil {
		return nil
	}
	out := make([]string, len(env))
	for i, kv := range env {
		name, _, _ := strings.Cut(kv, "=")
		out[i] = name + "=" + api.Redacted
	}
	return out
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
